"""Explained video: a small synthetic video made with PyAV; every frame's map must equal
the map of the same decoded picture explained as an image file (PNG, the image path)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

import evo
from evo.runtime import video
from evo.runtime.images import load_images, save_png, summary
from evo.runtime.shapes import make_sample

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.evo"
WEIGHTS = ROOT / "evo" / "data" / "quickstart.pt"
N_FRAMES, W, H, RATE, BATCH = 10, 96, 80, 10, 4


def _make_video(path: Path) -> None:
    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=RATE)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(N_FRAMES):
            img = Image.fromarray(make_sample(rng, 64, i % 4)[0]).resize((W, H), Image.Resampling.BILINEAR)
            for p in s.encode(av.VideoFrame.from_ndarray(np.array(img), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _decode(path: Path) -> list[np.ndarray]:
    # independent of evo.runtime.video: PyAV straight
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("video")
    _make_video(d / "in.mp4")
    prog = evo.compile_file(QUICKSTART)
    model = prog.build("QuickNet")
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True), strict=True)
    return d, prog, model


def test_every_frame_map_equals_explaining_the_frame_as_an_image(setup):
    d, prog, model = setup
    spec = prog.cams["Shapes"]
    exp = prog.explainer("Shapes", model)
    got = {}
    rep = video.explain_video(exp, d / "in.mp4", size=(64, 64), mean=spec.mean, std=spec.std, labels=spec.labels,
                              batch=BATCH, out_video=d / "out.mp4", out_jsonl=d / "frames.jsonl",
                              on_frame=lambda i, frame, m, info: got.__setitem__(i, (frame, m.clone(), info)))
    frames = _decode(d / "in.mp4")
    assert len(frames) == N_FRAMES and rep.frames == N_FRAMES and sorted(got) == list(range(N_FRAMES))
    assert (rep.width, rep.height, rep.video_fps) == (W, H, RATE)
    # the frames as PNG files, explained through the image path, in the same batches
    pngs = [save_png(f, d / "frames" / f"{i:03d}.png") for i, f in enumerate(frames)]
    lines = [json.loads(s) for s in (d / "frames.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["frame"] for e in lines] == list(range(N_FRAMES))
    assert [e["time"] for e in lines] == pytest.approx([i / RATE for i in range(N_FRAMES)])
    for start in range(0, N_FRAMES, BATCH):
        x, originals = load_images(pngs[start:start + BATCH], (64, 64), spec.mean, spec.std)
        ref = exp(x)
        for j, orig in enumerate(originals):
            i = start + j
            frame, m, info = got[i]
            assert np.array_equal(frame, orig)
            torch.testing.assert_close(m, ref.maps[j], atol=1e-6, rtol=0)
            want = summary(ref.maps[j], int(ref.classes[j]), spec.labels[int(ref.classes[j])],
                           float(ref.scores[j]), original_size=orig.shape[:2])
            line = lines[i]
            assert line["class"] == want["class"] and line["class_name"] == want["class_name"]
            assert line["score"] == pytest.approx(want["score"], abs=1e-5)
            assert line["peak"] == want["peak"]
    # the overlay video: one frame per input frame, at the input's size
    out = _decode(d / "out.mp4")
    assert len(out) == N_FRAMES and out[0].shape == (H, W, 3)
    # an overlay differs from its frame (the heat map is visible) but keeps the picture
    assert np.abs(out[0].astype(int) - frames[0].astype(int)).mean() > 5


def test_fps_report_names_the_budget_and_the_cost_prediction(setup):
    d, prog, model = setup
    pred = video.cost_prediction(prog, "Shapes", "compiled")
    assert pred["target"] == "Edge" and pred["fps_budget"] == 30 and pred["hardware"] == "EdgeNPU"
    from evo.cost.network import explainer_cost

    c = explainer_cost(prog.graph("QuickNet"), prog.cams["Shapes"], prog.hardware["EdgeNPU"], 1, "latency",
                       strategy="compiled")
    assert pred["predicted_fps"] == pytest.approx(1 / c["latency_s"])
    rep = video.VideoReport(10, W, H, RATE, explain_s=0.5, total_s=1.0, batch=4, out_video=None, out_jsonl="x")
    lines = video.fps_lines(rep, pred)
    assert "10.0 fps end to end" in lines[0] and "20.0 fps in the explainer" in lines[0]
    assert "budget 30 fps: this run MISSES it" in lines[1] and "EdgeNPU" in lines[1]


def test_a_file_that_is_not_a_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(video.VideoError, match="cannot open video"):
        list(video.read_frames(bad))


def test_cli_run_video(setup, tmp_path, capsys):
    from evo.cli import main as evoc

    d, prog, model = setup
    out = tmp_path / "explained.mp4"
    assert evoc(["run", str(QUICKSTART), "--video", str(d / "in.mp4"), "--out", str(out), "--batch", "4",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"{N_FRAMES} frames ({W}x{H})" in printed and "fps end to end" in printed
    assert "budget 30 fps" in printed and "cost model predicts" in printed and "EdgeNPU" in printed
    assert len(_decode(out)) == N_FRAMES
    lines = (tmp_path / "explained.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == N_FRAMES
    # the same lines as the library run in the first test (same frames, same batches)
    assert lines == (d / "frames.jsonl").read_text(encoding="utf-8").splitlines()
    # a directory as --out: <video stem>_<cam>.mp4 and .jsonl inside
    assert evoc(["run", str(QUICKSTART), "--video", str(d / "in.mp4"), "--out", str(tmp_path / "dir"),
                 "--batch", "4", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["in_Shapes.jsonl", "in_Shapes.mp4"]
    capsys.readouterr()


def test_cli_run_video_errors(setup, tmp_path, capsys):
    from evo.cli import main as evoc

    d, _, _ = setup
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert evoc(["run", str(QUICKSTART), "--video", str(bad), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "cannot open video" in capsys.readouterr().err
    assert evoc(["run", str(QUICKSTART), "--video", str(tmp_path / "missing.mp4")]) == 2
    assert "not found" in capsys.readouterr().err
    assert evoc(["run", str(QUICKSTART), "--video", str(d / "in.mp4"), "--images", str(d)]) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.jsonl").exists()


def test_grey_network_gets_grey_frames_like_images(setup, tmp_path, capsys):
    """A 1-channel network: every frame is converted to grey exactly as an image file is
    (the frame's map equals the map of the frame saved as PNG and run through the image
    path), from the library and from `evoc run --video`."""
    from evo.cli import main as evoc

    d, _, _ = setup
    src = QUICKSTART.read_text(encoding="utf-8").replace("Tensor[N, 3, 64, 64]", "Tensor[N, 1, 64, 64]")
    src = src.replace("mean = [0.5, 0.5, 0.5]", "mean = [0.5]").replace("std = [0.25, 0.25, 0.25]", "std = [0.25]")
    grey = tmp_path / "grey.evo"
    grey.write_text(src, encoding="utf-8")
    prog = evo.compile_file(grey)
    torch.manual_seed(0)
    model = prog.build("QuickNet").eval()
    spec = prog.cams["Shapes"]
    exp = prog.explainer("Shapes", model)
    got = {}
    rep = video.explain_video(exp, d / "in.mp4", size=(64, 64), mean=spec.mean, std=spec.std, batch=BATCH,
                              on_frame=lambda i, frame, m, info: got.__setitem__(i, (m.clone(), info)))
    assert rep.frames == N_FRAMES
    frames = _decode(d / "in.mp4")
    pngs = [save_png(f, tmp_path / "frames" / f"{i:03d}.png") for i, f in enumerate(frames)]
    for start in range(0, N_FRAMES, BATCH):
        x, _ = load_images(pngs[start:start + BATCH], (64, 64), spec.mean, spec.std)
        assert x.shape[1] == 1
        # the grey tensor by hand: Pillow's L conversion of the decoded frame, resized, normalised
        want = np.asarray(Image.fromarray(frames[start]).convert("L").resize((64, 64), Image.Resampling.BILINEAR),
                          dtype=np.float32) / 255
        torch.testing.assert_close(x[0, 0], (torch.from_numpy(want) - 0.5) / 0.25)
        ref = exp(x)
        for j in range(x.shape[0]):
            torch.testing.assert_close(got[start + j][0], ref.maps[j], atol=1e-6, rtol=0)
            assert got[start + j][1]["class"] == int(ref.classes[j])
    out = tmp_path / "grey.mp4"
    assert evoc(["run", str(grey), "--video", str(d / "in.mp4"), "--out", str(out), "--batch", "4",
                 "--quiet"]) == 0
    assert len(_decode(out)) == N_FRAMES
    capsys.readouterr()
