"""Costing IR graphs on a checked hardware tier: networks, explainers, targets.

`cost_graph(graph, hw, batch)` turns every node into a workload (evo/cost/rules.py)
and runs the whole-network model with fusion (evo/cost/model.py).  `cam_costs`
costs each CAM strategy's extra work on the same tier, so `strategy = auto` can
choose by cost and a target's fps budget can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from evo import ops
from evo.cost.hardware import Hardware, as_hardware
from evo.cost.model import NetworkCost, cost_network
from evo.cost.rules import dims, workload
from evo.cost.workload import MatmulWorkload, ReduceWorkload
from evo.ir.node import Graph, Op
from evo.ops.tokens import cam_chw


def param_count(g: Graph) -> int:
    total = 0
    for n in g.nodes:
        if n.path is None or n.op in (Op.INPUT,):
            continue
        d = ops.of_node(n)
        if d.parametric:
            total += ops.param_count(d, n.attr_dict, [g.node(i).shape for i in n.inputs])
    return total


def conv_linear_macs(cost) -> int:
    """Multiply-accumulates of the convolutions and linear layers (ops of kind
    ``conv``) of a `CostReport` or `NetworkCost`: the usual "MACs" of a network,
    without the MAC-equivalents the model charges for pooling, elementwise ops,
    reductions and gradient matmuls."""
    net = cost.cost if isinstance(cost, CostReport) else cost
    return sum(o.cost.macs for o in net.ops if o.cost.kind == "conv")


def graph_ops(g: Graph, batch: int, kb: int | None = None, prefix: str = "",
              with_nodes: bool = False) -> list[tuple]:
    """(name, workload, producers) in execution order; fused members are merged into
    their producer, views keep their producer's name for fusion.  ``with_nodes``: each
    item also carries its IR node, (name, workload, producers, node)."""
    items = []
    alias: dict[int, str] = {}
    names: dict[int, str] = {}
    used: set[str] = set()
    training_only = g.training_only()  # not computed in eval: no cost
    for n in g.nodes:
        if n.id in training_only:
            continue
        w = workload(n, [g.node(i).shape for i in n.inputs], batch, kb)
        if w is None:
            if n.op != Op.INPUT and n.inputs:
                alias[n.id] = alias.get(n.inputs[0], names.get(n.inputs[0], ""))
            continue
        local = n.name or n.op.value  # unnamed ops: their op in their scope (`layer1.0.add`)
        base = prefix + (n.path or (f"{n.scope}.{local}" if n.scope else local))
        name = base
        k = 2
        while name in used:
            name = f"{base}#{k}"
            k += 1
        used.add(name)
        prods = tuple(p for p in (names.get(i) or alias.get(i) for i in n.inputs) if p)
        parts = w if isinstance(w, list) else [("", w)]
        for label, pw in parts:  # an op of several steps (attention): one item per step, in order
            pname = f"{name} [{label}]" if label else name
            if label:
                k = 2
                while pname in used:
                    pname = f"{name} [{label} #{k}]"
                    k += 1
                used.add(pname)
            items.append((pname, pw, prods, n) if with_nodes else (pname, pw, prods))
            prods = (pname,)
            names[n.id] = pname
    return items


@dataclass
class CostReport:
    """A network (or explainer) costed on one tier."""

    network: str
    hardware: str
    batch: int
    objective: str
    cost: NetworkCost
    params: int
    fps_budget: float | None = None
    cam: dict[str, Any] = field(default_factory=dict)

    # the headline numbers
    @property
    def latency_s(self) -> float:
        return self.cost.latency_s

    @property
    def energy_j(self) -> float:
        return self.cost.energy_j

    @property
    def macs(self) -> int:
        return self.cost.macs

    @property
    def offchip_bytes(self) -> float:
        return self.cost.offchip_bytes

    @property
    def fps(self) -> float:
        return self.batch / self.latency_s if self.latency_s > 0 else float("inf")

    @property
    def meets_budget(self) -> bool | None:
        if self.fps_budget is None:
            return None
        lat = self.cam.get("latency_s", self.latency_s) if self.cam else self.latency_s
        return self.batch / lat >= self.fps_budget if lat > 0 else True

    @property
    def metrics(self) -> dict[str, float]:
        m = dict(self.cost.metrics)
        m["params"] = self.params
        m["fps"] = self.fps
        if self.cam:
            m["cam_latency"] = self.cam["latency_s"]
            m["cam_energy"] = self.cam["energy_j"]
        else:
            m["cam_latency"] = m["latency"]
            m["cam_energy"] = m["energy"]
        return m

    @property
    def rows(self) -> list[dict]:
        from evo.cost.report import op_to_dict

        out = []
        for o in self.cost.ops:
            d = op_to_dict(o.cost)
            d["name"] = o.name
            d["saved_offchip_bytes"] = o.saved_offchip_bytes
            out.append(d)
        return out

    def table(self) -> str:
        from evo.cost.report import format_table

        title = (f"{self.network} on {self.hardware}, batch {self.batch}, objective {self.objective}; "
                 f"{self.params:,} parameters")
        text = format_table(self.cost, title=title, summaries=ops.cost_summaries())
        if self.cam:
            text += "\n" + format_cam(self.cam, self.batch, None)
        if self.fps_budget:
            text += "\n" + self.budget_line()
        return text

    def budget_line(self) -> str:
        """The fps budget check: the batch's latency (with the explainer's extra work
        when a cam is attached) against `batch / fps`."""
        from evo.cost.report import fmt_time

        explained = bool(self.cam)
        lat = self.cam["latency_s"] if explained else self.latency_s
        fps = self.batch / lat if lat > 0 else float("inf")
        what = "explained inference" if explained else "inference"
        per = f" per batch of {self.batch}" if self.batch != 1 else ""
        verdict = "meets" if self.meets_budget else "MISSES"
        return (f"budget: {self.fps_budget:g} fps = {fmt_time(1.0 / self.fps_budget)} per frame; {what} "
                f"{fmt_time(lat)}{per} ({fps:.1f} fps): {verdict} the budget")

    def to_dict(self) -> dict:
        from evo.cost.report import to_dict

        d = {"network": self.network, "hardware": self.hardware, "batch": self.batch,
             "objective": self.objective, "params": self.params, "fps": self.fps,
             "fps_budget": self.fps_budget, "meets_budget": self.meets_budget, "cost": to_dict(self.cost)}
        if self.cam:
            d["cam"] = self.cam
        return d

    def to_json(self) -> str:
        from evo.cost.report import dumps

        return dumps(self.to_dict(), ensure_ascii=True) + "\n"

    def to_csv(self) -> str:
        from evo.cost.report import to_csv

        return to_csv(self.cost)

    def plot(self, path, format: str | None = None):
        """Roofline and energy per level, side by side, written to `path` (a file name, through
        evo.fileio's atomic writer, or a binary file object) as PNG, SVG or PDF, chosen by the
        suffix or `format` (a file object: png by default).  Returns `path`."""
        from evo.cost.plot import network_figure, plot_format, render

        if hasattr(path, "write"):
            path.write(render(network_figure(self.cost), format or "png"))
            return path
        from evo.fileio import write_atomic

        write_atomic(path, render(network_figure(self.cost), plot_format(path, format)))
        return path

    def render_plot(self, format: str = "png") -> bytes:
        """The bytes of :meth:`plot` as `format` (png, svg or pdf)."""
        from evo.cost.plot import network_figure, render

        return render(network_figure(self.cost), format)


def cost_graph(g: Graph, hw, batch: int = 1, objective: str = "latency", fps: float | None = None,
               fuse: bool = True, sparsity: dict | None = None, prepared: tuple | None = None,
               constraints: dict | None = None) -> CostReport:
    """`sparsity`: {op name: (input, output) zero fractions}, e.g. from
    :func:`evo.cost.sparsity.op_sparsity` (``evoc cost --calibrate``).  `prepared`: what
    :func:`prepare_graph` returned for `g` and `batch` (a caller costing one graph on many
    tiers builds its op list once; the figures are the same).  `constraints`: {op name:
    :class:`~evo.cost.MappingConstraints`} (``evoc cost --constraints``)."""
    hwc = as_hardware(hw)
    items, params = prepared if prepared is not None else prepare_graph(g, batch)
    net = cost_network(items, hwc, objective, fuse=fuse, sparsity=sparsity, constraints=constraints)
    return CostReport(g.name, hwc.name, batch, objective, net, params, fps)


def prepare_graph(g: Graph, batch: int = 1) -> tuple[tuple, int]:
    """The tier-independent part of :func:`cost_graph`: the graph's (name, workload,
    producers) items for `batch` and its parameter count."""
    return tuple(graph_ops(g, batch)), param_count(g)


# ---------------------------------------------------------------------------- CAM

def _classes_k(spec_classes: tuple, n_classes: int) -> int:
    kind = spec_classes[0]
    if kind in ("top1", "index"):
        return 1
    if kind == "topk":
        return int(spec_classes[1])
    if kind == "list":
        return len(spec_classes[1])
    return n_classes


# ALU operations per gradient element to turn gradients into channel weights
# (mean for gradcam; sums of products or powers for the others)
_WEIGHT_OPS = {"gradcam": 1, "hirescam": 1, "layercam": 1, "xgradcam": 2, "gradcampp": 3}
STRATEGY_ORDER = ("compiled", "autograd", "forward")  # preference among equally cheap strategies


def _combine(method: str, c: int, h: int, w: int, batch: int, k: int, hwc: Hardware, objective: str,
             weights: bool) -> NetworkCost:
    """Turning the gradient into maps: (with `weights`) one reduction of the gradient
    to channel weights per explained class, then the weighted sum over channels."""
    ops: list[tuple] = []
    if weights:
        ops.append(("cam:weights", ReduceWorkload(k * batch * c, h * w, _WEIGHT_OPS.get(method, 1)), ()))
    ops.append(("cam:sum", MatmulWorkload(k, h * w, c, batch=batch), ("cam:weights",) if weights else ()))
    return cost_network(ops, hwc, objective)


def _gradient_part(eg: Graph) -> Graph:
    """The nodes of an explain graph that compute the gradient: everything that
    depends on the seed (gradient ops, their sums and products), and the folded
    CAM's weighted sum; the recomputed head is inference work."""
    from evo.passes.gradient import folded_part, seed_dependent

    dep = seed_dependent(eg)
    return eg.with_(nodes=tuple(n for n in eg.nodes if n.op != Op.INPUT and (n.id in dep or folded_part(n))))


def cam_costs(g: Graph, spec, hw, batch: int = 1, objective: str = "latency",
              explain: Callable[[str, bool], Graph] | None = None) -> dict[str, dict]:
    """The extra cost (over plain inference) of each strategy's gradient work, per
    CAM layer, on tier `hw`: compiled = the emitted gradient ops (folded where
    affine: one weighted sum); autograd = the head's backward once per explained
    class column; forward = one head JVP per channel (gradcam) or per element
    (other methods).  Every strategy but the folded one also pays for turning the
    gradient into maps (`_combine`).  Strategies that are not possible for a layer
    (not differentiable) are left out.  `explain(layer, fold)` gives the explain graphs
    (a compilation hands in its cached ones; default: built here).

    Each method costs what the runtime runs (evo.cam_methods' table, as the work estimate
    evo/cam_work.py counts it): forward tangents per channel for the methods that need channel
    means of the gradient (gradcam, finercam, shapleycam), per element for the others and no
    forward strategy where it does not apply (fullgrad: one backward of the whole network, to the
    input and every bias layer, per class column); a Hessian-vector product (shapleycam)
    doubles the gradient work (0 where the head folds: its Hessian is 0); smoothgradcampp runs
    `samples` noisy passes, each an inference and the gradient."""
    from evo.cam_methods import BY_NAME
    from evo.passes.gradient import NotDifferentiable, compiled_explain_graph, head_nodes, is_folded

    if explain is None:
        def explain(layer: str, fold: bool = True) -> Graph:
            return compiled_explain_graph(g, layer, fold)

    hwc = as_hardware(hw)
    info = BY_NAME[spec.method]
    n_classes = dims(g.node(g.outputs[0]).shape, batch, batch)[-1]
    k = _classes_k(spec.classes, n_classes)
    totals = {s: [0.0, 0.0, True] for s in STRATEGY_ORDER}
    if info.forward_tangents == "none":
        totals["forward"][2] = False
    hvp = 2 if info.hessian else 1  # the gradient and its Hessian-vector product

    def add(s: str, *nets: NetworkCost, times: int = 1) -> None:
        totals[s][0] += times * sum(n.latency_s for n in nets)
        totals[s][1] += times * sum(n.energy_j for n in nets)

    if info.whole:  # fullgrad: the gradients w.r.t. the input and every bias layer, no CAM layer
        from evo.passes.gradient import fullgrad_graph

        try:
            fg = _closed_gradient(fullgrad_graph(g))
        except NotDifferentiable:
            return {}
        add("compiled", cost_network(graph_ops(fg, batch, k * batch, "grad:"), hwc, objective))
        add("autograd", cost_network(graph_ops(fg, batch, batch, "bwd:"), hwc, objective), times=k)
        return {s: {"extra_latency_s": lat, "extra_energy_j": en} for s, (lat, en, ok) in totals.items()
                if ok and s != "forward"}
    for layer in spec.layers:
        lnode = g.value(layer)
        c, h, w = cam_chw(g, lnode, getattr(spec, "grid", None))  # a token layer: its grid
        head, _ = head_nodes(g, lnode.id)
        head_graph = _closed(g, g.with_(nodes=tuple(head)))
        head_items = graph_ops(head_graph, batch)
        # compiled: the emitted gradient ops, all explained classes at once (batch k*B)
        try:
            eg = explain(layer, True)
            folded = is_folded(eg)
            comp = cost_network(graph_ops(_closed_gradient(eg), batch, k * batch, "grad:"), hwc, objective)
            add("compiled", comp, times=1 if folded else hvp)
            if not folded:
                add("compiled", _combine(spec.method, c, h, w, batch, k, hwc, objective, True))
        except NotDifferentiable:
            totals["compiled"][2] = False
        # autograd: the unfolded gradient program, once per class column (batch B each)
        try:
            eg_u = explain(layer, False)
            back = cost_network(graph_ops(_closed_gradient(eg_u), batch, batch, "bwd:"), hwc, objective)
            add("autograd", back, times=k * hvp)
            add("autograd", _combine(spec.method, c, h, w, batch, k, hwc, objective, True))
        except NotDifferentiable:
            totals["autograd"][2] = False
        # forward mode: tangents through the head (one per channel gives the channel
        # weights of every class directly; one per element gives the full gradient)
        channel = info.forward_tangents == "channel"
        n_tangents = c if channel else c * h * w
        if head_items and totals["forward"][2]:
            add("forward", cost_network(graph_ops(head_graph, batch * n_tangents), hwc, objective), times=hvp)
        add("forward", _combine(spec.method, c, h, w, batch, k, hwc, objective, not channel))
    out = {s: {"extra_latency_s": lat, "extra_energy_j": en} for s, (lat, en, ok) in totals.items() if ok}
    if info.passes == "S":  # `samples` noisy inputs: each an inference and the gradient work
        n = spec.samples or info.samples
        base = cost_graph(g, hwc, batch, objective)
        out = {s: {"extra_latency_s": n * (base.latency_s + v["extra_latency_s"]),
                   "extra_energy_j": n * (base.energy_j + v["extra_energy_j"])} for s, v in out.items()}
    return out


def _strategy_key(extras: dict, objective: str):
    def key(s: str):
        v = extras[s]
        m = {"latency": v["extra_latency_s"], "energy": v["extra_energy_j"],
             "edp": v["extra_latency_s"] * v["extra_energy_j"]}[objective]
        return (m, STRATEGY_ORDER.index(s) if s in STRATEGY_ORDER else len(STRATEGY_ORDER), s)
    return key


def pick_strategy(extras: dict, objective: str = "latency") -> str:
    """The cheapest strategy for `objective` (ties: compiled, then autograd, then forward)."""
    return min(extras, key=_strategy_key(extras, objective))


def _closed_gradient(eg: Graph) -> Graph:
    """The gradient part of an explain graph, closed over what it reads from the forward."""
    return _closed(eg, _gradient_part(eg))


def _closed(full: Graph, part: Graph) -> Graph:
    """`part`'s nodes, with every input they read from outside turned into an INPUT-like
    no-cost reference (graph_ops only looks up shapes of inputs)."""
    keep = {n.id for n in part.nodes}
    extra = {i for n in part.nodes for i in n.inputs if i not in keep}
    nodes = tuple(n if n.id in keep else n.with_(op=Op.INPUT, inputs=(), attrs=())
                  for n in full.nodes if n.id in keep or n.id in extra)
    return full.with_(nodes=nodes)


def explainer_cost(g: Graph, spec, hw, batch: int = 1, objective: str = "latency",
                   strategy: str | None = None,
                   explain: Callable[[str, bool], Graph] | None = None) -> dict[str, Any]:
    """Network inference plus the chosen strategy's gradient work; a gradient-free
    method (no strategy: "none") costs what it runs: the forwards of
    `evo.cam_methods.free_passes` (`count` network forwards = count x inference; `count`
    head forwards = the head at batch count x B), no backward pass."""
    from evo.cam_methods import BY_NAME

    base = cost_graph(g, hw, batch, objective)
    s = strategy or spec.strategy
    extras: dict[str, dict] = {}
    if BY_NAME[spec.method].kind != "gradient":
        s = "none"
        extra = _free_cost(g, spec, hw, batch, objective, base)
    else:
        extras = cam_costs(g, spec, hw, batch, objective, explain)
        if s == "auto":
            s = pick_strategy(extras, objective)
        extra = extras.get(s, {"extra_latency_s": float("nan"), "extra_energy_j": float("nan")})
    return {"cam": spec.name, "strategy": s, "strategies": extras,
            "latency_s": base.latency_s + extra["extra_latency_s"],
            "energy_j": base.energy_j + extra["extra_energy_j"],
            "inference_latency_s": base.latency_s, "inference_energy_j": base.energy_j}


def _free_cost(g: Graph, spec, hw, batch: int, objective: str, base: NetworkCost) -> dict[str, float]:
    from evo.cam_methods import free_passes
    from evo.passes.gradient import head_nodes

    hwc = as_hardware(hw)
    lat = en = 0.0
    for p in free_passes(g, spec):
        if p.scope == "network":
            lat += p.count * base.latency_s
            en += p.count * base.energy_j
        else:
            head, _ = head_nodes(g, g.value(p.layer).id)
            items = graph_ops(_closed(g, g.with_(nodes=tuple(head))), batch * p.count)
            if items:
                c = cost_network(items, hwc, objective)
                lat += c.latency_s
                en += c.energy_j
    if spec.aug_smooth:  # six augmented inputs, each a whole explanation
        lat = 6 * (base.latency_s + lat) - base.latency_s
        en = 6 * (base.energy_j + en) - base.energy_j
    return {"extra_latency_s": lat, "extra_energy_j": en}


def format_cam(cam: dict, batch: int, fps_budget: float | None) -> str:
    from evo.cost.report import fmt_energy, fmt_time

    lines = [(f"cam {cam['cam']}: strategy {cam['strategy']}; explained inference "
              f"{fmt_time(cam['latency_s'])}, {fmt_energy(cam['energy_j'])} "
              f"({cam['latency_s'] / cam['inference_latency_s']:.3f}x inference latency)")]
    for s, v in sorted(cam["strategies"].items()):
        lines.append(f"  {s:9s} +{fmt_time(v['extra_latency_s'])}  +{fmt_energy(v['extra_energy_j'])}")
    if fps_budget:
        fps = batch / cam["latency_s"] if cam["latency_s"] else float("inf")
        verdict = "meets" if fps >= fps_budget else "MISSES"
        lines.append(f"  explained fps {fps:.1f} {verdict} the budget of {fps_budget:g} fps")
    return "\n".join(lines)


def cheapest_strategy(g: Graph, spec, hw, batch: int = 1, objective: str = "latency",
                      explain: Callable[[str, bool], Graph] | None = None) -> tuple[str, str]:
    extras = cam_costs(g, spec, hw, batch, objective, explain)
    best = pick_strategy(extras, objective)
    from evo.cost.report import fmt_time

    why = ", ".join(f"{s} +{fmt_time(extras[s]['extra_latency_s'])}" for s in sorted(extras))
    return best, f"{best} is cheapest on {as_hardware(hw).name} ({why})"

