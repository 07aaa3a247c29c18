"""Pooling: max and average pooling over windows, adaptive average pooling."""

from __future__ import annotations

from evo.ops.base import OpDef, OpError, ParamSpec, concrete, join, kwargs_src, lit, numel, rank, register
from evo.ops.gradient import EXPAND, UNPOOL_AVG, UNPOOL_MAX


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    num = size + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_shape(name):
    def f(shapes, a):
        (x,) = shapes
        rank(x, 4, name)
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        dh, dw = a.get("dilation", (1, 1))
        if ph * 2 > kh or pw * 2 > kw:
            raise OpError(f"padding {max(ph, pw)} is more than half the kernel size {max(kh, kw)}", "padding",
                          "E0203", "PyTorch requires padding <= kernel // 2")
        h, w = concrete(x[2], "the height"), concrete(x[3], "the width")
        oh = _pool_out(h, kh, sh, ph, dh, a["ceil"])
        ow = _pool_out(w, kw, sw, pw, dw, a["ceil"])
        if oh <= 0 or ow <= 0:
            raise OpError(f"the output would be {oh}x{ow}: the {kh}x{kw} window does not fit the {h}x{w} input",
                          "kernel", "E0303")
        return (x[0], x[1], oh, ow)
    return f


def _pool_module(cls, extra):
    def f(a, s):
        kw = kwargs_src(a, [("stride", a["kernel"], "stride"), ("padding", (0, 0), "padding")] + extra
                        + [("ceil", False, "ceil_mode")])
        return f"nn.{cls}({join(lit(a['kernel']), kw)})"
    return f


def _pool_functional(fn, extra):
    def f(a, xs):
        kw = kwargs_src(a, [("stride", a["kernel"], "stride"), ("padding", (0, 0), "padding")] + extra
                        + [("ceil", False, "ceil_mode")])
        return f"{fn}({join(xs[0], lit(a['kernel']), kw)})"
    return f


def _pool_cost(kind):
    def cost(W, a, ins, out):
        x = ins[0]
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        return W.PoolWorkload(x[0], x[1], out[2], out[3], kh, kw, x[2], x[3], sh, sw, ph, pw, kind)
    return cost


def _maxpool_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(UNPOOL_MAX, (g, n.id), {}, b.gshape(x), n.span, None, f"d_{n.name or 'maxpool'}"))]


def _avgpool_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    attrs = {k: v for k, v in n.attrs if k in ("kernel", "stride", "padding", "ceil", "count_include_pad")}
    return [(0, b.add(UNPOOL_AVG, (g,), attrs, b.gshape(x), n.span, None, f"d_{n.name or 'avgpool'}"))]


_POOL_COMMON = (ParamSpec("kernel", "int2", min=1), ParamSpec("stride", "int2", None, min=1),
                ParamSpec("padding", "int2", 0, min=0))
register(OpDef(
    "maxpool2d",
    _POOL_COMMON + (ParamSpec("dilation", "int2", 1, min=1), ParamSpec("ceil", "bool", False)),
    _pool_shape("maxpool2d"),
    module=_pool_module("MaxPool2d", [("dilation", (1, 1), "dilation")]),
    functional=_pool_functional("F.max_pool2d", [("dilation", (1, 1), "dilation")]),
    with_indices=lambda a, xs: f"F.max_pool2d({xs[0]}, {a['kernel']!r}, {a['stride']!r}, {a['padding']!r}, "
                               f"{a['dilation']!r}, {a['ceil']!r}, True)",
    torch="nn.MaxPool2d", doc="max pooling (stride defaults to the kernel)", grad=_maxpool_grad,
    cost=_pool_cost("max"), doc_call="maxpool2d(x, kernel, ...)",
    doc_args="`kernel` int or [h, w] ≥ 1; `stride` ≥ 1 (= kernel); `padding` ≥ 0 (0); `dilation` ≥ 1 (1); "
             "`ceil` bool (false)",
    doc_shape="input 4-D; `padding ≤ kernel / 2` (E0203); `H' = (H + 2·pad − dil·(k − 1) − 1) / stride + 1`, "
              "rounded down, or up with `ceil=true` — and then reduced by one if the last window would start at "
              "or after `H + pad`; `H'` ≥ 1 (E0303) → `[N, C, H', W']`"))
register(OpDef(
    "avgpool2d",
    _POOL_COMMON + (ParamSpec("ceil", "bool", False), ParamSpec("count_include_pad", "bool", True)),
    _pool_shape("avgpool2d"),
    module=_pool_module("AvgPool2d", [("count_include_pad", True, "count_include_pad")]),
    functional=_pool_functional("F.avg_pool2d", [("count_include_pad", True, "count_include_pad")]),
    torch="nn.AvgPool2d", doc="average pooling (stride defaults to the kernel)", affine=True,
    grad=_avgpool_grad, cost=_pool_cost("avg"), doc_call="avgpool2d(x, kernel, ...)",
    doc_args="`kernel` int or [h, w] ≥ 1; `stride` ≥ 1 (= kernel); `padding` ≥ 0 (0); `ceil` bool (false); "
             "`count_include_pad` bool (true)",
    doc_shape="as `maxpool2d` with dilation 1"))


def _adaptive_shape(shapes, a):
    (x,) = shapes
    rank(x, (3, 4), "adaptive_avgpool2d")
    return tuple(x[:-2]) + tuple(a["size"])


def _adaptive_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(EXPAND, (g,), {"size": n.attr("size")}, b.gshape(x), n.span, None, f"d_{n.name or 'pool'}"))]


def _adaptive_cost(W, a, ins, out):
    x = ins[0]
    return W.adaptive_pool(numel(x[:-3]) if len(x) > 3 else 1, x[-3], x[-2], x[-1], out[-2], out[-1])


register(OpDef(
    "adaptive_avgpool2d", (ParamSpec("size", "int2", min=1),), _adaptive_shape,
    module=lambda a, s: f"nn.AdaptiveAvgPool2d({lit(a['size'])})",
    functional=lambda a, xs: f"F.adaptive_avg_pool2d({xs[0]}, {lit(a['size'])})",
    torch="nn.AdaptiveAvgPool2d", doc="adaptive average pooling to a fixed output size", affine=True,
    grad=_adaptive_grad, cost=_adaptive_cost, global_average=lambda a: tuple(a["size"]) == (1, 1),
    doc_call="adaptive_avgpool2d(x, size)",
    doc_args="`size` int or [h, w] ≥ 1", doc_shape="input 3-D or 4-D; the last two dimensions become `size`"))
