"""IR invariants, checked after every pass in the tests."""

from __future__ import annotations

from evo.ir.node import Graph, Op


class IRError(AssertionError):
    pass


def verify(g: Graph) -> Graph:
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
        if list(n.attrs) != sorted(n.attrs, key=lambda kv: kv[0]):
            raise IRError(f"{g.name}: node {n.id} attributes are not sorted")
        seen.add(n.id)
    for o in g.outputs + g.inputs:
        if o not in seen:
            raise IRError(f"{g.name}: output/input {o} is not a node")
    for p, nid in g.values:
        if nid not in seen:
            raise IRError(f"{g.name}: value path {p!r} names missing node {nid}")
    for s in g.scopes:
        if s.input not in seen or any(o not in seen for o in s.outputs):
            raise IRError(f"{g.name}: scope {s.path!r} refers to a missing node")
    return g
