"""Explained video: decode frames with PyAV, explain them in batches, write an overlay
video and one JSON line per frame, and measure the frames per second achieved.

Every frame goes through exactly the preprocessing of an image file
(`evo.runtime.images.preprocess`: RGB, or grey for a 1-channel network, bilinear resize,
scale, normalise), so the
map of frame i equals the map of the same picture explained as an image; each JSON
line is that frame's `images.summary` (class, class_name, score, peak, centroid,
stats in the frame's pixels) plus `frame` and `time` (seconds, from the frame's
timestamp).  Needs the optional extra `[video]` (PyAV).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from evo.runtime.colormap import DEFAULT_COLORMAP
from evo.runtime.images import overlay, preprocess, summary, to_jsonable


class VideoError(Exception):
    """An unreadable input video or an unwritable output (a usage problem, exit 2)."""


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - the [video] extra is part of [test]
        raise VideoError("video needs PyAV: pip install 'evo-lang[video]'") from None
    return av


@dataclass
class VideoReport:
    """What `explain_video` did: frame count, timings and the output paths."""

    frames: int
    width: int
    height: int
    video_fps: float | None          # the input's frame rate
    explain_s: float                 # time spent in the explainer (after a one-frame warm-up)
    total_s: float                   # decode + explain + overlay + encode
    batch: int
    out_video: str | None
    out_jsonl: str
    classes: dict[str, int] = field(default_factory=dict)   # frames per explained class

    @property
    def explain_fps(self) -> float:
        return self.frames / self.explain_s if self.explain_s > 0 else float("inf")

    @property
    def fps(self) -> float:
        """End-to-end frames per second (decode, explain, overlay, encode)."""
        return self.frames / self.total_s if self.total_s > 0 else float("inf")


def read_frames(path) -> Iterator[tuple[np.ndarray, float | None]]:
    """The frames of a video file as (RGB uint8 [H, W, 3], time in seconds or None)."""
    av = _av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"cannot open video {path}: {e}") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path} has no video stream")
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24"), (float(frame.time) if frame.time is not None else None)
        except av.error.FFmpegError as e:
            raise VideoError(f"cannot decode video {path}: {e}") from None


def video_rate(path) -> float | None:
    """The video stream's average frame rate (frames per second), when it says one."""
    av = _av()
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            r = c.streams.video[0].average_rate or c.streams.video[0].base_rate
            return float(r) if r else None
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"cannot open video {path}: {e}") from None


def video_frame_count(path) -> int | None:
    """The number of frames the container declares (None when it does not say)."""
    av = _av()
    try:
        with av.open(str(path)) as c:
            n = c.streams.video[0].frames if c.streams.video else 0
            return int(n) or None
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"cannot open video {path}: {e}") from None


class _Writer:
    """Overlay frames -> an H.264 (or MPEG-4 Part 2) video in yuv420p; odd sizes are padded
    by one pixel.  `target`: a path (encoded in memory, then written by the safe atomic
    writer, `evo.fileio`; the container from the suffix unless `fmt` names one) or a
    binary file object (then `fmt` names the container, e.g. "mp4")."""

    def __init__(self, target, rate: float | None, fmt: str | None = None):
        av = _av()
        from fractions import Fraction

        self.path = None
        if isinstance(target, (str, Path)):
            self.path = Path(target)
            self.buf = io.BytesIO()
            fmt = fmt or {".mkv": "matroska", ".mov": "mov", ".avi": "avi"}.get(self.path.suffix.lower(), "mp4")
            self.container = av.open(self.buf, mode="w", format=fmt)
        else:
            self.container = av.open(target, mode="w", format=fmt or "mp4")
        self.rate = Fraction(rate).limit_denominator(1001) if rate else Fraction(25)
        self.stream = None

    def _open(self, h: int, w: int) -> None:
        for codec in ("libx264", "mpeg4"):
            try:
                s = self.container.add_stream(codec, rate=self.rate)
                break
            except Exception:  # noqa: BLE001 - codec missing from this FFmpeg build: try the next
                continue
        else:  # pragma: no cover
            raise VideoError("no video encoder (libx264 or mpeg4) in this PyAV build")
        s.width, s.height = w + (w % 2), h + (h % 2)
        s.pix_fmt = "yuv420p"
        if s.codec_context.name == "libx264":
            s.options = {"crf": "18", "preset": "veryfast"}
        self.stream = s

    def write(self, rgb: np.ndarray) -> None:
        av = _av()
        h, w = rgb.shape[:2]
        if self.stream is None:
            self._open(h, w)
        if (h % 2) or (w % 2):
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self, keep: bool = True) -> None:
        if self.stream is not None and keep:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        if self.path is not None and keep:
            from evo.fileio import write_atomic

            write_atomic(self.path, self.buf.getvalue())


def explain_video(exp, in_path, *, size, mean, std, labels=None, batch: int = 8, out_video=None,
                  out_jsonl=None, alpha: float = 0.5, video_format: str | None = None,
                  colormap: str = DEFAULT_COLORMAP, channels: int | None = None,
                  on_frame: Callable | None = None, progress: Callable[[int], None] | None = None) -> VideoReport:
    """Explain every frame of `in_path` with the explainer `exp`, `batch` frames at a time.

    size (H, W): the network's input size; mean / std: the cam's normalisation;
    labels: class names.  `out_jsonl`: a path or a text file object for one JSON line
    per frame; `out_video`: a path or a binary file object (`video_format`, e.g. "mp4")
    for the overlay video, at the input's frame rate, coloured with `colormap` (a
    matplotlib name).  channels: the network's input channels, 3 (RGB) or 1 (grey: each
    frame converted as an image file is; default: 1 when mean/std have one value).  `on_frame(i, frame, map, info)`
    is called for every frame (map: [H, W] tensor in [0, 1]).  `progress(n)` after each
    batch with the frames done so far.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if channels is None:  # as load_images: grey statistics mean a grey network
        channels = 1 if mean is not None and len(mean) == 1 else 3
    rate = video_rate(in_path)
    jsonl_path = None
    if out_jsonl is None or isinstance(out_jsonl, (str, Path)):
        jsonl_path = None if out_jsonl is None else Path(out_jsonl)
        lines_out = io.StringIO()
    else:
        lines_out = out_jsonl
    writer = _Writer(out_video, rate, video_format) if out_video is not None else None
    t0 = time.perf_counter()
    explain_s = 0.0
    n = 0
    width = height = 0
    counts: dict[str, int] = {}
    pending: list[tuple[np.ndarray, float | None]] = []

    def flush() -> None:
        nonlocal n, explain_s
        x = torch.stack([preprocess(f, size, mean, std, channels) for f, _ in pending], dim=0)
        if n == 0:
            exp(x[:1])  # warm-up (first-call set-up), not timed
        t = time.perf_counter()
        res = exp(x)
        explain_s += time.perf_counter() - t
        maps = res.maps if res.maps.dim() == 3 else res.maps[:, 0]
        classes = res.classes if res.classes.dim() == 1 else res.classes[:, 0]
        scores = res.scores if res.scores.dim() == 1 else res.scores[:, 0]
        for i, (frame, ts) in enumerate(pending):
            cls = int(classes[i])
            name = labels[cls] if labels and cls < len(labels) else None
            info = {"frame": n, "time": None if ts is None else round(ts, 6)}
            info.update(summary(maps[i], cls, name, float(scores[i]), original_size=frame.shape[:2]))
            lines_out.write(json.dumps(to_jsonable(info), sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n")
            key = name if name is not None else str(cls)
            counts[key] = counts.get(key, 0) + 1
            if writer is not None:
                writer.write(overlay(frame, maps[i], alpha, colormap))
            if on_frame is not None:
                on_frame(n, frame, maps[i], info)
            n += 1
        pending.clear()
        if progress is not None:
            progress(n)

    ok = False
    try:
        for frame, ts in read_frames(in_path):
            if n == 0 and not pending:
                height, width = frame.shape[:2]
            pending.append((frame, ts))
            if len(pending) == batch:
                flush()
        if pending:
            flush()
        if n == 0:
            raise VideoError(f"{in_path} has no frames")
        ok = True
    finally:
        if writer is not None:
            writer.close(keep=ok)
    if jsonl_path is not None:
        from evo.fileio import write_atomic

        write_atomic(jsonl_path, lines_out.getvalue())
    return VideoReport(n, width, height, rate, explain_s, time.perf_counter() - t0, batch,
                       None if out_video is None else str(out_video) if isinstance(out_video, (str, Path))
                       else "<stream>", str(out_jsonl) if jsonl_path is not None else "<stream>", counts)


def cost_prediction(prog, cam: str, strategy: str | None = None) -> dict | None:
    """The target that runs `cam` (the first one): its fps budget and the cost model's
    prediction of the explained frames per second on its hardware (batch from the target)."""
    from evo.cost.network import explainer_cost

    for t in prog.targets.values():
        if t.cam != cam:
            continue
        spec = prog.cams[cam]
        c = explainer_cost(prog.graph(spec.network), spec, prog.hardware[t.hardware], t.batch, t.objective,
                           strategy=strategy)
        lat = c["latency_s"]
        return {"target": t.name, "hardware": t.hardware, "batch": t.batch, "fps_budget": t.fps,
                "predicted_fps": t.batch / lat if lat > 0 else float("inf"), "predicted_latency_s": lat,
                "strategy": c.get("strategy")}
    return None


def fps_lines(report: VideoReport, pred: dict | None) -> list[str]:
    """Human-readable lines: achieved fps next to the budget and the prediction."""
    lines = [f"{report.frames} frames ({report.width}x{report.height}) in {report.total_s:.2f} s: "
             f"{report.fps:.1f} fps end to end, {report.explain_fps:.1f} fps in the explainer "
             f"(batch {report.batch}, this machine)"]
    if pred is None:
        lines.append("no target runs this cam: no fps budget or cost prediction to compare with")
        return lines
    budget = pred["fps_budget"]
    pred_s = (f"cost model predicts {pred['predicted_fps']:.1f} fps on {pred['hardware']} "
              f"(target {pred['target']}, batch {pred['batch']})")
    if budget:
        verdict = "meets" if report.fps >= budget else "MISSES"
        lines.append(f"budget {budget:g} fps: this run {verdict} it; {pred_s}, which "
                     f"{'meets' if pred['predicted_fps'] >= budget else 'MISSES'} it")
    else:
        lines.append(pred_s)
    return lines
