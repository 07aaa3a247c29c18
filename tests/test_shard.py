"""`evoc run` past one process: a 2-process torchrun (gloo, CPU, localhost) writes
byte-identical outputs to a single-process run; `--resume` recomputes only the images
whose outputs are missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evo.cli import main as evoc
from evo.runtime.shard import batches, shard

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.evo"
ARGS = ["run", str(QUICKSTART), "--out", "out", "--batch", "2", "--quiet"]


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    d = tmp_path_factory.mktemp("single")
    here = os.getcwd()
    os.chdir(d)  # `--out out`, relative: the JSON names the same paths as the torchrun run's
    try:
        assert evoc(ARGS) == 0
    finally:
        os.chdir(here)
    return d / "out"


def test_shards_are_contiguous_blocks_of_the_single_run_batches():
    assert batches(8, 3) == [(0, 3), (3, 6), (6, 8)]
    assert [shard(8, 2, r, 2) for r in range(2)] == [[(0, 2), (2, 4)], [(4, 6), (6, 8)]]
    assert [shard(5, 2, r, 4) for r in range(4)] == [[], [(0, 2)], [(2, 4)], [(4, 5)]]
    # every batch exactly once, in order
    for n, b, w in [(17, 3, 4), (1, 8, 3), (40, 8, 5)]:
        assert [x for r in range(w) for x in shard(n, b, r, w)] == batches(n, b)


def test_two_process_torchrun_writes_byte_identical_outputs(single, tmp_path):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                        "--nproc-per-node", "2", "-m", "evo.cli", *ARGS],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "on 2 processes" in r.stdout and r.stdout.count("explained 8 images") == 1  # rank 0 reports
    want, got = _files(single), _files(tmp_path / "out")
    assert sorted(got) == sorted(want) and len(want) == 17  # 8 PNG + 8 JSON + summary.json
    for name in want:
        assert got[name] == want[name], name


def test_resume_recomputes_only_the_missing_outputs(single, tmp_path, monkeypatch, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(single, out)
    names = sorted(p.name for p in out.glob("*.json") if p.name != "summary.json")
    gone = names[4:]  # the second half: batches 3 and 4 of 4
    for n in gone:
        (out / n).unlink()
        (out / n.replace(".json", ".png")).unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "summary.json"}
    monkeypatch.chdir(tmp_path)
    assert evoc([*ARGS, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "4 explained, 4 reused (--resume)" in printed
    for name, t in kept.items():
        assert (out / name).stat().st_mtime_ns == t, f"{name} was rewritten"
    assert _files(out) == _files(single)
    # everything present: nothing is explained
    assert evoc([*ARGS, "--resume"]) == 0
    assert "0 explained, 8 reused (--resume)" in capsys.readouterr().out
