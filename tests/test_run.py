"""`evoc run` and the shipped quickstart model: overlays, summaries, and the
pointing game (peak of the map inside the object's box) on held-out images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evo
from conftest import evoc_inprocess
from evo.runtime.shapes import CLASSES, QuickNet, make_dataset

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.evo"
WEIGHTS = ROOT / "evo" / "data" / "quickstart.pt"
TOLERANCE = 1  # pixels around the box, as in scripts/train_quickstart.py


def test_bundled_weights_load_strictly_into_the_program_and_match_the_torch_model():
    prog = evo.compile_file(QUICKSTART)
    model = prog.build("QuickNet")
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    ref = QuickNet()
    ref.load_state_dict(state, strict=True)
    ref.eval()
    x, _, _ = make_dataset(8, seed=11)
    assert torch.allclose(model(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("strategy", ["compiled", "autograd"])
def test_pointing_game_on_held_out_images(strategy):
    prog = evo.compile_file(QUICKSTART)
    model = prog.build("QuickNet")
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True), strict=True)
    exp = prog.explainer("Shapes", model, strategy=strategy)
    x, labels, boxes = make_dataset(300, seed=12)
    hits = 0
    correct = 0
    for start in range(0, len(x), 100):
        r = exp(x[start:start + 100])
        maps = r.maps
        assert maps.shape == (min(100, len(x) - start), 64, 64)
        flat = maps.reshape(maps.shape[0], -1).argmax(1)
        ys, xs = flat // 64, flat % 64
        for i in range(maps.shape[0]):
            x0, y0, x1, y1 = boxes[start + i].tolist()
            inside = (x0 - TOLERANCE <= xs[i] <= x1 + TOLERANCE) and (y0 - TOLERANCE <= ys[i] <= y1 + TOLERANCE)
            hits += int(inside)
            correct += int(r.classes[i] == labels[start + i])
    assert correct / len(x) >= 0.95
    assert hits / len(x) >= 0.95, f"pointing game {hits / len(x):.3f}"


def test_evoc_run_defaults_write_overlays_and_summaries(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "evo.cli", "run", str(QUICKSTART), "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "explained" in r.stdout
    images = sorted((ROOT / "examples" / "images").glob("*.png"))
    assert images
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["images"]) == len(images)
    boxes = json.loads((ROOT / "examples" / "images" / "boxes.json").read_text())
    by_name = {Path(k).name if isinstance(k, str) else k: v for k, v in
               (boxes.items() if isinstance(boxes, dict) else [(b["file"], b) for b in boxes])}
    for entry in summary["images"]:
        png = Path(entry["overlay"])
        arr = np.asarray(Image.open(png))
        src = np.asarray(Image.open(entry["image"]).convert("RGB"))
        assert arr.shape == src.shape and arr.dtype == np.uint8
        assert not np.array_equal(arr, src)  # the map is blended in
        per_image = json.loads(png.with_suffix(".json").read_text())
        assert per_image["class"] == entry["class"] and 0 <= per_image["peak"]["x"] < src.shape[1]
        assert entry["class_name"] in CLASSES
        info = by_name.get(Path(entry["image"]).name)
        if info is not None:
            assert entry["class_name"] == info.get("class", info.get("label_name", entry["class_name"]))


def test_evoc_run_usage_errors(tmp_path):
    # evoc's answers, in this process (the end-to-end process is the test above)
    r = evoc_inprocess(["run", str(QUICKSTART), "--images", str(tmp_path / "nope")])
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = evoc_inprocess(["run", str(QUICKSTART), "--cam", "Shape"])
    assert r.returncode == 2 and "did you mean 'Shapes'" in r.stderr
    bad = tmp_path / "bad.pt"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    r = evoc_inprocess(["run", str(QUICKSTART), "--weights", str(bad)])
    assert r.returncode == 2 and "does not match" in r.stderr


def test_evoc_run_colormap(tmp_path):
    """--colormap: the overlay is the map coloured with that matplotlib colormap (the map
    recomputed through the library, the colours from matplotlib itself); the default is
    viridis; an unknown name is a usage error with a did-you-mean, before any work."""
    import matplotlib

    from evo.runtime.images import load_images, resize_map

    image = sorted((ROOT / "examples" / "images").glob("*.png"))[0]
    outs = {}
    for cmap in (None, "jet"):
        out = tmp_path / f"out-{cmap}"
        argv = ["run", str(QUICKSTART), "--images", str(image), "--out", str(out),
                "--alpha", "1", "--quiet"] + (["--colormap", cmap] if cmap else [])
        r = evoc_inprocess(argv)  # in this process: the colours are the point, not the process
        assert r.returncode == 0, r.stderr
        outs[cmap or "viridis"] = np.asarray(Image.open(next(out.glob("*.png"))).convert("RGB"))
    prog = evo.compile_file(QUICKSTART)
    model = prog.build("QuickNet")
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True), strict=True)
    spec = prog.cams["Shapes"]
    x, originals = load_images([image], (64, 64), spec.mean, spec.std)
    m = resize_map(prog.explainer("Shapes", model)(x).maps[0], originals[0].shape[:2])
    for name, got in outs.items():
        want = matplotlib.colormaps[name](m, bytes=True)[..., :3]  # alpha 1: the colours alone
        assert np.array_equal(got, want), name
    assert not np.array_equal(outs["jet"], outs["viridis"])
    r = evoc_inprocess(["run", str(QUICKSTART), "--images", str(image), "--out", str(tmp_path / "bad"),
                        "--colormap", "virdis"])
    assert r.returncode == 2 and "did you mean 'viridis'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()
