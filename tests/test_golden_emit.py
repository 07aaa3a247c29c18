"""Golden tests for `evoc compile --emit ast|ir|py` on every example.

The goldens live in tests/golden/<example>.<ast|ir|py>.  After an intended
change to the output, regenerate them and review the diff:

    EVO_UPDATE_GOLDENS=1 python -m pytest tests/test_golden_emit.py

(the `golden` fixture of tests/conftest.py, one switch for every golden test; the
comparison tests then rewrite the files and pass; a golden without an example, or
an example without goldens, fails until regenerated).  The CAM runtime that every
generated file with explainers pastes verbatim is not repeated in the .py goldens:
it must appear exactly once, byte for byte as `cam_runtime_source()`, and is
replaced by one marker line (the runtime itself is tested once, in
tests/test_cam_runtime.py).

The outputs are produced by `evoc compile` (evo.cli.main) in two fresh
interpreters with different PYTHONHASHSEED values, and must be byte-for-byte
identical (determinism).  The generated Python must import only torch (checked
on its syntax tree) and pass ruff:

* ``ruff check --no-cache --isolated --select E,F,W`` (ruff's defaults, no
  config files) on the networks alone, at ruff's default 88 columns, and on
  the whole file (CAM runtime and explainers included) at the repo's 110;
* ``ruff check --no-cache --config pyproject.toml`` (the repo's own config).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((ROOT / "examples").glob("*.evo"))
EMITS = ("ast", "ir", "py")
RUNTIME_MARKER = "# [the CAM runtime (evo/codegen/cam_runtime.py, grad_runtime.py), pasted verbatim]"
SEEDS = ("0", "4242")

_CHILD = textwrap.dedent("""
    import json, sys
    from evo.cli import main
    examples, outdir = json.loads(sys.argv[1]), sys.argv[2]
    for ex in examples:
        stem = ex.rsplit("/", 1)[-1][:-4]
        for emit in ("ast", "ir", "py"):
            rc = main(["compile", ex, "--emit", emit, "-o", f"{outdir}/{stem}.{emit}"])
            assert rc == 0, (ex, emit, rc)
    """)


@pytest.fixture(scope="module")
def emitted(tmp_path_factory) -> dict[str, dict[str, str]]:
    """seed -> {"<example>.<emit>": text}, each seed's outputs from its own fresh interpreter."""
    procs = {}
    dirs = {}
    rel = [str(p.relative_to(ROOT)) for p in EXAMPLES]
    for seed in SEEDS:
        d = tmp_path_factory.mktemp(f"emit_seed{seed}")
        dirs[seed] = d
        env = dict(os.environ, PYTHONHASHSEED=seed)
        procs[seed] = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(rel), str(d)], cwd=ROOT,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for seed, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        out[seed] = {f.name: f.read_text(encoding="utf-8") for f in sorted(dirs[seed].iterdir())}
    return out


def _key(path: Path, emit: str) -> str:
    return f"{path.stem}.{emit}"


def test_examples_present():
    assert {p.stem for p in EXAMPLES} >= {"resnet18", "resnet50", "vgg16", "mobilenet", "quickstart"}


def without_runtime(text: str) -> str:
    """The generated file with its pasted CAM runtime replaced by RUNTIME_MARKER.  A file
    with explainers must hold the runtime exactly once, byte for byte."""
    from evo.codegen.python import cam_runtime_source

    runtime = cam_runtime_source().strip()
    if "\nEXPLAINERS = {" not in text:
        assert runtime not in text
        return text
    assert text.count(runtime) == 1, "the CAM runtime is not pasted verbatim, once"
    return text.replace(runtime, RUNTIME_MARKER)


@pytest.mark.parametrize("emit", EMITS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_golden(emitted, example, emit, golden):
    key = _key(example, emit)
    text = emitted[SEEDS[0]][key]
    if emit == "py":
        text = without_runtime(text)
    golden.check(GOLDEN / key, text, f"`evoc compile {example.name} --emit {emit}`")


def test_no_stale_goldens(golden):
    if golden.update:
        return
    expected = {_key(p, e) for p in EXAMPLES for e in EMITS}
    present = {f.name for f in GOLDEN.iterdir()} if GOLDEN.exists() else set()
    assert present == expected, f"stale: {sorted(present - expected)}, missing: {sorted(expected - present)}"


def test_deterministic_across_processes(emitted):
    a, b = (emitted[s] for s in SEEDS)
    assert sorted(a) == sorted(b) == sorted(_key(p, e) for p in EXAMPLES for e in EMITS)
    for k in a:
        assert a[k] == b[k], f"{k} differs between PYTHONHASHSEED={SEEDS[0]} and {SEEDS[1]}"


def test_in_process_matches_cli(emitted):
    """The embedding API gives the CLI's bytes (and compiling twice gives them again)."""
    import evo

    for p in EXAMPLES:
        prog = evo.compile_file(p)
        comp = prog.compilation
        assert comp.ast_text == emitted[SEEDS[0]][_key(p, "ast")]
        assert comp.ir_text == emitted[SEEDS[0]][_key(p, "ir")]
        assert prog.emit_python() == emitted[SEEDS[0]][_key(p, "py")]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_python_imports_only_torch(emitted, example):
    code = emitted[SEEDS[0]][_key(example, "py")]
    tree = ast.parse(code)
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            mods.add(node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("__import__", "exec", "eval"), node.func.id
    assert {m.split(".")[0] for m in mods} <= {"torch"}, mods
    if any(isinstance(n, ast.ClassDef) for n in tree.body):
        assert "torch" in mods or "torch.nn" in mods
    assert "NETWORKS" in {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                          if isinstance(t, ast.Name)}


def _ruff(args: list[str], files: list[Path]) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    cmd += ["check", "--no-cache", *args, "--output-format", "concise", *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)


@pytest.fixture(scope="module")
def py_files(emitted, tmp_path_factory) -> dict[str, list[Path]]:
    import evo
    from evo.codegen.python import generate

    d = tmp_path_factory.mktemp("ruff")
    full, nets = [], []
    for p in EXAMPLES:
        f = d / f"{p.stem}_full.py"
        f.write_text(emitted[SEEDS[0]][_key(p, "py")], encoding="utf-8")
        full.append(f)
        comp = evo.compile_file(p).compilation
        g = d / f"{p.stem}_networks.py"
        g.write_text(generate(list(comp.ir.values()), p.name), encoding="utf-8")
        nets.append(g)
    return {"full": full, "networks": nets}


def test_ruff_networks_default_rules(py_files):
    r = _ruff(["--isolated", "--select", "E,F,W"], py_files["networks"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_whole_file_default_rules(py_files):
    r = _ruff(["--isolated", "--select", "E,F,W", "--line-length", "110"], py_files["full"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_repo_config(py_files):
    r = _ruff(["--config", str(ROOT / "pyproject.toml")], py_files["full"] + py_files["networks"])
    assert r.returncode == 0, r.stdout + r.stderr
