"""`evoc run`: images in -> CAM overlays (PNG) and a JSON summary out."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from evo.cli.common import UsageError, compile_program, pick
from evo.cli.output import output_dir, stream_output, write_output

BUNDLED = Path(__file__).resolve().parents[1] / "data"


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="explain images with a cam: overlays (PNG) and a JSON summary")
    p.add_argument("file", metavar="FILE", help="evo program")
    p.add_argument("--cam", metavar="NAME", help="the cam to run (default: the program's only/first cam)")
    p.add_argument("--weights", metavar="W.pt", help="state_dict of the network (default: bundled weights "
                   "for the program, e.g. quickstart.pt; else random initialisation)")
    p.add_argument("--images", nargs="+", action="extend", metavar="PATH", help="image files or a directory "
                   "(default: the images/ folder next to the program; may be repeated)")
    p.add_argument("--video", metavar="IN.mp4", help="explain every frame of a video (PyAV): an overlay video "
                   "and one JSON line per frame, with the fps achieved (see docs/video.md)")
    p.add_argument("--out", metavar="DIR", default="evoc-out", help="output directory (default: evoc-out); "
                   "with --video, the overlay video (OUT.mp4, .mkv, .mov, .avi) or a directory")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="images per batch (default 8)")
    p.add_argument("--strategy", choices=("auto", "autograd", "forward", "compiled"),
                   help="override the cam's strategy")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--colormap", metavar="NAME", default="viridis", help="overlay colours: any matplotlib "
                   "colormap (default viridis, perceptually uniform; jet gives the look of other CAM tools)")
    p.add_argument("--resume", action="store_true", help="skip images whose outputs exist (a re-run; also "
                   "under torchrun, where every rank explains its shard: see docs/scaling.md)")
    p.add_argument("--maps", action="store_true",
                   help="also write every explained class's map of each image to <stem>_<cam>_maps.npy "
                        "([K, H, W] float32 at the network's input size), streamed a few classes at a time "
                        "(class = all never holds every map of a batch at once)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")


def safe(s) -> str:
    """Text from a file name, a label or a program, safe to print on a terminal: control
    and format characters (escape sequences, bidi overrides) are shown escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(s))


def _weights_path(prog_path: Path, given: str | None) -> Path | None:
    if given:
        from evo.frontend.source import not_regular_file

        why = not_regular_file(given)
        if why == "no such file":
            raise UsageError(f"weights file {safe(given)} not found")
        if why:
            raise UsageError(f"cannot read weights file {safe(given)}: {why}")
        return Path(given)
    for cand in (prog_path.with_suffix(".pt"), BUNDLED / f"{prog_path.stem}.pt"):
        if cand.is_file():
            return cand
    return None


def _images(prog_path: Path, given: list[str] | None) -> list[str]:
    from evo.runtime.images import list_images

    if not given:
        d = prog_path.parent / "images"
        if not d.is_dir():
            raise UsageError("no images given and no images/ folder next to the program; pass --images PATH...")
        given = [str(d)]
    out: list[str] = []
    for g in given:
        p = Path(g)
        if p.is_dir():
            out.extend(list_images(p))
        else:
            from evo.frontend.source import not_regular_file

            why = not_regular_file(g)
            if why == "no such file":
                raise UsageError(f"image path {safe(g)} not found")
            if why:
                raise UsageError(f"cannot read image {safe(g)}: {why}")
            out.append(str(p))
    if not out:
        raise UsageError("no images (.png, .jpg, .jpeg, .bmp) found")
    from evo import limits

    if len(out) > limits.value("images"):
        raise UsageError(limits.exceeded("images", len(out), "input images") + "; " + limits.LIMITS["images"].how())
    return out


def output_stems(paths: list[str]) -> list[str]:
    """A distinct output name per input image: its stem; where stems collide (``a.png`` and
    ``a.jpg``, ``d1/a.png`` and ``d2/a.png``; compared without case, for case-insensitive
    file systems) the suffix is added (``a-png``), and where that still collides, ``-2``,
    ``-3``... in input order."""
    stems = [Path(p).stem for p in paths]
    count: dict[str, int] = {}
    for s in stems:
        count[s.lower()] = count.get(s.lower(), 0) + 1
    named = [f"{s}-{Path(p).suffix.lstrip('.')}" if count[s.lower()] > 1 and Path(p).suffix else s
             for s, p in zip(stems, paths)]
    out: list[str] = []
    taken: set[str] = set()
    for n in named:
        cand, k = n, 2
        while cand.lower() in taken:
            cand, k = f"{n}-{k}", k + 1
        taken.add(cand.lower())
        out.append(cand)
    return out


def warn_random_weights(consequence: str = "the network is randomly initialised") -> None:
    print(f"evoc: warning: no weights given or bundled; {consequence}", file=sys.stderr)


def load_program_weights(model, prog_path: Path, given: str | None,
                         consequence: str = "the network is randomly initialised") -> Path | None:
    """Load the given or bundled weights into `model` (the path used), or warn that there are none."""
    wpath = _weights_path(prog_path, given)
    if wpath is not None:
        load_weights(model, wpath)
    else:
        warn_random_weights(consequence)
    return wpath


def load_weights(model, path: Path) -> None:
    import io
    import pickle

    import torch

    from evo import limits
    from evo.frontend.source import UnreadableSource, read_bytes

    try:
        data = read_bytes(path, limits.value("image_bytes"), "EVO_LIMIT_IMAGE_BYTES")
    except UnreadableSource as e:
        raise UsageError(f"cannot load weights: {safe(e)}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # not a refused object: not a weights file at all
            raise UsageError(f"cannot load weights {safe(path)}: not a PyTorch weights file") from None
        # torch's message advises turning the protection off: never repeat that advice
        raise UsageError(f"{safe(path)} is not a plain state_dict of tensors: it holds other Python objects, "
                         "and loading those could run code the file contains; refused") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's problem, said clearly
        first = str(e).strip().split("\n")[0][:200]
        raise UsageError(f"cannot load weights {safe(path)}: not a PyTorch weights file "
                         f"({type(e).__name__}: {safe(first)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"{path} does not hold a state_dict")
    try:
        res = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        detail = " ".join(str(e).split())
        raise UsageError(f"{path} does not match the network's module tree: {detail[:300]}") from None
    if res.missing_keys or res.unexpected_keys:
        parts = []
        if res.missing_keys:
            parts.append(f"missing: {', '.join(res.missing_keys[:8])}{' ...' if len(res.missing_keys) > 8 else ''}")
        if res.unexpected_keys:
            parts.append(f"unexpected: {', '.join(res.unexpected_keys[:8])}"
                         f"{' ...' if len(res.unexpected_keys) > 8 else ''}")
        raise UsageError(f"{path} does not match the network's module tree ({'; '.join(parts)})")


VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")


def image_input(prog, name: str, spec, command: str = "evoc run") -> tuple[tuple[int, int], tuple, tuple]:
    """(size, mean, std) for feeding images to the cam's network: its input must be
    [N, 1, H, W] (grey: images are read as grey, statistics of one value each) or
    [N, 3, H, W] (RGB); mean / std default to ImageNet's (their grey average for 1 channel)."""
    from evo.ir.node import fmt_shape

    g = prog.graph(spec.network)
    shape = g.node(g.inputs[0]).shape
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise UsageError(f"{command} feeds images to networks whose input is [N, 1, H, W] (grey) or "
                         f"[N, 3, H, W] (RGB); '{safe(spec.network)}' takes {fmt_shape(shape)}")
    channels = int(shape[1])
    size = (int(shape[2]), int(shape[3]))
    mean = spec.mean if spec.mean is not None else ((0.485, 0.456, 0.406) if channels == 3 else (0.449,))
    std = spec.std if spec.std is not None else ((0.229, 0.224, 0.225) if channels == 3 else (0.226,))
    for what, stats in (("mean", mean), ("std", std)):
        if len(stats) != channels:
            raise UsageError(f"cam '{safe(name)}' gives {len(stats)} {what} values for a network with {channels} "
                             f"input channel{'s' if channels != 1 else ''}")
    return size, tuple(mean), tuple(std)


def main(args) -> int:
    import math

    from evo import limits

    prog_path = Path(args.file)
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    if args.batch > limits.value("batch"):
        raise UsageError(f"--batch: {limits.exceeded('batch', args.batch, 'batch size')}; "
                         f"{limits.LIMITS['batch'].how()}")
    if not (math.isfinite(args.alpha) and 0.0 <= args.alpha <= 1.0):
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha}")
    from evo.runtime.colormap import colormap_names

    pick("colormap", args.colormap, colormap_names(), list_defined=False)
    if args.video is not None and args.images:
        raise UsageError("give --images or --video, not both")
    if args.video is not None and args.resume:
        raise UsageError("--resume is for images (a video is explained in one pass)")
    if args.video is not None and not Path(args.video).is_file():
        raise UsageError(f"video {args.video} not found")
    prog = compile_program(args.file)  # the one source reader: unreadable is a usage error
    cams = prog.cams
    if not cams:
        raise UsageError(f"{safe(args.file)} declares no cam")
    name = pick("cam", args.cam if args.cam is not None else next(iter(cams)), cams, list_defined=False)
    spec = cams[name]
    from evo.cli.check import print_warnings

    print_warnings(prog)
    model = prog.build(spec.network)
    wpath = _weights_path(prog_path, args.weights)
    if wpath is not None:
        load_weights(model, wpath)
    overrides = {"strategy": args.strategy} if args.strategy else {}
    exp = prog.explainer(name, model, **overrides)
    size, mean, std = image_input(prog, name, spec)
    if args.video is not None:
        if wpath is None:
            warn_random_weights()
        return _run_video(args, prog, name, spec, exp, size, mean, std, wpath)
    from evo.runtime.shard import finish, init_from_env

    dist = init_from_env()  # rank 0 of 1 outside torchrun
    try:
        if wpath is None and dist.leader:
            warn_random_weights()
        return _run_images(args, prog_path, name, spec, exp, size, mean, std, wpath, dist)
    finally:
        finish(dist)


def _run_images(args, prog_path, name, spec, exp, size, mean, std, wpath, dist) -> int:
    from evo.cam_methods import BY_NAME
    from evo.cli.progress import PassProgress, progress_bar
    from evo.runtime.images import dumps_json, png_bytes
    from evo.runtime.shard import ShardError, explain_shard, gather, shard

    paths = _images(prog_path, args.images)
    stems = output_stems(paths)
    out = output_dir(args.out, f"--out {args.out}")
    inputs = [args.file, *paths] + ([str(wpath)] if wpath else [])
    mine = sum(stop - start for start, stop in shard(len(paths), args.batch, dist.rank, dist.world))
    t0 = time.perf_counter()
    many = BY_NAME[exp.method].passes != ""  # a many-pass method: a second bar, over its passes
    with progress_bar(mine, "explain", unit="image", enabled=not args.quiet and dist.leader,
                      force=args.progress) as bar, \
            PassProgress(enabled=many and not args.quiet and dist.leader, force=args.progress) as passes:
        try:
            part = explain_shard(exp, paths, stems, out, name, spec.method, size=size, mean=mean, std=std,
                                 labels=spec.labels, batch=args.batch, alpha=args.alpha, colormap=args.colormap,
                                 rank=dist.rank, world=dist.world, resume=args.resume,
                                 write_png=lambda p, a: write_output(p, png_bytes(a), inputs=inputs),
                                 write_text=lambda p, t: write_output(p, t, inputs=inputs),
                                 progress=bar.update, passes=passes if many else None,
                                 write_maps=(lambda p: stream_output(p, inputs=inputs)) if args.maps else None)
            report = {"entries": part.entries, "explained": part.explained, "reused": part.reused, "error": None}
        except (ShardError, UsageError) as e:  # every rank must reach the gather, then all stop
            report = {"error": str(e)}
    parts = gather(dist, report)
    errors = [p["error"] for p in parts if p.get("error")]
    if errors:
        raise UsageError(errors[0])
    if not dist.leader:
        return 0
    entries = [e for p in parts for e in p["entries"]]
    explained = sum(p["explained"] for p in parts)
    reused = sum(p["reused"] for p in parts)
    dt = time.perf_counter() - t0
    write_output(out / "summary.json",
                 dumps_json({"program": str(prog_path), "cam": name, "network": spec.network, "method": spec.method,
                             "strategy": exp.strategy, "strategy_note": getattr(exp, "strategy_note", ""),
                             "weights": str(wpath) if wpath else None, "images": entries}), inputs=inputs)
    where = f" on {dist.world} processes" if dist.world > 1 else ""
    print(f"explained {len(paths)} image{'s' if len(paths) != 1 else ''} with cam {safe(name)} "
          f"({spec.method}, strategy {exp.strategy}) in {dt:.2f} s{where} -> {safe(out)}/")
    if args.resume:
        print(f"  {explained} explained, {reused} reused (--resume)")
    for e in entries[:10]:
        label = e.get("class_name") or e["class"]
        print(f"  {safe(Path(e['image']).name)}: {safe(label)} (score {e['score']:.3f}), peak at "
              f"({e['peak']['x']:.0f}, {e['peak']['y']:.0f})")
    if len(entries) > 10:
        print(f"  ... {len(entries) - 10} more in {safe(out)}/summary.json")

    return 0


def _run_video(args, prog, name, spec, exp, size, mean, std, wpath) -> int:
    import io

    from evo.cli.output import same_file
    from evo.cli.progress import progress_bar
    from evo.runtime.video import VideoError, cost_prediction, explain_video, fps_lines, video_frame_count

    src = Path(args.video)
    out = Path(args.out)
    if out.suffix.lower() in VIDEO_SUFFIXES:
        video_out, jsonl_out = out, out.with_suffix(".jsonl")
    else:
        d = output_dir(args.out, f"--out {args.out}")
        video_out, jsonl_out = d / f"{src.stem}_{name}.mp4", d / f"{src.stem}_{name}.jsonl"
    if same_file(video_out, src):
        raise UsageError(f"--out {video_out} is the input video")
    inputs = [args.file, str(src)] + ([str(wpath)] if wpath else [])
    video_buf, lines = io.BytesIO(), io.StringIO()
    fmt = {".mkv": "matroska", ".mov": "mov", ".avi": "avi"}.get(video_out.suffix.lower(), "mp4")
    try:
        total = video_frame_count(src)
        with progress_bar(total or 0, "explain", unit="frame", enabled=not args.quiet, force=args.progress) as bar:
            done = [0]

            def step(n: int) -> None:
                bar.update(n - done[0])
                done[0] = n

            rep = explain_video(exp, src, size=size, mean=mean, std=std, labels=spec.labels, batch=args.batch,
                                out_video=video_buf, out_jsonl=lines, alpha=args.alpha, video_format=fmt,
                                colormap=args.colormap, channels=len(mean),
                                progress=step)
    except VideoError as e:
        raise UsageError(str(e)) from None
    write_output(video_out, video_buf.getvalue(), inputs=inputs)
    write_output(jsonl_out, lines.getvalue(), inputs=inputs)
    print(f"explained {rep.frames} frames of {src} with cam {name} ({spec.method}, strategy {exp.strategy}) "
          f"-> {video_out}, {jsonl_out}")
    for line in fps_lines(rep, cost_prediction(prog, name, exp.strategy)):
        print(line)
    return 0
