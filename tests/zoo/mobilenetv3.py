"""MobileNetV3-Large and -Small (torchvision.models.mobilenetv3): `features` (stem `0`,
InvertedResidual `1`..`n` whose layers sit in `block`, last conv), `avgpool`,
`classifier` (`0` Linear, `1` Hardswish, `2` Dropout, `3` Linear)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from tests.zoo.common import Conv2dNormActivation, SqueezeExcitation, make_divisible


class InvertedResidualConfig:
    def __init__(self, input_channels: int, kernel: int, expanded_channels: int, out_channels: int, use_se: bool,
                 activation: str, stride: int, dilation: int = 1, width_mult: float = 1.0) -> None:
        self.input_channels = make_divisible(input_channels * width_mult, 8)
        self.kernel = kernel
        self.expanded_channels = make_divisible(expanded_channels * width_mult, 8)
        self.out_channels = make_divisible(out_channels * width_mult, 8)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation


class InvertedResidual(nn.Module):
    def __init__(self, cnf: InvertedResidualConfig, norm_layer) -> None:
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        act = nn.Hardswish if cnf.use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, cnf.expanded_channels, kernel_size=1,
                                               norm_layer=norm_layer, activation_layer=act))
        stride = 1 if cnf.dilation > 1 else cnf.stride
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.expanded_channels, kernel_size=cnf.kernel,
                                           stride=stride, dilation=cnf.dilation, groups=cnf.expanded_channels,
                                           norm_layer=norm_layer, activation_layer=act))
        if cnf.use_se:
            squeeze = make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(SqueezeExcitation(cnf.expanded_channels, squeeze, scale_activation=nn.Hardsigmoid))
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.out_channels, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = result + x
        return result


class MobileNetV3(nn.Module):
    def __init__(self, setting: list[InvertedResidualConfig], last_channel: int, num_classes: int = 1000,
                 dropout: float = 0.2) -> None:
        super().__init__()
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        layers: list[nn.Module] = [Conv2dNormActivation(3, setting[0].input_channels, kernel_size=3, stride=2,
                                                        norm_layer=norm_layer, activation_layer=nn.Hardswish)]
        for cnf in setting:
            layers.append(InvertedResidual(cnf, norm_layer))
        last_in = setting[-1].out_channels
        last_out = 6 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, kernel_size=1, norm_layer=norm_layer,
                                           activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last_out, last_channel), nn.Hardswish(inplace=True),
                                        nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def _setting(arch: str, width_mult: float):
    c = partial(InvertedResidualConfig, width_mult=width_mult)
    if arch == "large":
        return [
            c(16, 3, 16, 16, False, "RE", 1), c(16, 3, 64, 24, False, "RE", 2), c(24, 3, 72, 24, False, "RE", 1),
            c(24, 5, 72, 40, True, "RE", 2), c(40, 5, 120, 40, True, "RE", 1), c(40, 5, 120, 40, True, "RE", 1),
            c(40, 3, 240, 80, False, "HS", 2), c(80, 3, 200, 80, False, "HS", 1),
            c(80, 3, 184, 80, False, "HS", 1), c(80, 3, 184, 80, False, "HS", 1),
            c(80, 3, 480, 112, True, "HS", 1), c(112, 3, 672, 112, True, "HS", 1),
            c(112, 5, 672, 160, True, "HS", 2), c(160, 5, 960, 160, True, "HS", 1),
            c(160, 5, 960, 160, True, "HS", 1),
        ], make_divisible(1280 * width_mult, 8)
    return [
        c(16, 3, 16, 16, True, "RE", 2), c(16, 3, 72, 24, False, "RE", 2), c(24, 3, 88, 24, False, "RE", 1),
        c(24, 5, 96, 40, True, "HS", 2), c(40, 5, 240, 40, True, "HS", 1), c(40, 5, 240, 40, True, "HS", 1),
        c(40, 5, 120, 48, True, "HS", 1), c(48, 5, 144, 48, True, "HS", 1), c(48, 5, 288, 96, True, "HS", 2),
        c(96, 5, 576, 96, True, "HS", 1), c(96, 5, 576, 96, True, "HS", 1),
    ], make_divisible(1024 * width_mult, 8)


def mobilenet_v3_large(num_classes: int = 1000, width_mult: float = 1.0, blocks: int | None = None) -> MobileNetV3:
    """MobileNetV3-Large; `width_mult` and `blocks` (the first k inverted residuals) shrink it."""
    setting, last = _setting("large", width_mult)
    return MobileNetV3(setting[:blocks], last, num_classes)


def mobilenet_v3_small(num_classes: int = 1000, width_mult: float = 1.0, blocks: int | None = None) -> MobileNetV3:
    setting, last = _setting("small", width_mult)
    return MobileNetV3(setting[:blocks], last, num_classes)
