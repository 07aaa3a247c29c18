"""Benchmark of evolve past one process: the same search serially, with `workers=N`
processes, and on an N-worker dask.distributed LocalCluster, side by side in one run.

Prints each variant's wall time (pool / cluster start-up included, and without it), the
speed-up over serial, and whether the front (and the whole list of evaluated points)
equals the serial one.  Interleaved rounds; medians.

    python bench/bench_scale.py [FILE] [--workers N] [--population P] [--generations G] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

import evo
from evo.evolve.driver import run_evolve


def _key(res):
    return ([tuple(sorted(p.values.items())) for p in res.search.evaluated],
            [tuple(sorted(p.values.items())) for p in res.search.front])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=os.path.join(ROOT, "examples", "evolve.evo"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from distributed import LocalCluster

    name = next(iter(evo.compile_file(args.file).evolves))
    kw = dict(generations=args.generations, population=args.population, seed=args.seed)
    times: dict[str, list[float]] = {"serial": [], f"workers={args.workers}": [], f"dask {args.workers} workers": []}
    starts: dict[str, list[float]] = {k: [] for k in times}
    same: dict[str, bool] = {k: True for k in times}
    ref = None
    evaluations = 0
    for _ in range(args.rounds):
        # a fresh program each time: no evaluator cache carried between variants
        t = time.perf_counter()
        res = run_evolve(evo.compile_file(args.file), name, **kw)
        times["serial"].append(time.perf_counter() - t)
        starts["serial"].append(0.0)
        ref = ref or _key(res)
        evaluations = res.evaluations
        same["serial"] &= _key(res) == ref

        t = time.perf_counter()
        res = run_evolve(evo.compile_file(args.file), name, workers=args.workers, **kw)
        times[f"workers={args.workers}"].append(time.perf_counter() - t)
        same[f"workers={args.workers}"] &= _key(res) == ref

        t = time.perf_counter()
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            up = time.perf_counter() - t
            res = run_evolve(evo.compile_file(args.file), name, cluster=cluster.scheduler_address, **kw)
            times[f"dask {args.workers} workers"].append(time.perf_counter() - t)
            starts[f"dask {args.workers} workers"].append(up)
        same[f"dask {args.workers} workers"] &= _key(res) == ref

    base = statistics.median(times["serial"])
    print(f"file      {os.path.relpath(args.file)} (evolve {name}); {args.generations} generations x "
          f"{args.population}, seed {args.seed}: {evaluations} evaluations; {os.cpu_count()} CPUs; "
          f"median of {args.rounds} rounds")
    print(f"{'variant':<22} {'wall s':>8} {'speed-up':>9} {'cluster up s':>13}  same front as serial")
    for k, v in times.items():
        m = statistics.median(v)
        up = statistics.median(starts[k]) if starts[k] and any(starts[k]) else 0.0
        print(f"{k:<22} {m:8.2f} {base / m:9.2f} {up:13.2f}  {'yes' if same[k] else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
