"""Explain time / plain inference time, per strategy, on one model and layer.

    python bench/bench_cam.py [--network resnet18|resnet50|quickstart] [--batch 1] [--repeats 15]
    python bench/bench_cam.py --network resnet50 --batch 8 --repeats 9    # issue 13

Measured side by side in one run, interleaved (each round times every variant
once, in turn), median over rounds, after warm-up; wall time and the process's CPU
time (less disturbed by other processes on a shared machine) are both reported,
with the load average.  Targets (issues 4 and 13): autograd <= 1.05,
compiled-affine <= 1.02, all-class maps <= 1.10.  The "tutorial" row is the common
hook + full-backward Grad-CAM (forward hook on the layer, `score.backward()`
through the whole network, parameter grads included).  `resnet50` is
examples/resnet50.evo (the torchvision module tree) with a Grad-CAM at layer4; it
times inference, autograd, compiled and the tutorial only (its all-class upsampled
maps would be B x 1000 x 224 x 224 floats).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tutorial_gradcam(model, layer_module, x):
    """The common tutorial Grad-CAM: hooks + full backward."""
    store = {}

    def fwd(m, i, o):
        store["a"] = o
        o.register_hook(lambda g: store.__setitem__("g", g))

    h = layer_module.register_forward_hook(fwd)
    try:
        model.zero_grad(set_to_none=True)
        out = model(x)
        cls = out.argmax(1)
        out.gather(1, cls[:, None]).sum().backward()
    finally:
        h.remove()
    a, g = store["a"].detach(), store["g"]
    w = g.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((w * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = cam.amin(dim=(1, 2), keepdim=True)
    hi = cam.amax(dim=(1, 2), keepdim=True)
    return (cam - lo) / (hi - lo).clamp_min(1e-12)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--network", default="resnet18", choices=("resnet18", "resnet50", "quickstart"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.network == "resnet50":
        src = (ROOT / "examples" / "resnet50.evo").read_text(encoding="utf-8")
        prog = evo.compile(src + "\ncam Explain {\n    network = ResNet50\n    layer = layer4\n}\n")
        net, cam, layer, shape = "ResNet50", "Explain", "layer4", (args.batch, 3, 224, 224)
    elif args.network == "resnet18":
        prog = evo.compile_file(ROOT / "examples" / "resnet18.evo")
        net, cam, layer, shape = "ResNet18", "Explain", "layer4", (args.batch, 3, 224, 224)
    else:
        prog = evo.compile_file(ROOT / "examples" / "quickstart.evo")
        net, cam, layer, shape = "QuickNet", "Shapes", "features", (args.batch, 3, 64, 64)
    model = prog.build(net)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    layer_module = model.get_submodule(layer)

    variants = {"inference": lambda: _infer(model, x)}
    small = args.network != "resnet50"
    for s in ("autograd", "forward", "compiled") if small else ("autograd", "compiled"):
        e = prog.explainer(cam, model, strategy=s, layer=layer)
        variants[f"{s} (top1)"] = (lambda e=e: e(x).maps)
    if small:
        for s in ("forward", "compiled"):
            e = prog.explainer(cam, model, strategy=s, layer=layer, classes="all", upsample="none")
            variants[f"{s} all classes, layer res."] = (lambda e=e: e(x).maps)
        e = prog.explainer(cam, model, strategy="compiled", layer=layer, classes="all")
        variants["compiled all classes, upsampled"] = (lambda e=e: e(x).maps)
    variants["tutorial hook+backward (top1)"] = lambda: tutorial_gradcam(model, layer_module, x)

    load0 = os.getloadavg()
    for f in variants.values():  # warm-up
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for k, f in variants.items():
            t, c = time.perf_counter(), time.process_time()
            f()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    load1 = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    base, cbase = med["inference"], mcpu["inference"]
    targets = {"autograd (top1)": 1.05, "compiled (top1)": 1.02, "compiled all classes, layer res.": 1.10,
               "forward all classes, layer res.": 1.10}
    print(f"{net} at {layer}, input {list(shape)}, {args.threads} threads, median of {args.repeats} rounds; "
          f"load average {load0[0]:.1f} before, {load1[0]:.1f} after ({os.cpu_count()} CPUs)")
    print(f"{'variant':36s} {'wall ms':>9s} {'/ inference':>12s} {'CPU ms':>9s} {'/ inference':>12s}  target (CPU)")
    for k, v in med.items():
        tgt = targets.get(k)
        r = mcpu[k] / cbase
        mark = "" if tgt is None else f"<= {tgt:.2f} {'ok' if r <= tgt else 'MISSED'}"
        print(f"{k:36s} {v * 1e3:9.2f} {v / base:12.3f} {mcpu[k] * 1e3:9.2f} {r:12.3f}  {mark}")


def _infer(model, x):
    with torch.inference_mode():
        return model(x)


if __name__ == "__main__":
    main()
