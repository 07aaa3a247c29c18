"""`evoc cost`: per-layer, per-level cost of a network (and its explainer) on a tier."""

from __future__ import annotations

import sys

from evo.cli.common import UsageError, compile_program, pick
from evo.cli.output import write_output, write_rendered

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
    p.add_argument("--plot", metavar="FILE.png", help="write a roofline / per-level plot (.png, .svg or .pdf)")
    p.add_argument("-o", "--output", metavar="OUT", help="write the report to a file (default: stdout)")


def _pick(what: str, given: str | None, pool) -> str:
    return pick(what, given, pool, option=f"--{what} or --target",
                none_hint=_NO_HARDWARE if what == "hardware" else "")


def main(args) -> int:
    from evo.cost.network import explainer_cost

    if args.batch is not None and args.batch < 1:
        raise UsageError("--batch must be at least 1")
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
    rep = prog.cost(network, hardware=hardware, batch=batch, objective=objective)
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
        write_rendered(args.plot, rep.plot, inputs=[args.file, args.output])
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
