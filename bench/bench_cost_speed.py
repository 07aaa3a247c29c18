"""How long the cost model takes to cost ResNet-50 (batch 1), per hardware tier.

    python bench/bench_cost_speed.py [--repeat 3] [--hardware Eyeriss] [--objective latency]

Builds ResNet-50's (torchvision v1.5) 53 convolutions and its fc layer by hand,
plus the max/avg pools, the 16 residual adds and the flatten, then reports the wall
time of

* ``cost_op`` on the 54 conv/linear workloads with a cold cache (repeated shapes hit the
  per-(workload, hardware) cache after their first occurrence),
* the same with no cache at all (every op searched from scratch),
* ``cost_network`` over all 73 ops, fusion included, with a cold cache.

Then the most extreme shapes the checker allows along one axis (a 1,000,000-wide row
with a 100,000-tap kernel, strided and dilated windows): their cost is computed in
closed form, so each takes a few milliseconds, not seconds.

Target: well under 1 s for the cold-cache numbers.  Not a unit test (no timing
assertions); run it by hand.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from evo.cost import (
    PRESETS,
    CopyWorkload,
    EltwiseWorkload,
    PoolWorkload,
    adaptive_pool,
    clear_cache,
    conv2d,
    cost_network,
    cost_op,
    linear,
)


def resnet50(batch: int = 1):
    """[(name, workload, producers)] in execution order."""
    ops = []
    N = batch
    ops.append(("conv1", conv2d(N, 3, 224, 224, 64, 7, stride=2, padding=3), ("x",)))
    ops.append(("maxpool", PoolWorkload(N, 64, 56, 56, 3, 3, 112, 112, 2, 2, 1, 1, "max"), ("conv1",)))
    prev, C, H = "maxpool", 64, 56
    for li, (planes, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
        for b in range(blocks):
            s = stride if b == 0 else 1
            p = f"layer{li}.{b}"
            Ho = H // s
            ops.append((f"{p}.conv1", conv2d(N, C, H, H, planes, 1), (prev,)))
            ops.append((f"{p}.conv2", conv2d(N, planes, H, H, planes, 3, stride=s, padding=1), (f"{p}.conv1",)))
            ops.append((f"{p}.conv3", conv2d(N, planes, Ho, Ho, planes * 4, 1), (f"{p}.conv2",)))
            skip = prev
            if b == 0:
                ops.append((f"{p}.downsample", conv2d(N, C, H, H, planes * 4, 1, stride=s), (prev,)))
                skip = f"{p}.downsample"
            ops.append((f"{p}.add", EltwiseWorkload(N * planes * 4 * Ho * Ho, 2, 2), (f"{p}.conv3", skip)))
            prev, C, H = f"{p}.add", planes * 4, Ho
    ops.append(("avgpool", adaptive_pool(N, 2048, 7, 7, 1, 1), (prev,)))
    ops.append(("flatten", CopyWorkload(N * 2048, N * 2048, view=True), ("avgpool",)))
    ops.append(("fc", linear(N, 2048, 1000), ("flatten",)))
    return ops


def _time(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time (process time) over `repeat` cold-cache runs."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        clear_cache()
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return wall, cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hardware", default=None, help="one of " + ", ".join(PRESETS))
    ap.add_argument("--objective", default="latency")
    args = ap.parse_args(argv)
    net = resnet50()
    convs = [(n, w) for n, w, _ in net if w.kind == "conv"]
    print(f"ResNet-50: {len(convs)} conv/linear ops, {len(net)} ops in all, "
          f"{len({w for _, w in convs})} distinct conv/linear shapes")
    # warm numpy up once so the first timing is not an import artefact
    cost_op(convs[0][1], PRESETS["Eyeriss"])
    tiers = [args.hardware] if args.hardware else list(PRESETS)
    for name in tiers:
        hw = PRESETS[name]

        def convs_cold(hw=hw):
            for _, w in convs:
                cost_op(w, hw, args.objective)

        def convs_nocache(hw=hw):
            for _, w in convs:
                clear_cache()
                cost_op(w, hw, args.objective)

        def network(hw=hw):
            cost_network(net, hw, args.objective)

        t1 = _time(convs_cold, args.repeat)
        t2 = _time(convs_nocache, args.repeat)
        t3 = _time(network, args.repeat)
        nc = cost_network(net, hw, args.objective)
        print(f"{name:>13}: conv/linear cold cache {t1[0] * 1e3:6.1f} ms (cpu {t1[1] * 1e3:6.1f}) | "
              f"no cache {t2[0] * 1e3:6.1f} ms (cpu {t2[1] * 1e3:6.1f}) | network+fusion cold "
              f"{t3[0] * 1e3:6.1f} ms (cpu {t3[1] * 1e3:6.1f})")
        print(f"{'':>13}  ResNet-50 batch 1: latency {nc.latency_s * 1e3:.3f} ms, energy {nc.energy_j * 1e3:.2f} mJ, "
              f"off-chip {nc.offchip_bytes / 1e6:.1f} MB, fusion saved {nc.saved_offchip_bytes / 1e6:.2f} MB")
    extreme = {"1x1,000,000 row, 1x100,000 kernel": conv2d(1, 1, 1, 1_000_000, 1, (1, 100_000), padding=(0, 1000)),
               "stride 7, dilation 3": conv2d(1, 1, 1, 1_000_000, 1, (1, 5), stride=(1, 7), dilation=(1, 3),
                                              padding=(0, 1000)),
               "1x1000 kernel, dilation 999": conv2d(1, 1, 1, 1_000_000, 1, (1, 1000), dilation=(1, 999),
                                                     padding=(0, 999))}
    for label, w in extreme.items():
        hw = PRESETS[args.hardware or "Eyeriss"]
        wall, cpu = _time(lambda w=w, hw=hw: cost_op(w, hw, args.objective), args.repeat)
        print(f"extreme shape {label}: {wall * 1e3:.1f} ms (cpu {cpu * 1e3:.1f}) on {hw.name}")
    print("(wall times are inflated when other processes share the CPUs; cpu = process time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
