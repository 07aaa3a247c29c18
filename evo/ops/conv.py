"""Layers with weights: 2-D convolution and the fully connected layer."""

from __future__ import annotations

from evo import codes as C
from evo.ops.base import (Imports, NotConvertible, OpDef, OpError, ParamSpec, concrete, fmt_shape, join, kwargs_src, lit,
                          numel, pair, rank, register)
from evo.ops.gradient import CONV2D_T, LINEAR_T


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_shape(shapes, a):
    (x,) = shapes
    rank(x, 4, "conv2d")
    c = concrete(x[1], "the channel count")
    g = a["groups"]
    if c % g:
        raise OpError(f"groups={g} does not divide the {c} input channels", "groups", C.CHANNELS_NOT_DIVISIBLE_BY_GROUPS)
    if a["out"] % g:
        raise OpError(f"groups={g} does not divide the {a['out']} output channels", "groups", C.CHANNELS_NOT_DIVISIBLE_BY_GROUPS)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    h, w = concrete(x[2], "the height"), concrete(x[3], "the width")
    oh, ow = _conv_out(h, kh, sh, ph, dh), _conv_out(w, kw, sw, pw, dw)
    if oh <= 0 or ow <= 0:
        raise OpError(f"the output would be {oh}x{ow}: a {kh}x{kw} kernel (dilation {dh}) does not fit "
                      f"the {h}x{w} input with padding {ph}", "kernel", C.OUTPUT_SIZE_IS_NOT_POSITIVE)
    return (x[0], a["out"], oh, ow)


def _conv_module(a, shapes):
    c = shapes[0][1]
    kw = kwargs_src(a, [("stride", (1, 1), "stride"), ("padding", (0, 0), "padding"),
                        ("dilation", (1, 1), "dilation"), ("groups", 1, "groups"), ("bias", True, "bias")])
    return f"nn.Conv2d({join(str(c), str(a['out']), lit(a['kernel']), kw)})"


def _conv_weights(a, shapes):
    if not shapes:
        return {}
    c = shapes[0][1]
    kh, kw = a["kernel"]
    w = {"weight": (a["out"], c // a["groups"], kh, kw)}
    if a["bias"]:
        w["bias"] = (a["out"],)
    return w


def _conv_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    a = n.attr_dict
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    oh, ow = n.shape[2], n.shape[3]
    h, w = x.shape[2], x.shape[3]
    op_h = h - ((oh - 1) * sh - 2 * ph + dh * (kh - 1) + 1)
    op_w = w - ((ow - 1) * sw - 2 * pw + dw * (kw - 1) + 1)
    attrs = {"stride": (sh, sw), "padding": (ph, pw), "dilation": (dh, dw), "groups": a["groups"],
             "output_padding": (op_h, op_w), "kernel": (kh, kw)}
    return [(0, b.add(CONV2D_T, (g,), attrs, b.gshape(x), n.span, n.path, f"d_{n.name or 'conv'}"))]


def _conv_cost(W, a, ins, out):
    x = ins[0]
    return W.conv2d(x[0], x[1], x[2], x[3], a["out"], a["kernel"], a["stride"], a["padding"], a["dilation"],
                    a["groups"], a["bias"])


def _conv_from_module(m, shape):
    if m.padding_mode != "zeros":
        raise NotConvertible(f"padding_mode='{m.padding_mode}' (evo pads with zeros only)")
    k, s, d = pair(m.kernel_size), pair(m.stride), pair(m.dilation)
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = (0, 0)
        else:  # 'same': total padding d*(k-1) per dimension, split left/right
            tot = [d[i] * (k[i] - 1) for i in range(2)]
            if any(t % 2 for t in tot):
                raise NotConvertible("padding='same' with an even kernel pads asymmetrically; evo pads "
                                     "symmetrically")
            pad = (tot[0] // 2, tot[1] // 2)
    return {"out": m.out_channels, "kernel": k, "stride": s, "padding": pair(pad), "dilation": d,
            "groups": m.groups, "bias": m.bias is not None}


register(OpDef(
    "conv2d",
    (ParamSpec("out", "int", min=1, doc="output channels"),
     ParamSpec("kernel", "int2", min=1),
     ParamSpec("stride", "int2", 1, min=1),
     ParamSpec("padding", "int2", 0, min=0),
     ParamSpec("dilation", "int2", 1, min=1),
     ParamSpec("groups", "int", 1, min=1),
     ParamSpec("bias", "bool", True)),
    _conv_shape, module=_conv_module, weights=_conv_weights, torch="nn.Conv2d", parametric=True,
    fusion="producer", grad=_conv_grad, cost=_conv_cost, doc="2-D convolution",
    imports=Imports(modules=("nn.Conv2d",)), from_module=_conv_from_module,
    fullgrad_bias=lambda a: bool(a["bias"]), channels_first=True,
    doc_call="conv2d(x, out, kernel, ...)",
    doc_args="`out` int ≥ 1; `kernel` int or [h, w] ≥ 1; `stride` ≥ 1 (1); `padding` ≥ 0 (0); `dilation` ≥ 1 "
             "(1); `groups` int ≥ 1 (1); `bias` bool (true)",
    doc_shape="input 4-D `[N, C, H, W]`; `groups` divides `C` and `out` (E0302); output `[N, out, H', W']` with "
              "`H' = (H + 2·pad − dil·(k − 1) − 1) // stride + 1` (same for `W'`), which must be ≥ 1 (E0303). "
              "Parameters `weight [out, C/groups, kh, kw]`, `bias [out]`"))


def _linear_shape(shapes, a):
    (x,) = shapes
    if len(x) < 2:
        raise OpError(f"linear expects an input [N, ..., features], got a {len(x)}-D tensor of shape "
                      f"{fmt_shape(x)}", None, C.WRONG_TENSOR_RANK, "flatten the input first, e.g. linear(flatten(x), ...)")
    concrete(x[-1], "the feature count")
    return tuple(x[:-1]) + (a["out"],)


def _linear_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(LINEAR_T, (g,), {}, b.gshape(x), n.span, n.path, f"d_{n.name or 'linear'}"))]


def _linear_from_module(m, shape):
    if len(shape) < 2:
        raise NotConvertible(f"applied to a {len(shape)}-D tensor; evo's linear takes [N, ..., features]")
    return {"out": m.out_features, "bias": m.bias is not None}


register(OpDef(
    "linear",
    (ParamSpec("out", "int", min=1, doc="output features"), ParamSpec("bias", "bool", True)),
    _linear_shape,
    module=lambda a, s: f"nn.Linear({join(str(s[0][-1]), str(a['out']), kwargs_src(a, [('bias', True, 'bias')]))})",
    weights=lambda a, s: ({"weight": (a["out"], s[0][-1])} | ({"bias": (a["out"],)} if a["bias"] else {}))
    if s else {},
    torch="nn.Linear", doc="fully connected layer", parametric=True, fusion="producer", affine=True,
    rowwise=lambda a, s: len(s[0]) >= 3,  # [N, T, F]: each token on its own
    grad=_linear_grad, cost=lambda W, a, ins, out: W.linear(numel(ins[0][:-1]), ins[0][-1], a["out"], a["bias"]),
    imports=Imports(modules=("nn.Linear",)), from_module=_linear_from_module,
    doc_call="linear(x, out, bias=true)", doc_args="`out` int ≥ 1; `bias` bool (true)",
    doc_shape="input `[N, ..., F]` (at least 2-D, E0300) → `[N, ..., out]`: the last dimension is the features "
              "(channels-last maps, tokens). `weight [out, F]`, `bias [out]`"))
