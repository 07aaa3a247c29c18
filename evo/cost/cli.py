"""`evoc cost`: per-layer, per-level cost of a network (and its explainer) on a tier."""

from __future__ import annotations

import sys


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
    p.add_argument("--plot", metavar="FILE.png", help="write a roofline / per-level plot")
    p.add_argument("-o", "--output", metavar="OUT", help="write the report to a file (default: stdout)")


def _pick(what: str, given: str | None, pool: dict) -> str:
    from evo.cli import UsageError
    from evo.diagnostics import did_you_mean

    if given is not None:
        if given not in pool:
            hint = did_you_mean(given, pool)
            raise UsageError(f"no {what} named '{given}'" + (f"; {hint}" if hint else "") +
                             (f" (defined: {', '.join(sorted(pool))})" if pool else ""))
        return given
    if len(pool) == 1:
        return next(iter(pool))
    if not pool:
        hint = (" (define a tier, or import some: import \"hardware.evo\" from examples/)"
                if what == "hardware" else "")
        raise UsageError(f"the program declares no {what}{hint}")
    raise UsageError(f"the program declares several {what}s ({', '.join(sorted(pool))}); choose one with "
                     f"--{what} or --target")


def main(args) -> int:
    from evo.cli import UsageError, _compile, _write
    from evo.cost.network import explainer_cost

    if args.batch is not None and args.batch < 1:
        raise UsageError("--batch must be at least 1")
    prog = _compile(args.file)
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
    _write(args.output, text)
    if args.plot:
        rep.plot(args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
