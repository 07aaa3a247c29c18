"""Every layer op in one place: signature, shape rule, parameters, PyTorch code.

An :class:`OpDef` holds everything about one op, so adding an op is one visit
here: its arguments (types, defaults, ranges), the shape rule (exact PyTorch
output-size formulas), its parameter tensors, the `nn.Module` constructor and
the functional form the code generator writes, the cost workload (see
`evo/cost`) and the gradient rule used by the compiled CAM strategy
(`evo/passes/gradient.py` looks rules up by op).  User-defined ops register
through :func:`register` (or the ``evo.ops`` entry point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from evo.ir.node import Op


class OpError(Exception):
    """A shape or argument error; `arg` names the offending argument (or None for the input)."""

    def __init__(self, message: str, arg: str | None = None, code: str = "E0301", hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.code = code
        self.hint = hint


REQUIRED = object()


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: str  # int | int2 | float | bool
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    doc: str = ""


@dataclass(frozen=True)
class OpDef:
    name: str
    op: Op
    params: tuple[ParamSpec, ...]
    shape: Callable[[list[tuple], dict], tuple]
    n_inputs: int | None = 1  # None: variadic (concat)
    module: Callable[[dict, list[tuple]], str] | None = None  # nn.Module constructor source
    functional: Callable[[dict, list[str]], str] | None = None  # expression over input names
    weights: Callable[[dict, list[tuple]], dict[str, tuple]] = field(default=lambda a, s: {})
    doc: str = ""
    torch: str = ""  # the PyTorch equivalent, for the docs
    elementwise: bool = False  # shape-preserving, one output element per input element
    parametric: bool = False   # has parameter tensors (becomes a named submodule)
    # user-defined ops (Op.CUSTOM) only: the cost rule (attrs, in_shapes, out_shape) -> evo.cost
    # workload, and the gradient rule (attrs, g, x, y) -> source of d input (see evo/extend.py).
    # Built-in ops keep these in evo/cost/rules.py and evo/passes/gradient.py (GRAD_RULES).
    cost: Callable | None = None
    grad: Callable | None = None


REGISTRY: dict[str, OpDef] = {}
CUSTOM: dict[str, Any] = {}


def register(d: OpDef) -> OpDef:
    REGISTRY[d.name] = d
    return d


def lookup(name: str) -> OpDef | None:
    return REGISTRY.get(name)


# ----------------------------------------------------------------- helpers

def _lit(v: Any) -> str:
    """A Python literal for a compile-time value (numbers, bools, tuples only)."""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            raise ValueError("non-finite literal")
        return repr(v)
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == v[1]:
            return _lit(v[0])
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    raise TypeError(f"no literal for {type(v).__name__}")


def _rank(shape: tuple, want: int | tuple[int, ...], what: str) -> None:
    wants = (want,) if isinstance(want, int) else want
    if len(shape) not in wants:
        exp = " or ".join(f"{w}-D" for w in wants)
        raise OpError(f"{what} expects a {exp} input, got a {len(shape)}-D tensor of shape {fmt_shape(shape)}",
                      None, "E0300")


def fmt_shape(shape: tuple) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _concrete(d, what: str) -> int:
    if not isinstance(d, int):
        raise OpError(f"{what} must be a known integer, not the symbol '{d}'", None, "E0304")
    return d


def _kwargs(a: dict, names_defaults: list[tuple[str, Any, str]]) -> str:
    """Keyword arguments for a constructor, omitting those equal to PyTorch's default."""
    out = []
    for key, torch_default, torch_name in names_defaults:
        v = a[key]
        if v != torch_default:
            out.append(f"{torch_name}={_lit(v)}")
    return out


def _join(*parts) -> str:
    flat = []
    for p in parts:
        if isinstance(p, list):
            flat.extend(p)
        else:
            flat.append(p)
    return ", ".join(flat)


# ----------------------------------------------------------------- conv2d

def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_shape(shapes, a):
    (x,) = shapes
    _rank(x, 4, "conv2d")
    c = _concrete(x[1], "the channel count")
    g = a["groups"]
    if c % g:
        raise OpError(f"groups={g} does not divide the {c} input channels", "groups", "E0302")
    if a["out"] % g:
        raise OpError(f"groups={g} does not divide the {a['out']} output channels", "groups", "E0302")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    h, w = _concrete(x[2], "the height"), _concrete(x[3], "the width")
    oh, ow = _conv_out(h, kh, sh, ph, dh), _conv_out(w, kw, sw, pw, dw)
    if oh <= 0 or ow <= 0:
        raise OpError(f"the output would be {oh}x{ow}: a {kh}x{kw} kernel (dilation {dh}) does not fit "
                      f"the {h}x{w} input with padding {ph}", "kernel", "E0303")
    return (x[0], a["out"], oh, ow)


def _conv_module(a, shapes):
    c = shapes[0][1]
    kw = _kwargs(a, [("stride", (1, 1), "stride"), ("padding", (0, 0), "padding"),
                     ("dilation", (1, 1), "dilation"), ("groups", 1, "groups"), ("bias", True, "bias")])
    return f"nn.Conv2d({_join(str(c), str(a['out']), _lit(a['kernel']), kw)})"


def _conv_weights(a, shapes):
    if not shapes:
        return {}
    c = shapes[0][1]
    kh, kw = a["kernel"]
    w = {"weight": (a["out"], c // a["groups"], kh, kw)}
    if a["bias"]:
        w["bias"] = (a["out"],)
    return w


register(OpDef(
    "conv2d", Op.CONV2D,
    (ParamSpec("out", "int", min=1, doc="output channels"),
     ParamSpec("kernel", "int2", min=1),
     ParamSpec("stride", "int2", 1, min=1),
     ParamSpec("padding", "int2", 0, min=0),
     ParamSpec("dilation", "int2", 1, min=1),
     ParamSpec("groups", "int", 1, min=1),
     ParamSpec("bias", "bool", True)),
    _conv_shape, module=_conv_module, weights=_conv_weights, torch="nn.Conv2d", parametric=True,
    doc="2-D convolution"))


# ----------------------------------------------------------------- linear

def _linear_shape(shapes, a):
    (x,) = shapes
    if len(x) != 2:
        raise OpError(f"linear expects a 2-D input [N, features], got a {len(x)}-D tensor of shape "
                      f"{fmt_shape(x)}", None, "E0300", "flatten the input first, e.g. linear(flatten(x), ...)")
    _concrete(x[1], "the feature count")
    return (x[0], a["out"])


register(OpDef(
    "linear", Op.LINEAR,
    (ParamSpec("out", "int", min=1, doc="output features"), ParamSpec("bias", "bool", True)),
    _linear_shape,
    module=lambda a, s: f"nn.Linear({_join(str(s[0][1]), str(a['out']), _kwargs(a, [('bias', True, 'bias')]))})",
    weights=lambda a, s: ({"weight": (a["out"], s[0][1])} | ({"bias": (a["out"],)} if a["bias"] else {}))
    if s else {},
    torch="nn.Linear", doc="fully connected layer", parametric=True))


# ----------------------------------------------------------------- batchnorm

def _bn_shape(rank):
    def f(shapes, a):
        (x,) = shapes
        _rank(x, rank, "batchnorm2d" if rank == 4 else "batchnorm1d")
        _concrete(x[1], "the channel count")
        return x
    return f


def _bn_weights(a, s):
    if not s:
        return {}
    c = s[0][1]
    return {"weight": (c,), "bias": (c,), "running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}


for _name, _op, _rank_n, _cls in (("batchnorm2d", Op.BATCHNORM2D, 4, "BatchNorm2d"),
                                  ("batchnorm1d", Op.BATCHNORM1D, (2, 3), "BatchNorm1d")):
    register(OpDef(
        _name, _op, (ParamSpec("eps", "float", 1e-5, min=0.0),),
        _bn_shape(_rank_n),
        module=(lambda cls: lambda a, s: f"nn.{cls}({_join(str(s[0][1]), _kwargs(a, [('eps', 1e-5, 'eps')]))})")(_cls),
        weights=_bn_weights, torch=f"nn.{_cls}", elementwise=True, parametric=True,
        doc="batch normalisation (eval mode)"))


# ----------------------------------------------------------------- activations

def _same(shapes, a):
    return shapes[0]


_ACTS = [
    ("relu", Op.RELU, "nn.ReLU()", "torch.relu({x})"),
    ("relu6", Op.RELU6, "nn.ReLU6()", "F.relu6({x})"),
    ("gelu", Op.GELU, "nn.GELU()", "F.gelu({x})"),
    ("silu", Op.SILU, "nn.SiLU()", "F.silu({x})"),
    ("sigmoid", Op.SIGMOID, "nn.Sigmoid()", "torch.sigmoid({x})"),
    ("tanh", Op.TANH, "nn.Tanh()", "torch.tanh({x})"),
    ("hardswish", Op.HARDSWISH, "nn.Hardswish()", "F.hardswish({x})"),
    ("hardsigmoid", Op.HARDSIGMOID, "nn.Hardsigmoid()", "F.hardsigmoid({x})"),
]
for _name, _op, _mod, _fn in _ACTS:
    register(OpDef(_name, _op, (), _same,
                   module=(lambda m: lambda a, s: m)(_mod),
                   functional=(lambda fn: lambda a, xs: fn.format(x=xs[0]))(_fn),
                   torch=_mod.replace("()", ""), elementwise=True, doc="activation"))

register(OpDef(
    "leaky_relu", Op.LEAKY_RELU, (ParamSpec("slope", "float", 0.01),), _same,
    module=lambda a, s: f"nn.LeakyReLU({_lit(a['slope'])})",
    functional=lambda a, xs: f"F.leaky_relu({xs[0]}, {_lit(a['slope'])})",
    torch="nn.LeakyReLU", elementwise=True, doc="leaky ReLU"))


# ----------------------------------------------------------------- pooling

def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    num = size + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_shape(name):
    def f(shapes, a):
        (x,) = shapes
        _rank(x, 4, name)
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        dh, dw = a.get("dilation", (1, 1))
        if ph * 2 > kh or pw * 2 > kw:
            raise OpError(f"padding {max(ph, pw)} is more than half the kernel size {max(kh, kw)}", "padding",
                          "E0203", "PyTorch requires padding <= kernel // 2")
        h, w = _concrete(x[2], "the height"), _concrete(x[3], "the width")
        oh = _pool_out(h, kh, sh, ph, dh, a["ceil"])
        ow = _pool_out(w, kw, sw, pw, dw, a["ceil"])
        if oh <= 0 or ow <= 0:
            raise OpError(f"the output would be {oh}x{ow}: the {kh}x{kw} window does not fit the {h}x{w} input",
                          "kernel", "E0303")
        return (x[0], x[1], oh, ow)
    return f


def _pool_module(cls, extra):
    def f(a, s):
        kw = _kwargs(a, [("stride", a["kernel"], "stride"), ("padding", (0, 0), "padding")] + extra
                     + [("ceil", False, "ceil_mode")])
        return f"nn.{cls}({_join(_lit(a['kernel']), kw)})"
    return f


def _pool_functional(fn, extra):
    def f(a, xs):
        kw = _kwargs(a, [("stride", a["kernel"], "stride"), ("padding", (0, 0), "padding")] + extra
                     + [("ceil", False, "ceil_mode")])
        return f"{fn}({_join(xs[0], _lit(a['kernel']), kw)})"
    return f


_POOL_COMMON = (ParamSpec("kernel", "int2", min=1), ParamSpec("stride", "int2", None, min=1),
                ParamSpec("padding", "int2", 0, min=0))
register(OpDef(
    "maxpool2d", Op.MAXPOOL2D,
    _POOL_COMMON + (ParamSpec("dilation", "int2", 1, min=1), ParamSpec("ceil", "bool", False)),
    _pool_shape("maxpool2d"),
    module=_pool_module("MaxPool2d", [("dilation", (1, 1), "dilation")]),
    functional=_pool_functional("F.max_pool2d", [("dilation", (1, 1), "dilation")]),
    torch="nn.MaxPool2d", doc="max pooling (stride defaults to the kernel)"))
register(OpDef(
    "avgpool2d", Op.AVGPOOL2D,
    _POOL_COMMON + (ParamSpec("ceil", "bool", False), ParamSpec("count_include_pad", "bool", True)),
    _pool_shape("avgpool2d"),
    module=_pool_module("AvgPool2d", [("count_include_pad", True, "count_include_pad")]),
    functional=_pool_functional("F.avg_pool2d", [("count_include_pad", True, "count_include_pad")]),
    torch="nn.AvgPool2d", doc="average pooling (stride defaults to the kernel)"))


def _adaptive_shape(shapes, a):
    (x,) = shapes
    _rank(x, (3, 4), "adaptive_avgpool2d")
    return tuple(x[:-2]) + tuple(a["size"])


register(OpDef(
    "adaptive_avgpool2d", Op.ADAPTIVE_AVGPOOL2D, (ParamSpec("size", "int2", min=1),), _adaptive_shape,
    module=lambda a, s: f"nn.AdaptiveAvgPool2d({_lit(a['size'])})",
    functional=lambda a, xs: f"F.adaptive_avg_pool2d({xs[0]}, {_lit(a['size'])})",
    torch="nn.AdaptiveAvgPool2d", doc="adaptive average pooling to a fixed output size"))


# ----------------------------------------------------------------- shape ops

def _norm_dim(d: int, rank: int, arg: str) -> int:
    if not -rank <= d < rank:
        raise OpError(f"dimension {d} is out of range for a {rank}-D tensor", arg, "E0206")
    return d % rank


def _flatten_shape(shapes, a):
    (x,) = shapes
    s = _norm_dim(a["start"], len(x), "start")
    e = _norm_dim(a["end"], len(x), "end")
    if e < s:
        raise OpError(f"end dimension {a['end']} comes before start dimension {a['start']}", "end", "E0203")
    prod = 1
    for d in x[s:e + 1]:
        prod *= _concrete(d, "a flattened dimension")
    return tuple(x[:s]) + (prod,) + tuple(x[e + 1:])


register(OpDef(
    "flatten", Op.FLATTEN, (ParamSpec("start", "int", 1), ParamSpec("end", "int", -1)), _flatten_shape,
    module=lambda a, s: f"nn.Flatten({_join(_kwargs(a, [('start', 1, 'start_dim'), ('end', -1, 'end_dim')]))})",
    functional=lambda a, xs: f"torch.flatten({_join(xs[0], [_lit(a['start'])] if a['end'] == -1 else [_lit(a['start']), _lit(a['end'])])})",
    torch="torch.flatten", doc="flatten dimensions start..end into one"))

register(OpDef(
    "dropout", Op.DROPOUT, (ParamSpec("p", "float", 0.5, min=0.0, max=1.0),), _same,
    module=lambda a, s: f"nn.Dropout({_lit(a['p'])})",
    functional=lambda a, xs: xs[0],  # eval mode: identity
    torch="nn.Dropout", elementwise=True, doc="dropout (identity in eval mode)"))

register(OpDef(
    "identity", Op.IDENTITY, (), _same, module=lambda a, s: "nn.Identity()",
    functional=lambda a, xs: xs[0], torch="nn.Identity", elementwise=True, doc="identity"))


def _softmax_shape(shapes, a):
    (x,) = shapes
    _norm_dim(a["dim"], len(x), "dim")
    return x


register(OpDef(
    "softmax", Op.SOFTMAX, (ParamSpec("dim", "int", 1),), _softmax_shape,
    module=lambda a, s: f"nn.Softmax({_lit(a['dim'])})",
    functional=lambda a, xs: f"torch.softmax({xs[0]}, {_lit(a['dim'])})",
    torch="torch.softmax", doc="softmax along a dimension"))


def _concat_shape(shapes, a):
    if len(shapes) < 1:
        raise OpError("concat needs at least one tensor", None, "E0107")
    r = len(shapes[0])
    d = _norm_dim(a["dim"], r, "dim")
    total = 0
    for i, s in enumerate(shapes):
        if len(s) != r:
            raise OpError(f"concat input {i + 1} is {len(s)}-D but input 1 is {r}-D", f"#{i}", "E0300")
        for j in range(r):
            if j != d and s[j] != shapes[0][j]:
                raise OpError(f"concat input {i + 1} has shape {fmt_shape(s)}, which differs from "
                              f"{fmt_shape(shapes[0])} outside dimension {a['dim']}", f"#{i}", "E0301")
        total += _concrete(s[d], "the concatenated dimension")
    out = list(shapes[0])
    out[d] = total
    return tuple(out)


register(OpDef(
    "concat", Op.CONCAT, (ParamSpec("dim", "int", 1),), _concat_shape, n_inputs=None,
    functional=lambda a, xs: f"torch.cat(({', '.join(xs)},), {_lit(a['dim'])})",
    torch="torch.cat", doc="concatenate tensors along a dimension"))


def broadcast(a: tuple, b: tuple, what: str) -> tuple:
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise OpError(f"cannot {what} tensors of shapes {fmt_shape(a)} and {fmt_shape(b)}: dimension "
                          f"{max(len(a), len(b)) - 1 - i} is {x} vs {y}", None, "E0301",
                          "shapes must be equal or broadcastable (a dimension of 1 stretches)")
    return tuple(reversed(out))


register(OpDef("add", Op.ADD, (), lambda s, a: broadcast(s[0], s[1], "add"), n_inputs=2,
               functional=lambda a, xs: f"{xs[0]} + {xs[1]}", torch="+", doc="elementwise add (broadcasting)"))
register(OpDef("mul", Op.MUL, (), lambda s, a: broadcast(s[0], s[1], "multiply"), n_inputs=2,
               functional=lambda a, xs: f"{xs[0]} * {xs[1]}", torch="*", doc="elementwise multiply (broadcasting)"))

# Ops written with operators, not callable by name.
OPERATOR_ONLY = {"add", "mul"}


def normalize_args(d: OpDef, given: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and expand int2 pairs; `given` values are already type-checked."""
    a: dict[str, Any] = {}
    for p in d.params:
        v = given.get(p.name, p.default)
        if p.kind == "int2" and v is not None and not isinstance(v, tuple):
            v = (v, v)
        a[p.name] = v
    if "stride" in a and a["stride"] is None:  # pools: stride defaults to the kernel
        a["stride"] = a["kernel"]
    return a


def param_count(d: OpDef, attrs: dict, in_shapes: list[tuple]) -> int:
    total = 0
    for name, shp in d.weights(attrs, in_shapes).items():
        if name in ("running_mean", "running_var", "num_batches_tracked"):
            continue
        n = 1
        for x in shp:
            n *= x
        total += n
    return total


def of_node(n) -> OpDef:
    """The OpDef of an IR node (user-defined ops are found by name)."""
    if n.op == Op.CUSTOM:
        return REGISTRY[n.attr("op")]
    return by_op(n.op)


def by_op(op: Op) -> OpDef:
    for d in REGISTRY.values():
        if d.op == op:
            return d
    raise KeyError(op)
