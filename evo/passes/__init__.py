"""IR -> IR passes, run in the order of PIPELINE.  Each is a named pure function
`Graph -> Graph`; the verifier runs after each one in the tests."""

from __future__ import annotations

from typing import Callable

from evo.ir.node import Graph, Op

Pass = Callable[[Graph], Graph]


def dead_code_elimination(g: Graph) -> Graph:
    """Remove nodes no output depends on.

    Nodes that own parameters (a module path) are kept even when dead, so the
    module's `state_dict` stays exactly the program's; value paths to removed
    nodes are dropped."""
    live: set[int] = set(g.outputs) | set(g.inputs)
    for n in reversed(g.nodes):
        if n.id in live or n.path is not None:
            live.add(n.id)
            live.update(n.inputs)
    if len(live) == len(g.nodes):
        return g
    nodes = tuple(n for n in g.nodes if n.id in live)
    values = tuple((p, i) for p, i in g.values if i in live)
    scopes = tuple(s for s in g.scopes if s.input in live and all(o in live for o in s.outputs))
    return g.with_(nodes=nodes, values=values, scopes=scopes)


PRODUCERS = {Op.CONV2D, Op.LINEAR}
NORMS = {Op.BATCHNORM2D, Op.BATCHNORM1D}
ACTIVATIONS = {Op.RELU, Op.RELU6, Op.LEAKY_RELU, Op.GELU, Op.SILU, Op.SIGMOID, Op.TANH, Op.HARDSWISH,
               Op.HARDSIGMOID}


def mark_fusion(g: Graph) -> Graph:
    """Mark conv/linear -> batchnorm? -> activation? chains whose intermediates have
    one user: attr `fuse` = id of the chain's producer on every member after it.
    The cost model computes such members in the producer's output path (no
    traffic of their own)."""
    users = g.users()
    by_id = {n.id: n for n in g.nodes}
    fuse: dict[int, int] = {}
    for n in g.nodes:
        if n.op not in PRODUCERS:
            continue
        cur, stage = n, 0  # 0: a norm or an activation may follow; 1: an activation; 2: done
        while stage < 2:
            us = users[cur.id]
            if len(us) != 1 or cur.id in g.outputs:
                break
            nxt = by_id[us[0]]
            if len(nxt.inputs) != 1:
                break
            if stage == 0 and nxt.op in NORMS:
                stage = 1
            elif nxt.op in ACTIVATIONS:
                stage = 2
            else:
                break
            fuse[nxt.id] = n.id
            cur = nxt
    if not fuse:
        return g
    nodes = tuple(n.with_(attrs=tuple(sorted(n.attrs + (("fuse", fuse[n.id]),))))
                  if n.id in fuse else n for n in g.nodes)
    return g.with_(nodes=nodes)


PIPELINE: list[tuple[str, Pass]] = [
    ("dead_code_elimination", dead_code_elimination),
    ("mark_fusion", mark_fusion),
]


def run_pipeline(g: Graph, verify_each: bool = False) -> Graph:
    from evo.ir.verify import verify

    for _, p in PIPELINE:
        g = p(g)
        if verify_each:
            verify(g)
    return g
