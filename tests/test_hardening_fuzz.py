"""The hardening fuzz: the command line and the API driven with random mutations of every
example and with random bytes, more than 10,000 inputs per run.

Every input must end with exit status 0, 1 or 2 (the API: a Program or an EvoError whose
diagnostics point into the text), never a traceback or an internal error, within a
time limit, writing nothing outside the output directory and executing nothing from the
program text (payloads that would create a marker file are planted in names, strings
and comments).  Deterministic (one seeded generator).  `bench/bench_fuzz.py` runs the
same with more inputs (nightly)."""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import signal
from pathlib import Path

import evo
from evo.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.evo"))
SOURCES = [p.read_text(encoding="utf-8") for p in EXAMPLES]
_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"?|`[^`\n]*`?|\d[\d_.]*(?:[eE][+-]?\d+)?(?: ?[A-Za-z]+(?:/[A-Za-z]+)?)?'
                    r'|[A-Za-z_]\w*|\.\.|//|==|!=|<=|>=|\n[ \t]*|[ \t]+|.', re.DOTALL)
TOKENS = [_TOKEN.findall(s) for s in SOURCES]
VOCAB = sorted({t for toks in TOKENS for t in toks if not t.isspace()})

MARKER = "EVO_FUZZ_PWNED"
PAYLOADS = [f'"; import os; os.mkdir("{MARKER}") #"', f"__import__('os').mkdir('{MARKER}')",
            f"`__import__('os').mkdir('{MARKER}')`", f'"\\"\\"\\"\\nimport os\\nos.mkdir(\'{MARKER}\')\\n"',
            f"# ){MARKER}", "\x1b[2J\x1b]0;title\x07", "`\u202e\x00`", "1e999", "9" * 400, "((((((((((", "\\",
            "\ufeff", "\r\n", "\x00", "\udcff"]
LOC = re.compile(r"^(.*?):(\d+):(\d+): error\[E\d{4}\]: ", re.MULTILINE)


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int):
    def fire(signum, frame):
        raise _Timeout(f"over {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def mutate(rng: random.Random) -> str:
    k = rng.randrange(len(SOURCES))
    toks = list(TOKENS[k])
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(toks))
        op = rng.randrange(7)
        if op == 0:
            toks[i] = ""
        elif op == 1:
            toks[i] = toks[i] + toks[i]
        elif op == 2:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == 3:
            toks[i] = rng.choice(VOCAB)
        elif op == 4:
            toks.insert(i, rng.choice(PAYLOADS))
        elif op == 5:
            toks.insert(i, "".join(chr(rng.randrange(0x20, 0x7f)) for _ in range(rng.randint(1, 4))))
        else:
            toks = toks[:i]
            break
    return "".join(toks)


def soup(rng: random.Random) -> str:
    """A short program of example tokens in random order (cheap: most fail early)."""
    return "".join(rng.choice(VOCAB) + rng.choice(("", " ", "\n", "; ")) for _ in range(rng.randint(1, 12)))


def random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))


def api(src: str) -> None:
    """evo.compile answers with a Program or an EvoError located inside the text."""
    try:
        evo.compile(src, "<fuzz>")
    except evo.EvoError as e:
        assert e.diagnostics and str(e).startswith(f"{e.filename}:{e.line}:{e.column}: error[")
        lines = src.split("\n")
        for d in e.diagnostics:
            if d.span.filename == "<fuzz>":
                assert 1 <= d.span.line <= len(lines) + 1, d
    except (TypeError, ValueError) as e:  # the API's own argument checks (e.g. a lone surrogate)
        assert "Traceback" not in str(e)


def cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse usage errors
            code = e.code
    text = out.getvalue() + err.getvalue()
    assert code in (0, 1, 2), (argv, code, text[-2000:])
    assert "Traceback" not in text and "internal error" not in text, text[-2000:]
    return code, text


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def run_fuzz(tmp_path: Path, n_soup: int, n_bytes: int, n_mutations: int, n_cli: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    work = tmp_path / "work"
    out = work / "out"
    out.mkdir(parents=True)
    examples_before = {p.name: p.read_bytes() for p in EXAMPLES}
    cwd = os.getcwd()
    os.chdir(work)
    count = 0
    try:
        for _ in range(n_soup):  # each input under its own limit: a shared one fails on a loaded machine
            with time_limit(10):
                api(soup(rng))
            count += 1
        for _ in range(n_bytes):
            raw = random_bytes(rng)
            with time_limit(10):
                api(raw.decode("utf-8", "replace"))
            count += 1
        for i in range(n_mutations):
            src = mutate(rng)
            with time_limit(20):
                api(src)
            count += 1
            if i < n_cli:  # the same through the command line, as a file, with outputs
                prog = work / "prog.evo"
                prog.write_bytes(src.encode("utf-8", "surrogatepass")[:1 << 16] if i % 4 else random_bytes(rng) + src.encode("utf-8", "replace"))
                with time_limit(30):
                    code, text = cli(["check", str(prog)])
                    if code == 1:
                        m = LOC.search(text)
                        assert m and m.group(1) == str(prog), text
                    if i % 5 == 0:
                        cli(["compile", str(prog), "-o", str(out / "prog.py")])
                    if i % 7 == 0:
                        cli(["fmt", "--stdout", str(prog)])
                count += 1
    finally:
        os.chdir(cwd)
    # nothing written outside the output directory, nothing executed from program text
    assert _tree(work) <= {"out", "out/prog.py", "prog.evo"}, _tree(work)
    assert not any(MARKER in p for p in _tree(tmp_path)), "program text was executed"
    assert not (ROOT / MARKER).exists() and not Path(cwd, MARKER).exists()
    assert {p.name: p.read_bytes() for p in EXAMPLES} == examples_before
    return count


def test_fuzz_the_cli_and_the_api(tmp_path):
    n = run_fuzz(tmp_path, n_soup=6500, n_bytes=3000, n_mutations=600, n_cli=120)
    assert n >= 10_000


def test_payloads_reach_the_generated_file_inert(tmp_path):
    """Each payload, as a string and as a quoted name, compiles into a file that imports
    without running it."""
    import types

    compiled = 0
    for k, p in enumerate(PAYLOADS[:5]):
        name = p.replace("\\", "").replace("`", "").replace("\n", " ").replace(".", "_")
        label = p.replace("\\", "").replace('"', "'").replace("\n", " ")
        src = (f"network N(x: Tensor[N, 3, 4, 4]) {{\n    `{name}` = conv2d(x, 2, 1)\n    return `{name}`\n}}\n"
               f'cam C {{ network = N; layer = `{name}`; method = gradcam; labels = ["{label}", "b"] }}\n')
        prog = evo.compile(src)
        mod = types.ModuleType(f"fuzz{k}")
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            exec(compile(prog.emit_python(), "<gen>", "exec"), mod.__dict__)  # noqa: S102 - the code under test
            model = mod.NETWORKS["N"]()
            exp = mod.EXPLAINERS["C"](model)
            assert exp.labels[0] == label and model._modules[name] is not None
        finally:
            os.chdir(cwd)
        compiled += 1
        assert not (tmp_path / MARKER).exists()
    assert compiled == 5
