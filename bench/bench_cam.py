"""Explain time / plain inference time, per strategy, on one model and layer.

    python bench/bench_cam.py [--network resnet18|quickstart] [--batch 1] [--repeats 15]

Measured side by side in one run, interleaved (each round times every variant
once, in turn), median over rounds, after warm-up.  Targets (issue 4):
autograd <= 1.05, compiled-affine <= 1.02, all-class maps <= 1.10.  The
"tutorial" row is the common hook + full-backward Grad-CAM (forward hook on the
layer, `score.backward()` through the whole network, parameter grads included).
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--network", default="resnet18", choices=("resnet18", "quickstart"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.network == "resnet18":
        prog = evo.compile_file(ROOT / "examples" / "resnet18.evo")
        net, cam, layer, shape = "ResNet18", "Explain", "layer4", (args.batch, 3, 224, 224)
    else:
        prog = evo.compile_file(ROOT / "examples" / "quickstart.evo")
        net, cam, layer, shape = "QuickNet", "Shapes", "features", (args.batch, 3, 64, 64)
    model = prog.build(net)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    layer_module = model.get_submodule(layer)

    variants = {"inference": lambda: _infer(model, x)}
    for s in ("autograd", "forward", "compiled"):
        e = prog.explainer(cam, model, strategy=s, layer=layer)
        variants[f"{s} (top1)"] = (lambda e=e: e(x))
    for s in ("forward", "compiled"):
        e = prog.explainer(cam, model, strategy=s, layer=layer, classes="all", upsample="none")
        variants[f"{s} all classes, layer res."] = (lambda e=e: e(x))
    e = prog.explainer(cam, model, strategy="compiled", layer=layer, classes="all")
    variants["compiled all classes, upsampled"] = (lambda e=e: e(x))
    variants["tutorial hook+backward (top1)"] = lambda: tutorial_gradcam(model, layer_module, x)

    for f in variants.values():  # warm-up
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for k, f in variants.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["inference"]
    targets = {"autograd (top1)": 1.05, "compiled (top1)": 1.02, "compiled all classes, layer res.": 1.10,
               "forward all classes, layer res.": 1.10}
    print(f"{net} at {layer}, input {list(shape)}, {args.threads} threads, median of {args.repeats} rounds")
    print(f"{'variant':36s} {'ms':>9s} {'/ inference':>12s}  target")
    for k, v in med.items():
        tgt = targets.get(k)
        mark = "" if tgt is None else f"<= {tgt:.2f} {'ok' if v / base <= tgt else 'MISSED'}"
        print(f"{k:36s} {v * 1e3:9.2f} {v / base:12.3f}  {mark}")


def _infer(model, x):
    with torch.inference_mode():
        return model(x)


if __name__ == "__main__":
    main()
