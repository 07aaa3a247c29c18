"""Benchmark of `evoc evolve` end to end: examples/evolve.evo through the real compiler
and cost model (NSGA-II over network and hardware genes).

Prints the space size, evaluations, wall time, evaluations per second, the time to the
front (when the last point of the final front was found, at generation granularity),
the front size, and the cache figures (distinct graphs, tiers, cost-cache hits).

    python bench/bench_evolve.py [FILE] [--search NAME] [--population P] [--generations G] [--seed S]
                                 [--workers N]

Evaluations per second are printed per wall second and per CPU second of this process
(with ``--workers N`` the CPU seconds of the workers are not counted: compare wall
seconds), with the load average: on a shared machine the wall figure is what the
other processes leave, the CPU figure what one unloaded core gives.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import evo
from evo.evolve.driver import evaluator, format_metric, run_evolve


def _vec(p, spec) -> tuple:
    return tuple(p.metrics[m] for m, _ in spec.objectives)


def _time_to_hv(res, marks, frac: float) -> float:
    """Seconds until the front of the points evaluated so far reached `frac` of the final
    front's hypervolume (objectives scaled to [0, 1] over every feasible point, ref 1.1)."""
    import numpy as np

    from evo.evolve import hypervolume, objective_matrix

    objs = res.spec.objectives
    feas = [(k, p) for k, p in enumerate(res.evaluated) if p.feasible]
    if not feas:
        return float("nan")
    F = objective_matrix([p for _, p in feas], objs)
    lo, hi = F.min(axis=0), F.max(axis=0)
    G = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    ref = [1.1] * len(objs)
    idx = np.array([k for k, _ in feas])
    final = hypervolume(G, ref)
    for _, n, t in marks:
        if final <= 0 or hypervolume(G[idx < n], ref) >= frac * final:
            return t
    return marks[-1][2] if marks else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=os.path.join(ROOT, "examples", "evolve.evo"))
    ap.add_argument("--search", default=None)
    ap.add_argument("--population", type=int, default=None)
    ap.add_argument("--generations", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1, help="evaluate each generation in N processes")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    prog = evo.compile_file(args.file)
    name = args.search or next(iter(prog.evolves))
    t_compile = time.perf_counter() - t0
    spec = prog.evolves[name]
    size = math.prod(len(g.values) for g in spec.genes)

    marks: list[tuple[int, int, float]] = []  # (generation, evaluations so far, seconds since start)
    start = time.perf_counter()
    cpu0 = time.process_time()

    def progress(gen: int, gens: int, evals: int, front: int) -> None:
        marks.append((gen, evals, time.perf_counter() - start))

    load0 = os.getloadavg()[0]
    res = run_evolve(prog, name, generations=args.generations, population=args.population, seed=args.seed,
                     progress=progress, workers=args.workers)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    ev = evaluator(prog, name)

    order = {id(p): k for k, p in enumerate(res.evaluated)}
    last = max((order[id(p)] for p in res.front), default=-1)
    to_front = next((t for _, n, t in marks if n > last), wall) if last >= 0 else float("nan")
    gen_front = next((g for g, n, _ in marks if n > last), res.generations) if last >= 0 else 0

    print(f"file            {os.path.relpath(args.file)} (evolve {name}, compiled in {t_compile:.2f} s)")
    print(f"space           {size:,} points, {len(spec.genes)} genes")
    print(f"search          {res.generations} generations x {res.search.population} "
          f"(seed {res.search.seed}), {res.evaluations} evaluations "
          f"({res.infeasible} infeasible, {res.violating} violate constraints)")
    print(f"wall time       {wall:.2f} s")
    print(f"evaluations/s   {res.evaluations / wall:.2f} (wall clock); {res.evaluations / cpu:.2f} per CPU second "
          f"({cpu:.2f} s of process time: what an unloaded core gives"
          f"{'' if args.workers == 1 else f'; the {args.workers} workers not counted'})")
    print(f"load average    {load0:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs)")
    print(f"time to front   {to_front:.2f} s (the final front complete after generation {gen_front})")
    print(f"time to 99% HV  {_time_to_hv(res, marks, 0.99):.2f} s (hypervolume of the normalised objectives)")
    print(f"front size      {len(res.front)} ({len({_vec(p, spec) for p in res.front})} distinct objective vectors)")
    print(f"caches          {len(ev.graphs)} graphs, {len(ev.tiers)} tiers, {len(ev.costs)} costs, "
          f"{ev.cost_hits} cost hits")
    if res.baseline is not None:
        print("as written      " + ", ".join(f"{m} {format_metric(m, res.baseline[m])}"
                                            for m, _ in spec.objectives))
    print()
    print(res.table(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
