"""Swin-T and Swin-V2-T (torchvision.models.swin_transformer): `features` (`0` = patch
embedding conv + Permute + LayerNorm, stages of SwinTransformerBlock(V2) with `norm1`,
`attn` (`qkv`, `proj`, `relative_position_bias_table` and the buffer
`relative_position_index`; V2: `logit_scale`, `cpb_mlp`, buffer `relative_coords_table`),
`stochastic_depth`, `norm2`, `mlp` (`0`, `3`), and PatchMerging(V2) (`reduction`,
`norm`) between stages), `norm`, `permute`, `avgpool`, `flatten`, `head`.  Maps are
channels-last [N, H, W, C] inside."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from tests.zoo.common import MLP, Permute, StochasticDepth


def _patch_merging_pad(x: torch.Tensor) -> torch.Tensor:
    h, w, _ = x.shape[-3:]
    return F.pad(x, (0, 0, 0, w % 2, 0, h % 2))


def _merge(x: torch.Tensor) -> torch.Tensor:
    x = _patch_merging_pad(x)
    return torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]],
                     -1)


class PatchMerging(nn.Module):
    def __init__(self, dim: int, norm_layer=nn.LayerNorm) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(_merge(x)))


class PatchMergingV2(nn.Module):
    def __init__(self, dim: int, norm_layer=nn.LayerNorm) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(_merge(x)))


def _relative_position_index(window_size: list[int]) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window_size[0]), torch.arange(window_size[1]), indexing="ij"))
    flat = torch.flatten(coords, 1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window_size[0] - 1
    rel[:, :, 1] += window_size[1] - 1
    rel[:, :, 0] *= 2 * window_size[1] - 1
    return rel.sum(-1).flatten()


def shifted_window_attention(x, qkv_weight, proj_weight, relative_position_bias, window_size, num_heads,
                             shift_size, qkv_bias=None, proj_bias=None, logit_scale=None):
    b, h, w, c = x.shape
    pad_r = (window_size[1] - w % window_size[1]) % window_size[1]
    pad_b = (window_size[0] - h % window_size[0]) % window_size[0]
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    _, ph, pw, _ = x.shape
    shift_size = list(shift_size)
    if window_size[0] >= ph:
        shift_size[0] = 0
    if window_size[1] >= pw:
        shift_size[1] = 0
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))
    nw = (ph // window_size[0]) * (pw // window_size[1])
    x = x.view(b, ph // window_size[0], window_size[0], pw // window_size[1], window_size[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * nw, window_size[0] * window_size[1], c)
    if logit_scale is not None and qkv_bias is not None:
        qkv_bias = qkv_bias.clone()
        n = qkv_bias.numel() // 3
        qkv_bias[n:2 * n].zero_()
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), x.size(1), 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if logit_scale is not None:
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * torch.clamp(logit_scale, max=math.log(100.0)).exp()
    else:
        q = q * (c // num_heads) ** -0.5
        attn = q.matmul(k.transpose(-2, -1))
    attn = attn + relative_position_bias
    if sum(shift_size) > 0:
        mask = x.new_zeros((ph, pw))
        hs = ((0, -window_size[0]), (-window_size[0], -shift_size[0]), (-shift_size[0], None))
        ws = ((0, -window_size[1]), (-window_size[1], -shift_size[1]), (-shift_size[1], None))
        count = 0
        for hh in hs:
            for ww in ws:
                mask[hh[0]:hh[1], ww[0]:ww[1]] = count
                count += 1
        mask = mask.view(ph // window_size[0], window_size[0], pw // window_size[1], window_size[1])
        mask = mask.permute(0, 2, 1, 3).reshape(nw, window_size[0] * window_size[1])
        mask = mask.unsqueeze(1) - mask.unsqueeze(2)
        mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
        attn = attn.view(x.size(0) // nw, nw, num_heads, x.size(1), x.size(1))
        attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, num_heads, x.size(1), x.size(1))
    attn = F.softmax(attn, dim=-1)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
    x = F.linear(x, proj_weight, proj_bias)
    x = x.view(b, ph // window_size[0], pw // window_size[1], window_size[0], window_size[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, ph, pw, c)
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        self.define_relative_coords()

    def define_relative_coords(self) -> None:
        n = (2 * self.window_size[0] - 1) * (2 * self.window_size[1] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n, self.num_heads))
        self.register_buffer("relative_position_index", _relative_position_index(self.window_size))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _bias(self, table: torch.Tensor) -> torch.Tensor:
        n = self.window_size[0] * self.window_size[1]
        bias = table[self.relative_position_index].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous().unsqueeze(0)

    def get_relative_position_bias(self) -> torch.Tensor:
        return self._bias(self.relative_position_bias_table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shifted_window_attention(x, self.qkv.weight, self.proj.weight, self.get_relative_position_bias(),
                                        self.window_size, self.num_heads, self.shift_size, self.qkv.bias,
                                        self.proj.bias)


class ShiftedWindowAttentionV2(ShiftedWindowAttention):
    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int) -> None:
        super().__init__(dim, window_size, shift_size, num_heads)
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones((num_heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True),
                                     nn.Linear(512, num_heads, bias=False))
        n = self.qkv.bias.numel() // 3
        with torch.no_grad():
            self.qkv.bias[n:2 * n].zero_()

    def define_relative_coords(self) -> None:
        rh = torch.arange(-(self.window_size[0] - 1), self.window_size[0], dtype=torch.float32)
        rw = torch.arange(-(self.window_size[1] - 1), self.window_size[1], dtype=torch.float32)
        table = torch.stack(torch.meshgrid([rh, rw], indexing="ij")).permute(1, 2, 0).contiguous().unsqueeze(0)
        table[:, :, :, 0] /= self.window_size[0] - 1
        table[:, :, :, 1] /= self.window_size[1] - 1
        table *= 8
        table = torch.sign(table) * torch.log2(torch.abs(table) + 1.0) / 3.0
        self.register_buffer("relative_coords_table", table)
        self.register_buffer("relative_position_index", _relative_position_index(self.window_size))

    def get_relative_position_bias(self) -> torch.Tensor:
        bias = self._bias(self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads))
        return 16 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shifted_window_attention(x, self.qkv.weight, self.proj.weight, self.get_relative_position_bias(),
                                        self.window_size, self.num_heads, self.shift_size, self.qkv.bias,
                                        self.proj.bias, logit_scale=self.logit_scale)


class SwinTransformerBlock(nn.Module):
    attn_layer = ShiftedWindowAttention

    def __init__(self, dim: int, num_heads: int, window_size: list[int], shift_size: list[int],
                 mlp_ratio: float = 4.0, stochastic_depth_prob: float = 0.0, norm_layer=nn.LayerNorm) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = self.attn_layer(dim, window_size, shift_size, num_heads)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.norm2 = norm_layer(dim)
        self.mlp = MLP(dim, [int(dim * mlp_ratio), dim], activation_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class SwinTransformerBlockV2(SwinTransformerBlock):
    attn_layer = ShiftedWindowAttentionV2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # V2: post-normalization (res-post-norm)
        x = x + self.stochastic_depth(self.norm1(self.attn(x)))
        return x + self.stochastic_depth(self.norm2(self.mlp(x)))


class SwinTransformer(nn.Module):
    def __init__(self, patch_size: list[int], embed_dim: int, depths: list[int], num_heads: list[int],
                 window_size: list[int], stochastic_depth_prob: float = 0.1, num_classes: int = 1000,
                 block=SwinTransformerBlock, downsample_layer=PatchMerging) -> None:
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-5)
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(3, embed_dim, kernel_size=(patch_size[0], patch_size[1]), stride=(patch_size[0], patch_size[1])),
            Permute([0, 2, 3, 1]),
            norm_layer(embed_dim),
        )]
        total = sum(depths)
        block_id = 0
        for i_stage, depth in enumerate(depths):
            dim = embed_dim * 2 ** i_stage
            stage = []
            for i_layer in range(depth):
                sd = stochastic_depth_prob * float(block_id) / (total - 1) if total > 1 else 0.0
                stage.append(block(dim, num_heads[i_stage], window_size=window_size,
                                   shift_size=[0 if i_layer % 2 == 0 else w // 2 for w in window_size],
                                   stochastic_depth_prob=sd, norm_layer=norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i_stage < len(depths) - 1:
                layers.append(downsample_layer(dim, norm_layer))
        self.features = nn.Sequential(*layers)
        num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = norm_layer(num_features)
        self.permute = Permute([0, 3, 1, 2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.permute(self.norm(x))
        return self.head(self.flatten(self.avgpool(x)))


def swin_t(num_classes: int = 1000, tiny: bool = False) -> SwinTransformer:
    """Swin-T; `tiny`: width 8, depths [2, 2], heads [1, 2], 2x2 windows (for 32x32 inputs)."""
    if tiny:
        return SwinTransformer([4, 4], 8, [2, 2], [1, 2], [2, 2], 0.2, num_classes)
    return SwinTransformer([4, 4], 96, [2, 2, 6, 2], [3, 6, 12, 24], [7, 7], 0.2, num_classes)


def swin_v2_t(num_classes: int = 1000, tiny: bool = False) -> SwinTransformer:
    """Swin-V2-T (V2 blocks and patch merging); `tiny` as for swin_t."""
    kw = dict(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2)
    if tiny:
        return SwinTransformer([4, 4], 8, [2, 2], [1, 2], [2, 2], 0.2, num_classes, **kw)
    return SwinTransformer([4, 4], 96, [2, 2, 6, 2], [3, 6, 12, 24], [8, 8], 0.2, num_classes, **kw)
