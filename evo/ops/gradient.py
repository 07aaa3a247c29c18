"""Gradient-only ops: emitted by the compiled-CAM pass (evo/passes/gradient.py), never
written in programs, and the two ops of a folded affine head (`const`, `weighted_sum`).
They carry their shapes (no shape rule).  Each entry says how the explainer writes it
(`grad_code`: PyTorch lines calling the pasted gradient runtime's helpers,
evo/codegen/grad_runtime.py); evo/codegen/explain.py knows none of them by name.

`derivative_grad` is the reverse-mode rule of every op whose entry gives a `derivative`
(the built-in activations and user-defined elementwise ops alike): one `activation_grad`
node, written as g times the op's derivative expression."""

from __future__ import annotations

from evo.ir.node import Op
from evo.ops.base import REGISTRY, OpDef, eltwise_cost, numel, register

CONV2D_T = Op("conv2d_grad_input")
LINEAR_T = Op("linear_grad_input")
SCALE = Op("batchnorm_grad")       # grad * per-channel constant
UNPOOL_MAX = Op("maxpool2d_grad")
UNPOOL_AVG = Op("avgpool2d_grad")
EXPAND = Op("adaptive_avgpool2d_grad")
RESHAPE = Op("reshape")  # the forward op's entry (evo/ops/dims.py) writes its gradient form too
SLICE = Op("concat_grad")          # a slice of the gradient
ACT_GRAD = Op("activation_grad")
CONST = Op("const")                # a compile-time folded tensor
WEIGHTED_SUM = Op("weighted_sum")


def derivative_grad(b, n, g):
    """The rule of an elementwise op with a `derivative` (built-in activation or user-defined):
    g times d op(x) / d x, from the op's input x and output y (both saved)."""
    x = b.nodes[n.inputs[0]]
    attrs = {"act": n.op.value, **{k: v for k, v in n.attrs if k != "fuse"}}
    return [(0, b.add(ACT_GRAD, (g, x.id, n.id), attrs, b.gshape(x), n.span, None, f"d_{n.name or n.op.value}"))]


def _conv_t_cost(W, a, ins, out):
    # the forward convolution's loop nest (its MACs), reading the output gradient and
    # writing the input-sized gradient (ConvWorkload.transposed)
    g = ins[0]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    return W.ConvWorkload(g[0], g[1], out[1], g[2], g[3], kh, kw, sh, sw, dh, dw, a["groups"], out[2], out[3],
                          False, ph, pw, transposed=True)


def _weighted_sum_cost(W, a, ins, out):
    acts = ins[0]
    k = max(1, out[0] // max(1, acts[0]))  # out[0] is K*B
    return W.MatmulWorkload(k, acts[2] * acts[3], acts[1], batch=acts[0])


# ----------------------------------------------------------------- how the explainer writes them
#
# grad_code(attrs, input expressions, k, const, path) -> lines assigning `{out}`; `k` is the
# number of classes explained at once, `const(base, init)` a buffer computed once from the model
# (`m(path)` is the submodule the gradient belongs to), `path` the forward layer's module path.
# The node's shape is in attrs["@shape"] (gradients are [K*B, ...]).

def _conv_t_code(a, ins, k, const, path):
    w = const("w", f"m({path!r}).weight.detach()")
    return [f"{{out}} = F.conv_transpose2d({ins[0]}, {w}, None, {a['stride']!r}, {a['padding']!r}, "
            f"{a['output_padding']!r}, {a['groups']}, {a['dilation']!r})"]


def _linear_t_code(a, ins, k, const, path):
    w = const("w", f"m({path!r}).weight.detach()")
    if "@seed" in a:  # the one-hot seed: the selected classes' rows of the weight (no product with it)
        return [f"{{out}} = {ins[0]}.matmul({w}) if {a['@seed']} is None else {w}[{a['@seed']}]"]
    return [f"{{out}} = {ins[0]}.matmul({w})"]


def _scale_code(a, ins, k, const, path):
    rank = len(a["@shape"])
    view = "(1, -1)" if rank == 2 else "(1, -1" + ", 1" * (rank - 2) + ")"
    s = const("s", f"_evo_bn_scale(m({path!r})).reshape{view}")
    return [f"{{out}} = {ins[0]} * {s}"]


def _act_grad_code(a, ins, k, const, path):
    # the op's derivative expression (its entry's `derivative`) over its input and output
    d = REGISTRY[a["act"]]
    expr = d.derivative({key: v for key, v in a.items() if key != "act" and not key.startswith("@")},
                        ins[1], ins[2])
    line = f"{{out}} = (_evo_k({ins[0]}, {k}) * ({expr})).reshape({ins[0]}.shape)"
    if len(line) <= 80:
        return [line]
    # a long derivative (gelu's) over short aliases of x and y, then times the gradient: the
    # generated lines stay within the line limits
    expr = d.derivative({key: v for key, v in a.items() if key != "act" and not key.startswith("@")}, "_x", "_y")
    alias = [f"_x = {ins[1]}"] * ("_x" in expr) + [f"_y = {ins[2]}"] * ("_y" in expr)
    return alias + [f"{{out}} = {expr}", f"{{out}} = (_evo_k({ins[0]}, {k}) * {{out}}).reshape({ins[0]}.shape)"]


def _unpool_max_code(a, ins, k, const, path):
    # ins[1]: the forward max-pool's argmax indices (`indices_input`)
    return [f"{{out}} = _evo_unpool_max({ins[0]}, {ins[1]}, {k}, {tuple(a['@shape'][2:])!r})"]


def _unpool_avg_code(a, ins, k, const, path):
    h, w = a["@shape"][2], a["@shape"][3]
    div = const("div", f"_evo_avg_divisor({h}, {w}, {a['kernel']!r}, {a['stride']!r}, "
                       f"{a['padding']!r}, {a['ceil']!r}, {a['count_include_pad']!r})")
    return [f"{{out}} = _evo_unpool_avg({ins[0]}, {div}, {a['kernel']!r}, {a['stride']!r}, "
            f"{a['padding']!r}, ({h}, {w}))"]


def _expand_code(a, ins, k, const, path):
    h, w = a["@shape"][2], a["@shape"][3]
    if tuple(a["size"]) == (1, 1):
        # divide the [.., C, 1, 1] gradient, then expand it (a view: no [.., C, H, W] division)
        return [f"{{out}} = ({ins[0]} / {h * w}).expand(-1, -1, {h}, {w})"]
    mh = const("mh", f"_evo_adaptive_matrix({h}, {a['size'][0]})")
    mw = const("mw", f"_evo_adaptive_matrix({w}, {a['size'][1]})")
    return [f"{{out}} = _evo_adaptive_grad({ins[0]}, {mh}, {mw})"]


def _slice_code(a, ins, k, const, path):
    return [f"{{out}} = {ins[0]}.narrow({a['dim']}, {a['start']}, {a['stop'] - a['start']})"]


def _grad_op(name, cost, doc, code=None, gradient_only=True, indices_input=None):
    register(OpDef(name, (), None, n_inputs=None, cost=cost, gradient_only=gradient_only, doc=doc,
                   grad_code=code, indices_input=indices_input))


_grad_op(CONV2D_T, _conv_t_cost, "gradient of conv2d w.r.t. its input: a transposed convolution", _conv_t_code)
_grad_op(LINEAR_T, lambda W, a, ins, out: W.linear(numel(ins[0][:-1]), ins[0][-1], out[-1], False),
         "gradient of linear w.r.t. its input: a product with the weight", _linear_t_code)
_grad_op(SCALE, eltwise_cost(1, 1, params=True), "gradient of batchnorm: a per-channel scale", _scale_code)
# scatter of the output gradient (max: routed by the forward's argmax, a second input)
_grad_op(UNPOOL_MAX, lambda W, a, ins, out: W.EltwiseWorkload(numel(out), 2, 1), "gradient of maxpool2d",
         _unpool_max_code, indices_input=1)
_grad_op(UNPOOL_AVG, lambda W, a, ins, out: W.EltwiseWorkload(numel(out), 1, 1), "gradient of avgpool2d",
         _unpool_avg_code)
_grad_op(EXPAND, eltwise_cost(1), "gradient of adaptive_avgpool2d", _expand_code)
_grad_op(SLICE, lambda W, a, ins, out: W.CopyWorkload(numel(out), numel(out)),  # reads only what it keeps
         "gradient of concat: a slice", _slice_code)
_grad_op(ACT_GRAD, eltwise_cost(2, 2), "gradient of an elementwise op through its entry's derivative",
         _act_grad_code)
# the folded form of an affine head (no gradient left): internal, but not gradient ops
_grad_op(CONST, None, "a constant folded at load time (an affine head's channel weights)", None, False)
_grad_op(WEIGHTED_SUM, _weighted_sum_cost, "a folded CAM: one weighted sum over channels per class", None, False)
