"""The command line as a package apart: its registry, `pick`, the one atomic writer
(issue 16, "Writing outputs") and distinct output names in `evoc run`."""

from __future__ import annotations

import ast
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evo import cli
from evo.cli import app, common, output

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
PROGRAM = "network N(x: Tensor[1, 3, 8, 8]) {\n    return relu(x)\n}\n"


@pytest.fixture
def prog(tmp_path):
    p = tmp_path / "n.evo"
    p.write_text(PROGRAM)
    return p


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    c = capsys.readouterr()
    assert "Traceback" not in c.err
    return rc, c.out, c.err


# ---------------------------------------------------------------------------- the package


def _imports(path: Path) -> set[str]:
    """Every module a file imports, function-local imports included (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(ROOT).with_suffix("")
    pkg = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_nothing_outside_the_cli_package_imports_it():
    offenders = []
    for f in sorted((ROOT / "evo").rglob("*.py")):
        if (ROOT / "evo" / "cli") in f.parents:
            continue
        for m in _imports(f):
            if m == "evo.cli" or m.startswith("evo.cli."):
                offenders.append(f"{f.relative_to(ROOT)} imports {m}")
    assert not offenders, offenders
    assert not (ROOT / "evo" / "cli.py").exists()
    # the scan sees function-local imports: it would have caught the old ones
    fake = ROOT / "evo" / "_scan_probe.py"
    try:
        fake.write_text("def f():\n    from evo.cli import UsageError\n")
        assert "evo.cli.UsageError" in _imports(fake)
    finally:
        fake.unlink()


def test_every_registered_subcommand_loads_and_is_listed(capsys):
    mods = app.load_subcommands()
    assert list(mods) == list(cli.SUBCOMMANDS)
    assert {"check", "fmt", "compile", "run", "cost", "evolve", "import"} <= set(mods)
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert name in help_text


def test_a_subcommand_that_fails_to_import_is_an_error(monkeypatch, capsys, prog):
    monkeypatch.setitem(app.SUBCOMMANDS, "broken", "evo.no_such_module_for_evoc")
    with pytest.raises(cli.SubcommandError, match="'broken'.*evo.no_such_module_for_evoc"):
        app.load_subcommands()
    rc, _, err = run(capsys, "check", prog)  # even other subcommands: the registry is broken
    assert rc == 3 and "subcommand 'broken'" in err and "internal error" in err
    monkeypatch.setitem(app.SUBCOMMANDS, "broken", "evo.cli.common")  # imports, but no add_parser/main
    with pytest.raises(cli.SubcommandError, match="add_parser"):
        app.load_subcommands()


def test_python_dash_m_and_the_entry_point():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "evo.cli", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("evoc ")
    text = (ROOT / "pyproject.toml").read_text()
    assert 'evoc = "evo.cli:main"' in text


def test_pick_by_name_or_did_you_mean():
    pool = {"Eyeriss": 1, "TPUv1": 2}
    assert common.pick("hardware", "TPUv1", pool) == "TPUv1"
    assert common.pick("hardware", None, {"Only": 1}) == "Only"
    with pytest.raises(cli.UsageError, match=r"no hardware named 'Eyeris'; did you mean 'Eyeriss'\? "
                                             r"\(defined: Eyeriss, TPUv1\)"):
        common.pick("hardware", "Eyeris", pool)
    with pytest.raises(cli.UsageError, match="several hardwares .* choose one with --hardware"):
        common.pick("hardware", None, pool)
    with pytest.raises(cli.UsageError, match="declares no cam"):
        common.pick("cam", None, {})


# ---------------------------------------------------------------------------- the atomic writer


def _no_temporaries(d: Path) -> None:
    assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


def test_writes_atomically_and_creates_missing_directories(tmp_path, capsys, prog):
    out = tmp_path / "new" / "deeper" / "n.py"
    rc, _, err = run(capsys, "compile", prog, "-o", out)
    assert rc == 0, err
    assert out.read_text().startswith('"""') or "torch" in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()
    _no_temporaries(out.parent)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_a_planted_tmp_symlink_is_not_followed(tmp_path, capsys, prog):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out.py"
    (tmp_path / "out.py.tmp").symlink_to(victim)
    for name in ("." + out.name + ".tmp", out.name + ".tmp"):
        p = tmp_path / name
        if not p.is_symlink():
            p.symlink_to(victim)
    rc, _, err = run(capsys, "compile", prog, "-o", out)
    assert rc == 0, err
    assert victim.read_text() == "precious\n"
    assert out.is_file() and not out.is_symlink() and "torch" in out.read_text()


def test_device_files_and_fifos_are_refused(tmp_path, capsys, prog):
    rc, _, err = run(capsys, "compile", prog, "-o", os.devnull)
    assert rc == 2 and "is a device" in err
    assert Path(os.devnull).exists() and not Path(os.devnull).is_file()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    rc, _, err = run(capsys, "compile", prog, "-o", fifo)  # must not block
    assert rc == 2 and "is a FIFO" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_symlinked_outputs_are_refused_not_written_through(tmp_path, capsys, prog):
    target = tmp_path / "real.py"
    target.write_text("old\n")
    link = tmp_path / "link.py"
    link.symlink_to(target)
    rc, _, err = run(capsys, "compile", prog, "-o", link)
    assert rc == 2 and "symbolic link" in err
    assert link.is_symlink() and target.read_text() == "old\n"
    # fmt edits in place: a symlinked source stays a link to an unchanged file
    src = tmp_path / "ugly.evo"
    src.write_text("network  N(x: Tensor[1, 3, 8, 8]) {\n  return relu(x)\n}\n")
    ln = tmp_path / "ugly_link.evo"
    ln.symlink_to(src)
    before = src.read_text()
    rc, _, err = run(capsys, "fmt", ln)
    assert rc == 2 and "symbolic link" in err
    assert ln.is_symlink() and src.read_text() == before


def test_the_mode_is_kept_and_hard_links_are_refused(tmp_path, capsys, prog):
    out = tmp_path / "out.py"
    out.write_text("old\n")
    out.chmod(0o640)
    rc, _, err = run(capsys, "compile", prog, "-o", out)
    assert rc == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and "torch" in out.read_text()
    # fmt keeps an executable bit too
    src = tmp_path / "ugly.evo"
    src.write_text("network  N(x: Tensor[1, 3, 8, 8]) {\n  return relu(x)\n}\n")
    src.chmod(0o750)
    assert run(capsys, "fmt", src)[0] == 0
    assert stat.S_IMODE(src.stat().st_mode) == 0o750 and src.read_text() == PROGRAM
    # a hard-linked output: refused, both names keep the same (old) text
    other = tmp_path / "other.py"
    os.link(out, other)
    text = out.read_text()
    rc, _, err = run(capsys, "compile", prog, "-o", out)
    assert rc == 2 and "hard link" in err
    assert out.read_text() == other.read_text() == text and out.stat().st_ino == other.stat().st_ino


def test_the_input_program_is_never_overwritten(tmp_path, capsys, prog):
    rc, _, err = run(capsys, "compile", prog, "-o", prog)
    assert rc == 2 and "is the input" in err and prog.read_text() == PROGRAM
    (tmp_path / "sub").mkdir()
    again = tmp_path / "sub" / ".." / prog.name  # another path to the same inode
    rc, _, err = run(capsys, "compile", prog, "-o", again)
    assert rc == 2 and "is the input" in err and prog.read_text() == PROGRAM
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path, target_is_directory=True)
    rc, _, err = run(capsys, "cost", EX / "quickstart.evo", "-o", alias / prog.name, "--format", "json")
    assert rc == 0  # not an input of this command: written (through the directory the user named)
    json.loads(prog.read_text())
    prog.write_text(PROGRAM)
    rc, _, err = run(capsys, "compile", alias / prog.name, "-o", prog)
    assert rc == 2 and "is the input" in err and prog.read_text() == PROGRAM


def test_directories_and_missing_parents_are_usage_errors(tmp_path, capsys, prog):
    rc, _, err = run(capsys, "compile", prog, "-o", tmp_path)
    assert rc == 2 and "is a directory" in err
    rc, _, err = run(capsys, "compile", prog, "-o", str(tmp_path / "d") + "/")
    assert rc == 2 and "directory" in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, _, err = run(capsys, "compile", prog, "-o", afile / "out.py")
    assert rc == 2 and "not a directory" in err and afile.read_text() == "x"
    rc, _, err = run(capsys, "evolve", EX / "evolve.evo", "--out", afile, "--quiet")
    assert rc == 2 and "--out" in err and "not a directory" in err and afile.read_text() == "x"
    rc, _, err = run(capsys, "run", EX / "quickstart.evo", "--out", afile, "--quiet")
    assert rc == 2 and "--out" in err and "not a directory" in err and afile.read_text() == "x"
    rc, _, err = run(capsys, "cost", EX / "quickstart.evo", "--plot", tmp_path)
    assert rc == 2 and "is a directory" in err


def test_write_output_unit(tmp_path, capsys):
    p = tmp_path / "a" / "b.bin"
    assert output.write_output(p, b"\x00\x01") == p and p.read_bytes() == b"\x00\x01"
    output.write_output(p, "text\n")
    assert p.read_text() == "text\n"
    output.write_output("-", "to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"
    with pytest.raises(cli.UsageError, match="NUL"):
        output.write_output(str(tmp_path / "a\0b"), "x")
    with pytest.raises(cli.UsageError, match="is the input"):
        output.write_output(p, "y", inputs=[str(p)])
    assert p.read_text() == "text\n"
    _no_temporaries(p.parent)


# ---------------------------------------------------------------------------- evoc run names


def test_output_stems_are_distinct():
    from evo.cli.run import output_stems

    assert output_stems(["x/a.png", "x/b.png"]) == ["a", "b"]
    assert output_stems(["a.png", "a.jpg"]) == ["a-png", "a-jpg"]
    assert output_stems(["d1/a.png", "d2/a.png", "d3/A.png"]) == ["a-png", "a-png-2", "A-png-3"]
    got = output_stems(["a-png-2.png", "d1/a.png", "d2/a.png"])
    assert len({s.lower() for s in got}) == 3


def test_evoc_run_gives_distinct_names_to_inputs_with_one_stem(tmp_path, capsys):
    src = sorted((EX / "images").glob("*.png"))[:2]
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    imgs = [tmp_path / "d1" / "a.png", tmp_path / "d2" / "a.png", tmp_path / "d1" / "a.jpg"]
    Image.open(src[0]).convert("RGB").save(imgs[0])
    Image.open(src[1]).convert("RGB").save(imgs[1])
    Image.open(src[1]).convert("RGB").save(imgs[2], quality=95)
    out = tmp_path / "out"
    rc, stdout, err = run(capsys, "run", EX / "quickstart.evo", "--images", *imgs, "--out", out, "--quiet")
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    overlays = [e["overlay"] for e in summary["images"]]
    assert [e["image"] for e in summary["images"]] == [str(p) for p in imgs]
    assert len(set(overlays)) == 3 and all(Path(o).is_file() for o in overlays)
    for e in summary["images"]:  # each overlay is of its own image (same size, its own pixels blended)
        arr = np.asarray(Image.open(e["overlay"]))
        assert arr.shape == np.asarray(Image.open(e["image"]).convert("RGB")).shape
    a0, a1 = (np.asarray(Image.open(o), dtype=np.int16) for o in overlays[:2])
    assert np.abs(a0 - a1).max() > 0
    assert err == ""  # --quiet, and no terminal: no progress bar


# ---------------------------------------------------------------------------- progress (tqdm)


class _Tty:
    """A terminal-like text stream."""

    def __init__(self):
        import io

        self.buf = io.StringIO()

    def write(self, s):
        return self.buf.write(s)

    def flush(self):
        pass

    def isatty(self):
        return True

    def getvalue(self):
        return self.buf.getvalue()


def _last_state(text: str) -> str:
    return text.replace("\r", "\n").strip().splitlines()[-1]


def test_evolve_progress_on_a_terminal_and_quiet_elsewhere():
    import io

    from evo.cli.progress import EvolveProgress
    from evo.evolve import Choice, FloatRange, Gene, IntRange, Space, search

    tty = _Tty()
    with EvolveProgress(5, "evolve", file=tty) as bar:
        for g in range(1, 4):
            bar(g, 5, g * 10, g)
    out = tty.getvalue()
    assert "\r" in out and out.endswith("\n")
    last = _last_state(out)
    assert "gen 3/5" in last and "30 evals" in last and "front 3" in last

    plain = io.StringIO()  # not a terminal: nothing, unless asked
    with EvolveProgress(100, "evolve", file=plain) as bar:
        for g in range(1, 101):
            bar(g, 100, g, 1)
    assert plain.getvalue() == ""
    with EvolveProgress(100, "evolve", file=plain, force=True, enabled=False) as bar:  # --quiet wins
        bar(1, 100, 1, 1)
    assert plain.getvalue() == ""

    # stopped early: the last state is shown
    plain = io.StringIO()
    with EvolveProgress(100, "evolve", file=plain, force=True) as bar:
        bar(1, 100, 1, 1)
        bar(3, 100, 3, 1)
    assert _last_state(plain.getvalue()).startswith("evolve: gen 3/100")

    # as a search callback
    space = Space([Gene("x", IntRange(0, 10)), Gene("y", FloatRange(0, 1, 0.1)), Gene("z", Choice((1, 2, 4)))])

    def f(v):
        x, y, z = v["x"], v["y"], v["z"]
        return {"f1": x + y * z, "f2": (9 - x) ** 2 / 9 + (1 - y) * z, "c": x + 3 * y}

    buf = io.StringIO()
    with EvolveProgress(4, "evolve", file=buf, force=True) as bar:
        search(space, f, [("f1", "min"), ("f2", "min")], [], 8, 4, seed=0, progress=bar)
    assert _last_state(buf.getvalue()).startswith("evolve: gen 4/4, 32 evals")
