"""IR invariants, checked after every pass in the tests.

It lives beside the passes, not in `evo.ir`: checking shapes needs the op
table, and the IR does not import it (ir <- ops <- passes)."""

from __future__ import annotations

from evo import ops
from evo.ir.node import Graph, Op, fmt_shape


class IRError(AssertionError):
    pass


def _check_shape(g: Graph, n, shapes: dict) -> None:
    """An op's shape is what its shape rule gives for its inputs."""
    d = ops.lookup(n.op)
    if d is None or d.shape is None or n.op == Op.INPUT:
        return  # gradient ops and folded constants carry their own shapes
    if d.n_inputs is not None and len(n.inputs) != d.n_inputs:
        raise IRError(f"{g.name}: node {n.id} ({n.op.value}) has {len(n.inputs)} inputs, "
                      f"expected {d.n_inputs}")
    attrs = n.attr_dict
    if any(p.name not in attrs for p in d.params):
        raise IRError(f"{g.name}: node {n.id} ({n.op.value}) lacks attributes "
                      f"{[p.name for p in d.params if p.name not in attrs]}")
    try:
        want = tuple(d.shape([shapes[i] for i in n.inputs], attrs))
    except ops.OpError as e:
        raise IRError(f"{g.name}: node {n.id} ({n.op.value}): {e.message}") from None
    if want != n.shape:
        raise IRError(f"{g.name}: node {n.id} ({n.op.value}) has shape {fmt_shape(n.shape)}, but its inputs give "
                      f"{fmt_shape(want)}")


def verify(g: Graph) -> Graph:
    shapes: dict[int, tuple] = {}
    seen: set[int] = set()
    paths: set[str] = set()
    scopes = {s.path for s in g.scopes}
    for i, n in enumerate(g.nodes):
        if n.id in seen:
            raise IRError(f"{g.name}: node id {n.id} appears twice")
        for inp in n.inputs:
            if inp not in seen:
                raise IRError(f"{g.name}: node {n.id} ({n.op.value}) uses {inp} before it is defined")
        if n.op == Op.INPUT and n.inputs:
            raise IRError(f"{g.name}: input node {n.id} has inputs")
        if not isinstance(n.shape, tuple) or not all(isinstance(d, (int, str)) for d in n.shape):
            raise IRError(f"{g.name}: node {n.id} has a malformed shape {n.shape!r}")
        if any(isinstance(d, int) and d <= 0 for d in n.shape):
            raise IRError(f"{g.name}: node {n.id} has a non-positive dimension {n.shape}")
        if n.path is not None:
            if n.path in paths:
                raise IRError(f"{g.name}: module path {n.path!r} is used twice")
            paths.add(n.path)
        if n.scope and n.scope not in scopes:
            raise IRError(f"{g.name}: node {n.id} is in unknown scope {n.scope!r}")
        keys = [k for k, _ in n.attrs]
        if keys != sorted(keys) or len(set(keys)) != len(keys):
            raise IRError(f"{g.name}: node {n.id} attributes are not sorted and unique")
        _check_shape(g, n, shapes)
        shapes[n.id] = n.shape
        seen.add(n.id)
    for o in g.outputs + g.inputs + g.train_outputs:
        if o not in seen:
            raise IRError(f"{g.name}: output/input {o} is not a node")
    for p, nid in g.values:
        if nid not in seen:
            raise IRError(f"{g.name}: value path {p!r} names missing node {nid}")
    for s in g.scopes:
        if any(i not in seen for i in s.input_ids()) or any(o not in seen for o in s.outputs):
            raise IRError(f"{g.name}: scope {s.path!r} refers to a missing node")
    return g
