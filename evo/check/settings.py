"""cam, target and evolve blocks: references, settings and genes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evo import codes as C
from evo import limits
from evo import units as U
from evo.cam_methods import GRADIENT_FREE, METHODS  # noqa: F401  (the one list of CAM methods)
from evo.check.hardware import (
    LEVEL_ATTRS,
    LEVEL_KINDS,
    TOP_ATTRS,
    HardwareSpec,
    level_attr_excluded,
    out_of_range,
    sign_problem,
)
from evo.check.program import Program
from evo.diagnostics import Abort, Collector, Span, did_you_mean
from evo.frontend import ast as A
from evo.frontend.names import path_text, show_path
from evo.ir.node import Graph
from evo.ops.tokens import NoGrid, cam_layout

STRATEGIES = ("auto", "autograd", "forward", "compiled")
UPSAMPLE = ("bilinear", "nearest", "none")
NORMALIZE = ("minmax", "none")
OBJECTIVES = ("latency", "energy", "edp")

# metric -> (dimension of a bound, description)
METRICS: dict[str, tuple[str | None, str]] = {
    "latency": (U.TIME, "inference latency per batch"),
    "energy": (U.ENERGY, "energy per batch"),
    "edp": (None, "energy-delay product (J*s)"),
    "area": (U.AREA, "chip area: the PEs with their memories and the global buffer"),
    "power": (U.POWER, "average power over the inference"),
    "offchip_bytes": (U.SIZE, "bytes moved to and from off-chip memory"),
    "params": (U.COUNT, "parameter count"),
    "macs": (U.COUNT, "multiply-accumulates"),
    "fps": (None, "frames per second"),
    "utilization": (None, "PE-array utilisation (0..1)"),
    "cam_latency": (U.TIME, "explainer latency per batch (network + CAM)"),
    "cam_energy": (U.ENERGY, "explainer energy per batch"),
}


@dataclass(frozen=True)
class CamSpec:
    name: str
    network: str
    layers: tuple[str, ...]
    method: str = "gradcam"
    classes: tuple = ("top1",)
    strategy: str = "auto"
    upsample: str = "bilinear"
    normalize: str = "minmax"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    span: Span | None = None
    seed: int = 0                 # randomised methods (sscam, smoothgradcampp, randomcam)
    eigen_smooth: bool = False    # the map is the first principal component of the weighted activations
    aug_smooth: bool = False      # mean over horizontal flip x brightness 0.9 / 1 / 1.1
    samples: int | None = None    # noisy / integration samples (sscam, iscam, smoothgradcampp); None: the peers'
    grid: tuple[int, int] | None = None  # the [H, W] of token layers where it cannot be inferred


@dataclass(frozen=True)
class TargetSpec:
    name: str
    network: str
    hardware: str
    cam: str | None = None
    batch: int = 1
    fps: float | None = None
    objective: str = "latency"
    span: Span | None = None


@dataclass(frozen=True)
class GeneSpec:
    path: tuple[str, ...]        # ("classes",) or ("Eyeriss", "global", "size")
    kind: str                    # "network" | "hardware"
    values: tuple[Any, ...]      # the domain, enumerated (base units for quantities)
    dim: str | None              # quantity dimension of hardware genes
    span: Span

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class EvolveSpec:
    name: str
    target: str
    genes: tuple[GeneSpec, ...]
    objectives: tuple[tuple[str, str], ...]     # (metric, "min"|"max")
    constraints: tuple[tuple[str, str, float], ...]
    population: int = 32
    generations: int = 20
    seed: int = 0
    span: Span | None = None


def path_of(e) -> str | None:
    """`layer4.1.conv2` written as an expression -> the string, or None."""
    if isinstance(e, A.Name):
        return e.id
    if isinstance(e, A.Str):  # "3.conv1", "trunk_output.block1-0": any module path, components may be quoted
        return path_text(e.value)
    if isinstance(e, A.Attr):
        base = path_of(e.obj)
        return f"{base}.{e.attr}" if base is not None else None
    return None


def _did_you_mean_path(p: str, paths) -> str | None:
    hint = did_you_mean(p, paths)
    if hint is None:
        return None
    close = hint[len("did you mean '"):-len("'?")]
    return f"did you mean '{show_path(close)}'?"


MAX_GENE_VALUES = limits.value("gene_values")


class SettingsChecker:
    def __init__(self, prog: Program, col: Collector, graphs: dict[str, Graph | None],
                 hardware: dict[str, HardwareSpec], evaluate):
        self.prog, self.col, self.graphs, self.hardware = prog, col, graphs, hardware
        self.evaluate = evaluate

    def word(self, s: A.Setting, choices: tuple[str, ...]) -> str | None:
        if isinstance(s.value, A.Name) and s.value.id in choices:
            return s.value.id
        got = s.value.id if isinstance(s.value, A.Name) else None
        self.col.error(C.INVALID_CAM_SETTING, f"'{s.name}' must be one of {', '.join(choices)}" +
                       (f", not '{got}'" if got else ""), s.value.span,
                       did_you_mean(got, choices) if got else None)
        return None

    def ref(self, s: A.Setting, kind: type, what: str, code: str) -> str | None:
        if not isinstance(s.value, A.Name):
            self.col.error(code, f"'{s.name}' must name a {what}", s.value.span)
            return None
        name = s.value.id
        d = self.prog.defs.get(name)
        if not isinstance(d, kind):
            pool = self.prog.of(kind)
            msg = f"unknown {what} '{name}'" if d is None else f"'{name}' is a {type(d).__name__.lower()}, not a {what}"
            self.col.error(code, msg, s.value.span, did_you_mean(name, pool) if pool else f"define a {what} first")
            return None
        return name

    def settings(self, node, allowed: tuple[str, ...]) -> dict[str, A.Setting]:
        out: dict[str, A.Setting] = {}
        for s in node.settings if hasattr(node, "settings") else [i for i in node.items if isinstance(i, A.Setting)]:
            if s.name not in allowed:
                self.col.error(C.UNKNOWN_SETTING, f"unknown setting '{s.name}'", s.name_span,
                               did_you_mean(s.name, allowed) or f"settings are {', '.join(allowed)}")
                continue
            if s.name in out:
                self.col.error(C.NAME_BOUND_TWICE, f"'{s.name}' is set twice", s.name_span)
                continue
            out[s.name] = s
        return out

    # ------------------------------------------------------------------ cam
    def cam(self, c: A.Cam) -> CamSpec | None:
        n0 = len(self.col.diagnostics)
        st = self.settings(c, ("network", "layer", "method", "class", "strategy", "upsample", "normalize",
                               "mean", "std", "labels", "seed", "eigen_smooth", "aug_smooth",
                               "samples", "grid"))
        for req in ("network", "layer"):
            if req not in st:
                self.col.error(C.MISSING_SETTING, f"cam '{c.name}' needs '{req}'", c.name_span,
                               f"add: {req} = ...")
        net = self.ref(st["network"], A.Network, "network", C.UNKNOWN_NETWORK) if "network" in st else None
        graph = self.graphs.get(net) if net else None
        layers: tuple[str, ...] = ()
        grid = None
        if "grid" in st:
            v = self.value(st["grid"].value)
            if (not isinstance(v, tuple) or len(v) != 2
                    or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1 << 20 for d in v)):
                self.col.error(C.INVALID_CAM_SETTING, "'grid' must be a list of two positive ints [H, W]", st["grid"].value.span,
                               "e.g. grid = [14, 14] for 196 patch tokens")
            else:
                grid = (v[0], v[1])
        if "layer" in st:
            v = st["layer"].value
            items = v.items if isinstance(v, A.ListExpr) else (v,)
            if not items:
                self.col.error(C.INVALID_CAM_SETTING, "'layer' needs at least one layer", v.span)
            paths = []
            for it in items:
                p = path_of(it)
                if p is None:
                    self.col.error(C.UNKNOWN_LAYER_PATH, "'layer' must be a name path such as layer4 or layer4.1.conv2",
                                   it.span)
                    continue
                paths.append(p)
                if graph is not None:
                    node = graph.value(p)
                    if node is None:
                        self.col.error(C.UNKNOWN_LAYER_PATH, f"network '{net}' has no layer '{show_path(p)}'", it.span,
                                       _did_you_mean_path(p, [k for k, _ in graph.values]))
                    else:
                        try:
                            cam_layout(graph, node, grid)
                        except NoGrid as e:
                            hint = ("pick a convolutional layer before global pooling" if len(node.shape) not in (3, 4)
                                    else "state the grid in the cam: grid = [H, W] (read as [N, C, H, W] if its "
                                         "last two dimensions are H, W, as a channels-last [N, H, W, C] if its "
                                         "middle two are)" if len(node.shape) == 4
                                    else "state the grid in the cam: grid = [H, W] (the H*W patch tokens are "
                                         "the last ones; the tokens before them are dropped)")
                            self.col.error(C.CAM_LAYER_NOT_SPATIAL, f"the CAM layer '{show_path(p)}' {e}", it.span, hint)
            layers = tuple(paths)
        method = "gradcam"
        if "method" in st:
            v = st["method"].value
            # the original CAM: `method = cam` (a keyword read as a word there) or "cam"
            method = v.value if isinstance(v, A.Str) and v.value in METHODS else self.word(st["method"], METHODS)
        strategy = self.word(st["strategy"], STRATEGIES) if "strategy" in st else "auto"
        upsample = self.word(st["upsample"], UPSAMPLE) if "upsample" in st else "bilinear"
        normalize = self.word(st["normalize"], NORMALIZE) if "normalize" in st else "minmax"
        classes = self.classes(st["class"], graph) if "class" in st else ("top1",)
        channels = 3  # mean and std: one value per input channel (a grey network has one)
        if graph is not None:
            ishape = graph.node(graph.inputs[0]).shape
            if len(ishape) == 4 and isinstance(ishape[1], int):
                channels = ishape[1]
        mean = self.floats(st["mean"], channels) if "mean" in st else None
        std = self.floats(st["std"], channels) if "std" in st else None
        if std is not None and any(x <= 0 for x in std):
            self.col.error(C.VALUE_OUT_OF_RANGE, "'std' values must be positive", st["std"].value.span)
        labels = self.strings(st["labels"]) if "labels" in st else None
        seed = 0
        if "seed" in st:
            v = self.value(st["seed"].value)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 2 ** 63:
                self.col.error(C.VALUE_OUT_OF_RANGE, "'seed' must be an int >= 0", st["seed"].value.span)
            else:
                seed = v
        samples = None
        if "samples" in st:
            v = self.value(st["samples"].value)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v > 10_000:
                self.col.error(C.VALUE_OUT_OF_RANGE, "'samples' must be an int in 1..10000", st["samples"].value.span)
            else:
                samples = v
        flags = {}
        for key in ("eigen_smooth", "aug_smooth"):
            flags[key] = False
            if key in st:
                v = self.value(st[key].value)
                if not isinstance(v, bool):
                    self.col.error(C.INVALID_CAM_SETTING, f"'{key}' must be true or false", st[key].value.span)
                else:
                    flags[key] = v
        if method == "fullgrad" and strategy == "forward":
            self.col.error(C.INVALID_CAM_SETTING, "method fullgrad needs the gradient w.r.t. the input and every bias layer, "
                                    "which the forward strategy does not give (one JVP per input element)",
                           st["strategy"].value.span, "use strategy = autograd, compiled or auto")
        if method == "cam" and graph is not None and layers and len(self.col.diagnostics) == n0:
            self.cam_head(st["layer"], graph, layers)
        if len(self.col.diagnostics) > n0:
            return None
        return CamSpec(c.name, net, layers, method, classes, strategy, upsample, normalize, mean, std, labels,
                       c.span, seed, flags["eigen_smooth"], flags["aug_smooth"], samples, grid)

    def cam_head(self, s: A.Setting, graph: Graph, layers: tuple[str, ...]) -> None:
        """`method = cam` reads the class weights of an affine head (global pooling + linear)."""
        from evo.passes import run_pipeline
        from evo.passes.gradient import NotDifferentiable, compiled_explain_graph, is_folded

        g = run_pipeline(graph)
        for p in layers:
            try:
                folded = is_folded(compiled_explain_graph(g, p))
            except NotDifferentiable:
                folded = False
            if not folded:
                self.col.error(C.CAM_LAYER_NOT_SPATIAL, f"method cam needs global pooling and an affine head (linear, flatten, "
                               f"batchnorm1d, dropout) after layer '{p}'", s.value.span,
                               "pick the last feature map before global pooling, or use gradcam")
                return

    def classes(self, s: A.Setting, graph: Graph | None):
        v = s.value
        n_classes = None
        if graph is not None and graph.outputs:
            shp = graph.node(graph.outputs[0]).shape
            if len(shp) == 2 and isinstance(shp[1], int):
                n_classes = shp[1]

        def idx(e) -> int | None:
            x = self.value(e)
            if isinstance(x, bool) or not isinstance(x, int):
                self.col.error(C.INVALID_CAM_SETTING, "a class index must be an int", e.span)
                return None
            if x < 0 or (n_classes is not None and x >= n_classes):
                self.col.error(C.VALUE_OUT_OF_RANGE, f"class {x} is out of range" +
                               (f": the network has {n_classes} classes (0..{n_classes - 1})" if n_classes else ""),
                               e.span)
                return None
            return x

        if isinstance(v, A.Name) and v.id in ("top1", "all"):
            return (v.id,)
        if isinstance(v, A.Call) and v.func == "topk":
            if len(v.args) != 1 or v.kwargs:
                self.col.error(C.INVALID_CAM_SETTING, "topk takes one count, e.g. topk(3)", v.span)
                return None
            k = self.value(v.args[0])
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                self.col.error(C.INVALID_CAM_SETTING, "topk needs a positive int", v.args[0].span)
                return None
            if n_classes is not None and k > n_classes:
                self.col.error(C.VALUE_OUT_OF_RANGE, f"topk({k}) asks for more classes than the network's {n_classes}",
                               v.args[0].span)
                return None
            return ("topk", k)
        if isinstance(v, A.ListExpr):
            out = [idx(e) for e in v.items]
            if not out:
                self.col.error(C.INVALID_CAM_SETTING, "the class list is empty", v.span)
                return None
            return None if None in out else ("list", tuple(out))
        if isinstance(v, (A.Num, A.UnaryOp)):
            i = idx(v)
            return None if i is None else ("index", i)
        self.col.error(C.INVALID_CAM_SETTING, "'class' must be top1, topk(k), an index, a list of indices or all", v.span,
                       did_you_mean(v.id, ["top1", "all", "topk"]) if isinstance(v, A.Name) else None)
        return None

    def value(self, e):
        try:
            return self.evaluate(e)
        except Abort:
            return None

    def floats(self, s: A.Setting, n: int):
        v = self.value(s.value)
        if not (isinstance(v, tuple) and len(v) == n and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                             for x in v)):
            self.col.error(C.INVALID_CAM_SETTING, f"'{s.name}' must be a list of {n} number{'s' if n != 1 else ''}, one per input "
                           "channel", s.value.span)
            return None
        return tuple(float(x) for x in v)

    def strings(self, s: A.Setting):
        v = self.value(s.value)
        if not (isinstance(v, tuple) and all(isinstance(x, str) for x in v)):
            self.col.error(C.INVALID_CAM_SETTING, f"'{s.name}' must be a list of strings", s.value.span)
            return None
        return v

    # ------------------------------------------------------------------ target
    def target(self, t: A.Target, cams: dict[str, CamSpec]) -> TargetSpec | None:
        n0 = len(self.col.diagnostics)
        st = self.settings(t, ("network", "hardware", "cam", "batch", "fps", "objective"))
        for req in ("network", "hardware"):
            if req not in st:
                self.col.error(C.MISSING_SETTING, f"target '{t.name}' needs '{req}'", t.name_span, f"add: {req} = ...")
        net = self.ref(st["network"], A.Network, "network", C.UNKNOWN_NETWORK) if "network" in st else None
        hw = self.ref(st["hardware"], A.Hardware, "hardware tier", C.UNKNOWN_HARDWARE) if "hardware" in st else None
        cam = self.ref(st["cam"], A.Cam, "cam", C.UNKNOWN_CAM) if "cam" in st else None
        if cam and net and cam in cams and cams[cam].network != net:
            self.col.error(C.INVALID_CAM_SETTING, f"cam '{cam}' explains network '{cams[cam].network}', but this target runs "
                           f"'{net}'", st["cam"].value.span)
        batch = 1
        if "batch" in st:
            b = self.value(st["batch"].value)
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                self.col.error(C.VALUE_OUT_OF_RANGE, "'batch' must be a positive int", st["batch"].value.span)
            elif b > limits.value("batch"):
                self.col.error(C.VALUE_OUT_OF_RANGE, limits.exceeded("batch", b, "'batch'"), st["batch"].value.span,
                               limits.LIMITS["batch"].how())
            else:
                batch = b
        fps = None
        if "fps" in st:
            f = self.value(st["fps"].value)
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1e12:
                self.col.error(C.VALUE_OUT_OF_RANGE, "'fps' must be a positive number below 1e12", st["fps"].value.span)
            else:
                fps = float(f)
        objective = self.word(st["objective"], OBJECTIVES) if "objective" in st else "latency"
        if len(self.col.diagnostics) > n0:
            return None
        return TargetSpec(t.name, net, hw, cam, batch, fps, objective, t.span)

    # ------------------------------------------------------------------ evolve
    def evolve(self, ev: A.Evolve, targets: dict[str, TargetSpec]) -> EvolveSpec | None:
        n0 = len(self.col.diagnostics)
        st = self.settings(ev, ("target", "population", "generations", "seed"))
        if "target" not in st:
            self.col.error(C.MISSING_SETTING, f"evolve '{ev.name}' needs 'target'", ev.name_span, "add: target = ...")
            return None
        tname = self.ref(st["target"], A.Target, "target", C.UNKNOWN_TARGET)
        tgt = targets.get(tname) if tname else None
        nums = {"population": 32, "generations": 20, "seed": 0}
        for key, lo in (("population", 2), ("generations", 1), ("seed", 0)):
            if key in st:
                v = self.value(st[key].value)
                if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                    self.col.error(C.VALUE_OUT_OF_RANGE, f"'{key}' must be an int >= {lo}", st[key].value.span)
                elif key != "seed" and v > limits.value(key):
                    self.col.error(C.VALUE_OUT_OF_RANGE, limits.exceeded(key, v, f"'{key}'"), st[key].value.span,
                                   limits.LIMITS[key].how())
                elif key == "seed" and v >= 2 ** 63:
                    self.col.error(C.VALUE_OUT_OF_RANGE, "'seed' must be below 2**63", st[key].value.span)
                else:
                    nums[key] = v
        genes: list[GeneSpec] = []
        seen: set = set()
        objectives: list[tuple[str, str]] = []
        constraints: list[tuple[str, str, float]] = []
        for item in ev.items:
            if isinstance(item, A.Gene):
                g = self.gene(item, tgt)
                if g is not None:
                    if g.path in seen:
                        self.col.error(C.NAME_BOUND_TWICE, f"gene '{g.name}' is declared twice", item.path_span)
                    seen.add(g.path)
                    genes.append(g)
            elif isinstance(item, A.Objective):
                for m, sp in zip(item.metrics, item.metric_spans):
                    if m not in METRICS:
                        self.col.error(C.UNKNOWN_METRIC, f"unknown metric '{m}'", sp,
                                       did_you_mean(m, METRICS) or f"metrics are {', '.join(METRICS)}")
                    elif any(m == o for o, _ in objectives):
                        self.col.error(C.NAME_BOUND_TWICE, f"metric '{m}' is an objective twice", sp)
                    else:
                        objectives.append((m, "min" if item.sense == "minimize" else "max"))
            elif isinstance(item, A.Require):
                for c in item.constraints:
                    r = self.constraint(c)
                    if r is not None:
                        constraints.append(r)
        if not any(isinstance(i, A.Objective) for i in ev.items):
            self.col.error(C.MISSING_SETTING, f"evolve '{ev.name}' needs an objective", ev.name_span,
                           "add e.g.: minimize latency, energy")
        if not genes and len(self.col.diagnostics) == n0:
            self.col.error(C.MISSING_SETTING, f"evolve '{ev.name}' declares no genes", ev.name_span,
                           "add e.g.: gene classes in [10, 100]")
        space = 1
        for g in genes:
            space *= len(g.values)
        if space > limits.value("search_space"):
            self.col.error(C.INVALID_GENE_DOMAIN, limits.exceeded("search_space", space, f"evolve '{ev.name}' searches "
                                                    "too many candidates"), ev.name_span,
                           "narrow the gene domains, or " + limits.LIMITS["search_space"].how())
        if len(self.col.diagnostics) > n0:
            return None
        return EvolveSpec(ev.name, tname, tuple(genes), tuple(objectives), tuple(constraints),
                          nums["population"], nums["generations"], nums["seed"], ev.span)

    def constraint(self, c) -> tuple[str, str, float] | None:
        if not (isinstance(c, A.BinOp) and c.op in ("<=", "<", ">=", ">", "==") and isinstance(c.left, A.Name)):
            self.col.error(C.INVALID_CONSTRAINT, "a constraint is 'metric <= value' (or <, >=, >, ==)", c.span,
                           "e.g. require params <= 12M")
            return None
        m = c.left.id
        if m not in METRICS:
            self.col.error(C.UNKNOWN_METRIC, f"unknown metric '{m}'", c.left.span, did_you_mean(m, METRICS))
            return None
        v = self.value(c.right)
        dim = METRICS[m][0]
        if isinstance(v, U.Quantity):
            if v.dim != dim:
                self.col.error(C.WRONG_UNIT, f"'{m}' is a {dim or 'plain number'}, but {v} is {U.NOUN.get(v.dim, v.dim)}", c.right.span)
                return None
            v = v.value
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            self.col.error(C.INVALID_CONSTRAINT, f"the bound of '{m}' must be a number", c.right.span)
            return None
        elif dim not in (None, U.COUNT):
            self.col.error(C.MISSING_UNIT, f"the bound of '{m}' needs a unit, e.g. {U.EXAMPLE[dim]}", c.right.span)
            return None
        return (m, c.op, float(v))

    def gene(self, g: A.Gene, tgt: TargetSpec | None) -> GeneSpec | None:
        if tgt is None:
            return None
        path = g.path
        if len(path) == 1:
            net = self.prog.networks.get(tgt.network)
            params = [p for p in net.params[1:]] if net else []
            pnames = [p.name for p in params]
            if path[0] not in pnames:
                self.col.error(C.UNKNOWN_GENE, f"network '{tgt.network}' has no parameter '{path[0]}'", g.path_span,
                               did_you_mean(path[0], pnames) or
                               "a gene names a network parameter or a hardware attribute (Tier.attr)")
                return None
            p = params[pnames.index(path[0])]
            values = self.domain(g, None)
            if values is None:
                return None
            t = p.type.name if p.type else None
            for v in values:
                ok = {"int": isinstance(v, int) and not isinstance(v, bool), "bool": isinstance(v, bool),
                      "float": isinstance(v, (int, float)) and not isinstance(v, bool)}.get(t, True)
                if not ok or isinstance(v, U.Quantity):
                    self.col.error(C.INVALID_GENE_DOMAIN, f"gene '{path[0]}' takes {t} values, got {v!r}", g.span)
                    return None
            return GeneSpec(path, "network", values, None, g.path_span)
        hw_name = path[0]
        if hw_name not in self.prog.hardware:
            self.col.error(C.UNKNOWN_GENE, f"unknown gene '{'.'.join(path)}': '{hw_name}' is not a hardware tier",
                           g.path_span, did_you_mean(hw_name, self.prog.hardware))
            return None
        if hw_name != tgt.hardware:
            self.col.error(C.UNKNOWN_GENE, f"gene '{'.'.join(path)}' changes hardware '{hw_name}', but target "
                           f"'{tgt.name}' runs on '{tgt.hardware}'", g.path_span)
            return None
        rest = path[1:]
        if len(rest) == 1 and rest[0] in TOP_ATTRS:
            dims = TOP_ATTRS[rest[0]][0]
        elif len(rest) == 2 and rest[0] in LEVEL_KINDS and rest[1] in LEVEL_ATTRS:
            why = level_attr_excluded(rest[0], rest[1])
            if why:
                self.col.error(C.UNKNOWN_GENE, f"gene '{'.'.join(path)}': {why}", g.path_span)
                return None
            dims = LEVEL_ATTRS[rest[1]][0]
        else:
            key = ".".join(rest)
            self.col.error(C.UNKNOWN_GENE, f"hardware has no attribute '{key}'", g.path_span,
                           did_you_mean(key, list(TOP_ATTRS) + [f"{k}.{a}" for k in LEVEL_KINDS for a in LEVEL_ATTRS]))
            return None
        values = self.domain(g, dims)
        if values is None:
            return None
        base: list[float] = []
        hw = self.hardware.get(hw_name)
        for v in values:
            if isinstance(v, U.Quantity):
                if v.dim not in dims:
                    self.col.error(C.WRONG_UNIT, f"gene '{'.'.join(path)}' needs a {dims[0]}, but {v} is {U.NOUN.get(v.dim, v.dim)}",
                                   g.span)
                    return None
                x = v.value * (hw.frequency if v.dim == U.BANDWIDTH_CYCLE and hw else 1.0)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and dims == (U.COUNT,):
                x = v
            else:
                self.col.error(C.MISSING_UNIT, f"gene '{'.'.join(path)}' needs values with units, e.g. "
                               f"{U.EXAMPLE[dims[0]]}", g.span)
                return None
            why = sign_problem(rest[-1], x)
            if why:
                self.col.error(C.VALUE_MUST_BE_POSITIVE, f"gene '{'.'.join(path)}' values {why}", g.span)
                return None
            why = out_of_range(rest[-1], x)
            if why:
                self.col.error(C.VALUE_OUT_OF_RANGE, f"gene '{'.'.join(path)}' values {why}, got {v}", g.span)
                return None
            base.append(x)
        return GeneSpec(path, "hardware", tuple(base), dims[0], g.path_span)

    def domain(self, g: A.Gene, dims) -> tuple | None:
        d = g.domain
        if isinstance(d, A.Range):
            a, b = self.value(d.start), self.value(d.stop)
            s = self.value(d.step) if d.step is not None else 1
            if any(x is None for x in (a, b, s)):
                return None
            qa = isinstance(a, U.Quantity)
            if qa or isinstance(b, U.Quantity) or isinstance(s, U.Quantity):
                if not (qa and isinstance(b, U.Quantity) and a.dim == b.dim and
                        (isinstance(s, U.Quantity) and s.dim == a.dim)):
                    self.col.error(C.INVALID_GENE_DOMAIN, "a range of quantities needs the same unit on start, end and step",
                                   d.span, "e.g. 64 KiB..512 KiB step 64 KiB")
                    return None
                a0, b0, s0, dim = a.value, b.value, s.value, a.dim
            else:
                if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b, s)):
                    self.col.error(C.INVALID_GENE_DOMAIN, "a range needs numbers", d.span)
                    return None
                a0, b0, s0, dim = a, b, s, None
            if s0 <= 0:
                self.col.error(C.INVALID_GENE_DOMAIN, "a range step must be positive", d.span)
                return None
            n = int((b0 - a0) // s0) if b0 > a0 else 0
            if n * s0 + a0 < b0 - 1e-12 * max(1, abs(b0)):
                n += 1
            if n <= 0:
                self.col.error(C.INVALID_GENE_DOMAIN, f"the range is empty (ranges are half-open: {a0}..{b0} excludes {b0})",
                               d.span)
                return None
            if n > MAX_GENE_VALUES:
                self.col.error(C.INVALID_GENE_DOMAIN, f"the range has {n:,} values, more than {MAX_GENE_VALUES:,}", d.span)
                return None
            ints = all(isinstance(x, int) for x in (a0, s0)) and dim is None
            vals = [a0 + i * s0 for i in range(n)]
            if dim is not None:
                return tuple(U.Quantity(v, dim) for v in vals)
            return tuple(int(v) if ints else float(v) for v in vals)
        v = self.value(d)
        if v is None:
            return None
        if not isinstance(v, tuple) or not v:
            self.col.error(C.INVALID_GENE_DOMAIN, "a gene domain is a list [a, b, ...] or a range a..b step s", d.span)
            return None
        if len(set(map(repr, v))) != len(v):
            self.col.error(C.INVALID_GENE_DOMAIN, "the gene's values repeat", d.span)
            return None
        return v


