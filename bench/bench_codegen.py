"""Code-generation benchmarks: generated ResNet-18 speed, and compile time of a big program.

    python bench/bench_codegen.py [--repeat 30] [--threads 1] [--batch 1] [--size 224] [--layers 2000]

1. Forward time of the ResNet-18 that evo generates from examples/resnet18.evo,
   divided by that of hand-written PyTorch ResNet-18s holding the same weights
   (strict state_dict copy):

   * ``ref``: tests/refmodels.py (torchvision's module tree, out-of-place ReLU);
   * ``torchvision-style``: the same with torchvision's in-place ReLU and
     in-place residual add (``out += identity``), written here.

   Timing: ``torch.set_num_threads`` fixed (default 1: on a shared small machine,
   OpenMP threads spinning against other processes make multi-threaded timings
   erratic), ``torch.inference_mode``, warm-up
   runs, then ``--repeat`` rounds that each time every model once in an order
   rotated per round (interleaved, so drift hits all alike); the median per
   model is reported.  Target: generated / hand-written <= 1.02.

2. Compile time of a generated program of ``--layers`` IR layers (residual
   blocks of conv, batchnorm, add, relu, plus seq stages), end to end: source
   -> checked (parse, names, shapes) -> IR (pass pipeline) -> Python source ->
   built module (exec + weight init).  Measured in a fresh interpreter (torch
   imported first, timed apart), once cold (the first parse builds the LALR
   parser) and once warm; wall and process CPU time.  Target: < 2 s.

Not a unit test (no timing assertions); run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

import evo

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


# --------------------------------------------------------------------------- torchvision-style baseline

class _TVBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class _TVResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes, layers = 64, []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                                     nn.BatchNorm2d(planes))
            layers.append(nn.Sequential(_TVBasicBlock(inplanes, planes, stride, down),
                                        _TVBasicBlock(planes, planes)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


# --------------------------------------------------------------------------- 1. forward ratio

def _randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def forward_ratio(repeat: int, warmup: int, batch: int, size: int) -> dict:
    sys.path.insert(0, ROOT)
    from tests.refmodels import resnet18

    with open(os.path.join(ROOT, "examples", "resnet18.evo"), encoding="utf-8") as f:
        src = f.read()
    if size != 224:
        src = src.replace("Tensor[N, 3, 224, 224]", f"Tensor[N, 3, {size}, {size}]")
    prog = evo.compile(src, "resnet18.evo")
    gen_model = prog.build("ResNet18", seed=0)
    with torch.no_grad():
        _randomize_bn(gen_model, torch.Generator().manual_seed(1))
    sd = gen_model.state_dict()
    models = {"generated": gen_model, "ref": resnet18(), "torchvision-style": _TVResNet18()}
    for name in ("ref", "torchvision-style"):
        models[name].load_state_dict(sd, strict=True)
        models[name].eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    times: dict[str, list[float]] = {k: [] for k in models}
    names = list(models)
    with torch.inference_mode():
        outs = {k: m(x) for k, m in models.items()}
        for k in names[1:]:
            torch.testing.assert_close(outs[k], outs["generated"], rtol=1e-5, atol=1e-5)
        for _ in range(warmup):
            for m in models.values():
                m(x)
        for r in range(repeat):
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                t = time.perf_counter()
                models[k](x)
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    return {"median_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
            "min_ms": {k: round(v * 1e3, 3) for k, v in best.items()},
            "ratio_vs_ref": med["generated"] / med["ref"],
            "ratio_vs_torchvision_style": med["generated"] / med["torchvision-style"],
            "min_ratio_vs_ref": best["generated"] / best["ref"],
            "min_ratio_vs_torchvision_style": best["generated"] / best["torchvision-style"]}


# --------------------------------------------------------------------------- 2. compile time

def big_program(layers: int) -> str:
    """A program with `layers` IR layers: residual units (conv, bn, add, relu = 4
    layers) bound by name, in blocks of two units and seqs of repeated stages."""
    head = [
        "evo 0.1",
        "block Unit(x, c: int) {",
        "    conv = conv2d(x, c, 3, padding=1, bias=false)",
        "    bn = batchnorm2d(conv)",
        "    return relu(bn + x)",
        "}",
        "block Pair(x, c: int) {",
        "    a = Unit(x, c)",
        "    return Unit(a, c)",
        "}",
        "network Big(x: Tensor[N, 16, 8, 8], classes: int = 10) {",
    ]
    body, n, i, prev = [], 0, 0, "x"
    # 5 layers are the head: adaptive pool, flatten, linear (+ 2 seq stages each round below)
    while n + 8 + 3 <= layers:
        body.append(f"    p{i} = Pair({prev}, 16)")
        prev, n, i = f"p{i}", n + 8, i + 1
        if n + 3 + 3 <= layers and i % 10 == 0:
            body.append(f"    s{i} = seq({prev}) {{ conv2d(16, 1, bias=false); batchnorm2d(); relu() }}")
            prev, n = f"s{i}", n + 3
    while n + 3 < layers:
        body.append(f"    r{n} = relu({prev})")
        prev, n = f"r{n}", n + 1
    body += [f"    pool = adaptive_avgpool2d({prev}, 1)", "    fc = linear(flatten(pool), classes)",
             "    return fc", "}"]
    return "\n".join(head + body) + "\n"


_COMPILE_CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
t = time.perf_counter()
import torch  # process start-up, not compilation: timed apart
t_torch = time.perf_counter() - t
import evo
from evo.frontend.parser import get_parser
src = sys.stdin.read()
if {warm!r}:
    get_parser()
t0, c0 = time.perf_counter(), time.process_time()
prog = evo.compile(src, "big.evo")
t1 = time.perf_counter()
graph = prog.compilation.ir["Big"]
t2 = time.perf_counter()
py = prog.emit_python()
t3 = time.perf_counter()
model = prog.build("Big")
t4, c4 = time.perf_counter(), time.process_time()
print(json.dumps({{"layers": len(graph.nodes) - 1, "check": t1 - t0, "ir": t2 - t1, "python": t3 - t2,
                  "build": t4 - t3, "total": t4 - t0, "cpu": c4 - c0, "py_lines": py.count("\n"),
                  "params": sum(p.numel() for p in model.parameters()), "import_torch": t_torch}}))
"""


def compile_time(layers: int, warm: bool) -> dict:
    src = big_program(layers)
    child = _COMPILE_CHILD.format(root=ROOT, warm=warm)
    r = subprocess.run([sys.executable, "-c", child], input=src, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--layers", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.repeat} interleaved rounds after {args.warmup} warm-up")
    r = forward_ratio(args.repeat, args.warmup, args.batch, args.size)
    for k, v in r["median_ms"].items():
        print(f"  ResNet-18 forward, {k:18s} median {v:9.3f} ms   min {r['min_ms'][k]:9.3f} ms")
    print(f"  ratio generated / ref               = {r['ratio_vs_ref']:.4f} median, "
          f"{r['min_ratio_vs_ref']:.4f} min   (target <= 1.02)")
    print(f"  ratio generated / torchvision-style = {r['ratio_vs_torchvision_style']:.4f} median, "
          f"{r['min_ratio_vs_torchvision_style']:.4f} min")
    for warm in (False, True):
        c = compile_time(args.layers, warm)
        print(f"compile {c['layers']}-layer program ({'warm' if warm else 'cold'} parser): "
              f"check {c['check']:.3f} s, IR {c['ir']:.3f} s, Python {c['python']:.3f} s "
              f"({c['py_lines']} lines), build {c['build']:.3f} s; total {c['total']:.3f} s wall, "
              f"{c['cpu']:.3f} s CPU (target < 2 s; import torch before it: {c['import_torch']:.2f} s)")


if __name__ == "__main__":
    main()
