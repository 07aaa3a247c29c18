"""ConvNeXt-Tiny (torchvision.models.convnext): `features` (stem `0` = conv + LayerNorm2d,
stages of CNBlocks with `block` (dwconv `0`, Permute `1`, LayerNorm `2`, Linear `3`, GELU
`4`, Linear `5`, Permute `6`), the learnable `layer_scale` [C, 1, 1] and
`stochastic_depth`, downsampling LayerNorm2d + conv), `avgpool`, `classifier` (LayerNorm2d
`0`, Flatten `1`, Linear `2`)."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from tests.zoo.common import Conv2dNormActivation, Permute, StochasticDepth


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an [N, C, H, W] map (permute, normalize, permute back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.layer_scale * self.block(x)
        result = self.stochastic_depth(result)
        return result + x


class ConvNeXt(nn.Module):
    def __init__(self, block_setting: list[tuple[int, int | None, int]], stochastic_depth_prob: float = 0.0,
                 layer_scale: float = 1e-6, num_classes: int = 1000) -> None:
        super().__init__()
        norm_layer = partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = [Conv2dNormActivation(3, block_setting[0][0], kernel_size=4, stride=4, padding=0,
                                                        norm_layer=norm_layer, activation_layer=None, bias=True)]
        total = sum(n for _, _, n in block_setting)
        block_id = 0
        for cin, cout, n in block_setting:
            stage = []
            for _ in range(n):
                sd = stochastic_depth_prob * block_id / (total - 1.0) if total > 1 else 0.0
                stage.append(CNBlock(cin, layer_scale, sd))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if cout is not None:
                layers.append(nn.Sequential(norm_layer(cin), nn.Conv2d(cin, cout, kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = block_setting[-1][1] if block_setting[-1][1] is not None else block_setting[-1][0]
        self.classifier = nn.Sequential(norm_layer(last), nn.Flatten(1), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(x)


def convnext_tiny(num_classes: int = 1000, tiny: bool = False, layer_scale: float = 1e-6) -> ConvNeXt:
    """ConvNeXt-Tiny; `tiny`: widths 8, 16, 32, 64 and one block per stage."""
    if tiny:
        setting = [(8, 16, 1), (16, 32, 1), (32, 64, 1), (64, None, 1)]
    else:
        setting = [(96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3)]
    return ConvNeXt(setting, stochastic_depth_prob=0.1, layer_scale=layer_scale, num_classes=num_classes)
