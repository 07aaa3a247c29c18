"""Property tests: random mutations of the examples (tokens deleted, duplicated, swapped
or replaced; lines moved; random characters and bytes inserted; truncation) never make
the compiler fail with anything but success or an `evo.EvoError` whose every diagnostic
points into its file; and every mutated program that compiles formats to a fixed point
that compiles to the same IR.

Deterministic (`derandomize=True`); 2,900 programs in all, sized to run in well
under a minute on two cores.  One parser serves every example (it is built once)."""

from __future__ import annotations

import atexit
import contextlib
import io
import re
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evo
from evo.cli import main
from evo.frontend.fmt import format_module
from evo.frontend.parser import get_parser

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.evo"))
SOURCES = [p.read_text(encoding="utf-8") for p in EXAMPLES]

# Tokens as a user sees them: comments and strings whole, numbers with their unit.
_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"?|\d[\d_.]*(?:[eE][+-]?\d+)?(?: ?[A-Za-z]+(?:/[A-Za-z]+)?)?'
                    r'|[A-Za-z_]\w*|\.\.|//|==|!=|<=|>=|\n[ \t]*|[ \t]+|.', re.DOTALL)
TOKENS = [_TOKEN.findall(s) for s in SOURCES]
assert all("".join(t) == s for t, s in zip(TOKENS, SOURCES))
SIGNIFICANT = [[i for i, t in enumerate(toks) if not t.isspace()] for toks in TOKENS]

# Characters that mean something to the lexer, and some that must be refused cleanly;
# and whole words and lexemes to insert.
CHARS = list("(){}[];,.:=+-*/%<>!\"'#\\@$`&|^~_0123456789eE \t\n") + [
    "\r", "\x00", "\x0b", "\x0c", "\x7f", "\u00e9", "\u2028", "\ufeff", "\U0001f600"]
WORDS = ["\r\n", "..", "//", "if", "else", "seq", "repeat", "for", "in", "evo", "MHz", "KiB", "B/cycle", "M",
         "1e999", "1_", "return", "network", "block", "true", "not", "0.", ".5", "x.", "N", "Tensor", "} else {"]

FUZZ = {"deadline": None, "derandomize": True, "database": None, "print_blob": True,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}

# ---------------------------------------------------------------------- the property


def _location_ok(text: str, line: int, column: int) -> bool:
    lines = text.split("\n")
    return 1 <= line <= len(lines) and 1 <= column <= len(lines[line - 1]) + 1


def compile_or_error(src: str):
    """The compiler's answer: a program, or None for an EvoError whose diagnostics all
    point into their files.  Any other exception fails the test."""
    try:
        return evo.compile(src, "<fuzz>")
    except evo.EvoError as e:
        assert e.diagnostics
        assert (e.filename, e.line, e.column) == (e.diagnostics[0].span.filename, e.diagnostics[0].span.line,
                                                  e.diagnostics[0].span.column)
        for d in e.diagnostics:
            text = e.sources.texts.get(d.span.filename)
            if text is None:
                text = src
            assert _location_ok(text, d.span.line, d.span.column), (d, repr(src[-40:]))
        rendered = str(e)
        assert rendered.startswith(f"{e.filename}:{e.line}:{e.column}: error[{e.code}]")
        assert "Traceback" not in rendered
        return None


def round_trips(prog, src: str) -> None:
    """A program that compiles formats to a fixed point that compiles to the same IR.
    (The formatter runs on the syntax trees the compilations parsed: the same as
    `format_source`, without parsing every text twice.)"""
    once = format_module(prog.compilation.ast)
    again = evo.compile(once, "<fuzz>")
    assert format_module(again.compilation.ast) == once
    assert again.compilation.ir_text == prog.compilation.ir_text


def check(src: str) -> None:
    prog = compile_or_error(src)
    if prog is not None:
        round_trips(prog, src)


# ---------------------------------------------------------------------- mutations


@st.composite
def token_mutations(draw):
    k = draw(st.integers(0, len(SOURCES) - 1))
    toks = list(TOKENS[k])
    sig = SIGNIFICANT[k]
    for _ in range(draw(st.integers(1, 3))):
        i = sig[draw(st.integers(0, len(sig) - 1))]
        j = sig[draw(st.integers(0, len(sig) - 1))]
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "replace"]))
        if op == "delete":
            toks[i] = ""
        elif op == "duplicate":
            toks[i] = toks[i] + " " * draw(st.integers(0, 1)) + toks[i]
        elif op == "swap":
            toks[i], toks[j] = toks[j], toks[i]
        else:
            toks[i] = toks[j]
    return "".join(toks)


@st.composite
def line_mutations(draw):
    """Mostly valid edits: whole lines deleted, duplicated or swapped; separators and
    comments inserted.  These exercise the formatter on programs that compile."""
    k = draw(st.integers(0, len(SOURCES) - 1))
    lines = SOURCES[k].split("\n")
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "comment", "blank", "semicolon", "join"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "comment":
            lines[i] = lines[i] + "  # " + draw(st.text(st.sampled_from("ab #{}()\"\\"), max_size=5))
        elif op == "blank":
            lines.insert(i, "")
        elif op == "semicolon":
            lines[i] = lines[i] + ";"
        elif i + 1 < len(lines):  # join two lines with '; '
            lines[i:i + 2] = [lines[i] + "; " + lines[i + 1].strip()]
        if not lines:
            lines = [""]
    return "\n".join(lines)


@st.composite
def insertions(draw):
    k = draw(st.integers(0, len(SOURCES) - 1))
    toks = list(TOKENS[k])
    for _ in range(draw(st.integers(1, 2))):
        i = draw(st.integers(0, len(toks)))
        text = draw(st.one_of(st.sampled_from(CHARS + WORDS),
                              st.text(st.one_of(st.sampled_from(CHARS), st.characters()), min_size=1, max_size=4)))
        toks.insert(i, text)
    return "".join(toks)


@st.composite
def truncations(draw):
    src = SOURCES[draw(st.integers(0, len(SOURCES) - 1))]
    return src[:draw(st.integers(0, len(src)))]


# ---------------------------------------------------------------------- tests


def test_parser_is_built_once():
    assert get_parser() is get_parser()


@settings(max_examples=1000, **FUZZ)
@given(token_mutations())
def test_token_mutations(src):
    check(src)


@settings(max_examples=300, **FUZZ)
@given(line_mutations())
def test_line_mutations(src):
    check(src)


@settings(max_examples=800, **FUZZ)
@given(insertions())
def test_inserted_characters(src):
    check(src)


@settings(max_examples=500, **FUZZ)
@given(truncations())
def test_truncations(src):
    check(src)


_TMP = Path(tempfile.mkdtemp(prefix="evo-fuzz-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
_LOC = re.compile(r"^(.*?):(\d+):(\d+): error\[E\d{4}\]: ", re.MULTILINE)


@settings(max_examples=300, **FUZZ)
@given(st.integers(0, len(SOURCES) - 1), st.data())
def test_inserted_bytes_through_the_cli(k, data):
    """Random bytes (often invalid UTF-8) in a file: `evoc check` answers 0 or 1 with a
    located diagnostic, never an internal error."""
    raw = SOURCES[k].encode("utf-8")
    for _ in range(data.draw(st.integers(1, 2))):
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=3)) + raw[at:]
    path = _TMP / "fuzz.evo"
    path.write_bytes(raw)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check", "-q", str(path)])
    out = err.getvalue()
    assert code in (0, 1), out
    assert "internal error" not in out and "Traceback" not in out
    if code == 1:
        m = _LOC.match(out)
        assert m, out
        assert m.group(1) == str(path)
        lines = raw.split(b"\n")
        line, col = int(m.group(2)), int(m.group(3))
        assert 1 <= line <= len(lines) + 1, out
        assert 1 <= col <= len(lines[min(line, len(lines)) - 1]) + 2, out


def test_fuzz_corpus_covers_every_example():
    assert len(SOURCES) >= 5
    for src in SOURCES:
        check(src)
