"""`evoc run`: images in -> CAM overlays (PNG) and a JSON summary out."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from evo.cli.common import UsageError, compile_program, pick
from evo.cli.output import output_dir, write_output

BUNDLED = Path(__file__).resolve().parents[1] / "data"


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="explain images with a cam: overlays (PNG) and a JSON summary")
    p.add_argument("file", metavar="FILE", help="evo program")
    p.add_argument("--cam", metavar="NAME", help="the cam to run (default: the program's only/first cam)")
    p.add_argument("--weights", metavar="W.pt", help="state_dict of the network (default: bundled weights "
                   "for the program, e.g. quickstart.pt; else random initialisation)")
    p.add_argument("--images", nargs="+", metavar="PATH", help="image files or a directory "
                   "(default: the images/ folder next to the program)")
    p.add_argument("--out", metavar="DIR", default="evoc-out", help="output directory (default: evoc-out)")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="images per batch (default 8)")
    p.add_argument("--strategy", choices=("auto", "autograd", "forward", "compiled"),
                   help="override the cam's strategy")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")


def _weights_path(prog_path: Path, given: str | None) -> Path | None:
    if given:
        p = Path(given)
        if not p.is_file():
            raise UsageError(f"weights file {given} not found")
        return p
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
        elif p.is_file():
            out.append(str(p))
        else:
            raise UsageError(f"image path {g} not found")
    if not out:
        raise UsageError("no images (.png, .jpg, .jpeg, .bmp) found")
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


def load_weights(model, path: Path) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's problem, said clearly
        raise UsageError(f"cannot load weights {path}: {type(e).__name__}: {e}") from None
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


def main(args) -> int:
    from evo.cli.progress import progress_bar
    from evo.runtime.images import dumps_json, load_images, overlay, png_bytes, summary

    prog_path = Path(args.file)
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    prog = compile_program(args.file)  # the one source reader: unreadable is a usage error
    cams = prog.cams
    if not cams:
        raise UsageError(f"{args.file} declares no cam")
    name = pick("cam", args.cam if args.cam is not None else next(iter(cams)), cams, list_defined=False)
    spec = cams[name]
    model = prog.build(spec.network)
    wpath = _weights_path(prog_path, args.weights)
    if wpath is not None:
        load_weights(model, wpath)
    else:
        print("evoc: warning: no weights given or bundled; the network is randomly initialised", file=sys.stderr)
    overrides = {"strategy": args.strategy} if args.strategy else {}
    exp = prog.explainer(name, model, **overrides)
    paths = _images(prog_path, args.images)
    stems = output_stems(paths)

    g = prog.graph(spec.network)
    shape = g.node(g.inputs[0]).shape
    size = (int(shape[2]), int(shape[3]))
    mean = spec.mean if spec.mean is not None else (0.485, 0.456, 0.406)
    std = spec.std if spec.std is not None else (0.229, 0.224, 0.225)
    labels = spec.labels
    out = output_dir(args.out, f"--out {args.out}")
    inputs = [args.file, *paths] + ([str(wpath)] if wpath else [])
    entries = []
    t0 = time.perf_counter()
    with progress_bar(len(paths), "explain", unit="image", enabled=not args.quiet,
                      force=args.progress) as bar:
        for start in range(0, len(paths), args.batch):
            chunk = paths[start:start + args.batch]
            try:
                x, originals = load_images(chunk, size, mean, std)
            except Exception as e:  # noqa: BLE001 - an unreadable image
                raise UsageError(f"cannot read an image in {', '.join(chunk)}: {e}") from None
            res = exp(x)
            maps = res.maps
            for i, path in enumerate(chunk):
                stem = stems[start + i]
                m = maps[i] if maps.dim() == 3 else maps[i, 0]
                cls = int(res.classes[i] if res.classes.dim() == 1 else res.classes[i, 0])
                score = float(res.scores[i] if res.scores.dim() == 1 else res.scores[i, 0])
                cname = labels[cls] if labels and cls < len(labels) else None
                png = out / f"{stem}_{name}.png"
                write_output(png, png_bytes(overlay(originals[i], m, args.alpha)), inputs=inputs)
                info = summary(m, cls, cname, score, original_size=originals[i].shape[:2])
                info.update({"image": str(path), "overlay": str(png), "cam": name, "method": spec.method,
                             "strategy": res.strategy})
                write_output(out / f"{stem}_{name}.json", dumps_json(info), inputs=inputs)
                entries.append(info)
            bar.update(len(chunk))
    dt = time.perf_counter() - t0
    write_output(out / "summary.json",
                 dumps_json({"program": str(prog_path), "cam": name, "network": spec.network, "method": spec.method,
                             "strategy": exp.strategy, "strategy_note": getattr(exp, "strategy_note", ""),
                             "weights": str(wpath) if wpath else None, "images": entries}), inputs=inputs)
    print(f"explained {len(paths)} image{'s' if len(paths) != 1 else ''} with cam {name} "
          f"({spec.method}, strategy {exp.strategy}) in {dt:.2f} s -> {out}/")
    for e in entries[:10]:
        label = e.get("class_name") or e["class"]
        print(f"  {Path(e['image']).name}: {label} (score {e['score']:.3f}), peak at "
              f"({e['peak']['x']:.0f}, {e['peak']['y']:.0f})")
    if len(entries) > 10:
        print(f"  ... {len(entries) - 10} more in {out}/summary.json")
    return 0
