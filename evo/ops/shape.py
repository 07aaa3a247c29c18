"""Shape ops: flatten, dropout, stochastic depth and identity (views at inference), softmax, concat."""

from __future__ import annotations

from evo import codes as C
from evo.ir.node import Op
from evo.ops.base import (Call, Imports, NotConvertible, OpDef, OpError, ParamSpec, concrete, eltwise_cost, fmt_shape,
                          join, kwargs_src, lit, norm_dim, numel, register, rowwise_any, same_shape,
                          view_cost)
from evo.ops.gradient import RESHAPE, SLICE

SOFTMAX_T = Op("softmax_grad")  # the gradient of softmax (not elementwise: a product with its Jacobian)


def _flatten_shape(shapes, a):
    (x,) = shapes
    s = norm_dim(a["start"], len(x), "start")
    e = norm_dim(a["end"], len(x), "end")
    if e < s:
        raise OpError(f"end dimension {a['end']} comes before start dimension {a['start']}", "end", C.VALUE_OUT_OF_RANGE)
    prod = 1
    for d in x[s:e + 1]:
        prod *= concrete(d, "a flattened dimension")
    return tuple(x[:s]) + (prod,) + tuple(x[e + 1:])


def _reshape_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(RESHAPE, (g,), {}, b.gshape(x), n.span, None, f"d_{n.name or 'flatten'}"))]


def passthrough_grad(b, n, g):
    return [(0, g)]


def flatten_args(start: int, end: int, shape) -> dict:
    """The importer's reading of torch.flatten(x, start, end) (evo keeps the batch dimension)."""
    r = len(shape)
    if not -r <= start < r or not -r <= end < r:
        raise NotConvertible("dimension out of range")
    if start % r == 0:
        raise NotConvertible("flattens the batch dimension (evo keeps the batch dimension N separate)")
    return {"start": int(start), "end": int(end)}


register(OpDef(
    "flatten", (ParamSpec("start", "int", 1), ParamSpec("end", "int", -1)), _flatten_shape,
    module=lambda a, s: f"nn.Flatten({join(kwargs_src(a, [('start', 1, 'start_dim'), ('end', -1, 'end_dim')]))})",
    functional=lambda a, xs: f"torch.flatten({join(xs[0], [lit(a['start'])] if a['end'] == -1 else [lit(a['start']), lit(a['end'])])})",
    torch="torch.flatten", doc="flatten dimensions start..end into one", affine=True, keeps_zeros=True, grad=_reshape_grad,
    cost=view_cost, doc_call="flatten(x, start=1, end=-1)", layout=lambda a, r: ("regroup",),
    imports=Imports(("nn.Flatten",), calls=(Call(
        ("torch.flatten", "Tensor.flatten", "aten.flatten"), ("input", "start_dim", "end_dim"),
        lambda b, shapes: flatten_args(int(b["start_dim"]), int(b["end_dim"]), shapes[0]),
        {"start_dim": 0, "end_dim": -1}),)),
    from_module=lambda m, shape: flatten_args(m.start_dim, m.end_dim, shape),
    doc_args="`start` int (1); `end` int (−1); negative counts from the end",
    doc_shape="dimensions `start..end` (inclusive) multiplied into one; both in range (E0206), `end` not before "
              "`start` (E0203), the flattened dimensions known integers"))

register(OpDef(
    "dropout", (ParamSpec("p", "float", 0.5, min=0.0, max=1.0),), same_shape,
    module=lambda a, s: f"nn.Dropout({lit(a['p'])})",
    functional=lambda a, xs: xs[0],  # eval mode: identity
    torch="nn.Dropout", elementwise=True, affine=True, keeps_zeros=True, doc="dropout (identity in eval mode)",
    rowwise=rowwise_any,
    grad=passthrough_grad, cost=view_cost,
    imports=Imports(("nn.Dropout",), calls=(
        Call(("F.dropout",), ("input", "p", "training", "inplace"), lambda b, shapes: {"p": float(b["p"])},
             {"p": 0.5, "training": True, "inplace": False}),
        Call(("aten.dropout",), ("input", "p", "train"), lambda b, shapes: {"p": float(b["p"])},
             {"p": 0.5, "train": False}))),
    from_module=lambda m, shape: {"p": float(m.p)}, positional=True,
    doc_call="dropout(x, p=0.5)", doc_args="`p` number in [0, 1] (0.5)",
    doc_shape="same shape; the identity at inference"))

def _stochastic_depth_training(a, xs, shapes):
    """torchvision.ops.stochastic_depth in training: one Bernoulli(1 - p) draw per row (`row`) or
    for the whole batch (`batch`), survivors scaled by 1 / (1 - p) (the same calls, so the same
    random stream as torchvision's)."""
    x, p = xs[0], a["p"]
    if p == 0.0:
        return None
    keep = 1.0 - p
    rest = ", 1" * (len(shapes[0]) - 1)
    size = f"[{x}.shape[0]{rest}]" if a["mode"] == "row" else f"[1{rest}]"
    noise = f"{x}.new_empty({size}).bernoulli_({lit(keep)})" + (f".div_({lit(keep)})" if keep > 0.0 else "")
    return f"torch.mul({x}, {noise})"


def _stochastic_depth_from_module(m, shape):
    # torchvision.ops.StochasticDepth (a module outside torch.nn: matched by its class name and
    # its attributes `p` and `mode`)
    p, mode = getattr(m, "p", None), getattr(m, "mode", None)
    if (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0
            or mode not in ("row", "batch") or any(True for _ in m.children())
            or any(True for _ in m.parameters()) or any(True for _ in m.buffers())):
        raise ValueError("not torchvision's StochasticDepth")
    return {"p": float(p), "mode": mode}


register(OpDef(
    "stochastic_depth", (ParamSpec("p", "float", min=0.0, max=1.0, doc="the drop probability"),
                         ParamSpec("mode", "str", "row", choices=("row", "batch"))), same_shape,
    functional=lambda a, xs: xs[0],  # eval mode: identity
    training=_stochastic_depth_training,
    torch="torchvision.ops.stochastic_depth", elementwise=True, affine=True, keeps_zeros=True,
    doc="stochastic depth (drops whole rows in training; identity in eval mode)",
    grad=passthrough_grad, cost=view_cost, imports=Imports(classes=("StochasticDepth",)),
    from_module=_stochastic_depth_from_module,
    doc_call='stochastic_depth(x, p, mode="row")',
    doc_args='`p` number in [0, 1] (required); `mode` `"row"` (one draw per example) or `"batch"`',
    doc_shape="same shape; the identity at inference; in training, torch's: kept with probability 1 − p "
              "and scaled by 1 / (1 − p)"))


register(OpDef(
    "identity", (), same_shape, module=lambda a, s: "nn.Identity()",
    functional=lambda a, xs: xs[0], torch="nn.Identity", elementwise=True, affine=True, keeps_zeros=True,
    doc="identity", rowwise=rowwise_any,
    imports=Imports(("nn.Identity",)),
    grad=passthrough_grad, cost=view_cost, doc_args="—", doc_shape="same shape"))


def _softmax_shape(shapes, a):
    (x,) = shapes
    norm_dim(a["dim"], len(x), "dim")
    return x


def _softmax_cost(W, a, ins, out):
    d = a["dim"] % len(out)
    return W.ReduceWorkload(numel(out) // out[d], out[d], 4, out[d])


def _softmax_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    attrs = {"dim": n.attr("dim") % len(n.shape)}
    return [(0, b.add(SOFTMAX_T, (g, n.id), attrs, b.gshape(x), n.span, None, f"d_{n.name or 'softmax'}"))]


def _softmax_grad_code(a, ins, k, const, path):
    """d softmax / dx times g from the output y: y * (g - sum(g * y)) along the dimension
    (g is K-batched: one dimension more than y)."""
    g, y = ins
    return [f"{{out}}_gk = _evo_k({g}, {k})",
            f"{{out}} = ({y} * ({{out}}_gk - ({{out}}_gk * {y}).sum(dim={a['dim'] + 1}, keepdim=True)))"
            f".reshape({g}.shape)"]


register(OpDef(SOFTMAX_T, (), None, n_inputs=None, gradient_only=True, grad_code=_softmax_grad_code,
               cost=eltwise_cost(2, 2), doc="gradient of softmax w.r.t. its input"))

def _softmax_dim(dim, shape, dtype=None) -> dict:
    if dtype is not None:
        raise NotConvertible("softmax with a dtype")
    d = (0 if len(shape) in (0, 1, 3) else 1) if dim is None else int(dim)  # None: PyTorch's legacy choice
    if d % len(shape) == 0:
        raise NotConvertible("softmax over the batch dimension")
    return {"dim": d}


_SOFTMAX_IMPORTS = Imports(("nn.Softmax",), calls=(
    Call(("F.softmax", "torch.softmax", "Tensor.softmax"), ("input", "dim", "_stacklevel", "dtype"),
         lambda b, shapes: _softmax_dim(b["dim"], shapes[0], b["dtype"]), {"dim": None, "_stacklevel": 3, "dtype": None}),
    Call(("aten.softmax", "aten._softmax"), ("input", "dim", "half_to_float"),
         lambda b, shapes: _softmax_dim(b["dim"], shapes[0]), {"dim": 1, "half_to_float": False})))

register(OpDef(
    "softmax", (ParamSpec("dim", "int", 1),), _softmax_shape,
    module=lambda a, s: f"nn.Softmax({lit(a['dim'])})",
    functional=lambda a, xs: f"torch.softmax({xs[0]}, {lit(a['dim'])})",
    torch="torch.softmax", doc="softmax along a dimension", grad=_softmax_grad, cost=_softmax_cost,
    imports=_SOFTMAX_IMPORTS, from_module=lambda m, shape: _softmax_dim(m.dim, shape),
    doc_call="softmax(x, dim=1)", doc_args="`dim` int (1), in range", doc_shape="same shape"))


def _concat_shape(shapes, a):
    if len(shapes) < 1:
        raise OpError("concat needs at least one tensor", None, C.MISSING_ARGUMENT)
    r = len(shapes[0])
    d = norm_dim(a["dim"], r, "dim")
    total = 0
    for i, s in enumerate(shapes):
        if len(s) != r:
            raise OpError(f"concat input {i + 1} is {len(s)}-D but input 1 is {r}-D", f"#{i}", C.WRONG_TENSOR_RANK)
        for j in range(r):
            if j != d and s[j] != shapes[0][j]:
                raise OpError(f"concat input {i + 1} has shape {fmt_shape(s)}, which differs from "
                              f"{fmt_shape(shapes[0])} outside dimension {a['dim']}", f"#{i}", C.SHAPE_MISMATCH)
        total += concrete(s[d], "the concatenated dimension")
    out = list(shapes[0])
    out[d] = total
    return tuple(out)


def _concat_grad(b, n, g):
    d = n.attr("dim") % len(n.shape)
    out, start = [], 0
    for i, src in enumerate(n.inputs):
        x = b.nodes[src]
        stop = start + x.shape[d]
        out.append((i, b.add(SLICE, (g,), {"dim": d, "start": start, "stop": stop}, b.gshape(x), n.span,
                             None, "d_concat")))
        start = stop
    return out


def _concat_call(b, shapes):
    """torch.cat's arguments; the concatenation of one tensor is that tensor (no step: DenseNet's
    first dense layer concatenates the list [x])."""
    return [] if len(shapes) == 1 else {"dim": int(b["dim"])}


register(OpDef(
    "concat", (ParamSpec("dim", "int", 1),), _concat_shape, n_inputs=None,
    functional=lambda a, xs: f"torch.cat(({', '.join(xs)},), {lit(a['dim'])})",
    functional_list=lambda a, xs: f"torch.cat({xs}, {lit(a['dim'])})", list_join={"dim": 1},
    torch="torch.cat", doc="concatenate tensors along a dimension", grad=_concat_grad,
    layout=lambda a, r: ("join", a["dim"] % r),
    cost=lambda W, a, ins, out: W.CopyWorkload(sum(numel(s) for s in ins), numel(out)),
    imports=Imports(calls=(Call(("torch.cat", "torch.concat", "torch.concatenate", "aten.cat", "aten.concat"),
                                ("tensors", "dim"), _concat_call, {"dim": 0},
                                tensors=("tensors",),
                                constant="concatenates something other than a list of tensors"),)),
    doc_call="concat(a, b, ..., dim=1)", doc_args="tensors first, or one list of tensors (`concat(xs)`), "
                                                  "then `dim` int (1), in range",
    doc_shape="one or more tensors of one rank (E0300), equal outside `dim` (E0301); the sizes along `dim` add up"))
