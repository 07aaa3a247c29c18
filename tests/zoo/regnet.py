"""RegNetY-400MF and RegNetX-400MF (torchvision.models.regnet): `stem` (conv/bn/relu
`0` `1` `2`), `trunk_output` (stages `block1`..`block4`, each holding
ResBottleneckBlocks `block{stage}-{i}` with `proj`, `f` (`a`, `b`, [`se`], `c`) and
`activation`), `avgpool`, `fc`."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from tests.zoo.common import Conv2dNormActivation, SqueezeExcitation, make_divisible


class BottleneckTransform(nn.Sequential):
    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int, bottleneck_multiplier: float,
                 se_ratio: float | None) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        w_b = int(round(width_out * bottleneck_multiplier))
        g = w_b // group_width
        layers["a"] = Conv2dNormActivation(width_in, w_b, kernel_size=1, stride=1)
        layers["b"] = Conv2dNormActivation(w_b, w_b, kernel_size=3, stride=stride, groups=g)
        if se_ratio:
            layers["se"] = SqueezeExcitation(w_b, int(round(se_ratio * width_in)), activation=nn.ReLU)
        layers["c"] = Conv2dNormActivation(w_b, width_out, kernel_size=1, stride=1, activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    def __init__(self, width_in: int, width_out: int, stride: int, group_width: int = 1,
                 bottleneck_multiplier: float = 1.0, se_ratio: float | None = None) -> None:
        super().__init__()
        self.proj = None
        if width_in != width_out or stride != 1:
            self.proj = Conv2dNormActivation(width_in, width_out, kernel_size=1, stride=stride, activation_layer=None)
        self.f = BottleneckTransform(width_in, width_out, stride, group_width, bottleneck_multiplier, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            x = self.proj(x) + self.f(x)
        else:
            x = x + self.f(x)
        return self.activation(x)


class AnyStage(nn.Sequential):
    def __init__(self, width_in: int, width_out: int, stride: int, depth: int, group_width: int,
                 bottleneck_multiplier: float, se_ratio: float | None, stage_index: int) -> None:
        super().__init__()
        for i in range(depth):
            self.add_module(f"block{stage_index}-{i}",
                            ResBottleneckBlock(width_in if i == 0 else width_out, width_out, stride if i == 0 else 1,
                                               group_width, bottleneck_multiplier, se_ratio))


def block_params(depth: int, w_0: int, w_a: float, w_m: float, group_width: int,
                 bottleneck_multiplier: float = 1.0) -> tuple[list[int], list[int], list[int]]:
    """(stage widths, stage depths, group widths) from RegNet's quantized linear rule
    (Radosavovic et al., "Designing Network Design Spaces", 2020)."""
    widths_cont = [i * w_a + w_0 for i in range(depth)]
    caps = [round(math.log(w / w_0) / math.log(w_m)) for w in widths_cont]
    block_widths = [int(round(w_0 * w_m ** c / 8)) * 8 for c in caps]
    stage_widths, stage_depths = [], []
    for w in block_widths:
        if stage_widths and stage_widths[-1] == w:
            stage_depths[-1] += 1
        else:
            stage_widths.append(w)
            stage_depths.append(1)
    widths = [int(w * bottleneck_multiplier) for w in stage_widths]
    groups = [min(group_width, w) for w in widths]
    ws_bot = [make_divisible(w, g) for w, g in zip(widths, groups)]
    stage_widths = [int(w / bottleneck_multiplier) for w in ws_bot]
    return stage_widths, stage_depths, groups


class RegNet(nn.Module):
    def __init__(self, widths: list[int], depths: list[int], group_widths: list[int], se_ratio: float | None,
                 num_classes: int = 1000, stem_width: int = 32) -> None:
        super().__init__()
        self.stem = Conv2dNormActivation(3, stem_width, kernel_size=3, stride=2)
        current = stem_width
        blocks = []
        for i, (w, d, g) in enumerate(zip(widths, depths, group_widths)):
            blocks.append((f"block{i + 1}", AnyStage(current, w, 2, d, g, 1.0, se_ratio, stage_index=i + 1)))
            current = w
        self.trunk_output = nn.Sequential(OrderedDict(blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_features=current, out_features=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.trunk_output(x)
        x = self.avgpool(x)
        x = x.flatten(start_dim=1)
        return self.fc(x)


def regnet_y_400mf(num_classes: int = 1000, tiny: bool = False) -> RegNet:
    """RegNetY-400MF (with squeeze-excitation); `tiny`: widths [16, 32], depths [1, 2], group width 8."""
    if tiny:
        return RegNet([16, 32], [1, 2], [8, 8], 0.25, num_classes, stem_width=8)
    w, d, g = block_params(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8)
    return RegNet(w, d, g, 0.25, num_classes)


def regnet_x_400mf(num_classes: int = 1000, tiny: bool = False) -> RegNet:
    """RegNetX-400MF (no squeeze-excitation); `tiny`: widths [16, 32], depths [1, 2], group width 8."""
    if tiny:
        return RegNet([16, 32], [1, 2], [8, 8], None, num_classes, stem_width=8)
    w, d, g = block_params(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16)
    return RegNet(w, d, g, None, num_classes)
