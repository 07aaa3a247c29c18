"""IR node -> cost-model workload, by the op's cost rule in the op table (evo/ops).

Each entry's `cost(W, attrs, input dims, output dims)` gets this package's
workload module as `W` (the op table does not import the cost model).

A node's shape may hold the symbolic batch `N` and, in explain graphs, the
class-batched `KB`; :func:`workload` substitutes both.  Ops that move nothing
(flatten of a contiguous tensor, identity, dropout in eval mode) are views;
batchnorm and activations fused into their producer (the `fuse` attribute set
by `mark_fusion`) are computed in the producer's output path and are not
costed separately.
"""

from __future__ import annotations

import math

from evo import ops
from evo.cost import workload as W
from evo.cost.workload import EltwiseWorkload, Workload
from evo.ir.node import Node, Op


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


def workload(n: Node, in_shapes: list[tuple], batch: int, kb: int | None = None
             ) -> Workload | list[tuple[str, Workload]] | None:
    """The workload of one node (None: costs nothing, e.g. an input or a fused activation); an op of
    several steps (attention: projections, Q K^T, softmax, P V) gives [(step label, workload)]."""
    kb = kb if kb is not None else batch
    out = dims(n.shape, batch, kb)
    ins = [dims(s, batch, kb) for s in in_shapes]
    a = n.attr_dict
    if n.op == Op.INPUT or "fuse" in a:
        return None
    d = ops.lookup(n.op)
    if d is None:
        raise NotImplementedError(f"no cost rule for {n.op.value}")
    if d.cost is None:
        if d.builtin:  # a folded constant: computed once at load time
            return None
        return EltwiseWorkload(_numel(out), max(1, len(ins)), 1)  # a user-defined op without a cost rule
    return d.cost(W, a, ins, out)
