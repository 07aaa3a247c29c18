"""CAM explainers -> standalone PyTorch classes (one per cam configuration).

An explainer is an `nn.Module` wrapping the network module.  It evaluates the
network *flat*: `trunk` computes only what the CAM layers and their heads need
(never the head itself), each `head_i` computes the logits from layer i's
activation and the side values (e.g. a residual skip) it reads, and per
strategy the gradient of the selected scores w.r.t. layer i comes from:

- autograd: `torch.autograd.grad` of the head only, w.r.t. the layer only;
- forward: JVPs of the head (one per channel for gradcam, per element otherwise);
- compiled: `compiled_i`, the head's gradient emitted as ordinary ops by
  `evo/passes/gradient.py` (folded to channel weights for an affine head).
"""

from __future__ import annotations

import functools
import re
import textwrap
from dataclasses import dataclass
from importlib import resources

from evo import ops
from evo.check.settings import CamSpec
from evo.codegen.names import MODULE_ATTRS, Namer, explainer_namer
from evo.codegen.python import doc_text, environment, free_after_last_use
from evo.ir.node import Graph, Node, Op
from evo.ops import gradient as G
from evo.ops.tokens import Layout, cam_layout
from evo.passes.gradient import (
    GRADIENT_OPS,
    bias_taps,
    compiled_explain_graph,
    fullgrad_graph,
    head_nodes,
    seed_dependent,
)


@functools.lru_cache(maxsize=1)
def grad_runtime_source() -> str:
    return resources.files("evo.codegen").joinpath("grad_runtime.py").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ExplainConfig:
    cam: str
    network: str
    layers: tuple[str, ...]
    method: str
    classes: tuple
    strategy: str            # resolved: autograd | forward | compiled | none
    upsample: str
    normalize: str
    labels: tuple[str, ...] | None
    strategy_note: str = ""
    seed: int = 0
    eigen_smooth: bool = False
    aug_smooth: bool = False
    samples: int | None = None
    grid: tuple[int, int] | None = None

    @staticmethod
    def from_spec(spec: CamSpec, strategy: str, note: str = "") -> "ExplainConfig":
        return ExplainConfig(spec.name, spec.network, spec.layers, spec.method, spec.classes, strategy,
                             spec.upsample, spec.normalize, spec.labels, note, spec.seed, spec.eigen_smooth,
                             spec.aug_smooth, spec.samples, spec.grid)


# What the explainer template defines on the class (its buffers avoid these).
_EXPLAINER_ATTRS = frozenset({"model", "_h", "network", "method", "layers", "strategy", "classes", "upsample_mode",
                              "normalize_mode", "labels", "trunk", "derivatives", "export_module", "strategy_note",
                              "source", "seed", "eigen_smooth", "aug_smooth", "samples", "forward", "full",
                              "full_biases", "full_compiled"})


class _Flat:
    """Emits flat code for a set of nodes of one graph; module handles are
    `h[i]` entries resolved once from the wrapped model by path."""

    def __init__(self, g: Graph, handles: dict[str, int], namer: Namer, consts: list, const_names: Namer):
        self.g = g
        self.handles = handles
        self.namer = namer
        self.consts = consts   # (name, init expression) pairs for buffers
        self.const_names = const_names  # the buffers' namespace: the explainer's attributes
        self.var: dict[int, str] = {}
        self.lines: list[str] = []
        self.indices: dict[int, str] = {}  # maxpool node -> its indices variable
        self.seed_used = False  # a gradient op read the seed's class indices (`gidx`)

    def handle(self, path: str) -> str:
        if path not in self.handles:
            self.handles[path] = len(self.handles)
        return f"h[{self.handles[path]}]"

    def name_for(self, n: Node, base: str | None = None) -> str:
        v = self.namer.fresh(base or n.name or n.op.value)
        self.var[n.id] = v
        return v

    def forward_node(self, n: Node, want_indices: bool = False) -> None:
        d = ops.of_node(n)
        ins = [self.var[i] for i in n.inputs]
        if want_indices and d.with_indices is not None:
            out = self.name_for(n)
            idx = self.namer.fresh(f"{out}_idx")
            self.indices[n.id] = idx
            self.lines.append(f"{out}, {idx} = {d.with_indices(n.attr_dict, ins)}")
            return
        if d.forward_code is not None:  # an op of explain graphs only (attention for a few rows)
            out = self.name_for(n)
            mod = self.handle(n.path) if n.path is not None else "None"
            self.lines.extend(line.replace("{out}", out) for line in d.forward_code(n.attr_dict, ins, mod))
            return
        if n.path is not None and d.tensor:  # a learnable tensor: the parameter itself
            out = self.name_for(n)
            self.lines.append(f"{out} = {self.handle(n.path)}")
            return
        if n.path is not None:
            out = self.name_for(n)
            self.lines.append(f"{out} = {self.handle(n.path)}({', '.join(ins)})")
            return
        expr = d.functional(n.attr_dict, ins)
        if expr == ins[0]:
            self.var[n.id] = ins[0]
            return
        out = self.name_for(n)
        self.lines.append(f"{out} = {expr}")

    def const(self, base: str, init: str) -> str:
        name = self.const_names.fresh(f"_{base}")
        self.consts.append((name, init))
        return f"self.{name}"

    def grad_node(self, n: Node, k: str, seed: tuple[int, str] | None = None) -> None:
        """A node of the gradient part, written as its entry says (`grad_code`), or a forward op
        applied to a K-batched gradient with its functional form (add, permute, transpose).
        `seed`: (the seed node, the variable of its class indices) for an entry that reads it."""
        d = ops.of_node(n)
        ins = [self.var[i] for i in n.inputs]
        if d.indices_input is not None:
            ins[d.indices_input] = self.indices[n.inputs[d.indices_input]]
        out = self.name_for(n)
        if d.grad_code is not None:
            attrs = {**n.attr_dict, "@shape": tuple(n.shape)}
            if seed is not None and n.inputs[:1] == (seed[0],):
                attrs["@seed"] = seed[1]
                self.seed_used = True
            for line in d.grad_code(attrs, ins, k, self.const, n.path):
                self.lines.append(line.replace("{out}", out))
        elif not d.gradient_only and d.functional is not None:
            self.lines.append(f"{out} = {d.functional(n.attr_dict, ins)}")
        else:
            raise NotImplementedError(n.op)


def _to_grid(lay: Layout, a: str) -> str:
    """A token layer's value -> the [N, C, H, W] map it is explained as (rows may be K*B)."""
    if lay.kind == "windows":  # each pixel gathered from its window position, channels moved last first
        inv = [0] * len(lay.order)
        for pos, pix in enumerate(lay.order):
            inv[pix] = pos
        moved = a if lay.chan == len(lay.dims) else f"{a}.movedim({lay.chan + 1}, -1)"
        return (f"{moved}.reshape(-1, {lay.h * lay.w}, {lay.channels})[:, {list(inv)}]"
                f".reshape(-1, {lay.h}, {lay.w}, {lay.channels}).permute(0, 3, 1, 2)")
    if lay.kind == "nhwc":
        return f"{a}.permute(0, 3, 1, 2)"
    end = lay.skip + lay.h * lay.w
    part = a if (lay.skip, end) == (0, lay.tokens) else f"{a}[:, {lay.skip}:{end}]"
    return f"{part}.reshape(-1, {lay.h}, {lay.w}, {lay.channels}).permute(0, 3, 1, 2)"


def _from_grid(lay: Layout, a: str, tokens: str) -> str:
    """The map back to the layer's own layout; the tokens outside the grid come from `tokens`."""
    if lay.kind == "windows":
        back = (f"{a}.permute(0, 2, 3, 1).reshape(-1, {lay.h * lay.w}, {lay.channels})[:, {list(lay.order)}]"
                f".reshape(-1, {', '.join(str(d) for d in lay.dims)}, {lay.channels})")
        return back if lay.chan == len(lay.dims) else f"{back}.movedim(-1, {lay.chan + 1})"
    if lay.kind == "nhwc":
        return f"{a}.permute(0, 2, 3, 1)"
    end = lay.skip + lay.h * lay.w
    grid = f"{a}.permute(0, 2, 3, 1).reshape(-1, {lay.h * lay.w}, {lay.channels})"
    parts = ([f"{tokens}[:, :{lay.skip}]"] if lay.skip else []) + [grid] + (
        [f"{tokens}[:, {end}:]"] if end < lay.tokens else [])
    return grid if len(parts) == 1 else f"torch.cat(({', '.join(parts)}), 1)"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _free_dead(lines: list[str], keep: set[str], arg: str = "") -> list[str]:
    """`lines` (flat `a = expr` statements) with each local deleted right after its last use, as the
    network's own forward does (evo/codegen/python.py): the allocator then reuses the memory
    instead of touching fresh pages for every intermediate (keeping them all alive made the
    explainer's trunk up to ~1.8x slower than the forward it copies)."""
    parsed = []
    defined = {arg}
    for line in lines:
        lhs, sep, rhs = line.partition(" = ")
        outs = [v.strip() for v in lhs.split(",")] if sep else []
        if not sep or not all(_IDENT.fullmatch(v) for v in outs):
            return lines  # not a flat assignment: leave the block as it is
        ins = [v for v in _IDENT.findall(rhs) if v in defined]
        defined.update(outs)
        parsed.append((line, outs, ins))
    return free_after_last_use(parsed, {*keep, arg})


def _needed(g: Graph, targets: set[int]) -> set[int]:
    need = set(targets)
    for n in reversed(g.nodes):
        if n.id in need:
            need.update(n.inputs)
    return need


def _grad_dependent(eg: Graph) -> set[int]:
    # the seed-dependent nodes plus gradient ops, the folded CAM's constant and weighted
    # sum, and whatever reads them
    dep = seed_dependent(eg)
    for n in eg.nodes:
        if n.op in GRADIENT_OPS or n.op in (G.CONST, G.WEIGHTED_SUM) or any(i in dep for i in n.inputs):
            dep.add(n.id)
    return dep


def explainer_class(g: Graph, cfg: ExplainConfig, class_names: Namer, explain=None) -> tuple[str, str]:
    """(class name, source) of the explainer for `cfg` on graph `g`; `explain(layer, fold)`
    gives the compiled explain graphs (default: built here)."""
    if explain is None:
        def explain(layer: str, fold: bool = True) -> Graph:
            return compiled_explain_graph(g, layer, fold)
    cls_name = class_names.fresh(f"Explain{cfg.cam}")
    handles: dict[str, int] = {}
    consts: list[tuple[str, str]] = []
    layer_nodes = [g.value(p) for p in cfg.layers]
    heads = [head_nodes(g, ln.id) for ln in layer_nodes]

    # trunk: everything the layers and the heads' side values need, nothing of the heads
    targets = {ln.id for ln in layer_nodes}
    for _, side in heads:
        targets.update(side)
    need = _needed(g, targets)
    # buffer names share the explainer's attribute namespace (one per class, not per method)
    const_names = Namer(MODULE_ATTRS | _EXPLAINER_ATTRS | {f"{p}{i}" for i in range(len(cfg.layers))
                                                           for p in ("head", "compiled", "_j")})
    tn = explainer_namer()
    t = _Flat(g, handles, tn, consts, const_names)
    inp = g.node(g.inputs[0])
    t.var[inp.id] = tn.fresh("x")
    for n in g.nodes:
        if n.id in need and n.op != Op.INPUT:
            t.forward_node(n)
    # token sequences and channels-last maps are explained as [N, C, H, W] (evo/ops/tokens.py):
    # the trunk hands the grid to the methods, and the layer's own value as a last side value
    # (the class and register tokens) from which the head rebuilds it
    layouts = [cam_layout(g, ln, cfg.grid) for ln in layer_nodes]
    acts_vars = [t.var[ln.id] for ln in layer_nodes]
    side_vars = [[t.var[s] for s in side] for _, side in heads]
    for i, lay in enumerate(layouts):
        if lay is not None:
            gv = tn.fresh(f"{acts_vars[i]}_grid")
            t.lines.append(f"{gv} = {_to_grid(lay, acts_vars[i])}")
            if lay.dropped:
                side_vars[i].append(acts_vars[i])
            acts_vars[i] = gv
    trunk = {"lines": _free_dead(t.lines, set(acts_vars) | {v for sv in side_vars for v in sv}, t.var[inp.id]),
             "ret": f"({', '.join(acts_vars)},), ({', '.join('(' + ''.join(v + ', ' for v in sv) + ')' for sv in side_vars)},)"}

    # heads (forward) and compiled gradients
    head_defs = []
    compiled_defs = []
    for i, (ln, (hn, side)) in enumerate(zip(layer_nodes, heads)):
        hn_namer = explainer_namer()
        hf = _Flat(g, handles, hn_namer, consts, const_names)
        hf.var[ln.id] = hn_namer.fresh("acts")
        sargs = [hn_namer.fresh(f"side{j}") for j in range(len(side))]
        for s, v in zip(side, sargs):
            hf.var[s] = v
        lay = layouts[i]
        if lay is not None:
            tok = hn_namer.fresh("tokens") if lay.dropped else ""
            if tok:
                sargs.append(tok)
            av = hn_namer.fresh("acts_t")
            hf.lines.append(f"{av} = {_from_grid(lay, 'acts', tok)}")
            hf.var[ln.id] = av
        for n in hn:
            hf.forward_node(n)
        head_defs.append({"name": f"head{i}", "args": ", ".join(["acts"] + sargs),
                          "lines": _free_dead(hf.lines, {hf.var[g.outputs[0]]}),
                          "ret": hf.var[g.outputs[0]]})
        if (cfg.strategy == "compiled" and cfg.method != "fullgrad") or cfg.method == "cam":
            compiled_defs.append(_compiled_def(explain(cfg.layers[i], True), i, handles, consts, const_names,
                                               layouts[i]))
    fullgrad = _fullgrad_def(g, cfg.strategy, handles, consts, const_names) if cfg.method == "fullgrad" else None

    ctx = {
        "name": cls_name,
        "doc": "\n    ".join(textwrap.wrap(doc_text(
            f"cam {cfg.cam}: {cfg.method} on network {cfg.network} at {', '.join(cfg.layers)} "
            f"(strategy {cfg.strategy}{'; ' + cfg.strategy_note if cfg.strategy_note else ''})."), 96)),
        "network": repr(cfg.network), "method": repr(cfg.method), "layers": repr(tuple(cfg.layers)),
        "strategy": repr(cfg.strategy), "classes": repr(tuple(cfg.classes)), "upsample": repr(cfg.upsample),
        "normalize": repr(cfg.normalize), "labels": repr(tuple(cfg.labels) if cfg.labels else None),
        "seed": repr(int(cfg.seed)), "eigen_smooth": repr(bool(cfg.eigen_smooth)),
        "aug_smooth": repr(bool(cfg.aug_smooth)), "samples": repr(cfg.samples),
        "paths": [repr(p) for p, _ in sorted(handles.items(), key=lambda kv: kv[1])],
        "consts": consts,
        "trunk": trunk, "heads": head_defs, "compiled": compiled_defs, "fullgrad": fullgrad,
        "n_layers": len(cfg.layers),
    }
    return cls_name, environment().get_template("explainer.py.j2").render(**ctx)


def _forward_independent(f: "_Flat", eg: Graph, dep: set[int]) -> None:
    """The forward lines of `eg`'s nodes that do not depend on the gradient seed (`dep`),
    asking for the indices of the maxpools whose unpooling needs them."""
    want_idx = {n.inputs[ops.of_node(n).indices_input] for n in eg.nodes
                if n.op != Op.INPUT and ops.of_node(n).indices_input is not None}
    for n in eg.nodes:
        if n.op == Op.INPUT or n.id in dep:
            continue
        f.forward_node(n, want_indices=n.id in want_idx)


def _compiled_def(eg: Graph, i: int, handles, consts, const_names: Namer, lay: Layout | None = None) -> dict:
    namer = explainer_namer()
    f = _Flat(eg, handles, namer, consts, const_names)
    dep = _grad_dependent(eg)
    args = ["acts"]
    acts_in = None
    for n in eg.nodes:
        if n.op == Op.INPUT and n.attr("role") == "acts":
            f.var[n.id] = namer.fresh("acts")
            acts_in = n
        elif n.op == Op.INPUT and n.attr("role") == "side":
            v = namer.fresh(n.name)
            f.var[n.id] = v
            args.append(v)
    if lay is not None:  # the grid back to the layer's tokens (or channels-last map)
        tok = namer.fresh("tokens") if lay.dropped else ""
        args += [tok] if tok else []
        av = namer.fresh("acts_t")
        f.lines.append(f"{av} = {_from_grid(lay, f.var[acts_in.id], tok)}")
        f.var[acts_in.id] = av
    # which maxpools need their indices
    _forward_independent(f, eg, dep)
    logits = f.var[eg.outputs[0]]
    pre = list(f.lines)
    f.lines = []
    folded = any(n.op == G.CONST for n in eg.nodes)
    if folded:
        const = next(n for n in eg.nodes if n.op == G.CONST)
        chain = [eg.node(c) for c in const.attr("chain")]
        cf = _Flat(eg, handles, explainer_namer(), consts, const_names)
        start = eg.node(const.attr_dict.get("start", eg.value("acts").id))  # channels first there
        cf.var[start.id] = "basis"
        for n in chain:
            cf.forward_node(n)
        return {"index": i, "args": ", ".join(args), "pre": pre, "logits": logits, "folded": True,
                "chain_lines": cf.lines, "chain_ret": cf.var[chain[-1].id],
                "channels": start.shape[1], "scale": repr(const.attr("scale"))}
    seed = next(n for n in eg.nodes if n.op == Op.INPUT and n.attr("role") == "gseed")
    f.var[seed.id] = "gseed"
    for n in eg.nodes:
        if n.id in dep and n.op != Op.INPUT:
            f.grad_node(n, "k", (seed.id, "gidx"))
    grad, shape = f.var[eg.outputs[1]], tuple(eg.value("acts").shape[1:])
    if lay is not None:
        gv = namer.fresh(f"{grad}_grid")
        f.lines.append(f"{gv} = {_to_grid(lay, grad)}")
        grad, shape = gv, (lay.channels, lay.h, lay.w)
    return {"index": i, "args": ", ".join(args), "pre": pre, "logits": logits, "folded": False,
            "grad_lines": f.lines, "grad": grad, "shape": shape, "seed_index": f.seed_used}


def _fullgrad_def(g: Graph, strategy: str, handles, consts, const_names: Namer) -> dict:
    """FullGrad's functions: `full(x)` (the whole network flat, returning the logits and the
    output of every bias layer), `full_biases()` and, for the compiled strategy,
    `full_compiled(x, spec)` (the gradients w.r.t. the input and those outputs as ops)."""
    taps = bias_taps(g)
    namer = explainer_namer()
    f = _Flat(g, handles, namer, consts, const_names)
    biases = [f.const("fullgrad_bias", f"_cam_bias(m({t.path!r}))") for t in taps]
    f.var[g.inputs[0]] = namer.fresh("x")
    need = _needed(g, {g.outputs[0]} | {t.id for t in taps})
    for n in g.nodes:
        if n.id in need and n.op != Op.INPUT:
            f.forward_node(n)
    logits = f.var[g.outputs[0]]
    outs = [f.var[t.id] for t in taps]
    d = {"lines": _free_dead(f.lines, {logits, *outs}), "logits": logits, "outs": "".join(v + ", " for v in outs),
         "biases": "".join(b + ", " for b in biases), "compiled": None}
    if strategy != "compiled":
        return d
    eg = fullgrad_graph(g)
    namer = explainer_namer()
    f = _Flat(eg, handles, namer, consts, const_names)
    _, side = head_nodes(g, g.inputs[0])
    if side:  # the values read that do not depend on the input, computed as the network does
        sf = _Flat(g, handles, namer, consts, const_names)
        need = _needed(g, set(side))
        for n in g.nodes:
            if n.id in need and n.op != Op.INPUT:
                sf.forward_node(n)
        f.lines.extend(sf.lines)
        side_inputs = [n for n in eg.nodes if n.op == Op.INPUT and n.attr("role") == "side"]  # in `side`'s order
        for n, s in zip(side_inputs, side, strict=True):
            f.var[n.id] = sf.var[s]
    dep = _grad_dependent(eg)
    f.var[eg.value("acts").id] = namer.fresh("acts")
    _forward_independent(f, eg, dep)
    pre = list(f.lines)
    f.lines = []
    seed = next(n for n in eg.nodes if n.op == Op.INPUT and n.attr("role") == "gseed")
    f.var[seed.id] = "gseed"
    for n in eg.nodes:
        if n.id in dep and n.op != Op.INPUT:
            f.grad_node(n, "k")
    d["compiled"] = {"pre": pre, "logits": f.var[eg.outputs[0]], "grad_lines": f.lines,
                     "grads": [(f.var[o], tuple(eg.node(o).shape[1:])) for o in eg.outputs[1:]]}
    return d


def explainer_sources(plans, names: Namer) -> tuple[list[str], list[tuple[str, str]]]:
    """Explainer classes for the cams of a program, their class names allocated from
    `names` (the module's namespace).  `plans` holds, per cam, (graph, spec, strategy,
    note, explain): the strategy already chosen by the compilation and
    `explain(layer, fold)`, the compilation's cached explain graphs."""
    sources, index = [], []
    for g, spec, strategy, note, explain in plans:
        cfg = ExplainConfig.from_spec(spec, strategy, note)
        cls, src = explainer_class(g, cfg, names, explain)
        sources.append(src)
        index.append((repr(spec.name), cls))
    return sources, index
