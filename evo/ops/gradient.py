"""Gradient-only ops: emitted by the compiled-CAM pass (evo/passes/gradient.py), never
written in programs, and the two ops of a folded affine head (`const`, `weighted_sum`).
They carry their shapes (no shape rule); the code generator writes them in the
explainer (evo/codegen/explain.py)."""

from __future__ import annotations

from evo.ir.node import Op
from evo.ops.base import OpDef, eltwise_cost, numel, register, view_cost

CONV2D_T = Op("conv2d_grad_input")
LINEAR_T = Op("linear_grad_input")
MASK = Op("mask")                  # grad * (x > 0) etc.
SCALE = Op("scale")                # grad * per-channel constant
UNPOOL_MAX = Op("maxpool2d_grad")
UNPOOL_AVG = Op("avgpool2d_grad")
EXPAND = Op("adaptive_avgpool2d_grad")
RESHAPE = Op("reshape")
SLICE = Op("slice")
ACT_GRAD = Op("activation_grad")
CONST = Op("const")                # a compile-time folded tensor
WEIGHTED_SUM = Op("weighted_sum")


def _conv_t_cost(W, a, ins, out):
    # the forward convolution's loop nest (its MACs), reading the output gradient and
    # writing the input-sized gradient (ConvWorkload.transposed)
    g = ins[0]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    return W.ConvWorkload(g[0], g[1], out[1], g[2], g[3], kh, kw, sh, sw, dh, dw, a["groups"], out[2], out[3],
                          False, ph, pw, transposed=True)


def _reshape_cost(W, a, ins, out):
    if a.get("sum_to"):
        return W.ReduceWorkload(numel(out), max(1, numel(ins[0]) // max(1, numel(out))))
    return view_cost(W, a, ins, out)


def _weighted_sum_cost(W, a, ins, out):
    acts = ins[0]
    k = max(1, out[0] // max(1, acts[0]))  # out[0] is K*B
    return W.MatmulWorkload(k, acts[2] * acts[3], acts[1], batch=acts[0])


def _grad_op(name, cost, doc, gradient_only=True):
    register(OpDef(name, (), None, n_inputs=None, cost=cost, gradient_only=gradient_only, doc=doc))


_grad_op(CONV2D_T, _conv_t_cost, "gradient of conv2d w.r.t. its input: a transposed convolution")
_grad_op(LINEAR_T, lambda W, a, ins, out: W.linear(numel(ins[0][:-1]), ins[0][-1], out[-1], False),
         "gradient of linear w.r.t. its input: a product with the weight")
_grad_op(MASK, eltwise_cost(1, 2), "gradient times a mask of the forward value")
_grad_op(SCALE, eltwise_cost(1, 1, params=True), "gradient of batchnorm: a per-channel scale")
# scatter of the output gradient (max: routed by the forward's argmax, a second input)
_grad_op(UNPOOL_MAX, lambda W, a, ins, out: W.EltwiseWorkload(numel(out), 2, 1), "gradient of maxpool2d")
_grad_op(UNPOOL_AVG, lambda W, a, ins, out: W.EltwiseWorkload(numel(out), 1, 1), "gradient of avgpool2d")
_grad_op(EXPAND, eltwise_cost(1), "gradient of adaptive_avgpool2d")
_grad_op(RESHAPE, _reshape_cost, "gradient of flatten (or a broadcast gradient summed to a shape)")
_grad_op(SLICE, lambda W, a, ins, out: W.CopyWorkload(numel(out), numel(out)),  # reads only what it keeps
         "gradient of concat: a slice")
_grad_op(ACT_GRAD, eltwise_cost(2, 2), "gradient of an activation")
# the folded form of an affine head (no gradient left): internal, but not gradient ops
_grad_op(CONST, None, "a constant folded at load time (an affine head's channel weights)", False)
_grad_op(WEIGHTED_SUM, _weighted_sum_cost, "a folded CAM: one weighted sum over channels per class", False)
