"""IR node -> cost-model workload: the cost rule of every op (forward and gradient).

A node's shape may hold the symbolic batch `N` and, in explain graphs, the
class-batched `KB`; :func:`workload` substitutes both.  Ops that move nothing
(flatten of a contiguous tensor, identity, dropout in eval mode) are views;
batchnorm and activations fused into their producer (the `fuse` attribute set
by `mark_fusion`) are computed in the producer's output path and are not
costed separately.
"""

from __future__ import annotations

import math

from evo.cost.workload import (
    ConvWorkload,
    CopyWorkload,
    EltwiseWorkload,
    MatmulWorkload,
    PoolWorkload,
    ReduceWorkload,
    Workload,
    adaptive_pool,
    conv2d,
    linear,
)
from evo.ir.node import Node, Op

# ALU operations per element for the elementwise ops (MAC-equivalents)
ELTWISE_OPS = {
    Op.RELU: 1, Op.RELU6: 1, Op.LEAKY_RELU: 1, Op.HARDSIGMOID: 2, Op.HARDSWISH: 3, Op.SIGMOID: 4,
    Op.TANH: 4, Op.SILU: 5, Op.GELU: 8, Op.BATCHNORM2D: 2, Op.BATCHNORM1D: 2, Op.ADD: 1, Op.MUL: 1,
    Op.SCALE: 1, Op.ACT_GRAD: 2, Op.EXPAND: 1, Op.MASK: 1,
}


def dims(shape, batch: int, kb: int) -> tuple[int, ...]:
    out = []
    for d in shape:
        if d == "KB":
            out.append(kb)
        elif isinstance(d, str):
            out.append(batch)
        else:
            out.append(int(d))
    return tuple(out)


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def workload(n: Node, in_shapes: list[tuple], batch: int, kb: int | None = None) -> Workload | None:
    """The workload of one node (None: costs nothing, e.g. an input or a fused activation)."""
    kb = kb if kb is not None else batch
    out = dims(n.shape, batch, kb)
    ins = [dims(s, batch, kb) for s in in_shapes]
    a = n.attr_dict
    op = n.op
    if op in (Op.INPUT, Op.CONST):
        return None
    if "fuse" in a:
        return None
    if op == Op.CONV2D:
        x = ins[0]
        return conv2d(x[0], x[1], x[2], x[3], a["out"], a["kernel"], a["stride"], a["padding"], a["dilation"],
                      a["groups"], a["bias"])
    if op == Op.LINEAR:
        x = ins[0]
        return linear(_numel(x[:-1]), x[-1], a["out"], a["bias"])
    if op in (Op.MAXPOOL2D, Op.AVGPOOL2D):
        x = ins[0]
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        return PoolWorkload(x[0], x[1], out[2], out[3], kh, kw, x[2], x[3], sh, sw, ph, pw,
                            "max" if op == Op.MAXPOOL2D else "avg")
    if op == Op.ADAPTIVE_AVGPOOL2D:
        x = ins[0]
        return adaptive_pool(_numel(x[:-3]) if len(x) > 3 else 1, x[-3], x[-2], x[-1], out[-2], out[-1])
    if op in (Op.FLATTEN, Op.DROPOUT, Op.IDENTITY, Op.RESHAPE):
        if op == Op.RESHAPE and a.get("sum_to"):
            return ReduceWorkload(_numel(out), max(1, _numel(ins[0]) // max(1, _numel(out))))
        return CopyWorkload(_numel(ins[0]), _numel(out), view=True)
    if op == Op.CONCAT:
        return CopyWorkload(sum(_numel(s) for s in ins), _numel(out))
    if op == Op.SLICE:  # reads only the slice it keeps
        return CopyWorkload(_numel(out), _numel(out))
    if op == Op.SOFTMAX:
        d = a["dim"] % len(out)
        return ReduceWorkload(_numel(out) // out[d], out[d], 4, out[d])
    if op == Op.CONV2D_T:
        # costed as the convolution that computes it on the output gradient: the
        # forward conv's MACs and weight, input and output roles swapped
        g = ins[0]
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        return ConvWorkload(g[0], out[1], g[1], g[2], g[3], kh, kw, 1, 1, 1, 1, a["groups"],
                            g[2] + kh - 1, g[3] + kw - 1, False, 0, 0)
    if op == Op.LINEAR_T:
        g = ins[0]
        return linear(_numel(g[:-1]), g[-1], out[-1], False)
    if op in (Op.UNPOOL_MAX, Op.UNPOOL_AVG):
        # scatter of the output gradient (max: routed by the forward's argmax, a second input)
        return EltwiseWorkload(_numel(out), 2 if op == Op.UNPOOL_MAX else 1, 1)
    if op == Op.WEIGHTED_SUM:
        acts = ins[0]
        k = max(1, kb // max(1, acts[0]))
        return MatmulWorkload(k, acts[2] * acts[3], acts[1], batch=acts[0])
    if op in ELTWISE_OPS:
        params = 2 * out[1] if op in (Op.BATCHNORM2D, Op.BATCHNORM1D, Op.SCALE) else 0
        n_in = 2 if op in (Op.ADD, Op.MUL, Op.ACT_GRAD, Op.MASK) else 1
        return EltwiseWorkload(_numel(out), n_in, ELTWISE_OPS[op], params)
    if op == Op.CUSTOM:
        from evo import ops as _ops

        d = _ops.of_node(n)
        if d.cost is not None:
            return d.cost(a, ins, out)
        return EltwiseWorkload(_numel(out), max(1, len(ins)), 1)
    raise NotImplementedError(f"no cost rule for {op.value}")
