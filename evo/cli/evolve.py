"""`evoc evolve FILE`: search an evolve block; Pareto front as a table/JSON, PNG and programs."""

from __future__ import annotations

import sys
from pathlib import Path

from evo.cli.common import UsageError, compile_program, pick
from evo.cli.output import output_dir, write_output


def add_parser(sub) -> None:
    p = sub.add_parser("evolve", help="search an evolve block: Pareto front (table, JSON, PNG) and programs")
    p.add_argument("file", metavar="FILE", help="evo program")
    p.add_argument("--search", metavar="NAME", help="the evolve block (default: the program's only one)")
    p.add_argument("--generations", type=int, metavar="G", help="override the block's generations")
    p.add_argument("--population", type=int, metavar="P", help="override the block's population")
    p.add_argument("--seed", type=int, metavar="S", help="override the block's seed")
    p.add_argument("--out", metavar="DIR", default="evoc-out",
                   help="where front.json and front.png go (default: evoc-out)")
    p.add_argument("--plot-format", choices=("png", "svg", "pdf"), default="png",
                   help="the front's plot, written as OUT/front.png (default), .svg or .pdf")
    p.add_argument("--emit-best", metavar="DIR", help="write every front point as an evo program into DIR")
    p.add_argument("--format", choices=("table", "json"), default="table", help="what to print (default: table)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="evaluate candidates in N processes (default 1: in this one)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="evaluate candidates on a dask.distributed cluster (scheduler address, e.g. tcp://host:8786)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")


def main(args) -> int:
    from evo.evolve.driver import WriteBackError, run_evolve
    from evo.cli.progress import EvolveProgress

    prog = compile_program(args.file)
    pool = prog.evolves
    if not pool and args.search is None:
        raise UsageError(f"{args.file} declares no evolve block")
    name = pick("evolve block", args.search, pool, option="--search")
    for what, v, lo in (("--generations", args.generations, 1), ("--population", args.population, 2),
                        ("--seed", args.seed, 0)):
        if v is not None and v < lo:
            raise UsageError(f"{what} must be at least {lo}")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.cluster is not None and args.workers != 1:
        raise UsageError("give --workers or --cluster, not both")
    out = output_dir(args.out, "--out " + str(args.out))
    best = output_dir(args.emit_best, "--emit-best " + str(args.emit_best)) if args.emit_best else None
    gens = args.generations or pool[name].generations
    bar = EvolveProgress(gens, f"evolve {name}", enabled=not args.quiet, force=args.progress)
    try:
        res = run_evolve(prog, name, generations=args.generations, population=args.population, seed=args.seed,
                         progress=bar, workers=args.workers, cluster=args.cluster)
    except OSError as e:  # an unreachable --cluster address
        raise UsageError(f"cannot reach the cluster {args.cluster}: {e}") from None
    finally:
        bar.close()
    programs: dict[int, str] = {}
    written: list[Path] = []
    if best is not None:
        try:
            texts = [res.program(i, best) for i in range(len(res.front))]
        except WriteBackError as e:
            sys.stdout.write(res.summary() + "\n" + res.table())
            print(f"evoc: error: cannot write the front back as programs: {e}", file=sys.stderr)
            return 1
        for i, text in enumerate(texts):
            written.append(write_output(best / f"{name}_{i + 1}.evo", text, inputs=[args.file]))
        programs = {i: str(pth) for i, pth in enumerate(written)}
    write_output(out / "front.json", res.to_json(programs), inputs=[args.file])
    plot = out / f"front.{args.plot_format}"
    write_output(plot, res.render_plot(args.plot_format), inputs=[args.file])
    if args.format == "json":
        sys.stdout.write(res.to_json(programs))
    else:
        sys.stdout.write(res.summary() + "\n" + res.table())
    note = f"wrote {out / 'front.json'} and {plot}"
    if best is not None:
        note += f"; {len(written)} program{'s' if len(written) != 1 else ''} in {args.emit_best}"
    print(note, file=sys.stderr)
    if not res.search.front:
        print(f"evoc: no candidate of evolve {name} meets its constraints", file=sys.stderr)
    return 0
