"""Elementwise arithmetic on two tensors, written with operators: `a + b`, `a * b`."""

from __future__ import annotations

from evo import codes as C
from evo.ops.base import Call, Imports, NotConvertible, OpDef, OpError, eltwise_cost, fmt_shape, register, rowwise_any
from evo.ops.gradient import RESHAPE


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
                          f"{max(len(a), len(b)) - 1 - i} is {x} vs {y}", None, C.SHAPE_MISMATCH,
                          "shapes must be equal or broadcastable (a dimension of 1 stretches)")
    return tuple(reversed(out))


def _add_grad(b, n, g):
    out = []
    for i, src in enumerate(n.inputs):
        x = b.nodes[src]
        if tuple(x.shape[1:]) == tuple(n.shape[1:]):
            out.append((i, g))
        else:
            out.append((i, b.add(RESHAPE, (g,), {"sum_to": True}, b.gshape(x), n.span, None, "d_add")))
    return out


def _mul_grad(b, n, g):
    out = []
    for i, src in enumerate(n.inputs):
        other = n.inputs[1 - i]
        x = b.nodes[src]
        prod = b.add(n.op, (g, other), {"k_batched": 0}, b.gshape(n), n.span, None, "d_mul")
        if tuple(x.shape[1:]) != tuple(n.shape[1:]):
            prod = b.add(RESHAPE, (prod,), {"sum_to": True}, b.gshape(x), n.span, None, "d_mul")
        out.append((i, prod))
    return out


def _plain_add(b, shapes):
    if b["alpha"] != 1:
        raise NotConvertible("alpha != 1")
    return {}


_ADD_CALLS = (Call(("torch.add", "operator.add", "operator.iadd", "Tensor.add", "Tensor.add_", "aten.add", "aten.add_"),
                   ("input", "other", "alpha"), _plain_add, {"alpha": 1}, tensors=("input", "other"),
                   constant="adds a constant; evo's + combines two tensors"),)
_MUL_CALLS = (Call(("torch.mul", "operator.mul", "operator.imul", "Tensor.mul", "Tensor.mul_", "aten.mul", "aten.mul_"),
                   ("input", "other"), lambda b, shapes: {}, tensors=("input", "other"),
                   constant="multiplies by a constant; evo's * combines two tensors"),)

_ARITH_DOC = dict(doc_args="two tensors (operators only: `add` and `mul` are not callable by name)",
                  doc_shape="broadcasting: dimensions aligned from the right, each pair equal or one of them 1 "
                            "(E0301)")
register(OpDef("add", (), lambda s, a: broadcast(s[0], s[1], "add"), n_inputs=2,
               functional=lambda a, xs: f"{xs[0]} + {xs[1]}", torch="+", doc="elementwise add (broadcasting)",
               fusion="join", operator_only=True, operator="+", operator_verb="add", grad=_add_grad, rowwise=rowwise_any, cost=eltwise_cost(1, 2),
               imports=Imports(calls=_ADD_CALLS),
               doc_call="a + b", **_ARITH_DOC))
register(OpDef("mul", (), lambda s, a: broadcast(s[0], s[1], "multiply"), n_inputs=2,
               functional=lambda a, xs: f"{xs[0]} * {xs[1]}", torch="*", doc="elementwise multiply (broadcasting)",
               fusion="join", operator_only=True, operator="*", operator_verb="multiply", grad=_mul_grad, rowwise=rowwise_any, cost=eltwise_cost(1, 2),
               imports=Imports(calls=_MUL_CALLS),
               # in a gradient: the K-batched gradient times the forward value
               grad_code=lambda a, ins, k, const, path: [f"{{out}} = _evo_kmul({ins[0]}, {ins[1]}, {k})"],
               doc_call="a * b", **_ARITH_DOC))
