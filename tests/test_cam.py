"""CAM explainers: every method x strategy against an independent hook-based
reference (tests/refcam.py: full backward through the whole network), on
residual, depthwise and concat architectures and several layers."""

from __future__ import annotations

import pytest
import torch

import evo
from evo.ir.node import Op
from evo.passes.gradient import GRADIENT_OPS, compiled_explain_graph, explain_graph
from tests.refcam import reference_cam, reference_normalize, reference_upsample

RESIDUAL = """
block Basic(x, planes: int, stride: int = 1) {
    conv1 = conv2d(x, planes, 3, stride=stride, padding=1, bias=false)
    bn1 = batchnorm2d(conv1)
    act1 = relu(bn1)
    conv2 = conv2d(act1, planes, 3, padding=1, bias=false)
    bn2 = batchnorm2d(conv2)
    if stride != 1 or x.channels != planes {
        downsample = seq(x) { conv2d(planes, 1, stride=stride, bias=false); batchnorm2d() }
        return relu(bn2 + downsample)
    }
    return relu(bn2 + x)
}

network Res(x: Tensor[N, 3, 32, 32], classes: int = 7) {
    conv1 = conv2d(x, 8, 3, padding=1, bias=false)
    bn1 = batchnorm2d(conv1)
    act = relu(bn1)
    pool = maxpool2d(act, 3, stride=2, padding=1)
    layer1 = seq(pool) { Basic(8); Basic(8) }
    layer2 = seq(layer1) { Basic(16, stride=2); Basic(16) }
    avgpool = adaptive_avgpool2d(layer2, 1)
    fc = linear(flatten(avgpool), classes)
    return fc
}

cam C {
    network = Res
    layer = layer2
}
"""

DEPTHWISE = """
block DW(x, out: int, stride: int = 1) = seq(x) {
    conv2d(x.channels, 3, stride=stride, padding=1, groups=x.channels, bias=false)
    batchnorm2d()
    relu6()
    conv2d(out, 1, bias=false)
    batchnorm2d()
    hardswish()
}

network Mobile(x: Tensor[N, 3, 32, 32], classes: int = 5) {
    stem = seq(x) { conv2d(8, 3, stride=2, padding=1, bias=false); batchnorm2d(); relu() }
    features = seq(stem) { DW(16); DW(24, stride=2); DW(24) }
    pooled = avgpool2d(features, 3, stride=2, padding=1, ceil=true, count_include_pad=false)
    head = seq(pooled) { conv2d(32, 1); silu(); adaptive_avgpool2d(2) }
    classifier = seq(flatten(head)) { dropout(0.2); linear(16); gelu(); linear(classes) }
    return classifier
}

cam C {
    network = Mobile
    layer = features
}
"""

CONCAT = """
block Fire(x, squeeze: int, expand: int) {
    s = seq(x) { conv2d(squeeze, 1); relu() }
    e1 = seq(s) { conv2d(expand, 1); leaky_relu(0.1) }
    e3 = seq(s) { conv2d(expand, 3, padding=1); tanh() }
    return concat(e1, e3)
}

network FireNet(x: Tensor[N, 3, 24, 24], classes: int = 6) {
    stem = seq(x) { conv2d(12, 3, padding=1); relu(); maxpool2d(2, ceil=true) }
    fire1 = Fire(stem, 4, 8)
    fire2 = Fire(fire1, 6, 8)
    gate = sigmoid(adaptive_avgpool2d(fire2, 1))
    scaled = fire2 * gate
    pool = maxpool2d(scaled, 3, stride=2, padding=1, dilation=1)
    out = seq(pool) { conv2d(classes, 1); relu(); adaptive_avgpool2d(1) }
    logits = softmax(flatten(out))
    return logits
}

cam C {
    network = FireNet
    layer = fire2
}
"""

ARCHS = {
    "residual": (RESIDUAL, "Res", ["layer2", "layer1", "layer2.0.conv1", "layer1.1"], (2, 3, 32, 32)),
    "depthwise": (DEPTHWISE, "Mobile", ["features", "features.1", "stem"], (2, 3, 32, 32)),
    "concat": (CONCAT, "FireNet", ["fire2", "fire1", "fire1.e3"], (2, 3, 24, 24)),
}
GRAD_METHODS = ["gradcam", "hirescam", "xgradcam", "gradcampp", "layercam"]


def _randomize_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)


_CACHE: dict = {}


def arch(name):
    if name not in _CACHE:
        src, net, layers, shape = ARCHS[name]
        prog = evo.compile(src)
        model = prog.build(net, seed=3)
        _randomize_bn(model)
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(7))
        _CACHE[name] = (prog, model, layers, x)
    return _CACHE[name]


def _raw(prog, model, x, layer, method, strategy, classes="top1"):
    exp = prog.explainer("C", model, layer=layer, method=method, strategy=strategy, classes=classes,
                         upsample="none", normalize="none")
    return exp(x)


def _close(a, b, tol=1e-5):
    scale = max(1.0, float(b.abs().max()))
    assert a.shape == b.shape
    err = float((a - b).abs().max())
    assert err <= tol * scale, f"max abs error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("strategy", ["autograd", "forward", "compiled"])
def test_gradient_methods_match_reference(name, strategy):
    prog, model, layers, x = arch(name)
    logits = model(x)
    top = logits.argmax(1)
    for layer in layers:
        module = model.get_submodule(layer)
        for method in GRAD_METHODS:
            if strategy == "forward" and method != "gradcam" and layer not in layers[:1]:
                continue  # elementwise forward mode is C*h*w JVPs: one layer per arch is enough
            r = _raw(prog, model, x, layer, method, strategy)
            ref = reference_cam(model, x, module, method, top)
            assert torch.equal(r.classes, top)
            _close(r.maps, ref)
            assert r.strategy == strategy


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("method", ["eigencam", "scorecam"])
def test_gradient_free_methods_match_reference(name, method):
    prog, model, layers, x = arch(name)
    top = model(x).argmax(1)
    layer = layers[0]
    r = _raw(prog, model, x, layer, method, "auto")
    ref = reference_cam(model, x, model.get_submodule(layer), method, top)
    _close(r.maps, ref, 1e-4)
    assert r.strategy == "none"


@pytest.mark.parametrize("name", list(ARCHS))
def test_all_class_maps_equal_per_class_autograd(name):
    prog, model, layers, x = arch(name)
    n = model(x).shape[1]
    per_class = torch.stack([_raw(prog, model, x, layers[0], "gradcam", "autograd", classes=c).maps
                             for c in range(n)], dim=1)
    for strategy in ("forward", "compiled"):
        r = _raw(prog, model, x, layers[0], "gradcam", strategy, classes="all")
        assert r.maps.shape == (x.shape[0], n) + per_class.shape[2:]
        assert torch.equal(r.classes, torch.arange(n).expand(x.shape[0], n))
        _close(r.maps, per_class)


def test_class_selection_and_shapes():
    prog, model, layers, x = arch("residual")
    logits = model(x)
    r = _raw(prog, model, x, layers[0], "gradcam", "compiled", classes="topk(3)")
    assert r.maps.shape[:2] == (2, 3)
    assert torch.equal(r.classes, logits.topk(3, dim=1).indices)
    assert torch.allclose(r.scores, logits.topk(3, dim=1).values, atol=1e-6)
    r = _raw(prog, model, x, layers[0], "gradcam", "compiled", classes=[1, 4])
    assert torch.equal(r.classes, torch.tensor([[1, 4], [1, 4]]))
    r = _raw(prog, model, x, layers[0], "gradcam", "compiled", classes=2)
    assert r.maps.dim() == 3 and torch.equal(r.classes, torch.tensor([2, 2]))
    # an explicit class tensor at call time
    exp = prog.explainer("C", model, strategy="compiled")
    r = exp(x, classes=torch.tensor([5, 6]))
    assert torch.equal(r.classes, torch.tensor([5, 6]))


def test_upsampled_normalised_maps_match_reference():
    prog, model, layers, x = arch("residual")
    top = model(x).argmax(1)
    ref = reference_normalize(reference_upsample(reference_cam(model, x, model.get_submodule("layer2"), "gradcam",
                                                               top), x.shape[-2:], "bilinear"))
    r = prog.explainer("C", model, strategy="compiled")(x)
    assert r.maps.shape == (2, 32, 32)
    _close(r.maps, ref)
    assert float(r.maps.min()) >= 0 and float(r.maps.max()) <= 1


def test_several_layers_are_averaged_after_normalisation():
    prog, model, layers, x = arch("residual")
    top = model(x).argmax(1)
    maps = []
    for layer in ("layer1", "layer2"):
        raw = reference_cam(model, x, model.get_submodule(layer), "gradcam", top)
        maps.append(reference_normalize(reference_upsample(raw, x.shape[-2:], "bilinear")))
    ref = reference_normalize(torch.stack(maps).mean(0))
    for strategy in ("autograd", "compiled"):
        r = prog.explainer("C", model, layer=["layer1", "layer2"], strategy=strategy)(x)
        _close(r.maps, ref)


def test_autograd_touches_no_parameter_grad_and_leaves_no_hooks():
    prog, model, layers, x = arch("residual")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    exp = prog.explainer("C", model, strategy="autograd", layer="layer1")
    exp(x)
    assert all(p.grad is None for p in model.parameters())
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_autograd_differentiates_only_the_head():
    # the gradient graph must not reach the layers before the CAM layer
    prog, model, layers, x = arch("residual")
    calls = []
    conv1 = model.get_submodule("conv1")
    orig = conv1.forward

    def spy(inp):
        out = orig(inp)
        calls.append(out.requires_grad)
        return out

    conv1.forward = spy
    try:
        prog.explainer("C", model, strategy="autograd", layer="layer2")(x)
    finally:
        conv1.forward = orig
    assert calls == [False]


@pytest.mark.parametrize("name", list(ARCHS))
def test_compiled_runs_under_inference_mode_and_exports(name):
    prog, model, layers, x = arch(name)
    exp = prog.explainer("C", model, strategy="compiled")
    with torch.inference_mode():
        r = exp(x)
    ref = prog.explainer("C", model, strategy="autograd")(x)
    _close(r.maps, ref.maps)
    ep = torch.export.export(exp.export_module(), (x,))
    maps, classes, scores = ep.module()(x)
    _close(maps, ref.maps)
    assert torch.equal(classes, ref.classes)


def test_affine_head_folds_to_channel_weights():
    prog, model, layers, x = arch("residual")
    g = prog.graph("Res")
    eg = compiled_explain_graph(g, "layer2")
    assert not any(n.op in GRADIENT_OPS for n in eg.nodes)
    assert [n.op for n in eg.nodes if n.op in (Op.CONST, Op.WEIGHTED_SUM)] == [Op.CONST, Op.WEIGHTED_SUM]
    unfolded = explain_graph(g, "layer2")
    assert any(n.op in GRADIENT_OPS for n in unfolded.nodes)
    # a non-affine head keeps its gradient ops
    eg1 = compiled_explain_graph(g, "layer1")
    assert any(n.op == Op.CONV2D_GRAD_INPUT for n in eg1.nodes)
    # the folded weights are the linear layer's weight / (h*w)
    exp = prog.explainer("C", model, strategy="compiled")
    fc = model.get_submodule("fc")
    assert torch.allclose(exp._j0, fc.weight.detach() / 64, atol=1e-7)
    # and the emitted IR shows the folded explain graph
    assert "weighted_sum" in prog.compilation.ir_text


def test_auto_reports_its_choice():
    prog, model, layers, x = arch("residual")
    exp = prog.explainer("C", model)
    assert exp.strategy == "compiled"
    assert "auto" in exp.strategy_note
