"""EfficientNet-B0 and EfficientNetV2-S (torchvision.models.efficientnet): `features`
(stem `0`, stages `1`..`n` of MBConv/FusedMBConv whose layers sit in `block`, last conv),
`avgpool`, `classifier` (`0` Dropout, `1` Linear)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from tests.zoo.common import Conv2dNormActivation, SqueezeExcitation, StochasticDepth, make_divisible


@dataclass
class StageConfig:
    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int
    fused: bool = False

    def adjust_channels(self, channels: float) -> int:
        return make_divisible(channels, 8)


def b_stage(expand, kernel, stride, cin, cout, layers, width_mult=1.0, depth_mult=1.0) -> StageConfig:
    return StageConfig(expand, kernel, stride, make_divisible(cin * width_mult, 8),
                       make_divisible(cout * width_mult, 8), int(math.ceil(layers * depth_mult)))


class MBConv(nn.Module):
    def __init__(self, cnf: StageConfig, stochastic_depth_prob: float, norm_layer) -> None:
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        layers: list[nn.Module] = []
        expanded = cnf.adjust_channels(cnf.input_channels * cnf.expand_ratio)
        if expanded != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, expanded, kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=nn.SiLU))
        layers.append(Conv2dNormActivation(expanded, expanded, kernel_size=cnf.kernel, stride=cnf.stride,
                                           groups=expanded, norm_layer=norm_layer, activation_layer=nn.SiLU))
        layers.append(SqueezeExcitation(expanded, max(1, cnf.input_channels // 4), activation=nn.SiLU))
        layers.append(Conv2dNormActivation(expanded, cnf.out_channels, kernel_size=1, norm_layer=norm_layer,
                                           activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result = result + x
        return result


class FusedMBConv(nn.Module):
    def __init__(self, cnf: StageConfig, stochastic_depth_prob: float, norm_layer) -> None:
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        layers: list[nn.Module] = []
        expanded = cnf.adjust_channels(cnf.input_channels * cnf.expand_ratio)
        if expanded != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, expanded, kernel_size=cnf.kernel,
                                               stride=cnf.stride, norm_layer=norm_layer, activation_layer=nn.SiLU))
            layers.append(Conv2dNormActivation(expanded, cnf.out_channels, kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=None))
        else:
            layers.append(Conv2dNormActivation(cnf.input_channels, cnf.out_channels, kernel_size=cnf.kernel,
                                               stride=cnf.stride, norm_layer=norm_layer, activation_layer=nn.SiLU))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result = result + x
        return result


class EfficientNet(nn.Module):
    def __init__(self, setting: list[StageConfig], dropout: float, stochastic_depth_prob: float = 0.2,
                 num_classes: int = 1000, norm_layer=None, last_channel: int | None = None) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        layers: list[nn.Module] = [Conv2dNormActivation(3, setting[0].input_channels, kernel_size=3, stride=2,
                                                        norm_layer=norm_layer, activation_layer=nn.SiLU)]
        total = sum(c.num_layers for c in setting)
        block_id = 0
        for cnf in setting:
            stage: list[nn.Module] = []
            for _ in range(cnf.num_layers):
                bc = copy.copy(cnf)
                if stage:
                    bc.input_channels = bc.out_channels
                    bc.stride = 1
                sd = stochastic_depth_prob * float(block_id) / total
                stage.append((FusedMBConv if cnf.fused else MBConv)(bc, sd, norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = setting[-1].out_channels
        last_out = last_channel if last_channel is not None else 4 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, kernel_size=1, norm_layer=norm_layer,
                                           activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last_out, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def efficientnet_b0(num_classes: int = 1000, width_mult: float = 1.0, depth_mult: float = 1.0,
                    stages: int = 7) -> EfficientNet:
    """EfficientNet-B0; `width_mult`, `depth_mult` and `stages` (the first k of 7) shrink it."""
    st = partial(b_stage, width_mult=width_mult, depth_mult=depth_mult)
    setting = [st(1, 3, 1, 32, 16, 1), st(6, 3, 2, 16, 24, 2), st(6, 5, 2, 24, 40, 2), st(6, 3, 2, 40, 80, 3),
               st(6, 5, 1, 80, 112, 3), st(6, 5, 2, 112, 192, 4), st(6, 3, 1, 192, 320, 1)][:stages]
    return EfficientNet(setting, dropout=0.2, num_classes=num_classes)


def efficientnet_v2_s(num_classes: int = 1000, width_div: int = 1, depth: int | None = None,
                      stages: int = 6) -> EfficientNet:
    """EfficientNetV2-S; `width_div` divides every width, `depth` caps the layers per stage,
    `stages` keeps the first k of 6."""
    def d(n: int) -> int:
        return n if depth is None else min(n, depth)

    def w(c: int) -> int:
        return c // width_div

    setting = [
        StageConfig(1, 3, 1, w(24), w(24), d(2), fused=True),
        StageConfig(4, 3, 2, w(24), w(48), d(4), fused=True),
        StageConfig(4, 3, 2, w(48), w(64), d(4), fused=True),
        StageConfig(4, 3, 2, w(64), w(128), d(6)),
        StageConfig(6, 3, 1, w(128), w(160), d(9)),
        StageConfig(6, 3, 2, w(160), w(256), d(15)),
    ][:stages]
    return EfficientNet(setting, dropout=0.2, num_classes=num_classes,
                        norm_layer=partial(nn.BatchNorm2d, eps=1e-3), last_channel=1280 // width_div)
