"""Elementwise arithmetic on two tensors, written with operators: `a + b`, `a * b`."""

from __future__ import annotations

from evo.ops.base import OpDef, OpError, eltwise_cost, fmt_shape, register
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
                          f"{max(len(a), len(b)) - 1 - i} is {x} vs {y}", None, "E0301",
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


_ARITH_DOC = dict(doc_args="two tensors (operators only: `add` and `mul` are not callable by name)",
                  doc_shape="broadcasting: dimensions aligned from the right, each pair equal or one of them 1 "
                            "(E0301)")
register(OpDef("add", (), lambda s, a: broadcast(s[0], s[1], "add"), n_inputs=2,
               functional=lambda a, xs: f"{xs[0]} + {xs[1]}", torch="+", doc="elementwise add (broadcasting)",
               fusion="join", operator_only=True, grad=_add_grad, cost=eltwise_cost(1, 2),
               doc_call="a + b", **_ARITH_DOC))
register(OpDef("mul", (), lambda s, a: broadcast(s[0], s[1], "multiply"), n_inputs=2,
               functional=lambda a, xs: f"{xs[0]} * {xs[1]}", torch="*", doc="elementwise multiply (broadcasting)",
               fusion="join", operator_only=True, grad=_mul_grad, cost=eltwise_cost(1, 2),
               # in a gradient: the K-batched gradient times the forward value
               grad_code=lambda a, ins, k, const, path: [f"{{out}} = _evo_kmul({ins[0]}, {ins[1]}, {k})"],
               doc_call="a * b", **_ARITH_DOC))
