"""IR -> IR passes, run in the order of PIPELINE.  Each is a named pure function
`Graph -> Graph`; the verifier runs after each one in the tests."""

from __future__ import annotations

from typing import Callable

from evo import ops
from evo.ir.node import Graph

Pass = Callable[[Graph], Graph]


def dead_code_elimination(g: Graph) -> Graph:
    """Remove nodes no output depends on.

    Nodes that own parameters (a module path) are kept even when dead, so the
    module's `state_dict` stays exactly the program's; so are the outputs of
    every scope (block instance, seq) that keeps a node, since the scope's
    module computes them.  Value paths to removed nodes are dropped."""
    by_id = {n.id: n for n in g.nodes}
    scopes = {s.path: s for s in g.scopes}
    live: set[int] = set()
    kept: set[str] = {""}  # scopes kept, with their outputs live
    # training-only values (`training aux = ...`) are roots too: their modules are
    # in the module tree; code generation computes them in training mode only
    work = (list(g.outputs) + list(g.inputs) + list(g.train_outputs)
            + [n.id for n in g.nodes if n.path is not None])

    def keep_scope(path: str) -> None:
        while path not in kept and path in scopes:
            kept.add(path)
            s = scopes[path]
            work.extend(s.input_ids())
            work.extend(s.outputs)
            path = s.parent or ""

    while True:
        while work:
            nid = work.pop()
            if nid in live:
                continue
            live.add(nid)
            n = by_id[nid]
            work.extend(n.inputs)
            keep_scope(n.scope)
        # a scope without nodes (a block returning its input) whose values are live
        for s in g.scopes:
            if s.path not in kept and all(i in live for i in s.input_ids()) and all(o in live for o in s.outputs):
                keep_scope(s.path)
        if not work:
            break
    if len(live) == len(g.nodes) and all(p in kept for p in scopes):
        return g
    nodes = tuple(n for n in g.nodes if n.id in live)
    values = tuple((p, i) for p, i in g.values if i in live)
    scopes_kept = tuple(s for s in g.scopes if s.path in kept)
    return g.with_(nodes=nodes, values=values, scopes=scopes_kept)


def _fusion(n) -> str:
    """A node's part in a fusion chain, from its op's flags: "producer" (conv, linear), "join"
    (add, mul), "norm" (batch norms), "activation", or ""."""
    d = ops.lookup(n.op)
    if d is None:
        return ""
    return d.fusion or ("activation" if d.activation else "")


def mark_fusion(g: Graph) -> Graph:
    """Mark conv/linear -> batchnorm? -> activation? chains whose intermediates have
    one user, and add/mul -> activation pairs: attr `fuse` = id of the chain's
    producer on every member after it.
    The cost model computes such members in the producer's output path (no
    traffic of their own)."""
    users = g.users()
    training_only = g.training_only()  # readers that eval never runs do not break a chain
    if training_only:
        users = {k: [u for u in us if u not in training_only] for k, us in users.items()}
    by_id = {n.id: n for n in g.nodes}
    fuse: dict[int, int] = {}
    for n in g.nodes:
        if _fusion(n) == "join":  # a residual add (or mul) -> activation: `relu(bn2 + x)`
            us = users[n.id]
            if len(us) == 1 and n.id not in g.outputs:
                nxt = by_id[us[0]]
                if _fusion(nxt) == "activation" and len(nxt.inputs) == 1:
                    fuse[nxt.id] = n.id
            continue
        if _fusion(n) != "producer":
            continue
        cur, stage = n, 0  # 0: a norm or an activation may follow; 1: an activation; 2: done
        while stage < 2:
            us = users[cur.id]
            if len(us) != 1 or cur.id in g.outputs:
                break
            nxt = by_id[us[0]]
            if len(nxt.inputs) != 1:
                break
            if stage == 0 and _fusion(nxt) == "norm":
                stage = 1
            elif _fusion(nxt) == "activation":
                stage = 2
            else:
                break
            fuse[nxt.id] = n.id
            cur = nxt
    changed = False
    nodes = []
    for n in g.nodes:  # (re)mark: a graph marked before gets no second `fuse` attribute
        want = fuse.get(n.id)
        if n.attr("fuse") != want:
            attrs = tuple(kv for kv in n.attrs if kv[0] != "fuse")
            n = n.with_(attrs=attrs if want is None else tuple(sorted(attrs + (("fuse", want),))))
            changed = True
        nodes.append(n)
    return g.with_(nodes=tuple(nodes)) if changed else g


PIPELINE: list[tuple[str, Pass]] = [
    ("dead_code_elimination", dead_code_elimination),
    ("mark_fusion", mark_fusion),
]


def run_pipeline(g: Graph, verify_each: bool = False) -> Graph:
    from evo.passes.verify import verify

    for _, p in PIPELINE:
        g = p(g)
        if verify_each:
            verify(g)
    return g
