"""Pooling: max and average pooling over windows, adaptive average pooling."""

from __future__ import annotations

from evo import codes as C
from evo.ops.base import (Call, Imports, NotConvertible, OpDef, OpError, ParamSpec, concrete, join, kwargs_src, lit, numel,
                          pair, rank, register)
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
                          C.VALUE_OUT_OF_RANGE, "PyTorch requires padding <= kernel // 2")
        h, w = concrete(x[2], "the height"), concrete(x[3], "the width")
        oh = _pool_out(h, kh, sh, ph, dh, a["ceil"])
        ow = _pool_out(w, kw, sw, pw, dw, a["ceil"])
        if oh <= 0 or ow <= 0:
            raise OpError(f"the output would be {oh}x{ow}: the {kh}x{kw} window does not fit the {h}x{w} input",
                          "kernel", C.OUTPUT_SIZE_IS_NOT_POSITIVE)
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


# ----------------------------------------------------------------- importer: torch's pooling calls

def _pool4(shape, what: str):
    if len(shape) != 4:
        raise NotConvertible(f"{what} of a {len(shape)}-D tensor; evo pools [N, C, H, W]")


def _stride(stride, k):
    return pair(stride) if stride not in (None, [], ()) else k


def _max_args(b, shapes):
    _pool4(shapes[0], "max pooling")
    if b.get("return_indices"):
        raise NotConvertible("return_indices=True (evo's maxpool2d returns values only)")
    k = pair(b["kernel_size"])
    return {"kernel": k, "stride": _stride(b["stride"], k), "padding": pair(b["padding"]),
            "dilation": pair(b["dilation"]), "ceil": bool(b["ceil_mode"])}


def _avg_args(b, shapes):
    _pool4(shapes[0], "average pooling")
    if b["divisor_override"] is not None:
        raise NotConvertible("divisor_override is set (evo's avgpool2d divides by the window size)")
    k = pair(b["kernel_size"])
    return {"kernel": k, "stride": _stride(b["stride"], k), "padding": pair(b["padding"]),
            "ceil": bool(b["ceil_mode"]), "count_include_pad": bool(b["count_include_pad"])}


def _no_indices(b, shapes):
    raise NotConvertible("max pooling with indices")


_MAX_CALLS = (
    Call(("F.max_pool2d", "torch.max_pool2d", "aten.max_pool2d"),
         ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"), _max_args,
         {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}),
    Call(("aten.max_pool2d_with_indices",), ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"),
         _no_indices, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}))
_AVG_CALLS = (
    Call(("F.avg_pool2d", "torch.avg_pool2d", "aten.avg_pool2d"),
         ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
         _avg_args, {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                     "divisor_override": None}),)


def _max_from_module(m, shape):
    return _max_args({"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                      "dilation": m.dilation, "ceil_mode": m.ceil_mode, "return_indices": m.return_indices}, [shape])


def _avg_from_module(m, shape):
    return _avg_args({"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                      "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad,
                      "divisor_override": m.divisor_override}, [shape])


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
    torch="nn.MaxPool2d", doc="max pooling (stride defaults to the kernel)", grad=_maxpool_grad, channels_first=True,
    cost=_pool_cost("max"), imports=Imports(("nn.MaxPool2d",), calls=_MAX_CALLS), from_module=_max_from_module,
    doc_call="maxpool2d(x, kernel, ...)",
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
    torch="nn.AvgPool2d", doc="average pooling (stride defaults to the kernel)", affine=True, channels_first=True,
    grad=_avgpool_grad, cost=_pool_cost("avg"), imports=Imports(("nn.AvgPool2d",), calls=_AVG_CALLS),
    from_module=_avg_from_module, doc_call="avgpool2d(x, kernel, ...)",
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


def _adaptive_size(size, shape) -> tuple[int, int]:
    if len(shape) not in (3, 4):
        raise NotConvertible(f"adaptive pooling of a {len(shape)}-D tensor")
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise NotConvertible("a non-2-D output size")
        size = tuple(shape[-2 + i] if v is None else v for i, v in enumerate(size))
    return pair(size)


def _spatial_mean(b, shapes):
    """torch.mean over H and W of [N, C, H, W]: a global average pooling (then a flatten unless keepdim);
    over other dimensions after the batch (tokens: x.mean(1), channels-last maps): evo's mean."""
    dims = b["dim"]
    if isinstance(dims, int):
        dims = (dims,)
    if dims is None or b.get("dtype") is not None:
        raise NotConvertible("a mean over every dimension (the batch too) or with a dtype")
    shape = shapes[0]
    if len(shape) != 4 or sorted(d % 4 for d in dims) != [2, 3]:
        if any(d % len(shape) == 0 for d in dims):
            raise NotConvertible("a mean over the batch dimension")
        return [("mean", {"dims": tuple(int(d) for d in dims), "keepdim": bool(b["keepdim"])})]
    steps = [("adaptive_avgpool2d", {"size": (1, 1)})]
    if not b["keepdim"]:
        steps.append(("flatten", {"start": 1, "end": -1}))
    return steps


_ADAPTIVE_IMPORTS = Imports(("nn.AdaptiveAvgPool2d",), calls=(
    Call(("F.adaptive_avg_pool2d", "torch.adaptive_avg_pool2d", "aten.adaptive_avg_pool2d",
          "aten._adaptive_avg_pool2d"), ("input", "output_size"),
         lambda b, shapes: {"size": _adaptive_size(b["output_size"], shapes[0])}),
    Call(("torch.mean", "Tensor.mean", "aten.mean"), ("input", "dim", "keepdim", "dtype"), _spatial_mean,
         {"dim": None, "keepdim": False, "dtype": None})))

register(OpDef(
    "adaptive_avgpool2d", (ParamSpec("size", "int2", min=1),), _adaptive_shape,
    module=lambda a, s: f"nn.AdaptiveAvgPool2d({lit(a['size'])})",
    functional=lambda a, xs: f"F.adaptive_avg_pool2d({xs[0]}, {lit(a['size'])})",
    torch="nn.AdaptiveAvgPool2d", doc="adaptive average pooling to a fixed output size", affine=True, channels_first=True,
    grad=_adaptive_grad, cost=_adaptive_cost, global_average=lambda a: tuple(a["size"]) == (1, 1),
    imports=_ADAPTIVE_IMPORTS, from_module=lambda m, shape: {"size": _adaptive_size(m.output_size, shape)},
    doc_call="adaptive_avgpool2d(x, size)",
    doc_args="`size` int or [h, w] ≥ 1", doc_shape="input 3-D or 4-D; the last two dimensions become `size`"))
