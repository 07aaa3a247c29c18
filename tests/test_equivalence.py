"""Generated networks against hand-written PyTorch models (tests/refmodels.py, plain torch.nn).

For each pair the hand-written model's `state_dict` loads into the built module
with `strict=True` (the spec's "names are module names"), and the logits agree
to 1e-5 on random inputs.  The generated file is also run on its own: written
to a temp dir and executed by a fresh interpreter (which must never import
evo), loading the same `state_dict` from `torch.save` with
`torch.load(..., weights_only=True)`; its numbers must be the same.

ResNet-18 runs at the spec's 224x224 (batch 1).  MobileNetV2 runs at 64x64
through a program variant (the input declaration rewritten) with 10 classes
through `build(..., classes=10)`.  VGG-16 and ResNet-50 are compared by
`state_dict` keys and shapes (strict load) on the meta device, without running.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import evo
from tests import refmodels

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _source(name: str, size: int | None = None) -> str:
    src = (EXAMPLES / f"{name}.evo").read_text(encoding="utf-8")
    if size is not None:
        old = "Tensor[N, 3, 224, 224]"
        assert old in src
        src = src.replace(old, f"Tensor[N, 3, {size}, {size}]")
    return src


def _randomize(model: nn.Module, seed: int) -> None:
    """Non-trivial batch-norm affine parameters and running statistics (eval mode uses them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)


# --------------------------------------------------------------------------- small nets written here

DEPTHWISE_EVO = """
evo 0.1

# refmodels.DepthwiseSeparableNet: a MobileNet-v1-style net
block DwPw(x, out: int, stride: int) = seq(x) {
    conv2d(x.channels, 3, stride=stride, padding=1, groups=x.channels, bias=false)
    batchnorm2d()
    relu()
    conv2d(out, 1, bias=false)
    batchnorm2d()
    relu()
}

network DwNet(x: Tensor[N, 3, 32, 32], classes: int = 10) {
    stem = seq(x) { conv2d(16, 3, padding=1, bias=false); batchnorm2d(); relu() }
    blocks = seq(stem) { DwPw(32, 1); DwPw(64, 2); DwPw(64, 1); DwPw(128, 2) }
    pool = adaptive_avgpool2d(blocks, 1)
    fc = linear(flatten(pool), classes)
    return fc
}
"""

FIRE_EVO = """
evo 0.1

# refmodels.FireNet: SqueezeNet-style fire modules (channel concat)
block Fire(x, sq: int, e1: int, e3: int) {
    squeeze = conv2d(x, sq, 1)
    s = relu(squeeze)
    expand1x1 = conv2d(s, e1, 1)
    expand3x3 = conv2d(s, e3, 3, padding=1)
    return concat(relu(expand1x1), relu(expand3x3))
}

network FireNet(x: Tensor[N, 3, 32, 32], classes: int = 10) {
    features = seq(x) {
        conv2d(32, 3, padding=1)
        relu()
        maxpool2d(2)
        Fire(8, 16, 16)
        Fire(8, 16, 16)
        maxpool2d(2)
        Fire(16, 32, 32)
    }
    classifier = seq(features) { dropout(0.5); conv2d(classes, 1); relu(); adaptive_avgpool2d(1) }
    return flatten(classifier)
}
"""

# name: (evo source, network, build args, reference factory, input shape)
PAIRS = {
    "resnet18": (lambda: _source("resnet18"), "ResNet18", {}, refmodels.resnet18, (1, 3, 224, 224)),
    "mobilenet_v2": (lambda: _source("mobilenet", 64), "MobileNetV2", {"classes": 10},
                     lambda: refmodels.mobilenet_v2(10), (2, 3, 64, 64)),
    "depthwise": (lambda: DEPTHWISE_EVO, "DwNet", {}, lambda: refmodels.DepthwiseSeparableNet(10),
                  (3, 3, 32, 32)),
    "fire": (lambda: FIRE_EVO, "FireNet", {}, lambda: refmodels.FireNet(10), (3, 3, 32, 32)),
}


@pytest.fixture(scope="module")
def pairs():
    """Per network: program, built module (with the reference's weights), reference, input, logits."""
    out = {}
    for i, (key, (src, net, args, factory, shape)) in enumerate(PAIRS.items()):
        torch.manual_seed(100 + i)
        ref = factory()
        _randomize(ref, i)
        ref.eval()
        prog = evo.compile(src(), f"{key}.evo")
        model = prog.build(net, **args)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(200 + i))
        out[key] = (prog, model, ref, x)
    return out


@pytest.mark.parametrize("key", list(PAIRS))
def test_state_dict_loads_strict_and_logits_match(pairs, key):
    _, model, ref, x = pairs[key]
    sd = ref.state_dict()
    assert list(model.state_dict()) == list(sd)  # same names, same order
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert not model.training
    with torch.no_grad():
        got, want = model(x), ref(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert want.abs().max() > 1e-3  # not a trivially small output


def test_generated_file_runs_standalone(pairs, tmp_path):
    """Each generated file, executed on its own in a fresh interpreter, gives the same logits."""
    jobs = {}
    for i, (key, (prog, model, ref, x)) in enumerate(pairs.items()):
        net, args = PAIRS[key][1], PAIRS[key][2]
        if args:  # a non-default build: the standalone source of that instance
            from evo.codegen.python import generate

            code = generate([prog.graph(net, **args)], f"{key}.evo")
        else:
            code = prog.emit_python()
        (tmp_path / f"gen_{key}.py").write_text(code, encoding="utf-8")
        torch.save(ref.state_dict(), tmp_path / f"{key}.pt")
        torch.save(x, tmp_path / f"{key}_x.pt")
        with torch.no_grad():
            torch.save(ref(x), tmp_path / f"{key}_want.pt")
        jobs[key] = net
    child = textwrap.dedent(f"""
        import importlib, json, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import torch
        torch.set_num_threads(1)
        jobs = json.loads({json.dumps(json.dumps(jobs))})
        out = {{}}
        for key, net in jobs.items():
            mod = importlib.import_module("gen_" + key)
            model = mod.NETWORKS[net]()
            sd = torch.load({str(tmp_path)!r} + "/" + key + ".pt", weights_only=True)
            model.load_state_dict(sd, strict=True)
            model.eval()
            x = torch.load({str(tmp_path)!r} + "/" + key + "_x.pt", weights_only=True)
            with torch.no_grad():
                y = model(x)
            torch.save(y, {str(tmp_path)!r} + "/" + key + "_got.pt")
            out[key] = list(y.shape)
        evo_mods = sorted(m for m in sys.modules if m == "evo" or m.startswith("evo."))
        print(json.dumps({{"shapes": out, "evo": evo_mods}}))
    """)
    r = subprocess.run([sys.executable, "-I", "-c", child], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["evo"] == [], "the generated file imported evo"
    for key in jobs:
        got = torch.load(tmp_path / f"{key}_got.pt", weights_only=True)
        want = torch.load(tmp_path / f"{key}_want.pt", weights_only=True)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # and the same numbers as the in-process build
        prog, model, ref, x = pairs[key]
        model.load_state_dict(ref.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(got, model(x), rtol=0, atol=0)


def _meta_pair(name: str, net: str, factory):
    prog = evo.compile_file(EXAMPLES / f"{name}.evo")
    ns: dict = {}
    exec(compile(prog.emit_python(), f"<{name}>", "exec"), ns)  # noqa: S102 - the code under test
    with torch.device("meta"):
        gen = ns["NETWORKS"][net]()
        ref = factory()
    return gen, ref


@pytest.mark.parametrize("name,net,factory,params", [
    ("vgg16", "VGG16", refmodels.vgg16, 138_357_544),
    ("resnet50", "ResNet50", refmodels.resnet50, 25_557_032),
    ("resnet18", "ResNet18", refmodels.resnet18, 11_689_512),
    ("mobilenet", "MobileNetV2", refmodels.mobilenet_v2, 3_504_872),
])
def test_big_model_keys_match(name, net, factory, params):
    """torchvision-layout state_dict keys and shapes, strict load, parameter counts
    (on the meta device: nothing allocated or computed)."""
    gen, ref = _meta_pair(name, net, factory)
    gsd, rsd = gen.state_dict(), ref.state_dict()
    assert list(gsd) == list(rsd)
    assert {k: tuple(v.shape) for k, v in gsd.items()} == {k: tuple(v.shape) for k, v in rsd.items()}
    gen.load_state_dict(rsd, strict=True, assign=True)
    assert sum(p.numel() for p in gen.parameters()) == params
