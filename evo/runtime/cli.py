"""`evoc run`: images in -> CAM overlays (PNG) and a JSON summary out."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from evo.diagnostics import EvoError

BUNDLED = Path(__file__).resolve().parents[1] / "data"


class RunError(Exception):
    """A usage problem with `evoc run` (exit 2)."""


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


def _weights_path(prog_path: Path, given: str | None) -> Path | None:
    if given:
        p = Path(given)
        if not p.is_file():
            raise RunError(f"weights file {given} not found")
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
            raise RunError("no images given and no images/ folder next to the program; pass --images PATH...")
        given = [str(d)]
    out: list[str] = []
    for g in given:
        p = Path(g)
        if p.is_dir():
            out.extend(list_images(p))
        elif p.is_file():
            out.append(str(p))
        else:
            raise RunError(f"image path {g} not found")
    if not out:
        raise RunError("no images (.png, .jpg, .jpeg, .bmp) found")
    return out


def load_weights(model, path: Path) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's problem, said clearly
        raise RunError(f"cannot load weights {path}: {type(e).__name__}: {e}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RunError(f"{path} does not hold a state_dict")
    try:
        res = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        detail = " ".join(str(e).split())
        raise RunError(f"{path} does not match the network's module tree: {detail[:300]}") from None
    if res.missing_keys or res.unexpected_keys:
        parts = []
        if res.missing_keys:
            parts.append(f"missing: {', '.join(res.missing_keys[:8])}{' ...' if len(res.missing_keys) > 8 else ''}")
        if res.unexpected_keys:
            parts.append(f"unexpected: {', '.join(res.unexpected_keys[:8])}"
                         f"{' ...' if len(res.unexpected_keys) > 8 else ''}")
        raise RunError(f"{path} does not match the network's module tree ({'; '.join(parts)})")


class _Progress:
    """One line on stderr: redrawn on a terminal, every ~10% otherwise."""

    def __init__(self, total: int, width: int = 30):
        self.total, self.width = total, width
        self.tty = sys.stderr.isatty()
        self.last = -1

    def update(self, done: int) -> None:
        frac = done / self.total
        step = int(frac * 10)
        if not self.tty and step == self.last and done < self.total:
            return
        self.last = step
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        line = f"explain [{bar}] {done}/{self.total} images"
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def main(args) -> int:
    from evo.cli import _compile
    from evo.runtime.images import load_images, overlay, save_png, summary, write_json

    prog_path = Path(args.file)
    if args.batch < 1:
        print("evoc: error: --batch must be at least 1", file=sys.stderr)
        return 2
    try:
        prog = _compile(args.file)  # the one source reader: unreadable is a usage error
        cams = prog.cams
        if not cams:
            print(f"evoc: error: {args.file} declares no cam", file=sys.stderr)
            return 2
        name = args.cam or next(iter(cams))
        if name not in cams:
            from evo.diagnostics import did_you_mean

            hint = did_you_mean(name, cams)
            print(f"evoc: error: no cam named '{name}'" + (f"; {hint}" if hint else ""), file=sys.stderr)
            return 2
        spec = cams[name]
        model = prog.build(spec.network)
        wpath = _weights_path(prog_path, args.weights)
        if wpath is not None:
            load_weights(model, wpath)
        else:
            print("evoc: warning: no weights given or bundled; the network is randomly initialised",
                  file=sys.stderr)
        overrides = {"strategy": args.strategy} if args.strategy else {}
        exp = prog.explainer(name, model, **overrides)
        paths = _images(prog_path, args.images)
    except RunError as e:
        print(f"evoc: error: {e}", file=sys.stderr)
        return 2
    except EvoError:
        raise

    g = prog.graph(spec.network)
    shape = g.node(g.inputs[0]).shape
    size = (int(shape[2]), int(shape[3]))
    mean = spec.mean if spec.mean is not None else (0.485, 0.456, 0.406)
    std = spec.std if spec.std is not None else (0.229, 0.224, 0.225)
    labels = spec.labels
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bar = None if args.quiet or len(paths) <= args.batch else _Progress(len(paths))
    entries = []
    t0 = time.perf_counter()
    done = 0
    for start in range(0, len(paths), args.batch):
        chunk = paths[start:start + args.batch]
        try:
            x, originals = load_images(chunk, size, mean, std)
        except Exception as e:  # noqa: BLE001 - an unreadable image
            print(f"evoc: error: cannot read an image in {', '.join(chunk)}: {e}", file=sys.stderr)
            return 2
        res = exp(x)
        maps = res.maps
        for i, path in enumerate(chunk):
            stem = Path(path).stem
            m = maps[i] if maps.dim() == 3 else maps[i, 0]
            cls = int(res.classes[i] if res.classes.dim() == 1 else res.classes[i, 0])
            score = float(res.scores[i] if res.scores.dim() == 1 else res.scores[i, 0])
            cname = labels[cls] if labels and cls < len(labels) else None
            png = save_png(overlay(originals[i], m, args.alpha), out / f"{stem}_{name}.png")
            info = summary(m, cls, cname, score, original_size=originals[i].shape[:2])
            info.update({"image": str(path), "overlay": str(png), "cam": name, "method": spec.method,
                         "strategy": res.strategy})
            write_json(info, out / f"{stem}_{name}.json")
            entries.append(info)
        done += len(chunk)
        if bar is not None:
            bar.update(done)
    if bar is not None:
        bar.close()
    dt = time.perf_counter() - t0
    write_json({"program": str(prog_path), "cam": name, "network": spec.network, "method": spec.method,
                "strategy": exp.strategy, "strategy_note": getattr(exp, "strategy_note", ""),
                "weights": str(wpath) if wpath else None, "images": entries}, out / "summary.json")
    print(f"explained {len(paths)} image{'s' if len(paths) != 1 else ''} with cam {name} "
          f"({spec.method}, strategy {exp.strategy}) in {dt:.2f} s -> {out}/")
    for e in entries[:10]:
        label = e.get("class_name") or e["class"]
        print(f"  {Path(e['image']).name}: {label} (score {e['score']:.3f}), peak at "
              f"({e['peak']['x']:.0f}, {e['peak']['y']:.0f})")
    if len(entries) > 10:
        print(f"  ... {len(entries) - 10} more in {out}/summary.json")
    return 0
