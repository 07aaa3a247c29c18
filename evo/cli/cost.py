"""`evoc cost`: per-layer, per-level cost of a network (and its explainer) on a tier."""

from __future__ import annotations

import sys

from evo.cli.common import UsageError, compile_program, pick
from evo.cli.output import plot_format, write_output

_NO_HARDWARE = " (define a tier, or import some: import \"hardware.evo\" from examples/)"


def add_parser(sub) -> None:
    p = sub.add_parser("cost", help="cost a network on a hardware tier (per layer, per memory level)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--target", metavar="T", help="a target (network, hardware, batch, cam, fps)")
    p.add_argument("--network", metavar="N")
    p.add_argument("--hardware", metavar="H")
    p.add_argument("--batch", type=int, metavar="B", help="batch size (default: the target's, else 1)")
    p.add_argument("--objective", choices=("latency", "energy", "edp"),
                   help="what the mapping search minimises (default: the target's, else latency)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--plot", metavar="FILE", help="write a roofline / energy-per-level plot "
                   "(PNG, SVG or PDF, chosen by the suffix: .png, .svg, .pdf)")
    p.add_argument("-o", "--output", metavar="OUT", help="write the report to a file (default: stdout)")
    p.add_argument("--calibrate", nargs="+", metavar="IMAGES",
                   help="run the network on these images (files or folders) and cost it with each activation's "
                        "measured zero fraction (zero gating, skipping and compression, as the tier declares)")
    p.add_argument("--weights", metavar="W.pt", help="with --calibrate: the network's state_dict (default: "
                   "bundled weights for the program, e.g. quickstart.pt; else its random initialisation)")
    p.add_argument("--constraints", metavar="FILE.json",
                   help='parts of ops\' mappings fixed, the rest searched: {"op name": {"spatial": {"P": 13}, '
                        '"glb_tile": {"C": 1}}, ...} (op names as the report prints them)')


def _pick(what: str, given: str | None, pool) -> str:
    return pick(what, given, pool, option=f"--{what} or --target",
                none_hint=_NO_HARDWARE if what == "hardware" else "")


def main(args) -> int:
    from evo.cost.network import explainer_cost

    if args.batch is not None and args.batch < 1:
        raise UsageError("--batch must be at least 1")
    from evo import limits

    if args.batch is not None and args.batch > limits.value("batch"):
        raise UsageError(f"--batch: {limits.exceeded('batch', args.batch, 'batch size')}; {limits.LIMITS['batch'].how()}")
    fmt = plot_format(args.plot) if args.plot else None
    prog = compile_program(args.file)
    cam = None
    fps = None
    batch = args.batch
    objective = args.objective
    if args.target is not None or (args.network is None and args.hardware is None and len(prog.targets) == 1):
        t = prog.targets[_pick("target", args.target, prog.targets)]
        network = _pick("network", args.network, prog.networks) if args.network else t.network
        hardware = _pick("hardware", args.hardware, prog.hardware) if args.hardware else t.hardware
        cam = prog.cams.get(t.cam) if t.cam else None
        fps = t.fps
        batch = batch or t.batch
        objective = objective or t.objective
    else:
        network = _pick("network", args.network, prog.networks)
        hardware = _pick("hardware", args.hardware, prog.hardware)
    batch = batch or 1
    objective = objective or "latency"
    sparsity = None
    if args.calibrate:
        sparsity = _calibrate(prog, args.file, network, args.calibrate, args.weights, batch)
    elif args.weights:
        raise UsageError("--weights is for --calibrate")
    constraints = _constraints(args.constraints, prog, network, batch) if args.constraints else None
    from evo.cost import ConstraintError

    try:
        rep = prog.cost(network, hardware=hardware, batch=batch, objective=objective, sparsity=sparsity,
                        constraints=constraints)
    except ConstraintError as e:  # a constraint on a dim the op lacks, or one nothing satisfies
        from evo.cli.run import safe

        raise UsageError(f"--constraints {safe(args.constraints)}: {safe(e)}") from None
    rep.fps_budget = fps
    if cam is not None and cam.network == network:
        g = prog.graph(network)
        rep.cam = explainer_cost(g, cam, prog.hardware[hardware], batch, objective,
                                 explain=prog.compilation.explainer(g))
    text = {"table": rep.table, "json": rep.to_json, "csv": rep.to_csv}[args.format]()
    if not text.endswith("\n"):
        text += "\n"
    write_output(args.output, text, inputs=[args.file])
    if args.plot:
        write_output(args.plot, rep.render_plot(fmt), inputs=[args.file, args.output])
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _calibrate(prog, file: str, network: str, images: list[str], weights: str | None, batch: int) -> dict:
    """Zero fractions per op, measured by running `network` on `images` (normalised as a cam
    of the program that explains this network says, else with ImageNet's mean and std)."""
    from pathlib import Path

    from evo.cli.run import _images, load_program_weights
    from evo.cost.sparsity import calibrate
    from evo.runtime.images import load_images

    paths = _images(Path(file), images)
    model = prog.build(network)
    load_program_weights(model, Path(file), weights, "zeros measured on a randomly initialised network")
    cam = next((c for c in prog.cams.values() if c.network == network), None)
    mean = cam.mean if cam is not None and cam.mean is not None else (0.485, 0.456, 0.406)
    std = cam.std if cam is not None and cam.std is not None else (0.229, 0.224, 0.225)
    shape = prog.graph(network).nodes[0].shape
    try:
        x, _ = load_images(paths, shape, mean, std)
    except OSError as e:
        raise UsageError(f"cannot read the calibration images: {e}") from None
    return calibrate(prog, network, x, model=model, batch=batch)


def _constraints(path: str, prog, network: str, batch: int) -> dict:
    """{op name: MappingConstraints} from a JSON file: {"op": {"spatial": {dim: n}, "glb_tile": {dim: n}}}."""
    import json

    from evo.cli.run import safe
    from evo.cost import MappingConstraints
    from evo.cost.network import graph_ops
    from evo.diagnostics import did_you_mean
    from evo.frontend.source import UnreadableSource, read_bytes

    where = f"--constraints {safe(path)}"
    try:  # a regular file of bounded size, opened without blocking (a FIFO is refused, not waited on)
        data = json.loads(read_bytes(path).decode("utf-8"))
    except UnreadableSource as e:
        raise UsageError(f"{where}: cannot read it: {e.why}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{where}: not JSON: {e}") from None
    shape = '{"op name": {"spatial": {"P": 13}, "glb_tile": {"C": 1}}}'
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected an object of op names, like {shape}")
    names = [name for name, _, _ in graph_ops(prog.graph(network), batch)]
    out = {}
    for op, spec in data.items():
        if op not in names:
            hint = did_you_mean(op, names)
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} ops)" if len(names) > 12 else "")
            raise UsageError(f"{where}: network {network} has no op '{safe(op)}'"
                             + (f"; {safe(hint)}" if hint else "") + f" (its ops: {shown})")
        if not isinstance(spec, dict) or set(spec) - {"spatial", "glb_tile"} or not all(
                isinstance(v, dict) for v in spec.values()):
            raise UsageError(f"{where}: op '{safe(op)}': expected {{\"spatial\": {{dim: factor}}, \"glb_tile\": "
                             "{dim: extent}} (either may be left out)")
        try:
            out[op] = MappingConstraints.of(spatial=spec.get("spatial"), glb_tile=spec.get("glb_tile"))
        except ValueError as e:
            raise UsageError(f"{where}: op '{op}': {safe(e)}") from None
    return out
