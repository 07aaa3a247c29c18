"""Hand-written PyTorch reference models for tests (no torchvision).

``resnet18``, ``resnet50``, ``vgg16`` and ``mobilenet_v2`` reproduce
torchvision's module trees exactly, so their ``state_dict`` keys (and parameter
counts: 11,689,512 / 25,557,032 / 138,357,544 / 3,504,872 for 1000 classes)
match torchvision's, and they are initialised the way torchvision initialises
them.  One deliberate difference: every ReLU/ReLU6 is ``inplace=False``
(numerically identical, but safe for forward hooks on any layer).  As in
torchvision, a ResNet block uses one ``relu`` module twice, so hook a block
(``layer4``) or a conv/bn, not ``layer4.1.relu``.

``DepthwiseSeparableNet`` and ``FireNet`` are small CPU-fast nets (32x32 or
64x64 inputs) exercising grouped convolutions and channel concatenation.

``count_macs`` counts multiply-accumulates of ``nn.Conv2d`` and ``nn.Linear``
with forward hooks; build the model under ``torch.device("meta")`` to count
big models without allocating or computing anything.  At 224x224, batch 1:
resnet18 1.814G, resnet50 4.089G, vgg16 15.470G, mobilenet_v2 0.301G.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "ConvBNReLU6",
    "DepthwiseSeparableNet",
    "Fire",
    "FireNet",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "count_macs",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "vgg16",
]


def _on_meta(module: nn.Module) -> bool:
    """True when built under ``torch.device("meta")``: weight initialisation is then skipped (it is slow there)."""
    p = next(module.parameters(), None)
    return p is not None and p.is_meta


# --------------------------------------------------------------------------- ResNet


def _conv3x3(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, 3, stride=stride, padding=1, bias=False)


def _conv1x1(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock``: conv1, bn1, relu, conv2, bn2, [downsample.0/.1]."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision ``Bottleneck`` (v1.5, stride on conv2): conv1/bn1, conv2/bn2, conv3/bn3, relu."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision ``ResNet``: conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules() if not _on_meta(self) else ():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18 with torchvision's module names."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 (v1.5) with torchvision's module names."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


# --------------------------------------------------------------------------- VGG

_VGG16_CFG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


class VGG(nn.Module):
    """torchvision ``VGG``: features, avgpool (AdaptiveAvgPool2d(7)), classifier.0/.3/.6 linears."""

    def __init__(
        self, cfg: Sequence[int | str] = _VGG16_CFG, num_classes: int = 1000, dropout: float = 0.5
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules() if not _on_meta(self) else ():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg16(num_classes: int = 1000) -> VGG:
    """VGG-16 (configuration D, no batch norm) with torchvision's module names."""
    return VGG(_VGG16_CFG, num_classes)


# --------------------------------------------------------------------------- MobileNetV2


class ConvBNReLU6(nn.Sequential):
    """torchvision ``Conv2dNormActivation`` (old ``ConvBNReLU``): ``0`` conv, ``1`` bn, ``2`` ReLU6."""

    def __init__(self, inp: int, out: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(inp, out, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """torchvision ``InvertedResidual``: ``conv`` = [expand ConvBNReLU6], dw ConvBNReLU6, project conv, bn."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision ``MobileNetV2`` (width 1.0): features.0..18, classifier = (Dropout(0.2), Linear)."""

    SETTING: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        inp, last = 32, 1280
        features: list[nn.Module] = [ConvBNReLU6(3, inp, stride=2)]
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        features.append(ConvBNReLU6(inp, last, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        for m in self.modules() if not _on_meta(self) else ():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    """MobileNetV2 with torchvision's module names."""
    return MobileNetV2(num_classes)


# --------------------------------------------------------------------------- small nets


def _dw_pw(inp: int, out: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 (groups=inp) + BN + ReLU, then pointwise 1x1 + BN + ReLU (indices 0..5)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride=stride, padding=1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.ReLU(),
        nn.Conv2d(inp, out, 1, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU(),
    )


class DepthwiseSeparableNet(nn.Module):
    """Small MobileNet-v1-style net.

    ``stem`` = (conv 3x3 3->16, BN, ReLU); ``blocks.0..3`` = depthwise-separable
    units 16->32 (s1), 32->64 (s2), 64->64 (s1), 64->128 (s2), each
    ``(dw conv, bn, relu, pw conv, bn, relu)``; ``pool`` = AdaptiveAvgPool2d(1);
    ``fc`` = Linear(128, num_classes).  CAM layer: ``blocks`` (or ``blocks.3``),
    at 1/4 of the input resolution.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(
            _dw_pw(16, 32, 1), _dw_pw(32, 64, 2), _dw_pw(64, 64, 1), _dw_pw(64, 128, 2)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class Fire(nn.Module):
    """torchvision SqueezeNet ``Fire``: squeeze(1x1)+ReLU, cat(expand1x1+ReLU, expand3x3+ReLU)."""

    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(s)), self.expand3x3_activation(self.expand3x3(s))], 1
        )


class FireNet(nn.Module):
    """Small SqueezeNet-style net.

    ``features`` = (0 conv 3x3 3->32, 1 ReLU, 2 MaxPool 2, 3 Fire(32,8,16,16),
    4 Fire(32,8,16,16), 5 MaxPool 2, 6 Fire(32,16,32,32)) -> 64 channels at 1/4
    resolution; ``classifier`` = (0 Dropout(0.5), 1 conv 1x1 64->num_classes,
    2 ReLU, 3 AdaptiveAvgPool2d(1)), then flatten -- SqueezeNet's non-affine
    head, so CAM gradients at ``features`` depend on the input.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            Fire(32, 8, 16, 16),
            Fire(32, 8, 16, 16),
            nn.MaxPool2d(2),
            Fire(32, 16, 32, 32),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(64, num_classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


# --------------------------------------------------------------------------- MACs


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of all ``nn.Conv2d`` and ``nn.Linear`` calls in one forward pass.

    Conv: ``out.numel() * (C_in / groups) * kh * kw``; linear: ``out.numel() * in_features``
    (bias adds are not counted).  The input is created on the model's device, so
    a model built under ``torch.device("meta")`` is counted for free.
    """
    total = 0

    def conv_hook(m: nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv2d)
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Linear)
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        hook: Callable[..., None] | None = (
            conv_hook if isinstance(m, nn.Conv2d) else linear_hook if isinstance(m, nn.Linear) else None
        )
        if hook is not None:
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()  # no batch-norm statistics updates
    try:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        dtype = p.dtype if p is not None else torch.float32
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)
