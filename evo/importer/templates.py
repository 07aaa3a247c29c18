"""Block templates: module classes the importer writes as a fixed evo block.

Some modules cannot be traced op by op into evo: torchvision's Swin attention folds
the windows into the batch (`x.view(B * nW, T, C)`), which evo's batch-first rule does
not allow, and builds its shift mask with Python loops.  For such a class, matched by
its name and attributes like `Imports.classes`, the importer writes one block of evo
source with the same parameter and buffer names (so the `state_dict` loads with
`strict=True`) and calls it with the instance's values, e.g.
`attn = ShiftedWindowAttention(norm1, heads=1, window=2, shift=1, scale=0.35355339059327373)`.
The block is written in the ordinary ops (evo/ops/window.py: `roll`, `matmul`,
`relative_bias`, `window_mask`, ...), so it is checked, costed and explained like any
other; the windows are a dimension of their own (`[N, windows, tokens, C]`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from evo.importer.mapping import NotConvertible

_SWIN_HEAD = """\
    c = x.shape[3]
    pad_b = (window - x.shape[1] % window) % window
    pad_r = (window - x.shape[2] % window) % window
    padded = pad(x, [0, 0, 0, pad_r, 0, pad_b]) if pad_b + pad_r > 0 else x
    ph = padded.shape[1]
    pw = padded.shape[2]
    sh = shift if window < ph else 0
    sw = shift if window < pw else 0
    wh = ph // window
    ww = pw // window
    t = window * window
    rolled = roll(padded, [-sh, -sw], [1, 2]) if sh + sw > 0 else padded
    windows = reshape(permute(reshape(rolled, [-1, wh, window, ww, window, c]), [0, 1, 3, 2, 4, 5]),
                      [-1, wh * ww, t, c])
    qkv = linear(windows, 3 * c)
    parts = chunk(qkv, 3, dim=3)
    q = permute(reshape(parts[0], [-1, wh * ww, t, heads, c // heads]), [0, 1, 3, 2, 4])
    k = permute(reshape(parts[1], [-1, wh * ww, t, heads, c // heads]), [0, 1, 3, 2, 4])
    v = permute(reshape(parts[2], [-1, wh * ww, t, heads, c // heads]), [0, 1, 3, 2, 4])
"""

_SWIN_TAIL = """\
    if sh + sw > 0 {
        mask = window_mask([ph, pw], window, [sh, sw])
        attn = softmax(scores + mask, dim=-1)
    } else {
        attn = softmax(scores, dim=-1)
    }
    out = reshape(permute(matmul(attn, v), [0, 1, 3, 2, 4]), [-1, wh * ww, t, c])
    proj = linear(out, c)
    merged = reshape(permute(reshape(proj, [-1, wh, ww, window, window, c]), [0, 1, 3, 2, 4, 5]),
                     [-1, ph, pw, c])
    back = roll(merged, [sh, sw], [1, 2]) if sh + sw > 0 else merged
    return narrow(narrow(back, 1, 0, x.shape[1]), 2, 0, x.shape[2]) if pad_b + pad_r > 0 else back
}
"""

SWIN_V1 = ("""\
# torchvision's ShiftedWindowAttention on a channels-last map [N, H, W, C]: the map is padded
# to a multiple of the window, rolled by -shift (no shift along an axis one window covers), cut
# into window x window windows ([N, windows, T, C]), attended per head with the relative-position
# bias (and, when shifted, the mask of the rolled regions), merged, rolled back and cropped
block ShiftedWindowAttention(x, heads: int, window: int, shift: int = 0, scale: float = 1.0) {
""" + _SWIN_HEAD + """\
    relative_position_bias_table = parameter([(2 * window - 1) * (2 * window - 1), heads])
    relative_position_index = relative_position_index(window)
    bias = relative_bias(relative_position_bias_table, relative_position_index)
    scores = matmul(scale_by(q, scale), transpose(k, 3, 4)) + bias
""" + _SWIN_TAIL)

SWIN_V2 = ("""\
# torchvision's ShiftedWindowAttentionV2: as ShiftedWindowAttention, with cosine attention
# scaled by exp(min(logit_scale, log 100)) and the bias 16 * sigmoid(cpb_mlp(relative coordinates))
block ShiftedWindowAttentionV2(x, heads: int, window: int, shift: int = 0) {
""" + _SWIN_HEAD + """\
    logit_scale = parameter([heads, 1, 1], init=2.302585092994046)
    relative_coords_table = relative_coords_table(window)
    relative_position_index = relative_position_index(window)
    cpb_mlp = seq(relative_coords_table) {
        linear(512)
        relu()
        linear(heads, bias=false)
    }
    bias = scale_by(sigmoid(relative_bias(cpb_mlp, relative_position_index)), 16.0)
    cosine = matmul(l2_normalize(q), transpose(l2_normalize(k), 3, 4))
    scores = cosine * exp(clamp(logit_scale, max=4.605170185988092)) + bias
""" + _SWIN_TAIL)


MAXVIT = ("""\
# torchvision's RelativePositionalMultiHeadAttention (MaxViT) on windows [N, groups, T, C]: per head,
# softmax(q (k * scale)ᵀ + relative-position bias) v, merged by a linear layer
block RelativePositionalMultiHeadAttention(x, heads: int, size: int, scale: float) {
    c = x.shape[3]
    g = x.shape[1]
    t = x.shape[2]
    to_qkv = linear(x, 3 * c)
    parts = chunk(to_qkv, 3, dim=3)
    q = permute(reshape(parts[0], [-1, g, t, heads, c // heads]), [0, 1, 3, 2, 4])
    k = permute(reshape(parts[1], [-1, g, t, heads, c // heads]), [0, 1, 3, 2, 4])
    v = permute(reshape(parts[2], [-1, g, t, heads, c // heads]), [0, 1, 3, 2, 4])
    relative_position_bias_table = parameter([(2 * size - 1) * (2 * size - 1), heads])
    relative_position_index = relative_position_index(size, flat=false)
    bias = relative_bias(relative_position_bias_table, relative_position_index)
    dot = einsum("bghid,bghjd->bghij", q, scale_by(k, scale))
    attn = softmax(dot + bias, dim=-1)
    out = reshape(permute(einsum("bghij,bghjd->bghid", attn, v), [0, 1, 3, 2, 4]), [-1, g, t, c])
    merge = linear(out, c)
    return merge
}
""")



PARTITION = """\
# MaxViT's window partition: [N, C, H, W] -> [N, (H/p)(W/p), p*p, C] (windows of p x p pixels)
block WindowPartition(x, p: int) {
    gh = x.height // p
    gw = x.width // p
    return reshape(permute(reshape(x, [-1, x.channels, gh, p, gw, p]), [0, 2, 4, 3, 5, 1]), [-1, gh * gw, p * p, x.channels])
}
"""

DEPARTITION = """\
# and back: [N, gh*gw, p*p, C] -> [N, C, gh*p, gw*p]
block WindowDepartition(x, p: int, gh: int, gw: int) {
    c = x.shape[3]
    return reshape(permute(reshape(x, [-1, gh, gw, p, p, c]), [0, 5, 1, 3, 2, 4]), [-1, c, gh * p, gw * p])
}
"""


def _partition_args(m, shape, out) -> dict:
    if shape is None or out is None or len(shape) != 4 or len(out) != 4:
        raise NotConvertible("a partition of a tensor other than [N, C, H, W]")
    p = math.isqrt(out[2])
    if p * p != out[2] or shape[2] % p or shape[3] % p or out[1] != (shape[2] // p) * (shape[3] // p):
        raise NotConvertible("not a partition into p x p windows")
    return {"p": p}


def _departition_args(m, shape, out) -> dict:
    if shape is None or out is None or len(shape) != 4 or len(out) != 4:
        raise NotConvertible("a departition to a tensor other than [N, C, H, W]")
    p = math.isqrt(shape[2])
    if p * p != shape[2] or out[2] % p or out[3] % p or shape[1] != (out[2] // p) * (out[3] // p):
        raise NotConvertible("not a departition of p x p windows")
    return {"p": p, "gh": out[2] // p, "gw": out[3] // p}


@dataclass(frozen=True)
class Template:
    name: str                      # the block's name
    params: tuple[tuple, ...]      # (name, default or None for required), in order
    source: str
    args: Callable                 # (module, input shape, output shape) -> {param: value}; NotConvertible if
    #                                it does not fit


def _square(v, what: str) -> int:
    v = list(v) if isinstance(v, (list, tuple)) else [v, v]
    if len(v) != 2 or int(v[0]) != int(v[1]):
        raise NotConvertible(f"a non-square {what} {v} (the template takes square windows)")
    return int(v[0])


def _swin_args(m, shape, v2: bool) -> dict:
    if shape is None or len(shape) != 4:
        raise NotConvertible("window attention of a tensor other than [N, H, W, C]")
    _, h, w, c = shape
    window = _square(m.window_size, "window")
    shift = _square(m.shift_size, "shift")
    heads = int(m.num_heads)
    if window >= h + (window - h % window) % window and window >= w + (window - w % window) % window:
        shift = 0  # torchvision's rule: no shift where one window covers the (padded) map
    if c % heads or m.qkv.out_features != 3 * c or m.proj.out_features != c or m.qkv.bias is None \
            or m.proj.bias is None:
        raise NotConvertible("qkv/proj layers that are not [C -> 3C], [C -> C] with biases")
    args = {"heads": heads, "window": window, "shift": shift}
    if v2:
        b = m.qkv.bias.detach()
        if bool(b[c:2 * c].ne(0).any()):
            raise NotConvertible("the key third of qkv.bias is not zero (torchvision zeroes it in forward; the "
                                 "template has no such bias)")
        if m.cpb_mlp[0].out_features != 512:
            raise NotConvertible("a cpb_mlp other than Linear(2, 512), ReLU, Linear(512, heads)")
    else:
        args["scale"] = float((c // heads) ** -0.5)
    return args


def _maxvit_args(m, shape, out) -> dict:
    if shape is None or len(shape) != 4:
        raise NotConvertible("attention of a tensor other than [N, groups, tokens, C]")
    _, g, t, c = shape
    heads = int(m.n_heads)
    if t != m.max_seq_len or m.size * m.size != t or heads * int(m.head_dim) != c:
        raise NotConvertible("tokens or widths that do not match the module's max_seq_len, n_heads, head_dim")
    if m.to_qkv.out_features != 3 * c or m.merge.out_features != c or m.to_qkv.bias is None or m.merge.bias is None:
        raise NotConvertible("to_qkv/merge layers that are not [C -> 3C], [C -> C] with biases")
    return {"heads": heads, "size": int(m.size), "scale": float(m.scale_factor)}


TEMPLATES: dict[str, Template] = {
    "ShiftedWindowAttention": Template("ShiftedWindowAttention", (("heads", None), ("window", None), ("shift", 0),
                                                                  ("scale", 1.0)),
                                       SWIN_V1, lambda m, s, o: _swin_args(m, s, False)),
    "ShiftedWindowAttentionV2": Template("ShiftedWindowAttentionV2", (("heads", None), ("window", None),
                                                                      ("shift", 0)),
                                         SWIN_V2, lambda m, s, o: _swin_args(m, s, True)),
    "RelativePositionalMultiHeadAttention": Template("RelativePositionalMultiHeadAttention",
                                                     (("heads", None), ("size", None), ("scale", None)),
                                                     MAXVIT, _maxvit_args),
    "WindowPartition": Template("WindowPartition", (("p", None),), PARTITION, _partition_args),
    "WindowDepartition": Template("WindowDepartition", (("p", None), ("gh", None), ("gw", None)), DEPARTITION,
                                  _departition_args),
}


def template_of(m) -> Template | None:
    """The template of a module's class (matched by name, outside torch.nn), or None."""
    t = TEMPLATES.get(type(m).__name__)
    if t is None or type(m).__module__.startswith("torch.nn"):
        return None
    return t
