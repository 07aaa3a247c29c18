"""Benchmark of the evolve search engine (evo.evolve) on a cheap synthetic problem.

Space: 4 genes, 20 * 25 * 10 * 6 = 30,000 points (IntRange, FloatRange,
ordered Choice, unordered Choice). Two objectives (a latency-like and an
energy-like function with a tradeoff) and one constraint (an "area" budget);
some candidates raise ``Infeasible``.

Prints: space size, evaluations, evaluations per second (engine + function),
time to front, front size, and the hypervolume of the found front relative to
the exact front obtained by enumerating the whole space (1.0 = exact).

    python bench/bench_evolve_engine.py [--population 32] [--generations 20] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np

from evo.evolve import (
    Choice,
    FloatRange,
    Gene,
    Infeasible,
    IntRange,
    Space,
    exhaustive,
    hypervolume,
    objective_matrix,
    search,
)

SPACE = Space(
    [
        Gene("pes", IntRange(16, 336, 16)),  # 20
        Gene("util", FloatRange(0.5, 1.0, 0.02)),  # 25
        Gene("glb_kib", Choice((32, 48, 64, 96, 128, 192, 256, 384, 512, 768))),  # 10
        Gene("dataflow", Choice(("ws", "os", "rs", "nlr", "is", "hybrid"))),  # 6, unordered
    ]
)
_DF = {
    "ws": (1.00, 1.10),
    "os": (0.95, 1.25),
    "rs": (1.05, 0.85),
    "nlr": (1.30, 1.40),
    "is": (1.10, 1.00),
    "hybrid": (0.90, 1.05),
}
OBJECTIVES = [("latency", "min"), ("energy", "min")]
CONSTRAINTS = [("area", "<=", 60.0)]


LAYERS = ((64, 56 * 56), (128, 28 * 28), (256, 14 * 14), (512, 7 * 7), (1000, 1))  # (channels, pixels)


def evaluate(v: dict) -> dict:
    """A cheap cost-model-like function with tiling effects (jagged in ``pes``) and buffer fits."""
    pes, util, glb, df = v["pes"], v["util"], v["glb_kib"], v["dataflow"]
    if df == "nlr" and glb < 64:
        raise Infeasible("nlr needs a global buffer of at least 64 KiB")
    lf, ef = _DF[df]
    cycles = 0.0
    dram = 0.0
    for ch, px in LAYERS:
        tiles = math.ceil(ch / pes)  # partial last tile wastes PEs
        cycles += tiles * px * 9 * 64 / util
        work_kib = (ch * 9 * 2 + pes * 16) / 1024 * (1.5 if df in ("os", "is") else 1.0)
        spill = max(0.0, work_kib - glb) / work_kib if work_kib > 0 else 0.0
        dram += px * ch * (1.0 + 4.0 * spill) * 2e-6
    latency = lf * cycles / 200e6 * 1e3  # ms at 200 MHz
    energy = ef * (0.05 * pes * latency + 40.0 * dram + 0.01 * glb + 3.0 * (1.0 - util) ** 2)
    area = 0.12 * pes + 0.05 * glb + 8.0 * util
    return {"latency": latency, "energy": energy, "area": area}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args(argv)

    print(f"space: {SPACE.size} points, {len(SPACE)} genes")
    t = time.perf_counter()
    exact = exhaustive(SPACE, evaluate, OBJECTIVES, CONSTRAINTS)
    t_exact = time.perf_counter() - t
    print(
        f"exhaustive: {exact.evaluations} evaluations in {t_exact:.2f} s "
        f"({exact.evaluations / t_exact:,.0f}/s), exact front: {len(exact.front)} points"
    )
    F_exact = objective_matrix(exact.front, OBJECTIVES)
    # reference point: the exact front's nadir pushed out by 10% of its extent
    lo, hi = F_exact.min(axis=0), F_exact.max(axis=0)
    ref = hi + 0.1 * np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
    hv_exact = hypervolume(F_exact, ref)

    budget = args.population * args.generations
    print(
        f"search: population {args.population} x generations {args.generations} = budget {budget} "
        f"({100.0 * budget / SPACE.size:.1f}% of the space)"
    )
    ratios = []
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        marks: list[tuple[float, int]] = []
        t0 = time.perf_counter()

        def progress(gen: int, gens: int, evals: int, front_size: int, marks=marks, t0=t0) -> None:
            marks.append((time.perf_counter() - t0, evals))

        res = search(
            SPACE,
            evaluate,
            OBJECTIVES,
            CONSTRAINTS,
            args.population,
            args.generations,
            seed,
            progress=progress,
        )
        # time to front: when the last point of the final front had been evaluated
        pos = {p.genome: k for k, p in enumerate(res.evaluated)}
        last = max(pos[p.genome] for p in res.front) + 1 if res.front else 0
        t_front = next(t for t, n in marks if n >= last)
        hv = hypervolume(objective_matrix(res.front, OBJECTIVES), ref)
        ratio = hv / hv_exact
        ratios.append(ratio)
        exact_set = {p.genome for p in exact.front}
        found = sum(1 for p in res.front if p.genome in exact_set)
        print(
            f"  seed {seed}: {res.evaluations} evaluations in {res.wall_time:.2f} s "
            f"({res.evaluations / res.wall_time:,.0f} evals/s), time to front {t_front:.2f} s, "
            f"front {len(res.front)} points ({found} on the exact front), "
            f"hypervolume ratio {ratio:.6f}"
        )
    print(f"mean hypervolume ratio: {sum(ratios) / len(ratios):.6f} (reference point: exact nadir + 10%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
