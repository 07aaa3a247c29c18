"""`evoc eval`: a leaderboard of CAM methods with quality metrics (evo/evaluation.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from evo.cli.common import EXIT_OK, UsageError, compile_program, pick
from evo.cli.output import output_dir, write_output
from evo.fileio import OutputError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="compare CAM methods with quality metrics: a leaderboard")
    p.add_argument("file", metavar="FILE", help="evo program")
    p.add_argument("--cam", metavar="NAME", help="the cam to evaluate (default: the program's first cam)")
    p.add_argument("--images", nargs="+", metavar="PATH", help="image files or a directory "
                   "(default: the images/ folder next to the program)")
    p.add_argument("--boxes", metavar="F.json", help="object boxes for the pointing game (default: "
                   "boxes.json in the image folder, if any)")
    p.add_argument("--methods", metavar="M1,M2,...", help="methods to compare (default: all)")
    p.add_argument("--weights", metavar="W.pt", help="state_dict of the network (default: bundled weights)")
    p.add_argument("--out", metavar="DIR", default="evoc-eval", help="output directory (default: evoc-eval)")
    p.add_argument("--batch", type=int, default=8, metavar="N", help="images per batch (default 8)")
    p.add_argument("--steps", type=int, default=16, metavar="S", help="deletion / insertion steps (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of ROAD's imputation noise (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args) -> int:
    from evo.cam_methods import METHODS
    from evo.cli.run import _images, image_input, load_program_weights
    from evo.evaluation import format_table, leaderboard, plot_curves, read_boxes, write_csv
    from evo.runtime.images import load_images

    prog_path = Path(args.file)
    if args.batch < 1 or args.steps < 1:
        raise UsageError("--batch and --steps must be at least 1")
    prog = compile_program(args.file)
    cams = prog.cams
    if not cams:
        raise UsageError(f"{args.file} declares no cam")
    name = pick("cam", args.cam if args.cam is not None else next(iter(cams)), cams, list_defined=False)
    methods = None
    if args.methods and args.methods != "all":
        methods = [pick("method", m.strip(), METHODS, list_defined=False)
                   for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise UsageError(f"--methods '{args.methods}' names no method (give M1,M2,... or all)")
    spec = cams[name]
    model = prog.build(spec.network)
    wpath = load_program_weights(model, prog_path, args.weights)
    paths = _images(prog_path, args.images)
    size, mean, std = image_input(prog, name, spec, "evoc eval")  # grey networks get grey images
    try:
        x, originals = load_images(paths, size, mean, std)
    except Exception as e:  # noqa: BLE001 - an unreadable image
        raise UsageError(f"cannot read the images: {e}") from None
    bpath = Path(args.boxes) if args.boxes else None
    if bpath is None:
        dirs = {Path(p).parent for p in paths}
        cand = [d / "boxes.json" for d in dirs if (d / "boxes.json").is_file()]
        bpath = cand[0] if len(cand) == 1 else None
    elif not bpath.is_file():
        raise UsageError(f"boxes file {args.boxes} not found")
    try:
        boxes = read_boxes(bpath, paths, size, originals)
    except ValueError as e:
        raise UsageError(str(e)) from None
    progress = None
    if not args.quiet:
        try:
            from tqdm import tqdm
        except ImportError:  # the [eval] extra is not installed: no progress bar
            tqdm = None
        if tqdm is not None:
            progress = tqdm(total=len(methods or METHODS), desc="methods", unit="method", file=sys.stderr)
    out = output_dir(args.out, f"--out {args.out}")  # before the work: a file given as --out is refused
    rows = leaderboard(prog, name, model, x, boxes, methods, args.batch, args.steps, args.seed, progress)
    if progress is not None:
        progress.close()
    inputs = [args.file, *paths] + [str(p) for p in (bpath, wpath) if p]
    write_output(out / "leaderboard.json", json.dumps(
        {"program": str(prog_path), "cam": name, "network": spec.network, "images": len(paths),
         "boxes": str(bpath) if bpath else None, "weights": str(wpath) if wpath else None,
         "rows": rows}, indent=1) + "\n", inputs=inputs)
    try:
        write_csv(rows, out / "leaderboard.csv")
        plotted = plot_curves(rows, out / "curves.png")
    except OutputError as e:
        raise UsageError(str(e)) from None
    print(f"cam {name} on {len(paths)} image{'s' if len(paths) != 1 else ''}"
          f"{' with boxes' if boxes else ''}: {len(rows)} methods (sorted by insertion AUC - deletion AUC)")
    print(format_table(rows))
    print(f"-> {out}/leaderboard.json, leaderboard.csv" + (", curves.png" if plotted else ""))
    return EXIT_OK
