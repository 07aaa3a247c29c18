"""Normalisation: batch norm in eval mode (a per-channel affine map), layer norm over the last
dimensions and over the channels (LayerNorm2d)."""

from __future__ import annotations

from evo import codes as C
from evo.ir.node import Op
from evo.ops.base import (Imports, NotConvertible, OpDef, OpError, ParamSpec, concrete, eltwise_cost, join, kwargs_src,
                          lit, numel, rank, register, tuple_lit)
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


def _bn_from_module(rank_ok: tuple[int, ...]):
    def f(m, shape):
        if not m.affine:
            raise NotConvertible("affine=False (evo's batch norm always has weight and bias)")
        if not m.track_running_stats:
            raise NotConvertible("track_running_stats=False (evo's batch norm uses running statistics)")
        if len(shape) not in rank_ok:
            raise NotConvertible(f"applied to a {len(shape)}-D tensor")
        return {"eps": float(m.eps)}
    return f


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
        imports=Imports(modules=(f"nn.{_cls}",)),
        from_module=_bn_from_module((_rank_n,) if isinstance(_rank_n, int) else _rank_n),
        fullgrad_bias=(lambda a: True) if _rank_n == 4 else None, channels_first=_rank_n == 4,
        doc="batch normalisation (eval mode)", doc_call=f"{_name}(x, eps=1e-5)", doc_args="`eps` number ≥ 0 (1e-5)",
        doc_shape=_shape_doc))


# ----------------------------------------------------------------- layer norm

LAYERNORM_T = Op("layernorm_grad")  # the gradient of a layer norm (eval and train alike: no running stats)

LAYERNORM2D_HELPER = ("EvoLayerNorm2d", '''class {name}(nn.LayerNorm):
    """LayerNorm over the channels of [N, C, H, W]: permute, normalise, permute back."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)''')


def _ln_normalized(a, x) -> tuple:
    return tuple(x[len(x) - a["dims"]:])


def _ln_shape(shapes, a):
    (x,) = shapes
    if a["dims"] >= len(x):
        raise OpError(f"layernorm over the last {a['dims']} dimensions of a {len(x)}-D tensor would include the "
                      "batch dimension", "dims", C.VALUE_OUT_OF_RANGE, f"at most {len(x) - 1} for this input")
    for d in _ln_normalized(a, x):
        concrete(d, "a normalised dimension")
    return x


def _ln_weights(a, s):
    if not s:
        return {}
    shp = _ln_normalized(a, s[0])
    return {"weight": shp} | ({"bias": shp} if a["bias"] else {})


def _ln_module(a, s):
    shp = _ln_normalized(a, s[0])
    kw = kwargs_src(a, [("eps", 1e-5, "eps"), ("bias", True, "bias")])
    return f"nn.LayerNorm({join(lit(shp[0]) if len(shp) == 1 else tuple_lit(shp), kw)})"


def _ln2d_shape(shapes, a):
    (x,) = shapes
    rank(x, 4, "layernorm2d")
    concrete(x[1], "the channel count")
    return x


def _ln2d_module(a, s):
    kw = kwargs_src(a, [("eps", 1e-5, "eps"), ("bias", True, "bias")])
    return f"{{EvoLayerNorm2d}}({join(str(s[0][1]), kw)})"


def _ln2d_from_module(m, shape):
    """torchvision's LayerNorm2d (ConvNeXt): an nn.LayerNorm over C whose forward permutes
    [N, C, H, W] to channels-last, normalises and permutes back; matched by its class name and
    checked by running it against that computation."""
    import torch
    import torch.nn.functional as F

    if (not isinstance(m, torch.nn.LayerNorm) or len(m.normalized_shape) != 1 or m.weight is None
            or any(True for _ in m.children())):
        raise ValueError("not a channels-first LayerNorm2d")
    c = m.normalized_shape[0]
    x = torch.randn(2, c, 3, 3, generator=torch.Generator().manual_seed(0), dtype=m.weight.dtype,
                    device=m.weight.device)
    with torch.no_grad():
        want = F.layer_norm(x.permute(0, 2, 3, 1), m.normalized_shape, m.weight, m.bias, m.eps).permute(0, 3, 1, 2)
        # the class's forward itself (not m(x): a tracer may be intercepting module calls)
        if not torch.allclose(type(m).forward(m, x), want, rtol=1e-5, atol=1e-6):
            raise ValueError("computes something else than permute -> layer_norm -> permute")
    return {"eps": float(m.eps), "bias": m.bias is not None}


def _ln_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    if n.op == "layernorm2d":
        attrs = {"dims": (-3,), "wshape": (x.shape[1], 1, 1)}
    else:
        nd = n.attr("dims")
        attrs = {"dims": tuple(range(-nd, 0)), "wshape": tuple(x.shape[len(x.shape) - nd:])}
    attrs["eps"] = n.attr("eps")
    return [(0, b.add(LAYERNORM_T, (g, x.id), attrs, b.gshape(x), n.span, n.path, f"d_{n.name or 'ln'}"))]


def _ln_grad_code(a, ins, k, const, path):
    """d LN(x) / dx times g, g [K*B, ...], x [B, ...]: with x̂ = (x − μ)·r, r = 1/√(σ² + ε) and
    dy = g·w, dx = r·(dy − mean(dy) − x̂·mean(dy·x̂)) over the normalised dimensions."""
    g, x = ins
    dims = lit(tuple(a["dims"]))
    w = const("w", f"m({path!r}).weight.detach().reshape{tuple_lit(a['wshape'])}")
    return [f"{{out}}_mu = {x}.mean({dims}, keepdim=True)",
            f"{{out}}_r = torch.rsqrt({x}.var({dims}, unbiased=False, keepdim=True) + {lit(a['eps'])})",
            f"{{out}}_xh = ({x} - {{out}}_mu) * {{out}}_r",
            f"{{out}}_dy = _evo_k({g}, {k}) * {w}",
            f"{{out}}_m1 = {{out}}_dy.mean({dims}, keepdim=True)",
            f"{{out}}_m2 = ({{out}}_dy * {{out}}_xh).mean({dims}, keepdim=True)",
            f"{{out}} = ({{out}}_r * ({{out}}_dy - {{out}}_m1 - {{out}}_xh * {{out}}_m2)).reshape({g}.shape)"]


def _ln_cost(W, a, ins, out):
    # mean and variance (two passes), then one multiply-add with weight and bias per element
    n = numel(_ln_normalized(a, out)) if "dims" in a else out[1]
    return W.EltwiseWorkload(numel(out), 1, 5, 2 * n)


register(OpDef(LAYERNORM_T, (), None, n_inputs=None, gradient_only=True, grad_code=_ln_grad_code,
               cost=eltwise_cost(8, 2), doc="gradient of a layer norm w.r.t. its input"))

register(OpDef(
    "layernorm", (ParamSpec("dims", "int", 1, min=1), ParamSpec("eps", "float", 1e-5, min=0.0),
                  ParamSpec("bias", "bool", True)),
    _ln_shape, module=_ln_module, weights=_ln_weights, torch="nn.LayerNorm", parametric=True,
    grad=_ln_grad, cost=_ln_cost, doc="layer normalisation over the last dimensions",
    rowwise=lambda a, s: len(s[0]) - a["dims"] >= 2,  # dimension 1 not normalised
    imports=Imports(modules=("nn.LayerNorm",)),
    from_module=lambda m, shape: {"dims": len(m.normalized_shape), "eps": float(m.eps), "bias": m.bias is not None},
    doc_call="layernorm(x, dims=1, eps=1e-5, bias=true)",
    doc_args="`dims` int ≥ 1 (1): how many trailing dimensions; `eps` number ≥ 0 (1e-5); `bias` bool (true)",
    doc_shape="same shape; `dims` below the rank (E0203: never the batch). `weight`, `bias` of the last `dims` "
              "sizes (`nn.LayerNorm(x.shape[-dims:])`)"))

register(OpDef(
    "layernorm2d", (ParamSpec("eps", "float", 1e-5, min=0.0), ParamSpec("bias", "bool", True)),
    _ln2d_shape, module=_ln2d_module, helper=LAYERNORM2D_HELPER,
    weights=lambda a, s: ({"weight": (s[0][1],)} | ({"bias": (s[0][1],)} if a["bias"] else {})) if s else {},
    torch="LayerNorm2d", parametric=True, grad=_ln_grad, cost=_ln_cost, channels_first=True,
    imports=Imports(classes=("LayerNorm2d",)), from_module=_ln2d_from_module,
    doc="layer normalisation over the channels of [N, C, H, W] (ConvNeXt's LayerNorm2d)",
    doc_call="layernorm2d(x, eps=1e-5, bias=true)", doc_args="`eps` number ≥ 0 (1e-5); `bias` bool (true)",
    doc_shape="input 4-D; same shape; each pixel's C values normalised (permute → LayerNorm → permute). "
              "`weight`, `bias` `[C]`"))
