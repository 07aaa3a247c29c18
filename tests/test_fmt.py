"""The canonical formatter (`evoc fmt`): clean on the examples, idempotent, meaning-
preserving (same IR, same syntax tree), comment-preserving, and the CLI's in-place
writing and `--check`."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import evo
from evo.cli import main
from evo.frontend import parse
from evo.frontend.dump import dump
from evo.frontend.fmt import format_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.evo"))
BAD = sorted((ROOT / "tests" / "bad").glob("*.evo"))


def parses(path: Path) -> bool:
    try:
        parse(path.read_text(encoding="utf-8"), str(path))
    except evo.EvoError:
        return False
    return True


BAD_PARSING = [p for p in BAD if parses(p)]


def tree(src: str) -> str:
    """The syntax tree without source positions, without whether a stage was written
    bare (`relu`, which fmt writes `relu()`: the same stage) and without the spelling
    of quantities (`200MHz` is written `200 MHz`; value and unit are compared)."""
    return re.sub(r" @\d+:\d+| bare=(true|false)| text='[^']*'", "", dump(parse(src)))


def comments(src: str) -> list[str]:
    return [c.text for c in parse(src).comments]


# ====================================================================== the examples


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_fmt_check_is_clean_on_every_example(path, capsys):
    assert main(["fmt", "--check", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_fmt_of_an_example_means_the_same(path):
    src = path.read_text(encoding="utf-8")
    out = format_source(src, str(path))
    assert format_source(out) == out
    assert tree(out) == tree(src)
    assert comments(out) == comments(src)
    before = evo.compile(src, str(path), path.parent).compilation.ir_text
    after = evo.compile(out, str(path), path.parent).compilation.ir_text
    assert after == before


@pytest.mark.parametrize("where", ["end", "own", "both"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_fmt_keeps_comments_wherever_they_are(path, where):
    """A comment at the end of every line, or on its own line before every line, survives
    formatting, in order, and the result is a fixed point with the same tree."""
    out_lines = []
    for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
        if where in ("own", "both"):
            out_lines.append(f"# own {i}")
        if where in ("end", "both") and "#" not in line:
            line += f"  # end {i}"
        out_lines.append(line)
    src = "\n".join(out_lines)
    out = format_source(src)
    assert comments(out) == comments(src)
    assert len(comments(src)) >= len(out_lines) // 3
    assert format_source(out) == out
    assert tree(out) == tree(src)


# ====================================================================== the bad programs


@pytest.mark.parametrize("path", BAD_PARSING, ids=[p.stem for p in BAD_PARSING])
def test_fmt_is_idempotent_on_bad_programs_that_parse(path):
    src = path.read_text(encoding="utf-8")
    out = format_source(src, str(path))
    assert format_source(out) == out
    assert tree(out) == tree(src)
    assert comments(out) == comments(src)

    def diagnostics(text):
        with pytest.raises(evo.EvoError) as info:
            evo.compile(text, str(path), path.parent)
        return sorted((d.code, d.message) for d in info.value.diagnostics)

    assert diagnostics(out) == diagnostics(src)


def test_most_bad_programs_parse():
    assert len(BAD_PARSING) >= len(BAD) - 15


# ====================================================================== the canonical form

MESSY = """evo 0.1
# leading comment


import "lib.evo"   # why
block B(x,c:int,s:int=1){# after brace
  # before conv
  y=conv2d(x,c,3,stride=s,padding=1,
     # inside the call
     bias=false)   # trailing
  z = seq(y) { relu(); conv2d(c, 1)   # in seq
     batchnorm2d
  }
  if s!=1 or x.channels!=c {
      return relu(z+seq(x){conv2d(c,1,stride=s);batchnorm2d()})
  }
  else {return (z + z) * z}
  # dangling at end of body
}
network N(x:Tensor[N,3,32,32],k:int=2)   {
    a = (1 + 2) * 3 - (4 - 5) - 6 + (7 if true else 8)
    c = not (true and false) or (not true)
    d = 200MHz; e = 2 M; f = 1_000; g = "a\\"b"
    s = seq(x) { for i in 0..k { conv2d(3, 1) ; relu } ; repeat 2 { identity() } ; if k > 1 { relu } else { identity } }
    return B(s,4)
}
hardware H{frequency=200 MHz;pes=168
offchip D{bandwidth=1 GB/s;energy=100 pJ/B}   # eol
global G{
  # level comment
  size=64 KiB;bandwidth=16 B/cycle;energy=6 pJ/B}
pe P{size=512 B;bandwidth=2 B/cycle;energy=1 pJ/B}
}
hardware H2 extends H { global.size = 128 KiB }
cam C {network=N;layer=s;class=[1,2]}
target T {network=N;hardware=H;cam=C;batch=1}
evolve E {target=T
gene k in 1..4 step 1
gene H.pes in [64, 128]
minimize latency,energy
require params<=12M,latency<=33 ms}
# trailing file comment
"""

CANONICAL = """evo 0.1

# leading comment

import "lib.evo"  # why

block B(x, c: int, s: int = 1) {  # after brace
    # before conv
    # inside the call
    y = conv2d(x, c, 3, stride=s, padding=1, bias=false)  # trailing
    z = seq(y) {
        relu()  # in seq
        conv2d(c, 1)
        batchnorm2d()
    }
    if s != 1 or x.channels != c {
        return relu(z + seq(x) { conv2d(c, 1, stride=s); batchnorm2d() })
    } else {
        return (z + z) * z
    }
    # dangling at end of body
}

network N(x: Tensor[N, 3, 32, 32], k: int = 2) {
    a = (1 + 2) * 3 - (4 - 5) - 6 + (7 if true else 8)
    c = not (true and false) or not true
    d = 200 MHz
    e = 2M
    f = 1_000
    g = "a\\"b"
    s = seq(x) {
        for i in 0..k {
            conv2d(3, 1)
            relu()
        }
        repeat 2 {
            identity()
        }
        if k > 1 {
            relu()
        } else {
            identity()
        }
    }
    return B(s, 4)
}

hardware H {
    frequency = 200 MHz
    pes = 168
    offchip D { bandwidth = 1 GB/s; energy = 100 pJ/B }  # eol
    global G {
        # level comment
        size = 64 KiB
        bandwidth = 16 B/cycle
        energy = 6 pJ/B
    }
    pe P { size = 512 B; bandwidth = 2 B/cycle; energy = 1 pJ/B }
}

hardware H2 extends H {
    global.size = 128 KiB
}

cam C {
    network = N
    layer = s
    class = [1, 2]
}

target T {
    network = N
    hardware = H
    cam = C
    batch = 1
}

evolve E {
    target = T
    gene k in 1..4 step 1
    gene H.pes in [64, 128]
    minimize latency, energy
    require params <= 12M, latency <= 33 ms
}

# trailing file comment
"""


def test_canonical_form():
    out = format_source(MESSY)
    assert out == CANONICAL
    assert format_source(out) == out
    assert tree(out) == tree(MESSY)
    assert comments(out) == comments(MESSY)


def test_long_seqs_are_split_one_stage_per_line():
    stages = "; ".join(f"conv2d({i + 1}, 1)" for i in range(20))
    src = f"network N(x: Tensor[N, 3, 8, 8]) {{\n    y = seq(x) {{ {stages} }}\n    return y\n}}\n"
    out = format_source(src)
    assert all(len(line) <= 100 for line in out.splitlines())
    assert out.count("\n        conv2d(") == 20
    assert format_source(out) == out
    assert evo.compile(out).compilation.ir_text == evo.compile(src).compilation.ir_text


@pytest.mark.parametrize("text", [
    "a - (b - c)", "(a - b) - c", "a / (b * c)", "-(a + b)", "(a if b else c) + d", "a if (b if c else d) else e",
    "not (a and b)", "(not a) == b", "(a < b) == c", "x.shape[(1 + 1)]", "(-x).channels", "(3).5", "- -a",
    "[1, (2 + 3) * 4]", "(1 MHz).x", "min(a, (b))", "-(2 MHz)", "(a + b).c[0]",
])
def test_parentheses_keep_the_meaning(text):
    src = f"target T {{\n    v = {text}\n}}\n"
    out = format_source(src)
    assert tree(out) == tree(src)
    assert format_source(out) == out


# ====================================================================== the command line


def test_fmt_writes_in_place_and_check_exits_1(tmp_path, capsys):
    f = tmp_path / "net.evo"
    f.write_text(MESSY)
    assert main(["fmt", "--check", str(f)]) == 1
    assert "would reformat" in capsys.readouterr().err
    assert f.read_text() == MESSY  # --check never writes
    assert main(["fmt", str(f)]) == 0
    assert "formatted" in capsys.readouterr().out
    assert f.read_text() == CANONICAL
    assert main(["fmt", "--check", str(f)]) == 0
    mtime = f.stat().st_mtime_ns
    assert main(["fmt", str(f)]) == 0  # already formatted: not rewritten
    assert f.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.tmp"))


def test_fmt_stdout_and_stdin(tmp_path, capsys, monkeypatch):
    f = tmp_path / "net.evo"
    f.write_text(MESSY)
    assert main(["fmt", "--stdout", str(f)]) == 0
    assert capsys.readouterr().out == CANONICAL
    assert f.read_text() == MESSY
    monkeypatch.setattr("sys.stdin", io.StringIO(MESSY))
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == CANONICAL


def test_fmt_reports_syntax_errors_and_goes_on(tmp_path, capsys):
    bad = tmp_path / "bad.evo"
    bad.write_text("network N(x: Tensor[N, 3]) {\n    y = relu(x) z\n}\n")
    good = tmp_path / "good.evo"
    good.write_text("network  N(x: Tensor[N, 3]) { return x }\n")
    assert main(["fmt", str(bad), str(good)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:17: error[E0002]" in err and "Traceback" not in err
    assert good.read_text() == "network N(x: Tensor[N, 3]) {\n    return x\n}\n"
    assert bad.read_text().startswith("network N(x: Tensor[N, 3]) {\n    y = relu(x) z")


def test_fmt_usage_errors_exit_2(tmp_path, capsys):
    assert main(["fmt", str(tmp_path / "missing.evo")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["fmt"])
    assert info.value.code == 2
