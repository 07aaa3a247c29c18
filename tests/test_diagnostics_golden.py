"""Golden diagnostics: every file in tests/bad/ is a bad program whose first line
is `# expect: LINE:COL: error[CODE]: message` — the first diagnostic the compiler
must report.  Regenerate with `EVO_UPDATE_GOLDENS=1 python -m pytest tests/test_diagnostics_golden.py`
(then review the diff): the `golden` fixture of tests/conftest.py, shared with every golden test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import evo
from conftest import evoc_batch
from evo.diagnostics import CODES

BAD = Path(__file__).parent / "bad"
CASES = sorted(p for p in BAD.glob("*.evo") if not p.name.startswith("_"))


def first_diagnostic(path: Path) -> tuple[str, evo.EvoError]:
    with pytest.raises(evo.EvoError) as info:
        evo.compile_file(path)
    e = info.value
    d = e.diagnostics[0]
    where = "" if Path(d.span.filename).name == path.name else f"{Path(d.span.filename).name}:"
    return f"{where}{d.span.line}:{d.span.column}: error[{d.code}]: {d.message}", e


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_program(path: Path, golden):
    text = path.read_text()
    head, rest = text.split("\n", 1)
    got, err = first_diagnostic(path)
    if not golden.check(path, f"# expect: {got}\n{rest}", f"the first diagnostic of {path.name}"):
        return
    m = re.match(r"# expect: (.*)$", head)
    assert m, f"{path.name} has no '# expect:' line"
    assert got == m.group(1)
    d = err.diagnostics[0]
    if Path(d.span.filename).name != path.name:
        return
    # the rendered form: location, the source line and a caret under the span
    rendered = str(err).splitlines()
    assert rendered[0].startswith(f"{path}:{got.split(':')[0]}:")
    d = err.diagnostics[0]
    src_line = text.splitlines()[d.span.line - 1]
    assert rendered[1].endswith(src_line.expandtabs(1))
    caret = rendered[2]
    assert caret.index("^") - caret.index("|") - 2 == d.span.column - 1
    assert (err.filename, err.line, err.column) == (str(path), d.span.line, d.span.column)


def test_at_least_40_distinct_errors():
    msgs = set()
    for p in CASES:
        head = p.read_text().split("\n", 1)[0]
        msgs.add(re.sub(r"^# expect: (\S+:)?\d+:\d+: ", "", head))
    assert len(msgs) >= 40


def test_every_code_is_exercised():
    used = set()
    for p in CASES:
        m = re.search(r"error\[(E\d+)\]", p.read_text().split("\n", 1)[0])
        if m:
            used.add(m.group(1))
    missing = sorted(set(CODES) - used)
    assert not missing, f"codes without a golden bad program: {missing}"


@pytest.fixture(scope="module")
def cli_checks() -> dict[Path, object]:
    """`evoc check` of the first six bad programs, all in one fresh interpreter
    (tests/test_source.py keeps a `python -m evo.cli check` process of its own)."""
    return dict(zip(CASES[:6], evoc_batch([["check", p] for p in CASES[:6]], timeout=300)))


@pytest.mark.parametrize("path", CASES[:6], ids=[p.stem for p in CASES[:6]])
def test_cli_reports_without_traceback(path: Path, cli_checks):
    r = cli_checks[path]
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: error\[E\d+\]: ", r.stderr)
    assert "^" in r.stderr
