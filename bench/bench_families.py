"""Compiled explain time / plain inference time at the last spatial layer, per CNN family
(issue 11; target <= 1.02).

    python bench/bench_families.py [--family convnext] [--batch 2] [--repeats 9]

Measured side by side in one run, interleaved (each round times inference and the
compiled Grad-CAM explainer once, in turn), median over rounds, after warm-up, under
torch.inference_mode, single-threaded.  Families are added here by their engineers
(one entry in FAMILIES: a program, its network arguments and the input size).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# name -> (program file, network, network arguments, cam, input size)
FAMILIES = {
    # ConvNeXt-Tiny's structure at a third of its width and depth (keeps the 2-core run short)
    "convnext": (ROOT / "examples" / "convnext_tiny.evo", "ConvNeXtTiny",
                 {"width": 32, "d1": 1, "d2": 1, "d3": 3, "d4": 1}, "Explain", 224),
}


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(name: str, batch: int, repeats: int) -> tuple[float, float]:
    path, net, args, cam, size = FAMILIES[name]
    # the cam explains the network's default configuration: compile a copy with `args` as defaults
    src = path.read_text()
    for k, v in args.items():
        src = re.sub(rf"\b{k}: int = \d+", f"{k}: int = {v}", src, count=1)
    with tempfile.TemporaryDirectory() as d:
        for f in path.parent.glob("*.evo"):
            (Path(d) / f.name).write_text(f.read_text())
        (Path(d) / path.name).write_text(src)
        prog = evo.compile_file(Path(d) / path.name)
    model = prog.build(net)
    exp = prog.explainer(cam, model, strategy="compiled", upsample="none", normalize="none")
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for _ in range(2):
            model(x)
            exp(x)
        inf, ex = [], []
        for _ in range(repeats):
            inf.append(_time(lambda: model(x)))
            ex.append(_time(lambda: exp(x)))
    return statistics.median(inf), statistics.median(ex)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=sorted(FAMILIES), action="append")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{'family':<10} {'inference ms':>13} {'compiled explain ms':>20} {'ratio':>7}")
    for name in a.family or sorted(FAMILIES):
        inf, ex = bench(name, a.batch, a.repeats)
        print(f"{name:<10} {inf * 1e3:>13.1f} {ex * 1e3:>20.1f} {ex / inf:>7.3f}")


if __name__ == "__main__":
    main()
