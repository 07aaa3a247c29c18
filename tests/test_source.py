"""The one source reader (evo/frontend/source.py): files, imports, stdin and strings
are read the same way; anything that is not a regular file of a bounded size is
refused with a diagnostic before it is read; wrong argument types to the API
entry points raise EvoError, TypeError or ValueError with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import evo
from conftest import evoc_batch, evoc_inprocess
from evo.frontend import source as S

ROOT = Path(__file__).resolve().parents[1]
NET = "network N(x: Tensor[N, 2]) {\n    return relu(x)\n}\n"
LIB = "block B(x) {\n    return relu(x)\n}\n"


def cli(*args, cwd=None, stdin=None, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "evo.cli", *args], capture_output=True, text=True, cwd=cwd,
                          input=stdin, timeout=timeout, env=env)


def api_error(fn, *args) -> evo.EvoError:
    with pytest.raises(evo.EvoError) as info:
        fn(*args)
    return info.value


# ---------------------------------------------------------------------- bad UTF-8

def test_bad_utf8_same_diagnostic_for_api_and_cli(tmp_path):
    p = tmp_path / "bad.evo"
    p.write_bytes(b"network N(x: Tensor[N, 2]) {\n    return \xff(x)\n}\n")
    e = api_error(evo.compile_file, p)
    d = e.diagnostics[0]
    assert (d.code, d.span.line, d.span.column) == ("E0001", 2, 12)
    assert d.message == "the file is not valid UTF-8 (byte 0xff)"
    r = cli("check", str(p))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == str(e).strip()


def test_bad_utf8_in_an_imported_file_is_a_diagnostic(tmp_path):
    (tmp_path / "lib.evo").write_bytes(b"block B(x) {\n    return \xc3(x)\n}\n")
    (tmp_path / "main.evo").write_text('import "lib.evo"\n' + NET)
    e = api_error(evo.compile_file, tmp_path / "main.evo")
    assert e.diagnostics[0].code == "E0001" and e.diagnostics[0].span.line == 2


# ---------------------------------------------------------------------- not regular files

def special_paths(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.evo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.evo"
    os.symlink(loop, loop)
    big = tmp_path / "big.evo"
    with open(big, "wb") as f:
        f.truncate(S.MAX_SOURCE_BYTES + 1)  # sparse: nothing is written
    return {"fifo": fifo, "loop": loop, "dir": tmp_path, "device": Path("/dev/zero"), "big": big,
            "missing": tmp_path / "missing.evo"}


WHY = {"fifo": "FIFO", "loop": "symbolic links", "dir": "directory", "device": "device", "big": "limit",
       "missing": "no such file"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_program_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
    for kind, path in special_paths(tmp_path).items():
        t = time.monotonic()
        e = api_error(evo.compile_file, path)
        assert time.monotonic() - t < 5, kind
        assert e.diagnostics[0].code == "E0109", kind
        assert WHY[kind] in e.diagnostics[0].message, (kind, e.diagnostics[0].message)
    e = api_error(evo.compile_file, str(tmp_path / "a\0b.evo"))
    assert "NUL" in e.diagnostics[0].message
    # the command line: a usage error (exit 2), one line, no traceback, never blocks
    (tmp_path / "cli").mkdir()
    # (both in one fresh interpreter under one limit: a FIFO that blocked would time it out)
    paths = special_paths(tmp_path / "cli")
    r, r2 = evoc_batch([["check", paths["fifo"]], ["check", paths["loop"]]], timeout=60)
    assert r.returncode == 2 and "FIFO" in r.stderr and "Traceback" not in r.stderr
    assert r2.returncode == 2 and "symbolic links" in r2.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_import_of_something_that_is_not_a_regular_file(tmp_path):
    paths = special_paths(tmp_path)
    for kind, path in paths.items():
        main = tmp_path / f"main_{kind}.evo"
        main.write_text(f'import "{path}"\n' + NET)
        t = time.monotonic()
        e = api_error(evo.compile_file, main)
        assert time.monotonic() - t < 5, kind
        d = e.diagnostics[0]
        assert (d.code, d.span.filename, d.span.line) == ("E0109", str(main), 1), kind
        assert WHY[kind] in d.message or (kind == "missing" and "not found" in d.message), (kind, d.message)
    # a NUL byte in the import path (written as an escape or raw)
    main = tmp_path / "nul.evo"
    main.write_text('import "a\\u0000b.evo"\n' + NET)
    # both in one fresh interpreter under one limit: a FIFO that blocked would time it out
    r, r2 = evoc_batch([["check", tmp_path / "main_fifo.evo"], ["check", main]], timeout=60)
    assert r.returncode == 1 and "error[E0109]" in r.stderr and "Traceback" not in r.stderr
    assert r2.returncode == 1 and "Traceback" not in r2.stderr


def test_import_outside_the_tree_does_not_echo_other_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password = hunter2 & more\nsecond line\n")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "main.evo").write_text(f'import "{secret}"\n' + NET)
    e = api_error(evo.compile_file, proj / "main.evo")
    assert e.diagnostics[0].code == "E0109" and "not an evo program" in e.diagnostics[0].message
    assert "hunter2" not in str(e) and "password" not in str(e)
    r = evoc_inprocess(["check", proj / "main.evo"])
    assert r.returncode == 1 and "hunter2" not in r.stderr + r.stdout
    # also relative paths that climb out of the tree
    (proj / "up.evo").write_text('import "../secret.txt"\n' + NET)
    assert "hunter2" not in str(api_error(evo.compile_file, proj / "up.evo"))
    # inside the tree a bad file is reported where it is bad, with its line
    (proj / "lib.evo").write_text("block B(x) {\n    return relu(x) $\n}\n")
    (proj / "in.evo").write_text('import "lib.evo"\n' + NET)
    e = api_error(evo.compile_file, proj / "in.evo")
    assert e.diagnostics[0].span.filename.endswith("lib.evo") and "return relu(x) $" in str(e)
    # a good evo program outside the tree imports fine
    (tmp_path / "lib.evo").write_text(LIB)
    (proj / "ok.evo").write_text('import "../lib.evo"\nnetwork M(x: Tensor[N, 2]) {\n    return B(x)\n}\n')
    assert "B" in evo.compile_file(proj / "ok.evo").compilation.program.blocks


# ---------------------------------------------------------------------- imports of evo.compile

def test_compile_resolves_imports_from_base_dir_then_cwd_and_absolute(tmp_path, monkeypatch):
    (tmp_path / "lib.evo").write_text(LIB)
    prog = "import \"lib.evo\"\nnetwork M(x: Tensor[N, 2]) {\n    return B(x)\n}\n"
    assert "B" in evo.compile(prog, base_dir=tmp_path).compilation.program.blocks
    monkeypatch.chdir(tmp_path)
    assert "B" in evo.compile(prog).compilation.program.blocks  # the current directory
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    e = api_error(evo.compile, prog)
    assert e.diagnostics[0].code == "E0109" and "not found" in e.diagnostics[0].message
    absolute = prog.replace('"lib.evo"', f'"{tmp_path / "lib.evo"}"')
    m = evo.compile(absolute).build("M")
    x = torch.tensor([[-1.0, 2.0]])
    assert torch.equal(m(x), torch.relu(x))


def test_stdin_imports_are_relative_to_the_current_directory(tmp_path):
    (tmp_path / "lib.evo").write_text(LIB)
    r = evoc_inprocess(["check", "-"], cwd=tmp_path,
                       stdin='import "lib.evo"\nnetwork M(x: Tensor[N, 2]) {\n    return B(x)\n}\n')
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------- API argument types

def test_api_entry_points_refuse_wrong_argument_types(tmp_path):
    prog = evo.compile((ROOT / "examples" / "quickstart.evo").read_text(), base_dir=ROOT / "examples")
    bad_calls = [
        (evo.compile, (b"network",), {}, TypeError, "decode it first"),
        (evo.compile, (None,), {}, TypeError, "must be a str"),
        (evo.compile, (NET, 3), {}, TypeError, "filename must be a str"),
        (evo.compile, (NET,), {"base_dir": 7}, TypeError, "base_dir"),
        (evo.compile_file, (42,), {}, TypeError, "path must be"),
        (evo.compile_file, (b"x.evo",), {}, TypeError, "bytes"),
        (prog.build, (3,), {}, TypeError, "network name must be a str"),
        (prog.build, ("QuickNet",), {"seed": "0"}, TypeError, "seed must be an int"),
        (prog.build, ("QuickNet",), {"classes": [4]}, TypeError, "network argument 'classes'"),
        (prog.cost, ("QuickNet", 5), {}, TypeError, "hardware name must be a str"),
        (prog.cost, ("QuickNet", "EdgeNPU"), {"batch": "1"}, TypeError, "batch must be an int"),
        (prog.cost, ("QuickNet", "EdgeNPU"), {"batch": 0}, ValueError, "at least 1"),
        (prog.cost, ("QuickNet", "EdgeNPU"), {"objective": "speed"}, ValueError, "objective must be one of"),
        (prog.explainer, (None,), {}, TypeError, "cam name must be a str"),
        (prog.explainer, ("Shapes", "model"), {}, TypeError, "torch.nn.Module"),
        (prog.evolve, (1,), {}, TypeError, "evolve name must be a str"),
    ]
    for fn, args, kw, exc, words in bad_calls:
        with pytest.raises(exc) as info:
            fn(*args, **kw)
        assert words in str(info.value), (fn.__name__, args, kw, str(info.value))
    with pytest.raises(evo.EvoError):
        prog.evolve("Nope")
    with pytest.raises(evo.EvoError):
        prog.explainer("Shapes", method="nope")
    with pytest.raises(TypeError, match="layer must be a layer path"):
        prog.explainer("Shapes", layer=5)
    with pytest.raises(TypeError, match="labels must be a list of str"):
        prog.explainer("Shapes", labels="abc")
    with pytest.raises(TypeError, match="nn.Module"):
        evo.from_torch("model", torch.zeros(1, 2))
    with pytest.raises(TypeError, match="name must be a str"):
        evo.from_torch(torch.nn.Linear(2, 2), torch.zeros(1, 2), name=5)


def test_evolve_refuses_wrong_argument_types():
    prog = evo.compile_file(ROOT / "examples" / "evolve.evo")
    name = next(iter(prog.evolves))
    for kw, words in (({"generations": "3"}, "generations must be an int"), ({"seed": 1.5}, "seed must be"),
                      ({"population": True}, "population must be"), ({"speed": 1}, "unexpected keyword"),
                      ({"progress": 3}, "callable")):
        with pytest.raises(TypeError, match=words):
            prog.evolve(name, **kw)


def test_reader_limits_and_string_source(tmp_path):
    p = tmp_path / "ok.evo"
    p.write_text(NET)
    src = S.read_path(p)
    assert (src.text, src.name, src.base_dir) == (NET, str(p), tmp_path)
    with pytest.raises(S.UnreadableSource, match="limit of 10 bytes"):
        S.read_bytes(p, limit=10)
    with pytest.raises(ValueError, match="limit"):
        evo.compile("#" * (S.MAX_SOURCE_BYTES + 1))
