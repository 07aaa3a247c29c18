"""`evo.from_torch` / `evoc import`: PyTorch models written here in plain torch.nn
(torchvision-style ResNet, MobileNetV2, SqueezeNet, VGG) go through
import -> compile -> load_state_dict(strict=True) and must give the same
logits and the same Grad-CAMs; the generated source must be short (one block
per repeated class), canonical and checkable; unsupported models must be
reported clearly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import evo
from evo.frontend.fmt import format_source
from evo.importer import ConversionError, from_torch


# =========================================================================== models (plain torch.nn)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

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
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    """torchvision's ResNet-18 layout ([2, 2, 2, 2] BasicBlocks), narrower, for 32x32 inputs."""

    def __init__(self, layers=(2, 2, 2, 2), num_classes=10, width=8):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

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


class ConvBNReLU(nn.Sequential):
    def __init__(self, inp, oup, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(nn.Conv2d(inp, oup, kernel_size, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        self.stride = stride
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers.extend([ConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
                       nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)])
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 module tree (features.N.conv..., classifier.1), width 0.25, 5 stages."""

    def __init__(self, num_classes=10):
        super().__init__()
        setting = [[1, 8, 1, 1], [6, 8, 2, 2], [6, 16, 2, 2], [6, 24, 2, 1]]
        inp = 8
        features = [ConvBNReLU(3, inp, stride=2)]
        for t, c, n, s in setting:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(ConvBNReLU(inp, 64, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


class Fire(nn.Module):
    def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """torchvision's SqueezeNet 1.1 module tree, narrower."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(16, 4, 8, 8), Fire(16, 4, 8, 8),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(16, 8, 16, 16), Fire(32, 8, 16, 16))
        final_conv = nn.Conv2d(32, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.5), final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        x = self.features(x)
        x = self.classifier(x)
        return torch.flatten(x, 1)


class VGG(nn.Module):
    """torchvision's VGG module tree (features.N, avgpool, classifier.N), with batch norm, narrower."""

    def __init__(self, cfg=(8, 8, "M", 16, 16, "M", 32, 32, 32, "M"), num_classes=10):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(c * 4, 64), nn.ReLU(True), nn.Dropout(),
            nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(),
            nn.Linear(64, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)


def randomized(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights and batch-norm statistics, so that equal outputs mean something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / max(1, p[0].numel()) ** 0.5))
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


MODELS = {
    "resnet": (ResNet, "layer4"),
    "mobilenet": (MobileNetV2, "features"),
    "squeezenet": (SqueezeNet, "features"),
    "vgg": (VGG, "features"),
}


class Imported:
    def __init__(self, key: str):
        cls, self.layer = MODELS[key]
        self.model = randomized(cls(), seed=len(key))
        self.x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        self.src = from_torch(self.model, self.x)
        self.name = cls.__name__
        self.prog = evo.compile(self.src, filename=f"<{key}>")
        self.net = self.prog.build(self.name)
        self.net.load_state_dict(self.model.state_dict(), strict=True)


_CACHE: dict[str, Imported] = {}


@pytest.fixture(params=sorted(MODELS))
def imported(request) -> Imported:
    if request.param not in _CACHE:
        _CACHE[request.param] = Imported(request.param)
    return _CACHE[request.param]


def get(key: str) -> Imported:
    if key not in _CACHE:
        _CACHE[key] = Imported(key)
    return _CACHE[key]


# =========================================================================== Grad-CAM with hooks


def gradcam(model: nn.Module, layer: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of the top-1 class at `layer` (a module path), with a forward hook and autograd:
    relu(sum_k mean_ij(d score / d A_k) * A_k), at the layer's resolution, not normalised."""
    store = {}

    def hook(_m, _inp, out):
        store["a"] = out

    h = model.get_submodule(layer).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x)
            cls = logits.argmax(1)
            score = logits.gather(1, cls[:, None]).sum()
            (grad,) = torch.autograd.grad(score, store["a"])
    finally:
        h.remove()
    a = store["a"].detach()
    w = grad.mean((2, 3), keepdim=True)
    return torch.relu((w * a).sum(1)), cls


# =========================================================================== round trips


def test_round_trip_same_logits(imported):
    with torch.no_grad():
        want = imported.model(imported.x)
        got = imported.net(imported.x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_state_dict_keys_are_the_module_paths(imported):
    assert list(imported.net.state_dict()) == list(imported.model.state_dict())


def test_same_gradcam(imported):
    cam_a, cls_a = gradcam(imported.model, imported.layer, imported.x)
    cam_b, cls_b = gradcam(imported.net, imported.layer, imported.x)
    assert torch.equal(cls_a, cls_b)
    assert cam_a.shape == cam_b.shape and cam_a.dim() == 3
    assert float(cam_a.max()) > 0
    torch.testing.assert_close(cam_b, cam_a, atol=1e-5 * max(1.0, float(cam_a.abs().max())), rtol=1e-5)


def test_same_gradcam_inside_a_block():
    r = get("resnet")
    for layer in ("layer3.1", "layer4.0.conv2", "layer2.0.downsample"):
        cam_a, _ = gradcam(r.model, layer, r.x)
        cam_b, _ = gradcam(r.net, layer, r.x)
        torch.testing.assert_close(cam_b, cam_a, atol=1e-5 * max(1.0, float(cam_a.abs().max())), rtol=1e-5)


def _explainer_available() -> bool:
    try:
        import evo.runtime.explain
    except ImportError:
        return False
    return hasattr(evo.Program, "explainer")


@pytest.mark.skipif(not _explainer_available(), reason="prog.explainer is not available yet")
def test_explainer_api_agrees_with_hooks():
    r = get("resnet")
    src = r.src + textwrap.dedent(f"""
        cam Explain {{
            network = {r.name}
            layer = layer4
            method = gradcam
            class = top1
            strategy = autograd
            upsample = none
            normalize = minmax
        }}
        """)
    prog = evo.compile(src)
    net = prog.build(r.name)
    net.load_state_dict(r.model.state_dict(), strict=True)
    res = prog.explainer("Explain", net)(r.x)
    cam, cls = gradcam(r.model, "layer4", r.x)
    lo = cam.flatten(1).min(1).values[:, None, None]
    hi = cam.flatten(1).max(1).values[:, None, None]
    want = (cam - lo) / (hi - lo).clamp_min(1e-12)
    maps = torch.as_tensor(res.maps)
    assert maps.shape == want.shape
    torch.testing.assert_close(maps.float(), want.float(), atol=1e-4, rtol=1e-4)
    assert [int(c) for c in torch.as_tensor(res.classes).flatten()] == cls.tolist()


# =========================================================================== readable output


def test_output_is_canonical_and_checks(imported):
    assert format_source(imported.src) == imported.src
    assert imported.src.startswith("evo 0.1\n")
    assert f"network {imported.name}(x: Tensor[N, 3, 32, 32])" in imported.src


def _blocks(src: str) -> list[str]:
    return re.findall(r"^block (\w+)\(", src, flags=re.MULTILINE)


def test_resnet_one_block_for_eight_basic_blocks():
    src = get("resnet").src
    assert _blocks(src) == ["BasicBlock"]
    assert len(src.splitlines()) < 40, src
    assert src.count("conv2d(") <= 4  # conv1 of the network, conv1/conv2/downsample of the block
    # the structural difference (downsample or not) is a compile-time if on a parameter
    assert re.search(r"^\s+if .*stride.* \{$", src, flags=re.MULTILINE), src
    assert "downsample = seq(x) {" in src
    for i in range(1, 5):
        assert re.search(rf"^\s+layer{i} = seq\(\w+\) \{{ BasicBlock\([^)]*\); BasicBlock\([^)]*\) \}}$", src,
                         flags=re.MULTILINE), src


def test_mobilenet_blocks_with_conditional_stages():
    src = get("mobilenet").src
    assert sorted(_blocks(src)) == ["ConvBNReLU", "InvertedResidual"]
    assert re.search(r"^block ConvBNReLU\(.*\) = seq\(x\) \{$", src, flags=re.MULTILINE), src  # a block defined as a seq
    assert re.search(r"^\s+if .* \{\n\s+ConvBNReLU\(", src, flags=re.MULTILINE), src  # the optional expansion stage
    assert "return x + conv" in src
    assert len(src.splitlines()) < 50, src


def test_squeezenet_one_fire_block():
    src = get("squeezenet").src
    assert _blocks(src) == ["Fire"]
    assert "concat(expand1x1_activation, expand3x3_activation)" in src
    assert src.count("Fire(") == 5  # the definition and four uses


def test_vgg_seqs_and_repeats():
    src = get("vgg").src
    assert _blocks(src) == []
    assert "features = seq(x) {" in src and "classifier = seq(flatten(avgpool)) {" in src
    assert "repeat 3 {" in src


# =========================================================================== more structure


class Blk(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv(x)) + x


class ListNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.ModuleList([Blk(8) for _ in range(3)])
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Unit(nn.Module):
    def __init__(self, c, kind):
        super().__init__()
        if kind == "a":
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.Sigmoid())

    def forward(self, x):
        return self.body(x)


class Res(nn.Module):
    def __init__(self, c, residual):
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        if self.residual:
            return x + y
        return y


class Variants(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.units = nn.Sequential(Unit(8, "a"), Unit(8, "b"), Unit(8, "a"), Res(8, True), Res(8, False))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.units(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _round_trip(model: nn.Module, x: torch.Tensor, **kw) -> str:
    model = randomized(model, 3)
    src = from_torch(model, x, **kw)
    prog = evo.compile(src)
    net = prog.build(kw.get("name") or type(model).__name__)
    net.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), atol=1e-5, rtol=1e-5)
    return src


def _fx_round_trip(model: nn.Module, x: torch.Tensor) -> str:
    """The fx graph of `model` converts with no problem (no fallback to an exported graph), and
    the program round-trips (_round_trip): its source."""
    from evo.importer.trace import Problems, trace_fx

    problems = Problems()
    trace_fx(model, x, problems, ())
    assert not problems, problems.items
    return _round_trip(model, x)


def test_module_list_applied_in_a_loop_is_a_seq():
    src = _round_trip(ListNet(), torch.randn(2, 3, 16, 16))
    assert "blocks = seq(stem) {" in src and "Blk()" in src


def test_bool_attribute_becomes_a_block_parameter_and_unexplained_differences_separate_blocks():
    src = _round_trip(Variants(), torch.randn(2, 3, 16, 16))
    assert _blocks(src) == ["Unit", "Unit2", "Res"]
    assert "block Res(x, residual: bool" in src
    assert re.search(r"if residual \{\n\s+return x \+ conv\n\s+\}", src), src


class Functional(nn.Module):
    """Every mapped function and module form."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8, eps=1e-3)
        self.conv2 = nn.Conv2d(8, 8, 3, padding="same", dilation=2, groups=2, bias=False)
        self.leaky = nn.LeakyReLU(0.2)
        self.acts = nn.Sequential(nn.GELU(), nn.SiLU(), nn.Sigmoid(), nn.Tanh(), nn.Hardswish(),
                                  nn.Hardsigmoid(), nn.ReLU6(), nn.Identity())
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(120, 12)
        self.bn1d = nn.BatchNorm1d(12, eps=1e-3)
        self.drop = nn.Dropout(0.1)
        self.sm = nn.Softmax(dim=1)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)), inplace=True)
        y = self.conv2(x)
        a = torch.relu(y) + F.relu6(y)
        b = F.leaky_relu(y, 0.1) * torch.sigmoid(y)
        c = x.relu() + self.leaky(y)
        a += b
        z = torch.cat([a, b, c], dim=1)
        z = torch.mul(torch.add(z, z), torch.tanh(z))
        z = F.gelu(F.silu(F.hardswish(F.hardsigmoid(z))))
        z = self.acts(z.contiguous())
        z = self.pool(z)
        w = F.max_pool2d(z, 2, ceil_mode=False, dilation=1)
        v = F.avg_pool2d(z, 2, stride=1, padding=1)
        u = self.avg(z)
        p = torch.concat((F.adaptive_avg_pool2d(w, (1, 1)), self.gap(v)), 1)
        q = u.mean((2, 3))
        r = p.view(p.size(0), -1)
        s = torch.cat([self.flat(p), q.reshape(q.shape[0], -1)], 1)
        t = self.fc(F.dropout(torch.cat([r, s], 1), 0.3, training=self.training))
        t = self.drop(self.bn1d(t))
        return torch.softmax(t, dim=1) * self.sm(t) + F.softmax(t, -1) + t.softmax(1)


def test_every_mapped_function_and_module():
    src = _round_trip(Functional(), torch.randn(2, 3, 16, 16))
    for op in ("leaky_relu(", "relu6(", "gelu(", "silu(", "sigmoid(", "tanh(", "hardswish(", "hardsigmoid(",
               "maxpool2d(", "avgpool2d(", "adaptive_avgpool2d(", "flatten(", "dropout(", "identity(",
               "concat(", "softmax(", "batchnorm1d(", "eps=0.001", "count_include_pad=false", "ceil=true",
               "dilation=2", "groups=2", "padding=2"):
        assert op in src, op


class DimOps(nn.Module):
    """The dimension ops in their functional and method forms, and a learnable tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.fc = nn.Linear(8, 16)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.conv(x) * self.scale
        a, b = torch.chunk(x, 2, dim=1)
        parts = x.split([2, 6], 1)
        y = torch.cat([b, a], 1) + torch.cat((parts[1], parts[0]), dim=1)
        t = self.fc(y.permute(0, 2, 3, 1))             # linear on channels-last [N, H, W, C]
        t = torch.permute(t, (0, 3, 1, 2)).reshape(x.shape[0], 4, 4, 8, 8)
        t = torch.transpose(t, 1, 2).contiguous().view(x.shape[0], 16, 8, 8)
        t = t.swapaxes(2, 3)
        t = torch.relu(t.narrow(1, 0, 8))
        return self.head(t.mean((2, 3)))


def test_dimension_ops_and_learnable_tensors():
    """permute / transpose / swapaxes / view / reshape / chunk / split / narrow and an nn.Parameter
    used by its module: the program loads strict and gives the same logits (checked by _round_trip)."""
    src = _round_trip(DimOps(), torch.randn(2, 3, 8, 8))
    for text in ("scale = parameter([8, 1, 1])", "parts = chunk(mul, 2)", "parts_1 = split(mul, [2, 6])",
                 "concat(parts[1], parts[0]) + concat(parts_1[1], parts_1[0])", "[0, 2, 3, 1]), 16)",
                 "permute = permute(fc, [0, 3, 1, 2])",
                 "reshape(permute, [-1, permute.channels // 4, 4, permute.height, permute.width])",
                 "transpose(", "narrow(", "1, 0, 8)"):
        assert text in src, (text, src)


class ShapeFlow(nn.Module):
    """Control flow on a shape: torch.fx cannot trace it, torch.export can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if x.shape[-1] > 8:
            x = F.max_pool2d(x, 2)
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


def test_falls_back_to_torch_export():
    src = _round_trip(ShapeFlow(), torch.randn(2, 3, 16, 16))
    assert "maxpool2d(x, 2)" in src


def test_network_name_and_input_shape():
    src = _round_trip(ShapeFlow(), torch.randn(1, 3, 16, 16), name="Tiny")
    assert "network Tiny(x: Tensor[N, 3, 16, 16])" in src


class PadMatmul(nn.Module):
    """F.pad with zeros on the last dimensions (functional and module forms) and matrix products
    (torch.matmul, torch.bmm, `@`), as an fx graph records them."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.zpad = nn.ZeroPad2d((1, 0, 0, 1))
        self.w = nn.Parameter(torch.randn(9, 5))
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        y = F.pad(self.conv(x), (1, 1, 2, 0))                      # [N, 4, 8, 8]
        y = torch.nn.functional.pad(self.zpad(y), (0, 0, 0, 0, 1, 0), mode="constant", value=0.0)
        t = y.flatten(2)                                            # [N, 5, 81]
        s = torch.softmax(torch.matmul(t, t.transpose(1, 2)), -1)  # [N, 5, 5]
        u = torch.bmm(s, t).view(x.shape[0], 5, 9, 9)               # [N, 5, 9, 9]
        v = (u @ self.w).mean(2)                                    # [N, 5, 5]
        return self.fc(v.mean(1))


def test_pad_and_matmul_import_through_their_op_entries():
    """F.pad / nn.ZeroPad2d (constant mode, zeros, the last dimensions) and torch.matmul / torch.bmm /
    `@` import as evo's pad and matmul: the program loads strict and gives the same logits to 1e-5
    (_round_trip); the fx graph is the one converted (no fallback needed)."""
    model = PadMatmul().eval()
    x = torch.randn(2, 3, 8, 8)
    src = _fx_round_trip(model, x)
    assert src.count("pad(") == 3 and src.count("matmul(") == 3, src
    assert "[1, 1, 2, 0]" in src and "[1, 0, 0, 1]" in src and "[0, 0, 0, 0, 1, 0]" in src, src


class Slicing(nn.Module):
    """Positions and slices as an fx graph records them (operator.getitem with a tuple of ints,
    slices and an Ellipsis)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        y = self.conv(x)                                            # [N, 6, 8, 8]
        a = y[..., 0::2, 1::2]                                      # [N, 6, 4, 4]
        b = a[:, 1:5, :, -3:]                                       # [N, 4, 4, 3]
        c = y[:, 2, 1:7:3]                                          # [N, 2, 8]
        d = y[:, :, :][:, -1]                                       # [N, 8, 8]
        return self.fc(torch.cat([b.mean((2, 3)), c.flatten(1)[:, :6], d.mean(1)[:, ::4]], 1))


def test_slices_and_positions_import_from_the_fx_graph():
    """x[..., 0::2, 1::2], x[:, 1:5, :, -3:], x[:, 2, 1:7:3] and x[:, -1] in an fx graph import as
    subsample / narrow / select (they did only from an exported graph): the fx graph has no problem,
    the program loads strict and gives the same logits to 1e-5."""
    model = Slicing().eval()
    x = torch.randn(2, 3, 8, 8)
    src = _fx_round_trip(model, x)
    assert "subsample(" in src and "narrow(" in src and "select(" in src, src


class Squeezes(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.conv(x).mean((2, 3))                               # [N, 4]
        y = y.unsqueeze(1).unsqueeze(-1)                            # [N, 1, 4, 1]
        y = torch.squeeze(y, 1).squeeze(-1)                         # [N, 4]
        return self.fc(torch.unsqueeze(y, 2).squeeze(2)[:, None][..., None, :].flatten(1))


def test_unsqueeze_and_squeeze_import_as_reshapes():
    """x.unsqueeze(d) / torch.squeeze(x, d) / x[:, None] in an fx graph import as the reshape to the
    traced shape (the reason was 'no evo op for adding dimensions'): no fx problem, strict load, same
    logits."""
    model = Squeezes().eval()
    x = torch.randn(2, 3, 5, 5)
    assert "reshape(" in _fx_round_trip(model, x)


class Scales(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = 2 * (self.conv(x) * 0.5) / 4
        y = torch.div(y, 8.0) + torch.mul(y, 3)
        y = y.mul(1.5).div(3)
        y *= 2.0
        y /= 5
        return self.fc((-(y * y) / 3 + torch.neg(y).neg()).mean((2, 3)))


def test_products_and_quotients_by_a_number_import_as_scale_by():
    """x * c, c * x, x / c, torch.mul / torch.div, Tensor.mul / .div, *= and /= with a number, and -x /
    torch.neg / Tensor.neg (scale_by -1, was 'no evo op for negation') in an fx
    graph import as scale_by (they did only from an exported graph; fx reported 'multiplies by a
    constant' and 'no evo op for division'): no fx problem, strict load, same logits to 1e-5; a product
    of two tensors stays `*`."""
    model = Scales().eval()
    x = torch.randn(2, 3, 5, 5)
    src = _fx_round_trip(model, x)
    assert src.count("scale_by(") == 13 and " * " in src and "-1.0" in src, src


class _Call(nn.Module):
    def __init__(self, f, **mods):
        super().__init__()
        self.f = f
        for k, m in mods.items():
            self.add_module(k, m)

    def forward(self, x):
        return self.f(self, x)


@pytest.mark.parametrize("model, problem", [
    (_Call(lambda m, x: F.pad(x, (1, 1, 1, 1), mode="reflect")),
     "(_Call: F.pad): reflect padding: evo's pad pads with zeros only (mode='constant', value=0)"),
    (_Call(lambda m, x: F.pad(x, (1, 1), value=2.0)),
     "(_Call: F.pad): padding with the value 2.0: evo's pad pads with zeros only"),
    (_Call(lambda m, x: F.pad(x, (0, 0, 0, 0, 0, 0, 1, 0))),
     "(_Call: F.pad): pads all 4 dimensions, the batch dimension included: evo's pad pads the last dimensions only"),
    (_Call(lambda m, x: F.pad(x, (-1, 0))),
     "(_Call: F.pad): negative padding (cropping): evo's pad only adds zeros (narrow crops)"),
    (_Call(lambda m, x: m.p(x), p=nn.ReflectionPad2d(1)),
     "p (nn.ReflectionPad2d): reflection padding: evo's pad pads with zeros only"),
    (_Call(lambda m, x: m.p(x), p=nn.ConstantPad2d(1, 0.5)),
     "p (nn.ConstantPad2d): padding with the value 0.5: evo's pad pads with zeros only"),
    (_Call(lambda m, x: torch.matmul(x, x[0, 0, 0])),
     "(_Call: torch.matmul): a product with a 1-D operand (second): evo's matmul multiplies matrices"),
    (_Call(lambda m, x: x[:, [0, 2]]),
     "(_Call: operator.getitem): indexing with a tensor, a list or a bool: evo takes positions (x[:, i]) and "
     "slices (x[:, a:b], x[..., ::2]) only"),
    (_Call(lambda m, x: x[1:]), "(_Call: operator.getitem): a slice of the batch dimension"),
    (_Call(lambda m, x: x[0, :, 1]),
     "(_Call: operator.getitem): indexes the batch dimension (evo keeps the batch dimension N whole)"),
    (_Call(lambda m, x: x / x), "(_Call: operator.truediv): no evo op for division by a tensor (by a number: scale_by)"),
    (_Call(lambda m, x: x.unsqueeze(0)), "(_Call: Tensor.unsqueeze): reshapes [2, 3, 4, 4] to [1, 2, 3, 4, 4]; evo "
     "keeps the batch dimension first and separate"),
], ids=["reflect", "value", "batch", "negative", "ReflectionPad2d", "ConstantPad2d", "vector", "list", "slice-batch",
        "index-batch", "divide-tensors", "unsqueeze-batch"])
def test_reasons_where_the_op_cannot_express_the_call(model, problem):
    with pytest.raises(ConversionError) as ei:
        from_torch(model, torch.randn(2, 3, 4, 4))
    assert any(problem in p for p in ei.value.problems), ei.value.problems
    assert not any("no evo op for padding" in p or "no evo op for matrix" in p or "no evo op for indexing or slicing"
                   in p for p in ei.value.problems)


# =========================================================================== problems


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Upsample(scale_factor=2))
        # `block` (an evo keyword) is a quoted name now; a backtick is never part of a name
        self.add_module("block`1", nn.Conv2d(8, 8, 1))
        self.norm = nn.GroupNorm(2, 8)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        x = self._modules["block`1"](self.features(x))
        x = x - x.mean()
        return self.norm(x).roll(1, 2)


def test_unsupported_modules_are_all_reported():
    with pytest.raises(ConversionError) as ei:
        from_torch(Unsupported(), torch.randn(1, 3, 16, 16))
    e = ei.value
    assert "not convertible: features.3 (nn.Upsample): no evo op for upsampling" in e.problems
    assert ("not expressible: block`1 (nn.Conv2d): 'block`1' cannot name a module in evo: a quoted name cannot "
            "contain a backtick") in e.problems
    assert "not convertible: norm (nn.GroupNorm): no evo op for group normalisation" in e.problems
    assert any(p.startswith("not convertible: unused (nn.Linear)") for p in e.problems)
    assert any("operator.sub" in p and "subtraction" in p for p in e.problems)
    assert any("Tensor.roll" in p for p in e.problems)
    assert str(e).startswith(f"cannot import Unsupported: {len(e.problems)} problems\n  ")
    assert "Traceback" not in str(e)


def test_top_level_sequential_is_reported():
    with pytest.raises(ConversionError, match="the model itself is an nn.Sequential"):
        from_torch(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), torch.randn(1, 3, 8, 8))


def test_wrong_example_input_is_reported():
    with pytest.raises(ConversionError, match=r"fails on the example input of shape \[1, 1, 8, 8\]"):
        from_torch(ShapeFlow(), torch.randn(1, 1, 8, 8))


# =========================================================================== the command line


CLI_MODEL = '''
import torch
from torch import nn


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.layers = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.layers(x) + nn.functional.max_pool2d(x, 2)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Bad(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2)

    def forward(self, x):
        return self.up(x)


def make():
    return Small()
'''


def _evoc(*args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "evo.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300, check=False)


def test_cli_import_end_to_end(tmp_path):
    (tmp_path / "mymodel.py").write_text(CLI_MODEL)
    out = tmp_path / "out" / "small.evo"
    r = _evoc("import", "mymodel.py:make", "--input-shape", "N,3,16,16", "-o", str(out), "--name", "Small",
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "network Small(x: Tensor[N, 3, 16, 16])" in text
    assert "layers = seq(" in text
    from evo.cli import main

    assert main(["check", "-q", str(out)]) == 0
    assert main(["fmt", "--check", str(out)]) == 0
    # the file loads the model's weights
    sys.path.insert(0, str(tmp_path))
    try:
        import mymodel
    finally:
        sys.path.remove(str(tmp_path))
    m = randomized(mymodel.Small(), 5)
    net = evo.compile_file(out).build("Small")
    net.load_state_dict(m.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), m(x), atol=1e-5, rtol=1e-5)


def test_cli_import_reports_problems_and_usage_errors(tmp_path, capsys):
    (tmp_path / "mymodel.py").write_text(CLI_MODEL)
    from evo.cli import main

    assert main(["import", str(tmp_path / "mymodel.py") + ":Bad", "--input-shape", "1,3,8,8"]) == 1
    r = capsys.readouterr()
    assert "not convertible: up (nn.Upsample): no evo op for upsampling" in r.err
    assert "Traceback" not in r.err and r.out == ""

    assert main(["import", str(tmp_path / "missing.py") + ":Net"]) == 2
    assert main(["import", str(tmp_path / "mymodel.py") + ":Nope"]) == 2
    assert main(["import", str(tmp_path / "mymodel.py") + ":Small", "--input-shape", "1,x"]) == 2
    capsys.readouterr()


def test_cli_import_errors_take_evocs_one_path(tmp_path, capsys):
    """Every error of `evoc import` is printed like every other subcommand's, `evoc: error:`
    (usage problems exit 2 before the model's code runs; a model that fails to import,
    build or convert exits 1), never its own format."""
    (tmp_path / "mymodel.py").write_text(CLI_MODEL + "\nMARK = []\n\ndef boom():\n    raise RuntimeError('no')\n")
    from evo.cli import main

    cases = [  # argv tail, exit status, text in the message
        (["mymodel.py"], 2, "expected PYTHON_PATH:ATTR"),
        (["missing.py:Net"], 2, "no such file"),
        (["mymodel.py:Nope"], 2, "has no attribute 'Nope'"),
        (["mymodel.py:MARK"], 2, "not an nn.Module"),
        (["mymodel.py:Small", "--input-shape", "0,3"], 2, "--input-shape: '0'"),
        (["mymodel.py:Small", "--name", "1x"], 2, "--name '1x'"),
        (["mymodel.py:Small", "--name", "block"], 2, "--name 'block'"),
        (["mymodel.py:Small", "-o", str(tmp_path)], 2, "is a directory"),
        (["mymodel.py:Small", "-o", str(tmp_path / "mymodel.py")], 2, "refusing to overwrite"),
        (["mymodel.py:boom"], 1, "calling boom() failed: RuntimeError: no"),
        (["mymodel.py:Bad", "--input-shape", "1,3,8,8"], 1, "not convertible"),
        (["mymodel.py:Small", "--input-shape", "N,5,16,16"], 1, "fails on the example input"),
    ]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for tail, status, text in cases:
            assert main(["import", *tail]) == status, tail
            err = capsys.readouterr().err
            first = err.splitlines()[0]
            assert first.startswith("evoc: error: ") and text in err, (tail, err)
            assert "Traceback" not in err and "evoc import:" not in err
            if "N,5,16,16" in tail:
                assert "hint: give the model's input shape with --input-shape (now N,5,16,16)" in err
    finally:
        os.chdir(cwd)
    # usage errors come before the model's code runs: a bad shape with a failing factory is exit 2
    assert main(["import", str(tmp_path / "mymodel.py") + ":boom", "--input-shape", "x"]) == 2
    capsys.readouterr()
