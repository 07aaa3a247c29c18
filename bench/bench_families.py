"""Compiled explain time / plain inference time at the last spatial layer, per CNN family
(issue 11; target <= 1.02).

    python bench/bench_families.py [--family convnext] [--batch 2] [--repeats 9]

Measured side by side in one run, interleaved (each round times inference and the
compiled Grad-CAM explainer once, in turn), median over rounds, after warm-up, under
torch.inference_mode, single-threaded.  Families are added here by their engineers
(one entry in FAMILIES: a program, its network arguments and the input size; or one in
IMPORTED: a full-size tests/zoo mirror of torchvision's model, random weights and
non-trivial batch-norm statistics, imported with evo.from_torch and loaded strict).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evo  # noqa: E402
from tests.zoo import (densenet, efficientnet, googlenet, inception, mobilenetv3, regnet,  # noqa: E402
                       shufflenetv2)

ROOT = Path(__file__).resolve().parents[1]

# name -> (program file, network, network arguments, cam, input size)
FAMILIES = {
    # ConvNeXt-Tiny's structure at a third of its width and depth (keeps the 2-core run short)
    "convnext": (ROOT / "examples" / "convnext_tiny.evo", "ConvNeXtTiny",
                 {"width": 32, "d1": 1, "d2": 1, "d3": 3, "d4": 1}, "Explain", 224),
    "efficientnet_b0": (ROOT / "examples" / "efficientnet_b0.evo", "EfficientNetB0", {}, "Explain", 224),
}

# name -> (full-size tests/zoo mirror, last spatial layer[, input size]), imported with evo.from_torch
# (224x224 unless stated; the training-only auxiliary classifiers stay in the module tree)
IMPORTED = {
    "efficientnet_b0_imported": (efficientnet.efficientnet_b0, "features"),
    "efficientnet_v2_s": (efficientnet.efficientnet_v2_s, "features"),
    "mobilenet_v3_large": (mobilenetv3.mobilenet_v3_large, "features"),
    "mobilenet_v3_small": (mobilenetv3.mobilenet_v3_small, "features"),
    "regnet_y_400mf": (regnet.regnet_y_400mf, "trunk_output"),
    "regnet_x_400mf": (regnet.regnet_x_400mf, "trunk_output"),
    "shufflenet_v2_x1_0": (shufflenetv2.shufflenet_v2_x1_0, "conv5"),
    "densenet121": (densenet.densenet121, "features"),
    "googlenet": (googlenet.googlenet, "inception5b"),
    "inception_v3": (inception.inception_v3, "Mixed_7c", 299),
}


def imported(name: str):
    make, layer, *size = IMPORTED[name]
    size = size[0] if size else 224
    torch.manual_seed(0)
    mirror = make().eval()
    with torch.no_grad():
        for m in mirror.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    src = evo.from_torch(mirror, torch.randn(1, 3, size, size), name="Net", verify=False)
    prog = evo.compile(src + f"\ncam Explain {{\n    network = Net\n    layer = {layer}\n}}\n")
    model = prog.build("Net")
    model.load_state_dict(mirror.state_dict(), strict=True)
    return prog, model.eval(), "Explain", size


def _time(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of one call (single-threaded: the thread's CPU time is what the call
    itself used, less disturbed by the other processes of a loaded machine than the wall time)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - t0, time.thread_time() - c0


def bench(name: str, batch: int, repeats: int) -> dict[str, float]:
    if name in IMPORTED:
        prog, model, cam, size = imported(name)
        return measure(prog, model, cam, size, batch, repeats)
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
    return measure(prog, prog.build(net), cam, size, batch, repeats)


def measure(prog, model, cam: str, size: int, batch: int, repeats: int) -> dict[str, float]:
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
    out = {}
    for j, kind in enumerate(("wall", "cpu")):
        a, b = [t[j] for t in inf], [t[j] for t in ex]
        out |= {f"{kind}_inf": statistics.median(a), f"{kind}_exp": statistics.median(b),
                f"{kind}_min_inf": min(a), f"{kind}_min_exp": min(b)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=sorted(FAMILIES) + sorted(IMPORTED), action="append")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"batch {a.batch}, {a.repeats} interleaved rounds, 1 thread; load average {os.getloadavg()[0]:.1f}")
    print("ms: inference / compiled explain, median (min); ratios explain / inference of the medians (mins)")
    print(f"{'family':<24} {'wall ms':>26} {'wall ratio':>14} {'CPU ms':>26} {'CPU ratio':>14}")
    for name in a.family or sorted(FAMILIES) + list(IMPORTED):
        r = bench(name, a.batch, a.repeats)
        cells = []
        for k in ("wall", "cpu"):
            i, e, i0, e0 = r[f"{k}_inf"], r[f"{k}_exp"], r[f"{k}_min_inf"], r[f"{k}_min_exp"]
            cells.append(f"{f'{i * 1e3:.1f} ({i0 * 1e3:.1f}) / {e * 1e3:.1f} ({e0 * 1e3:.1f})':>26} "
                         f"{f'{e / i:.3f} ({e0 / i0:.3f})':>14}")
        print(f"{name:<24} " + " ".join(cells), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
