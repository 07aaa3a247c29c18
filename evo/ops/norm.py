"""Normalisation: batch norm in eval mode (a per-channel affine map)."""

from __future__ import annotations

from evo.ops.base import OpDef, ParamSpec, concrete, eltwise_cost, join, kwargs_src, rank, register
from evo.ops.gradient import SCALE


def _bn_shape(rank_n):
    def f(shapes, a):
        (x,) = shapes
        rank(x, rank_n, "batchnorm2d" if rank_n == 4 else "batchnorm1d")
        concrete(x[1], "the channel count")
        return x
    return f


def _bn_weights(a, s):
    if not s:
        return {}
    c = s[0][1]
    return {"weight": (c,), "bias": (c,), "running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}


def _bn_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(SCALE, (g,), {"eps": n.attr("eps")}, b.gshape(x), n.span, n.path, f"d_{n.name or 'bn'}"))]


for _name, _rank_n, _cls, _affine, _shape_doc in (
        ("batchnorm2d", 4, "BatchNorm2d", False,
         "input 4-D; same shape. `weight`, `bias`, `running_mean`, `running_var` `[C]`, `num_batches_tracked`"),
        ("batchnorm1d", (2, 3), "BatchNorm1d", True,
         "input 2-D `[N, C]` or 3-D `[N, C, L]`; same shape; parameters as above")):
    register(OpDef(
        _name, (ParamSpec("eps", "float", 1e-5, min=0.0),),
        _bn_shape(_rank_n),
        module=(lambda cls: lambda a, s: f"nn.{cls}({join(str(s[0][1]), kwargs_src(a, [('eps', 1e-5, 'eps')]))})")(
            _cls),
        weights=_bn_weights, torch=f"nn.{_cls}", elementwise=True, parametric=True, fusion="norm",
        affine=_affine, grad=_bn_grad, cost=eltwise_cost(2, 1, params=True),
        doc="batch normalisation (eval mode)", doc_call=f"{_name}(x, eps=1e-5)", doc_args="`eps` number ≥ 0 (1e-5)",
        doc_shape=_shape_doc))
