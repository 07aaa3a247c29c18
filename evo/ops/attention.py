"""Transformer ops (ViT): multi-head self-attention with nn.MultiheadAttention's parameters,
scaled dot-product attention, a learnable tensor expanded over the batch (`expand`, for a
class token), one token taken out of a sequence (`select`, `x[:, 0]`) and the mean over
dimensions.

Attention is differentiated exactly by the compiled CAM strategy: its gradient op
recomputes the attention probabilities from the saved input and writes the backward
of softmax(Q K^T / sqrt(d)) V through the projections (no autograd).  Its cost rule
charges the projections, the two products Q K^T and P V and the softmax, with the
T x T score matrix as the traffic it is.
"""

from __future__ import annotations

import math

from evo import codes as C
from evo.ir.node import Op
from evo.ops.base import (Call, CostSummary, Imports, NotConvertible, OpDef, OpError, ParamSpec, concrete, fmt_shape, join, lit, norm_dim, numel, rank,
                          register, tuple_lit)
from evo.ops.shape import passthrough_grad

MHA_T = Op("multihead_attention_grad")   # d MHA(x) / d x times g (self-attention: q = k = v = x)
SDPA_T = Op("scaled_dot_product_attention_grad")  # d SDPA(q, k, v) / d q, k or v times g
MHA_ROWS = Op("multihead_attention_rows")  # MHA(x)[:, start:start+length]: those query rows only
MHA_ROWS_T = Op("multihead_attention_rows_grad")  # its gradient w.r.t. x (reusing the forward's q, k, v, P)
SELECT_T = Op("select_grad")             # the gradient of select: zeros elsewhere
MEAN_T = Op("mean_grad")                 # the gradient of a mean: spread evenly


# ----------------------------------------------------------------- cost helpers

# the cost report's attention line over the steps labelled "attention: ..." (attention_parts and the
# projections): the T x T score matrices are the output (and partial sums) of Q K^T, the input and
# output of softmax and the P operand of P V
ATTENTION = CostSummary("attention", "T x T score matrices",
                        (("Q K^T", ("output", "psum")), ("softmax", ("total",)), ("P V", ("input",))))


def attention_parts(W, batch: int, heads: int, tq: int, tk: int, d: int, dv: int) -> list:
    """The work of softmax(Q K^T / sqrt(d)) V for `batch * heads` independent heads:
    the scores Q K^T ([tq, tk] each, tq*tk*d MACs), the softmax over the last dimension
    (tq rows of tk: max, exp, sum, divide) and the product P V; the T x T score matrix is
    the output of the first, the input of the second and the operand of the third."""
    bh = batch * heads
    return [("attention: Q K^T", W.MatmulWorkload(tq, tk, d, batch=bh)),
            ("attention: softmax", W.ReduceWorkload(bh * tq, tk, 4, tk)),
            ("attention: P V", W.MatmulWorkload(tq, dv, tk, batch=bh))]


# ----------------------------------------------------------------- multi-head self-attention

MHA_HELPER = ("EvoSelfAttention", '''class {name}(nn.MultiheadAttention):
    """nn.MultiheadAttention as torchvision's ViT calls it on [N, T, D] (batch
    first): m(x, x, x, need_weights=False)[0]."""

    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__(embed_dim, num_heads, bias=bias, batch_first=True)

    def forward(self, x):
        # softmax(q k^T / sqrt(d)) v written out: torch's fused kernels have no
        # forward-mode derivative (the same parameters, equal results)
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        s = q.matmul(k.transpose(-2, -1)) * self.head_dim ** -0.5
        a = torch.softmax(s, -1).matmul(v)
        return self.out_proj(a.transpose(1, 2).flatten(2))''')


def _mha_shape(shapes, a):
    (x,) = shapes
    rank(x, 3, "multihead_attention")
    dim = concrete(x[2], "the embedding size")
    concrete(x[1], "the token count")
    if dim % a["heads"]:
        raise OpError(f"heads={a['heads']} does not divide the embedding size {dim}", "heads", C.CHANNELS_NOT_DIVISIBLE_BY_GROUPS,
                      f"the embedding size {dim} splits evenly over the heads: choose a divisor of {dim}")
    return x


def _mha_weights(a, s):
    if not s:
        return {}
    dim = s[0][2]
    w = {"in_proj_weight": (3 * dim, dim), "out_proj.weight": (dim, dim)}
    if a["bias"]:
        w |= {"in_proj_bias": (3 * dim,), "out_proj.bias": (dim,)}
    return w


def _mha_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    attrs = {"heads": n.attr("heads"), "bias": n.attr("bias"), "dim": x.shape[2]}
    return [(0, b.add(MHA_T, (g, x.id), attrs, b.gshape(x), n.span, n.path, f"d_{n.name or 'attention'}"))]


def _mha_grad_code(a, ins, k, const, path):
    """g [K*B, T, D], x [B, T, D]: recompute q, k, v and P = softmax(q k^T s) per head, then
    gO = g W_o; gP = gO v^T; gV = P^T gO; gS = s P (gP - rowsum(gP P)); gQ = gS k; gK = gS^T q;
    dx = [gQ gK gV] W_in (q, k and v all read x)."""
    g, x = ins
    h, dim = a["heads"], a["dim"]
    dh = dim // h
    scale = lit(1.0 / math.sqrt(dh))
    wi = const("wi", f"m({path!r}).in_proj_weight.detach()")
    wo = const("wo", f"m({path!r}).out_proj.weight.detach()")
    bi = const("bi", f"m({path!r}).in_proj_bias.detach()") if a["bias"] else "None"
    o = "{out}"
    return [f"{o}_qkv = F.linear({x}, {wi}, {bi}).unflatten(-1, (3, {h}, {dh}))",
            f"{o}_qkv = {o}_qkv.permute(2, 0, 3, 1, 4)",
            f"{o}_q, {o}_k, {o}_v = {o}_qkv.unbind(0)",
            f"{o}_p = {o}_q.matmul({o}_k.transpose(-2, -1))",
            f"{o}_p = torch.softmax({o}_p * {scale}, -1)",
            f"{o}_go = _evo_k({g}, {k}).matmul({wo})",
            f"{o}_go = {o}_go.unflatten(-1, ({h}, {dh})).transpose(-3, -2)",
            f"{o}_gp = {o}_go.matmul({o}_v.transpose(-2, -1))",
            f"{o}_gv = {o}_p.transpose(-2, -1).matmul({o}_go)",
            f"{o}_gs = ({o}_gp * {o}_p).sum(-1, keepdim=True)",
            f"{o}_gs = {o}_p * ({o}_gp - {o}_gs) * {scale}",
            f"{o}_gq = {o}_gs.matmul({o}_k)",
            f"{o}_gk = {o}_gs.transpose(-2, -1).matmul({o}_q)",
            f"{o}_g3 = torch.cat(({o}_gq, {o}_gk, {o}_gv), -1)",
            f"{o}_g3 = {o}_g3.unflatten(-1, (3, {dh})).permute(0, 1, 3, 4, 2, 5)",
            f"{o} = {o}_g3.flatten(-3).matmul({wi}).reshape({g}.shape)"]


def _mha_parts(W, a, ins, out):
    """Projections (q, k, v in one product, then the output), then the attention itself."""
    n, t, dim = ins[0]
    h = a["heads"]
    return [("attention: in_proj", W.linear(n * t, dim, 3 * dim, a["bias"])),
            *attention_parts(W, n, h, t, t, dim // h, dim // h),
            ("attention: out_proj", W.linear(n * t, dim, dim, a["bias"]))]


def _mha_module(a, s):
    return "{EvoSelfAttention}(" + join(str(s[0][2]), str(a["heads"]), [] if a["bias"] else ["bias=False"]) + ")"


def _mha_from_module(m, shape):
    if not getattr(m, "batch_first", False):
        raise ValueError("batch_first=False: the tokens come first ([T, N, D]); evo's batch is dimension 0")
    if getattr(m, "_qkv_same_embed_dim", True) is False or m.kdim != m.embed_dim or m.vdim != m.embed_dim:
        raise ValueError("separate key/value sizes (kdim, vdim)")
    if m.bias_k is not None or m.bias_v is not None or m.add_zero_attn:
        raise ValueError("add_bias_kv / add_zero_attn")
    if (m.in_proj_bias is None) != (m.out_proj.bias is None):
        raise ValueError("a bias on one projection only")
    return {"heads": int(m.num_heads), "bias": m.in_proj_bias is not None}


def _mha_call(b, shapes):
    """`attn(x, x, x, need_weights=False)`: self-attention (query, key and value one tensor), no mask."""
    if b["key"] is not b["query"] or b["value"] is not b["query"]:
        raise NotConvertible(_CROSS)
    if b["key_padding_mask"] is not None or b["attn_mask"] is not None or b["is_causal"]:
        raise NotConvertible("called with a mask")
    return {}


_CROSS = "cross-attention (query, key and value differ); evo's multihead_attention is self-attention"
_MHA_CALL = Call((), ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
                      "is_causal"), _mha_call,
                 {"key": None, "value": None, "key_padding_mask": None, "need_weights": True, "attn_mask": None,
                  "average_attn_weights": True, "is_causal": False},
                 tensors=("query",), constant=_CROSS, free=("key", "value", "key_padding_mask", "attn_mask"))

register(OpDef(
    "multihead_attention", (ParamSpec("heads", "int", min=1, doc="the number of heads"),
                            ParamSpec("bias", "bool", True)),
    _mha_shape, module=_mha_module,
    helper=MHA_HELPER, weights=_mha_weights, torch="nn.MultiheadAttention", parametric=True,
    grad=_mha_grad, cost=lambda W, a, ins, out: _mha_parts(W, a, ins, out), cost_summary=ATTENTION,
    on_rows=lambda a, s, start, length: (MHA_ROWS, {"heads": a["heads"], "bias": a["bias"], "dim": s[0][2],
                                                    "tokens": s[0][1], "start": start, "length": length}),
    imports=Imports(modules=("nn.MultiheadAttention",), module_call=_MHA_CALL,
                    output=(0, "uses the attention weights (need_weights); evo's multihead_attention returns the "
                               "output only")),
    from_module=_mha_from_module,
    doc="multi-head self-attention (torchvision's ViT encoder)",
    doc_call="multihead_attention(x, heads, bias=true)",
    doc_args="`heads` int ≥ 1, divides D (E0302); `bias` bool (true)",
    doc_shape="input `[N, T, D]` (E0300); same shape. `nn.MultiheadAttention(D, heads, batch_first=True)` "
              "called as `m(x, x, x, need_weights=False)[0]`: `in_proj_weight [3D, D]`, `in_proj_bias [3D]`, "
              "`out_proj.weight [D, D]`, `out_proj.bias [D]`"))

register(OpDef(MHA_T, (), None, n_inputs=None, gradient_only=True, grad_code=_mha_grad_code,
               cost=lambda W, a, ins, out: _mha_grad_parts(W, a, ins, out), cost_summary=ATTENTION,
               doc="gradient of multi-head self-attention w.r.t. its input"))


def _mha_grad_parts(W, a, ins, out):
    g, x = ins[0], ins[1]
    kb, t, dim = g
    b = x[0]
    h = a["heads"]
    dh = dim // h
    # the forward recomputed once (projection, scores, softmax), then per class row the
    # backward: g W_o, gO v^T, P^T gO, gS k, gS^T q and the input projection
    return [("attention: in_proj (recomputed)", W.linear(b * t, dim, 3 * dim, a["bias"])),
            ("attention: Q K^T (recomputed)", W.MatmulWorkload(t, t, dh, batch=b * h)),
            ("attention: softmax (recomputed)", W.ReduceWorkload(b * h * t, t, 4, t)),
            ("attention: d out_proj", W.linear(kb * t, dim, dim, False)),
            ("attention: dP", W.MatmulWorkload(t, t, dh, batch=kb * h)),
            ("attention: dV", W.MatmulWorkload(t, dh, t, batch=kb * h)),
            ("attention: d softmax", W.EltwiseWorkload(kb * h * t * t, 2, 3)),
            ("attention: dQ", W.MatmulWorkload(t, dh, t, batch=kb * h)),
            ("attention: dK", W.MatmulWorkload(t, dh, t, batch=kb * h)),
            ("attention: d in_proj", W.linear(kb * t, 3 * dim, dim, False))]


# ----------------------------------------------------------------- attention for a few query rows
#
# A head that reads only the class token (ViT: select(x, 1, 0) after the last block) needs the last
# block's attention for that one query row: q of that token, k and v of all tokens, one row of P.  The
# compiled CAM computes it so (`on_rows` above; evo/passes/gradient.py `restrict_rows`), names the
# forward's q, k, v and P `{out}_q`, `{out}_k`, `{out}_v`, `{out}_p`, and its gradient reuses them.

def _mha_rows_forward(a, ins, mod):
    """x [B, T, D] -> MHA(x)[:, s:s+L] [B, L, D] with the module's parameters (`mod`): q from the L
    rows, k and v from all T; as EvoSelfAttention.forward computes it, restricted to those rows."""
    (x,) = ins
    h, dim, s, n = a["heads"], a["dim"], a["start"], a["length"]
    dh = dim // h
    o = "{out}"
    bq, bkv = (f"{o}_b[:{dim}]", f"{o}_b[{dim}:]") if a["bias"] else ("None", "None")
    return [f"{o}_w = {mod}.in_proj_weight",
            *([f"{o}_b = {mod}.in_proj_bias"] if a["bias"] else []),
            f"{o}_q = F.linear({x}[:, {s}:{s + n}], {o}_w[:{dim}], {bq})",
            f"{o}_q = {o}_q.unflatten(-1, ({h}, {dh})).transpose(1, 2)",
            f"{o}_kv = F.linear({x}, {o}_w[{dim}:], {bkv})",
            f"{o}_kv = {o}_kv.unflatten(-1, (2, {h}, {dh}))",
            f"{o}_k, {o}_v = {o}_kv.permute(2, 0, 3, 1, 4)",
            f"{o}_p = {o}_q.matmul({o}_k.transpose(-2, -1)) * {lit(dh ** -0.5)}",
            f"{o}_p = torch.softmax({o}_p, -1)",
            f"{o} = {mod}.out_proj({o}_p.matmul({o}_v).transpose(1, 2).flatten(2))"]


def _mha_rows_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(MHA_ROWS_T, (g, x.id, n.id), n.attr_dict, b.gshape(x), n.span, n.path,
                      f"d_{n.name or 'attention'}"))]


def _mha_rows_grad_code(a, ins, k, const, path):
    """g [K*B, L, D] (the L rows), x [B, T, D], y: the forward, whose q [B, h, L, d], k, v [B, h, T, d]
    and P [B, h, L, T] it reuses.  gO = g W_o; gS = s P (gO v^T - rowsum(gO v^T P)); dx = gS k W_q on
    the L rows, plus, for the keys and values, sum over heads and rows of gS^T (q W_k) and P^T (gO W_v)
    (the products taken in that order: L is small, so q W_k and gO W_v are small)."""
    g, x, y = ins
    h, dim, s, n, t = a["heads"], a["dim"], a["start"], a["length"], a["tokens"]
    dh = dim // h
    wi = const("wi", f"m({path!r}).in_proj_weight.detach()")
    wo = const("wo", f"m({path!r}).out_proj.weight.detach()")
    o = "{out}"
    parts = ([f"{o}_dx[..., :{s}, :]"] if s else []) + [f"{o}_dq"] + ([f"{o}_dx[..., {s + n}:, :]"] if s + n < t else [])
    return [f"{o}_go = _evo_k({g}, {k}).matmul({wo})",
            f"{o}_go = {o}_go.unflatten(-1, ({h}, {dh})).transpose(-3, -2)",
            f"{o}_gp = {o}_go.matmul({y}_v.transpose(-2, -1))",
            f"{o}_gs = ({o}_gp * {y}_p).sum(-1, keepdim=True)",
            f"{o}_gs = {y}_p * ({o}_gp - {o}_gs) * {lit(dh ** -0.5)}",
            f"{o}_dq = {o}_gs.matmul({y}_k).transpose(-3, -2).flatten(-2)",
            f"{o}_dq = {o}_dq.matmul({wi}[:{dim}])",
            f"{o}_kw = {y}_q.matmul({wi}[{dim}:{2 * dim}].view({h}, {dh}, {dim}))",
            f"{o}_gt = {o}_gs.flatten(-3, -2).transpose(-2, -1)",
            f"{o}_dx = {o}_gt.matmul({o}_kw.flatten(1, 2))",
            f"{o}_vw = {o}_go.matmul({wi}[{2 * dim}:].view({h}, {dh}, {dim})).flatten(-3, -2)",
            f"{o}_pt = {y}_p.flatten(1, 2).transpose(-2, -1)",
            f"{o}_dx = {o}_dx + {o}_pt.matmul({o}_vw)",
            f"{o}_dq = {o}_dx[..., {s}:{s + n}, :] + {o}_dq",
            f"{o} = " + (f"torch.cat(({', '.join(parts)}), -2)" if len(parts) > 1 else f"{o}_dq") + ".flatten(0, 1)"]


def _mha_rows_cost(W, a, ins, out):
    b, t, dim = ins[0]
    h, n = a["heads"], a["length"]
    return [("attention: q (rows)", W.linear(b * n, dim, dim, a["bias"])),
            ("attention: k, v", W.linear(b * t, dim, 2 * dim, a["bias"])),
            *attention_parts(W, b, h, n, t, dim // h, dim // h),
            ("attention: out_proj (rows)", W.linear(b * n, dim, dim, a["bias"]))]


def _mha_rows_grad_cost(W, a, ins, out):
    kb, n, dim = ins[0]
    b, t = ins[1][0], a["tokens"]
    h = a["heads"]
    dh = dim // h
    return [("attention: d out_proj", W.linear(kb * n, dim, dim, False)),
            ("attention: dP", W.MatmulWorkload(n, t, dh, batch=kb * h)),
            ("attention: d softmax", W.EltwiseWorkload(kb * h * n * t, 2, 3)),
            ("attention: dQ W_q", W.linear(kb * n, dim, dim, False)),
            ("attention: q W_k", W.MatmulWorkload(n, dim, dh, batch=b * h)),
            ("attention: dK", W.MatmulWorkload(t, dim, h * n, batch=kb)),
            ("attention: gO W_v", W.MatmulWorkload(n, dim, dh, batch=kb * h)),
            ("attention: dV", W.MatmulWorkload(t, dim, h * n, batch=kb))]


register(OpDef(MHA_ROWS, (), None, grad=_mha_rows_grad, forward_code=_mha_rows_forward, cost=_mha_rows_cost,
               cost_summary=ATTENTION,
               doc="multi-head self-attention for a few query rows (a head that reads one token)"))
register(OpDef(MHA_ROWS_T, (), None, n_inputs=None, gradient_only=True, grad_code=_mha_rows_grad_code,
               cost=_mha_rows_grad_cost, cost_summary=ATTENTION,
               doc="gradient of multihead_attention_rows w.r.t. its input (reusing the forward's q, k, v, P)"))


# ----------------------------------------------------------------- scaled dot-product attention

def _sdpa_shape(shapes, a):
    q, k, v = shapes
    for i, (s, what) in enumerate(((q, "query"), (k, "key"), (v, "value"))):
        if len(s) < 3:
            raise OpError(f"scaled_dot_product_attention's {what} must be at least 3-D [N, ..., L, E], got "
                          f"{fmt_shape(s)}", f"#{i}", C.WRONG_TENSOR_RANK)
        if len(s) != len(q):
            raise OpError(f"the {what} is {len(s)}-D but the query is {len(q)}-D", f"#{i}", C.WRONG_TENSOR_RANK)
        for d in s[1:]:
            concrete(d, f"a dimension of the {what}")
    if q[:-2] != k[:-2] or q[:-2] != v[:-2]:
        raise OpError(f"query {fmt_shape(q)}, key {fmt_shape(k)} and value {fmt_shape(v)} differ before their "
                      "last two dimensions", "#1", C.SHAPE_MISMATCH)
    if k[-1] != q[-1]:
        raise OpError(f"the key's last dimension {k[-1]} differs from the query's {q[-1]}", "#1", C.SHAPE_MISMATCH,
                      "query and key must have the same size E")
    if v[-2] != k[-2]:
        raise OpError(f"the value has {v[-2]} positions but the key {k[-2]}", "#2", C.SHAPE_MISMATCH,
                      "key and value must have the same length S")
    return tuple(q[:-1]) + (v[-1],)


def _sdpa_grad(b, n, g):
    out = []
    for i in range(3):
        x = b.nodes[n.inputs[i]]
        out.append((i, b.add(SDPA_T, (g, *n.inputs), {"wrt": i}, b.gshape(x), n.span, None,
                             f"d_{n.name or 'sdpa'}")))
    return out


def _sdpa_grad_code(a, ins, k, const, path):
    g, q, kk, v = ins
    lines = [f"{{out}}_p = torch.softmax({q}.matmul({kk}.transpose(-2, -1)) / {q}.shape[-1] ** 0.5, -1)",
             f"{{out}}_g = _evo_k({g}, {k})"]
    if a["wrt"] == 2:
        return lines + ["{out} = {out}_p.transpose(-2, -1).matmul({out}_g).flatten(0, 1)"]
    lines += [f"{{out}}_gp = {{out}}_g.matmul({v}.transpose(-2, -1))",
              f"{{out}}_gs = {{out}}_p * ({{out}}_gp - ({{out}}_gp * {{out}}_p).sum(-1, keepdim=True)) / "
              f"{q}.shape[-1] ** 0.5"]
    if a["wrt"] == 0:
        return lines + [f"{{out}} = {{out}}_gs.matmul({kk}).flatten(0, 1)"]
    return lines + [f"{{out}} = {{out}}_gs.transpose(-2, -1).matmul({q}).flatten(0, 1)"]


def _sdpa_cost(W, a, ins, out):
    q, k, v = ins
    lead = numel(q[:-2])
    return attention_parts(W, lead, 1, q[-2], k[-2], q[-1], v[-1])


def _sdpa_call(b, shapes):
    """F.scaled_dot_product_attention(q, k, v): no mask, no dropout, the default scale."""
    if b["attn_mask"] is not None or b["dropout_p"] or b["is_causal"] or b["scale"] is not None or b["enable_gqa"]:
        raise NotConvertible("a mask, dropout, causal attention or another scale (evo's "
                             "scaled_dot_product_attention is softmax(q k^T / sqrt(E)) v)")
    return {}


register(OpDef(
    "scaled_dot_product_attention", (), _sdpa_shape, n_inputs=3,
    functional=lambda a, xs: f"torch.softmax({xs[0]}.matmul({xs[1]}.transpose(-2, -1)) / {xs[0]}.shape[-1] ** 0.5, "
                             f"-1).matmul({xs[2]})",
    torch="F.scaled_dot_product_attention", grad=_sdpa_grad, cost=_sdpa_cost, cost_summary=ATTENTION,
    imports=Imports(calls=(Call(("F.scaled_dot_product_attention",),
                                ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"),
                                _sdpa_call, {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None,
                                             "enable_gqa": False},
                                tensors=("query", "key", "value"), constant="query, key and value must be tensors",
                                free=("attn_mask",)),)),
    doc="softmax(q kᵀ / √E) v",
    doc_call="scaled_dot_product_attention(q, k, v)", doc_args="three tensors (no mask, no dropout, "
                                                                "the default scale 1/√E)",
    doc_shape="`q [N, ..., L, E]`, `k [N, ..., S, E]`, `v [N, ..., S, Ev]` of one rank ≥ 3 (E0300), equal "
              "before the last two dimensions (E0301) → `[N, ..., L, Ev]`"))

register(OpDef(SDPA_T, (), None, n_inputs=None, gradient_only=True, grad_code=_sdpa_grad_code,
               cost=lambda W, a, ins, out: W.MatmulWorkload(ins[1][-2], ins[2][-2], ins[1][-1] * 3,
                                                           batch=numel(ins[0][:-2])),
               doc="gradient of scaled dot-product attention w.r.t. one of its inputs"))


# ----------------------------------------------------------------- a learnable tensor over the batch

def _expand_shape(shapes, a):
    t, like = shapes
    if len(t) < 1 or t[0] != 1:
        raise OpError(f"expand repeats a tensor whose first dimension is 1 over the batch; got {fmt_shape(t)}",
                      "#0", C.SHAPE_MISMATCH, "declare it with a leading 1, e.g. parameter([1, 1, 768])")
    return (like[0],) + tuple(t[1:])


def _expand_grad(b, n, g):
    # row k*B + b of the gradient is image b's copy of the tensor: the gradient passes; the
    # second input gives only the batch size
    return [(0, g)]


def _expand_call(b, shapes):
    """`t.expand(x.shape[0], -1, ...)`: t (first dimension 1) over x's batch (`batch_of`: x is the
    second input)."""
    sizes = b["sizes"]
    ts = shapes[0]
    if (len(shapes) < 2 or ts is None or ts[0] != 1 or len(sizes) != len(ts)
            or any(s != -1 and s != d for s, d in zip(sizes[1:], ts[1:]))):
        raise NotConvertible("an expand other than over the batch of a tensor (t.expand(x.shape[0], -1, ...))")
    return {}


register(OpDef(
    "expand", (), _expand_shape, n_inputs=2,
    functional=lambda a, xs: f"{xs[0]}.expand({xs[1]}.shape[0], *{xs[0]}.shape[1:])",
    torch="Tensor.expand", affine=True, keeps_zeros=True, grad=_expand_grad,
    imports=Imports(calls=(Call(("Tensor.expand",), ("input", "sizes"), _expand_call, varargs="sizes", batch_of="sizes",
                                free=("sizes",), constant="expands a non-tensor"),)),
    cost=lambda W, a, ins, out: W.CopyWorkload(numel(ins[0]), numel(out), view=True),
    doc="a tensor with first dimension 1 repeated over another tensor's batch (a view)",
    doc_call="expand(t, x)", doc_args="two tensors: `t [1, ...]` (a `parameter`), `x` whose batch it takes",
    doc_shape="`[N, ...]`: `t`'s dimensions after the first, `x`'s batch `N` (`t.expand(x.shape[0], -1, ...)`); "
              "`t`'s first dimension must be 1 (E0301). A view"))


# ----------------------------------------------------------------- one position of a dimension

def _select_shape(shapes, a):
    (x,) = shapes
    d = norm_dim(a["dim"], len(x), "dim")
    if d == 0:
        raise OpError("select takes from the batch dimension 0", "dim", C.VALUE_OUT_OF_RANGE,
                      "select dimension 1 or above (the tokens: dim=1)")
    size = concrete(x[d], "the selected dimension")
    if not -size <= a["index"] < size:
        raise OpError(f"index {a['index']} is out of range for dimension {a['dim']} of size {size}", "index",
                      C.INDEX_OUT_OF_RANGE)
    return tuple(x[:d]) + tuple(x[d + 1:])


def _select_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    d = n.attr("dim") % len(x.shape)
    attrs = {"dim": d, "index": n.attr("index") % x.shape[d], "size": x.shape[d], "rank": len(x.shape)}
    return [(0, b.add(SELECT_T, (g,), attrs, b.gshape(x), n.span, None, f"d_{n.name or 'select'}"))]


def _select_grad_code(a, ins, k, const, path):
    if a["size"] == 1:  # the whole dimension (a head restricted to the selected row)
        return [f"{{out}} = {ins[0]}.unsqueeze({a['dim']})"]
    pad = [0, 0] * (a["rank"] - 1 - a["dim"]) + [a["index"], a["size"] - 1 - a["index"]]
    return [f"{{out}} = F.pad({ins[0]}.unsqueeze({a['dim']}), {tuple_lit(pad)})"]


def _select_call(b, shapes):
    return {"dim": int(b["dim"]), "index": int(b["index"])}


def _index_call(b, shapes, out=None):
    """x[:, i] (indexing: one position of a dimension after the batch, the dimension removed), x[:, a:b],
    x[..., 0::2, 1::2, :] (slicing, as aten.slice in an exported graph) and both at once (x[:, 0, 1:]):
    a narrow or subsample per sliced dimension, then a select per indexed one (none: the input
    itself); x[:, None] (an unsqueeze): the reshape to the traced shape `out`."""
    from evo.ops.dims import reshape_steps, slice_steps

    idx = b["index"] if isinstance(b["index"], tuple) else (b["index"],)
    full = slice(None, None, None)
    x = shapes[0]
    if any(v is None for v in idx):
        if all(v is None or v is Ellipsis or v == full for v in idx):  # x[:, None]: an unsqueeze
            return reshape_steps(x, out)
        raise NotConvertible("indexing with None (a new dimension) together with positions or slices: "
                             "write x[...].unsqueeze(d)")
    if sum(v is Ellipsis for v in idx) > 1 or not all(
            v is Ellipsis or isinstance(v, slice) or isinstance(v, int) and not isinstance(v, bool) for v in idx):
        raise NotConvertible("indexing with a tensor, a list or a bool: evo takes positions (x[:, i]) and "
                             "slices (x[:, a:b], x[..., ::2]) only")
    if Ellipsis in idx:
        i = idx.index(Ellipsis)
        idx = idx[:i] + (full,) * max(0, len(x) - len(idx) + 1) + idx[i + 1:]
    if len(idx) > len(x):
        raise NotConvertible(f"indexes {len(idx)} dimensions of a {len(x)}-D tensor")
    steps = []
    for d, v in enumerate(idx):
        if isinstance(v, slice) and v != full:
            steps += slice_steps(d, v.start, v.stop, 1 if v.step is None else v.step, x)
    ints = [d for d, v in enumerate(idx) if isinstance(v, int)]
    if 0 in ints:
        raise NotConvertible("indexes the batch dimension (evo keeps the batch dimension N whole)")
    for d in reversed(ints):  # the last first: the dimensions before keep their places
        steps.append(("select", {"dim": d, "index": int(idx[d])}))
    if len(steps) == 1 and steps[0][0] == "select":
        return steps[0][1]
    return steps


register(OpDef(
    "select", (ParamSpec("dim", "int"), ParamSpec("index", "int")), _select_shape,
    functional=lambda a, xs: f"{xs[0]}.select({lit(a['dim'])}, {lit(a['index'])})",
    torch="torch.select", affine=True, grad=_select_grad,
    reads_rows=lambda a, s: (a["index"] % s[1], 1, {"dim": 1, "index": 0}) if a["dim"] % len(s) == 1 else None,
    cost=lambda W, a, ins, out: W.CopyWorkload(numel(out), numel(out), view=True),
    imports=Imports(calls=(Call(("torch.select", "Tensor.select"), ("input", "dim", "index"), _select_call),
                           # (the tracer takes a piece of chunk / split and attention's output itself)
                           Call(("operator.getitem",), ("input", "index"), _index_call, free=("index",), output=True,
                                constant="indexes a value that is not a tensor (a tuple or list computed in the graph)"))),
    doc="one position of a dimension, the dimension removed (`x[:, 0]`: the class token)",
    doc_call="select(x, dim, index)", doc_args="`dim` int, in range, not 0; `index` int, in range "
                                               "(negative from the end)",
    doc_shape="the input without dimension `dim` (E0206 out of range). A view"))

register(OpDef(SELECT_T, (), None, n_inputs=None, gradient_only=True, grad_code=_select_grad_code,
               cost=lambda W, a, ins, out: W.CopyWorkload(numel(ins[0]), numel(out)),
               doc="gradient of select: zeros except at the selected position"))


# ----------------------------------------------------------------- mean over dimensions

def _mean_dims(a, r: int) -> tuple[int, ...]:
    dims = sorted({norm_dim(d, r, "dims") for d in a["dims"]})
    if 0 in dims:
        raise OpError("mean over the batch dimension 0", "dims", C.VALUE_OUT_OF_RANGE, "average dimensions 1 or above")
    return tuple(dims)


def _mean_shape(shapes, a):
    (x,) = shapes
    dims = _mean_dims(a, len(x))
    if len(dims) != len(a["dims"]):
        raise OpError(f"dimensions {list(a['dims'])} name one dimension twice", "dims", C.VALUE_OUT_OF_RANGE)
    for d in dims:
        concrete(x[d], "an averaged dimension")
    if a["keepdim"]:
        return tuple(1 if i in dims else s for i, s in enumerate(x))
    return tuple(s for i, s in enumerate(x) if i not in dims)


def _mean_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    dims = _mean_dims(n.attr_dict, len(x.shape))
    kept = tuple(1 if i in dims else s for i, s in enumerate(x.shape))[1:]
    attrs = {"kept": kept, "full": tuple(x.shape[1:]), "count": numel([x.shape[d] for d in dims])}
    return [(0, b.add(MEAN_T, (g,), attrs, b.gshape(x), n.span, None, f"d_{n.name or 'mean'}"))]


def _mean_grad_code(a, ins, k, const, path):
    return [f"{{out}} = {ins[0]}.reshape(-1, {', '.join(str(s) for s in a['kept'])}).expand(-1, "
            f"{', '.join(str(s) for s in a['full'])}) / {a['count']}"]


def _mean_code(a, xs):
    dims = a["dims"]
    d = lit(dims[0]) if len(dims) == 1 else lit(tuple(dims))
    return f"{xs[0]}.mean({d}{', keepdim=True' if a['keepdim'] else ''})"


register(OpDef(
    "mean", (ParamSpec("dims", "ints", doc="the dimensions averaged"), ParamSpec("keepdim", "bool", False)),
    _mean_shape, functional=_mean_code, torch="torch.mean", affine=True, grad=_mean_grad,
    cost=lambda W, a, ins, out: W.ReduceWorkload(max(1, numel(out)), max(1, numel(ins[0]) // max(1, numel(out)))),
    doc="the mean over dimensions",
    doc_call="mean(x, dims, keepdim=false)", doc_args="`dims` int or list of ints, in range, not 0, each once; "
                                                      "`keepdim` bool (false)",
    doc_shape="the averaged dimensions removed (kept as 1 with `keepdim`); E0203 for the batch or a repeated "
              "dimension"))

register(OpDef(MEAN_T, (), None, n_inputs=None, gradient_only=True, grad_code=_mean_grad_code,
               cost=lambda W, a, ins, out: W.EltwiseWorkload(numel(out), 1, 1),
               doc="gradient of a mean: the output gradient spread evenly"))

__all__ = ["ATTENTION", "MHA_T", "SDPA_T", "SELECT_T", "MEAN_T", "attention_parts", "passthrough_grad"]
