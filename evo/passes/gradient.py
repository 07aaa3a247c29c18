"""The compiled-CAM pass: differentiate the part of a network after a CAM layer.

`explain_graph(g, layer)` builds the *explain graph* of a network for one CAM
layer: an IR graph whose inputs are the layer's activation `acts`, the values
the head needs from before the layer (`side` inputs, e.g. a residual skip), and
the gradient seed `gseed` ([K*B, classes]: one one-hot row per explained class
and image, class-major); it recomputes the head (the nodes on paths from the
layer to the logits) and then runs the head's reverse-mode gradient as ordinary
IR ops (conv -> transposed conv with the same weight, relu -> mask, max-pool ->
scatter by indices, ...), so the explainer needs no autograd.  Outputs:
(logits, d score / d acts).

`fold_affine` then replaces the gradient of an affine head (global pooling,
flatten, linear, ... ) by a constant per-channel weight matrix that the explainer
computes once from the model's parameters: the CAM is one weighted sum, for any
number of classes, and the folded graph contains no gradient op.

The gradient rule of an op is its op-table entry's `grad` (evo/ops), or for an
elementwise op its `derivative`; it gets the builder below, the forward node and
the id of the gradient of its output and returns [(input index, gradient node
id)].  This pass names no op: gradients are summed with `add`, everything else
comes from the entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from evo import ops
from evo.diagnostics import Span
from evo.ir.node import Graph, Node, Op, fmt_shape
from evo.ops.gradient import CONST, WEIGHTED_SUM, derivative_grad


class NotDifferentiable(Exception):
    pass


KB = "KB"  # symbolic first dimension of gradient tensors: K classes x B images


@dataclass
class _Builder:
    nodes: list[Node] = field(default_factory=list)

    def add(self, op: str, inputs, attrs: dict, shape, span: Span, path=None, name="") -> int:
        nid = len(self.nodes)
        self.nodes.append(Node(nid, Op(op), tuple(inputs), tuple(sorted(attrs.items())), tuple(shape), span,
                               "", path, name))
        return nid

    @staticmethod
    def gshape(node: Node) -> tuple:
        """The shape of the gradient of a node's output: K*B rows."""
        return _gshape(node)


def head_nodes(g: Graph, layer_id: int) -> tuple[list[Node], list[int]]:
    """Nodes on a path from `layer_id` to an output (in order) and the side values
    they read that come from outside that set."""
    desc: set[int] = {layer_id}
    for n in g.nodes:
        if any(i in desc for i in n.inputs):
            desc.add(n.id)
    to_out: set[int] = set(g.outputs)
    for n in reversed(g.nodes):
        if n.id in to_out:
            to_out.update(n.inputs)
    head = [n for n in g.nodes if n.id in desc and n.id in to_out and n.id != layer_id]
    hs = {n.id for n in head} | {layer_id}
    side: list[int] = []
    for n in head:
        for i in n.inputs:
            if i not in hs and i not in side:
                side.append(i)
    return head, side


def _reverse_sweep(g: Graph, root: Node, head: list[Node], side, out_id: int):
    """The differentiated region of `g` from `root` (an input "acts") to the output `out_id`:
    `head` copied into a new builder with the `side` values it reads as inputs, a seed
    input "gseed" [KB, classes] and the reverse sweep through each op entry's rule.
    Returns (builder, remap: g's ids -> the builder's, grads: the gradient nodes still to
    sum per builder id, summed: g's id -> its summed gradient)."""
    b = _Builder()
    remap: dict[int, int] = {root.id: b.add(Op.INPUT, (), {"role": "acts"}, root.shape, root.span, name="acts")}
    for k, sid in enumerate(side):
        sn = g.node(sid)
        remap[sid] = b.add(Op.INPUT, (), {"role": "side", "source": sn.name or f"%{sid}"}, sn.shape, sn.span,
                           name=f"side{k}")
    for n in head:
        remap[n.id] = b.add(n.op, [remap[i] for i in n.inputs], {k: v for k, v in n.attrs if k != "fuse"},
                            n.shape, n.span, n.path, n.name)
    logits = b.nodes[remap[out_id]]
    if len(logits.shape) != 2:
        raise NotDifferentiable(f"the network's output is {fmt_shape(logits.shape)}, not [N, classes]")
    seed = b.add(Op.INPUT, (), {"role": "gseed"}, (KB, logits.shape[1]), logits.span, name="gseed")
    # reverse sweep: grads[node] = list of gradient node ids to be summed
    grads: dict[int, list[int]] = {remap[out_id]: [seed]}
    # the nodes that depend on the root (a `narrow` of a side value that restrict_rows added does not)
    head_ids = {remap[root.id]}
    for n in head:
        if any(remap[i] in head_ids for i in n.inputs):
            head_ids.add(remap[n.id])
    summed: dict[int, int] = {}
    for n in reversed(head):
        nid = remap[n.id]
        gl = grads.get(nid)
        if not gl:
            continue
        summed[n.id] = gsum = _sum(b, gl, b.nodes[nid])
        _backprop(b, b.nodes[nid], gsum, head_ids, grads)
    return b, remap, grads, summed


def _row_dim(shape: tuple, out_rank: int) -> int:
    """Which dimension of an input of `shape` lines up with dimension 1 of a broadcasting op's
    output of rank `out_rank` (negative: none)."""
    return 1 - (out_rank - len(shape))


def _row_inputs(g: Graph, n: Node) -> list[bool] | None:
    """Per input of the rowwise node `n`: True if it is read along the output's dimension 1 (to be
    restricted with it), False if broadcast along it; None if neither (not restrictable)."""
    out = []
    for i in n.inputs:
        s = g.node(i).shape
        j = _row_dim(s, len(n.shape))
        if j < 0 or s[j] == 1:
            out.append(False)
        elif j == 1 and s[1] == n.shape[1]:
            out.append(True)
        else:
            return None
    return out


def restrict_rows(g: Graph, head: list[Node], out_id: int) -> list[Node]:
    """`head` with the part that feeds a token-reading op (select of the class token: the op's
    `reads_rows`) computed on the rows it reads only.  Going back from such a reader, a node whose
    every reader reads the same rows is computed on those rows: a rowwise op (layer norm, linear on
    tokens, elementwise: the entry's `rowwise`) on those rows of its inputs (a `narrow` of an input
    computed in full), an attention (the entry's `on_rows`) for those query rows from its whole input.
    ViT's class-token head then runs its last block's MLP and norms on one token, its attention for
    one query, and so does their gradient (exact: the other rows' gradient is zero)."""
    users: dict[int, list[Node]] = {}
    for n in head:
        for i in n.inputs:
            users.setdefault(i, []).append(n)
    rows: dict[int, tuple[int, int]] = {}  # node -> (start, length) of its dimension 1 that it computes
    inputs: dict[int, list[bool]] = {}     # a restricted rowwise node: which inputs it narrows

    def read(c: Node, nid: int) -> tuple[int, int] | None:
        """The rows of `nid` that its reader `c` reads (None: all, or not known)."""
        if c.id in inputs:  # a restricted rowwise reader reads its rows of the inputs it narrows
            return rows[c.id] if all(ok for i, ok in zip(c.inputs, inputs[c.id]) if i == nid) else None
        d = ops.lookup(c.op)
        r = d.reads_rows(c.attr_dict, g.node(nid).shape) if d is not None and d.reads_rows is not None else None
        return None if r is None else r[:2]

    for n in reversed(head):
        if n.id == out_id or n.id in g.outputs or len(n.shape) < 2 or not isinstance(n.shape[1], int):
            continue
        want = {read(c, n.id) for c in users.get(n.id, ())}
        if len(want) != 1 or None in want or next(iter(want))[1] >= n.shape[1]:
            continue
        d = ops.lookup(n.op)
        shapes = [g.node(i).shape for i in n.inputs]
        if d is not None and d.rowwise is not None and d.rowwise(n.attr_dict, shapes):
            which = _row_inputs(g, n)
            if which is not None:
                rows[n.id], inputs[n.id] = want.pop(), which
        elif d is not None and d.on_rows is not None:
            rows[n.id] = want.pop()
    if not rows:
        return head
    next_id = max(m.id for m in g.nodes) + 1
    narrowed: dict[tuple[int, int, int], int] = {}
    out: list[Node] = []
    for n in head:
        d = ops.lookup(n.op)
        if n.id in rows:
            start, length = rows[n.id]
            shape = (n.shape[0], length) + tuple(n.shape[2:])
            if n.id in inputs:
                ins = []
                for i, cut in zip(n.inputs, inputs[n.id]):
                    if cut and i not in rows:  # computed in full (or a side value): take the rows
                        key = (i, start, length)
                        if key not in narrowed:
                            op, attrs = ops.narrow_rows(start, length)
                            src = g.node(i)
                            narrowed[key] = next_id
                            out.append(Node(next_id, op, (i,), tuple(sorted(attrs.items())),
                                            (src.shape[0], length) + tuple(src.shape[2:]), n.span, "", None, "rows"))
                            next_id += 1
                        i = narrowed[key]
                    ins.append(i)
                out.append(n.with_(inputs=tuple(ins), shape=shape))
            else:
                op, attrs = d.on_rows(n.attr_dict, [g.node(i).shape for i in n.inputs], start, length)
                out.append(n.with_(op=op, attrs=tuple(sorted(attrs.items())), shape=shape))
        elif any(i in rows for i in n.inputs) and d is not None and d.reads_rows is not None:
            (i,) = n.inputs
            attrs = d.reads_rows(n.attr_dict, g.node(i).shape)[2]
            out.append(n.with_(attrs=tuple(sorted(attrs.items()))))
        else:
            out.append(n)
    return out


def explain_graph(g: Graph, layer_path: str, rows: bool = False) -> Graph:
    """The explain graph of `layer_path` (see the module's docstring); with `rows`, a head that
    reads one token computes on that token's row only (`restrict_rows`: what the compiled strategy
    runs; without it, the whole head's gradient, the work autograd does)."""
    layer = g.value(layer_path)
    if layer is None:
        raise KeyError(layer_path)
    if g.outputs[0] == layer.id:
        raise NotDifferentiable("the CAM layer is the network's output")
    head, side = head_nodes(g, layer.id)
    out_id = g.outputs[0]
    if out_id not in {n.id for n in head}:
        raise NotDifferentiable(f"the output does not depend on layer '{layer_path}'")
    if rows:
        head = restrict_rows(g, head, out_id)
    b, remap, grads, _ = _reverse_sweep(g, layer, head, side, out_id)
    a_id = remap[layer.id]
    if not grads.get(a_id):
        raise NotDifferentiable("the output does not depend on the CAM layer")
    ga = _sum(b, grads[a_id], b.nodes[a_id])
    return Graph(f"{g.name}@{layer_path}", tuple(b.nodes), tuple(x for x in range(len(b.nodes))
                                                                  if b.nodes[x].op == Op.INPUT),
                 (remap[out_id], ga), (), (("acts", a_id),), (("layer", layer_path),), g.span)


def bias_taps(g: Graph) -> list[Node]:
    """FullGrad's layers (pytorch-grad-cam's choice: every conv2d with a bias and every
    batchnorm2d, an implicit bias; the op entries say so, `fullgrad_bias`) on a path from
    the input to the output, in order."""
    head, _ = head_nodes(g, g.inputs[0])
    out = []
    for n in head:
        d = ops.lookup(n.op)
        if d is not None and d.fullgrad_bias is not None and d.fullgrad_bias(n.attr_dict):
            out.append(n)
    return out


def fullgrad_graph(g: Graph) -> Graph:
    """The gradient of the selected scores w.r.t. the network's input and w.r.t. the
    output of every bias layer (`bias_taps`), emitted as ops: the explain graph of the
    input (the whole network is the head) whose outputs are (logits, d/d input,
    d/d tap_1, ...).  Raises NotDifferentiable as explain_graph does."""
    inp = g.node(g.inputs[0])
    taps = [n.id for n in bias_taps(g)]
    head, side = head_nodes(g, inp.id)
    out_id = g.outputs[0]
    if out_id not in {n.id for n in head}:
        raise NotDifferentiable("the output does not depend on the input")
    # values the network reads that do not depend on its input (learnable tensors, buffers and
    # what is computed from them) enter the sweep as side inputs, in the order head_nodes gives;
    # the explainer computes them before the sweep
    b, remap, grads, summed = _reverse_sweep(g, inp, head, side, out_id)
    a_id = remap[inp.id]
    if not grads.get(a_id) or any(t not in summed for t in taps):
        raise NotDifferentiable("the output does not depend on the input")
    ga = _sum(b, grads[a_id], b.nodes[a_id])
    return Graph(f"{g.name}@fullgrad", tuple(b.nodes), tuple(x for x in range(len(b.nodes))
                                                            if b.nodes[x].op == Op.INPUT),
                 (remap[out_id], ga, *(summed[t] for t in taps)), (), (("acts", a_id),),
                 (("layer", "fullgrad"),), g.span)


def _gshape(node: Node) -> tuple:
    return (KB,) + tuple(node.shape[1:])


def _sum(b: _Builder, gl: list[int], like: Node) -> int:
    """The sum of several gradients of one node, with the op a program writes `+`."""
    plus = ops.by_operator("+")
    acc = gl[0]
    for other in gl[1:]:
        acc = b.add(plus.op, (acc, other), {}, _gshape(like), like.span)
    return acc


def rule_of(op) -> Callable | None:
    """The gradient rule of an op, from its registry entry: its `grad`, or for an elementwise op
    with a `derivative` (built-in activations, user-defined ops) g times that derivative; None:
    not differentiable."""
    d = ops.lookup(op)
    if d is None:
        return None
    if d.grad is None and d.derivative is not None:
        return derivative_grad
    return d.grad


GRADIENT_OPS = frozenset(Op(k) for k, d in ops.REGISTRY.items() if d.gradient_only)


def is_gradient_op(n: Node) -> bool:
    d = ops.lookup(n.op)
    return d is not None and d.gradient_only


def _affine(n: Node) -> bool:
    d = ops.lookup(n.op)
    return d is not None and d.affine


def _to_channels_first(eg: Graph, fwd: list[Node]) -> bool:
    """Does the head start by permuting a channels-last layer [N, H, W, C] to [N, C, H, W]
    (Swin's `permute` before its pooling)?"""
    from evo.ops.tokens import to_channels_first

    acts = eg.value("acts")
    return bool(fwd) and acts is not None and fwd[0].inputs == (acts.id,) and to_channels_first(fwd[0])


def is_affine_head(eg: Graph) -> bool:
    """Is the forward head an affine chain that starts with a global pooling (after the
    permute of a channels-last layer to channels first)?  Then d logits / d acts is constant
    over space and folds to channel weights."""
    fwd = forward_part(eg)
    if not fwd or any(not _affine(n) for n in fwd):
        return False
    if any(n.attr("role") == "side" for n in eg.nodes if n.op == Op.INPUT):
        return False
    pool = fwd[1] if _to_channels_first(eg, fwd) and len(fwd) > 1 else fwd[0]
    first = ops.of_node(pool)
    if first.global_average is None or not first.global_average(pool.attr_dict):
        return False
    # a chain: each forward node reads the previous one only
    prev = eg.value("acts").id if eg.value("acts") else 0
    for n in fwd:
        if n.inputs != (prev,):
            return False
        prev = n.id
    return True


def is_folded(eg: Graph) -> bool:
    """Did the explain graph's affine head fold (the map a weighted sum of the activations by the
    class weights, no gradient ops)?"""
    return any(n.op == WEIGHTED_SUM for n in eg.nodes)


def folded_part(n: Node) -> bool:
    """Is `n` the folded CAM's weighted sum (gradient work that does not depend on the seed)?"""
    return n.op == WEIGHTED_SUM


def seed_dependent(eg: Graph) -> set[int]:
    """Ids of the gradient seed and of every node of an explain graph that depends on it."""
    dep = {x.id for x in eg.nodes if x.op == Op.INPUT and x.attr("role") == "gseed"}
    for m in eg.nodes:
        if any(i in dep for i in m.inputs):
            dep.add(m.id)
    return dep


def forward_part(eg: Graph) -> list[Node]:
    """The recomputed head of an explain graph: its ops that do not depend on the seed."""
    dep = seed_dependent(eg)
    return [n for n in eg.nodes if n.op != Op.INPUT and not is_gradient_op(n) and n.id not in dep]


def fold_affine(eg: Graph) -> Graph:
    """Affine head -> a CONST channel-weight matrix [classes, C] (computed once from
    the model's parameters by pushing the channel basis through the head) and a
    WEIGHTED_SUM node: the gradient ops disappear."""
    if not is_affine_head(eg):
        return eg
    acts = eg.value("acts")
    fwd = forward_part(eg)
    logits_id = eg.outputs[0]
    keep = [n for n in eg.nodes if n.op == Op.INPUT and n.attr("role") != "gseed"] + fwd
    ids = {n.id for n in keep}
    nodes = [n for n in eg.nodes if n.id in ids]
    nid = max(ids) + 1
    ncls = eg.node(logits_id).shape[1]
    # the channel basis enters the head at the acts, or after the permute of a channels-last layer
    # (the explainer hands the map channels first)
    start = fwd[0] if _to_channels_first(eg, fwd) else acts
    c = start.shape[1]
    hw = start.shape[2] * start.shape[3]
    chain = tuple(n.id for n in fwd if n.id != start.id)
    # `start` only where the basis enters after the acts (the IR of every other head stays as it was)
    where = (("start", start.id),) if start.id != acts.id else ()
    const = Node(nid, CONST, (), (("chain", chain), ("scale", 1.0 / hw)) + where, (ncls, c),
                 acts.span, "", None, "channel_weights")
    # the CAM: sum_c J[class, c] * acts[c] -- one weighted sum per explained class
    ws = Node(nid + 1, WEIGHTED_SUM, (start.id, const.id), (), (KB,) + tuple(start.shape[2:]), acts.span, "",
              None, "cam")
    nodes += [const, ws]
    return eg.with_(nodes=tuple(nodes), inputs=tuple(n.id for n in nodes if n.op == Op.INPUT),
                    outputs=(logits_id, ws.id))


def _backprop(b, node: Node, gsum: int, head_ids: set[int], grads: dict[int, list[int]]) -> None:
    """Add `node`'s input gradients (from its entry's rule, given the summed output gradient
    `gsum`) to `grads`, for the inputs inside the differentiated region `head_ids`."""
    rule = rule_of(node.op)
    if rule is None:
        d = ops.lookup(node.op)
        if d is not None and not d.builtin:
            raise NotDifferentiable(f"the user-defined op '{d.name}' has no derivative")
        raise NotDifferentiable(f"no gradient rule for {node.op.value}")
    for inp_idx, gin in rule(b, node, gsum):
        src = node.inputs[inp_idx]
        if src in head_ids:
            grads.setdefault(src, []).append(gin)


def compiled_explain_graph(g: Graph, layer_path: str, fold: bool = True) -> Graph:
    """What the compiled strategy runs (`fold`: an affine head folded, a token-reading head on its
    rows); without `fold`, the plain gradient program (the work autograd does: the cost model's)."""
    eg = explain_graph(g, layer_path, rows=fold)
    return fold_affine(eg) if fold else eg

