"""One compilation: the one cache of the pipeline and the one place that decides.

source -> ast (parse + imports) -> checked (names, shapes, units, hardware,
cam/target/evolve) -> ir (graphs after the pass pipeline) -> strategies (the CAM
strategy of every cam) -> python (codegen); `--emit` reads these.

Every stage is computed once: `graph(network, args)` is memoised per argument
set, and the compiled explain graph of a (graph, CAM layer) pair is built once
and handed to both codegen and the cost model.  Choosing a cam's strategy
(`auto` -> autograd / forward / compiled) happens here and nowhere else: codegen
renders the strategy it is given and never calls the cost model.

Plugins (`evo.ops` entry points, EVO_PLUGINS) are not loaded here: the entry
points (`evo.compile`, `evo.compile_file`, `evoc`) load them before compiling.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from evo.check import Checked, check_program
from evo.check.program import Program, load
from evo.check.settings import GRADIENT_FREE, CamSpec
from evo.frontend.dump import dump
from evo.ir.node import Graph
from evo.ir.printer import print_graph
from evo.passes import run_pipeline
from evo.passes.gradient import NotDifferentiable, compiled_explain_graph, fullgrad_graph, is_folded

# explain(layer, fold) -> the explain graph of `layer` (folded or not); raises NotDifferentiable
ExplainFn = Callable[[str, bool], Graph]

# How many instantiated graphs (and explain graphs) a compilation keeps: the most
# recently used; the default-argument graphs (`ir`) are always kept.
CACHE_ENTRIES = 64


class _LRU(OrderedDict):
    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > CACHE_ENTRIES:
            self.popitem(last=False)
        return value


def _freeze(args: dict[str, Any]) -> tuple | None:
    """A hashable key for network arguments (None: not cacheable).  The value's type is
    part of the key: `True` and `1` are different arguments to the checker."""
    try:
        key = tuple(sorted((k, type(v).__name__, v) for k, v in args.items()))
        hash(key)
    except TypeError:
        return None
    return key


def choose_strategy(g: Graph, spec: CamSpec, explain: ExplainFn | None = None, hardware=None,
                    requested: str | None = None) -> tuple[str, str]:
    """(strategy, why) for a cam on graph `g`: the strategy stage of a compilation.

    `auto` picks the cheapest exact strategy: on `hardware` (the tier of a target that
    runs the cam) by the cost model, else compiled where the gradient can be emitted
    as ops, else autograd.  An explicit `compiled` raises NotDifferentiable when the
    head cannot be differentiated.  Gradient-free methods need no strategy."""
    if explain is None:
        def explain(layer: str, fold: bool = True) -> Graph:
            return compiled_explain_graph(g, layer, fold)
    s = requested or spec.strategy
    if spec.method == "cam":  # the original CAM reads the class weights of an affine head
        for layer in spec.layers:
            if not is_folded(explain(layer, True)):  # raises NotDifferentiable
                raise NotDifferentiable(f"method cam needs global pooling and an affine head after layer '{layer}'")
        return "none", "cam reads the class weights of the affine head when the explainer is built"
    if spec.method in GRADIENT_FREE:
        return "none", f"{spec.method} needs no gradient"
    if spec.method == "fullgrad":  # the whole network's gradient: compiled where it can be emitted
        if s in ("compiled", "auto"):
            try:
                fullgrad_graph(g)
            except NotDifferentiable as e:
                if s == "compiled":
                    raise
                return "autograd", f"auto: compiled is not possible ({e})"
            return "compiled", ("auto: compiled (the gradients w.r.t. the input and every bias layer emitted as "
                                "ops)" if s == "auto" else "")
        return s, ""
    if s == "compiled":
        for layer in spec.layers:
            explain(layer, True)  # raises NotDifferentiable
        return "compiled", ""
    if s != "auto":
        return s, ""
    try:
        folded = [is_folded(explain(layer, True)) for layer in spec.layers]
    except NotDifferentiable as e:
        return "autograd", f"auto: compiled is not possible ({e})"
    if hardware is not None:
        from evo.cost.network import cheapest_strategy

        best, why = cheapest_strategy(g, spec, hardware, explain=explain)
        from evo.cam_work import LIMIT, estimate

        if best == "forward" and estimate(g, spec, "forward").ratio > LIMIT:  # never an explainer of hours
            return "compiled", f"auto: compiled (forward would do more than {LIMIT:g}x the work of inference)"
        return best, f"auto: {why}"
    why = "auto: compiled (affine head folds to channel weights)" if all(folded) else \
        "auto: compiled (no autograd at run time; gradient emitted as ops)"
    return "compiled", why


class Compilation:
    def __init__(self, source: str, filename: str = "<string>", base_dir: str | Path | None = None):
        self.source = source
        self.filename = filename
        self.base_dir = base_dir
        self._graphs: _LRU = _LRU()
        self._explain: _LRU = _LRU()

    # ------------------------------------------------------------------ front end
    @cached_property
    def program(self) -> Program:
        return load(self.source, self.filename, self.base_dir)

    @cached_property
    def ast(self):
        """The main file's syntax tree."""
        return next(m for m in self.program.modules if m.filename == self.filename)

    @cached_property
    def ast_text(self) -> str:
        return dump(self.ast)

    @cached_property
    def checked(self) -> Checked:
        return check_program(self.program)

    # ------------------------------------------------------------------ graphs
    @cached_property
    def ir(self) -> dict[str, Graph]:
        """Every network at its default arguments, after the pass pipeline."""
        return {name: run_pipeline(g) for name, g in self.checked.graphs.items() if g is not None}

    def graph(self, network: str, args: dict[str, Any] | None = None) -> Graph:
        """The network's graph after the pass pipeline, for `args` (memoised per argument set;
        the CACHE_ENTRIES most recently used are kept)."""
        if not args and network in self.ir:
            return self.ir[network]
        key = _freeze(args or {})
        if key is None:
            return run_pipeline(self.checked.instantiate(network, args))
        g = self._graphs.get((network, key))
        if g is None:
            g = self._graphs.put((network, key), run_pipeline(self.checked.instantiate(network, args)))
        return g

    def explain_graph(self, g: Graph, layer: str, fold: bool = True) -> Graph:
        """The compiled-CAM explain graph of `layer` in `g` (built once per graph, layer and
        folding); raises NotDifferentiable when the head cannot be differentiated."""
        key = (id(g), layer, fold)
        hit = self._explain.get(key)
        if hit is None or hit[0] is not g:
            try:
                hit = (g, compiled_explain_graph(g, layer, fold), None)
            except NotDifferentiable as e:
                hit = (g, None, str(e))
            self._explain.put(key, hit)
        if hit[2] is not None:
            raise NotDifferentiable(hit[2])
        return hit[1]

    def explainer(self, g: Graph) -> ExplainFn:
        """`explain(layer, fold)` for graph `g`, served from this compilation's cache."""
        def explain(layer: str, fold: bool = True) -> Graph:
            return self.explain_graph(g, layer, fold)
        return explain

    @cached_property
    def explain_graphs(self) -> dict[str, Graph]:
        """For every cam layer: the compiled-CAM explain graph (after folding)."""
        out: dict[str, Graph] = {}
        for name, spec in self.checked.cams.items():
            g = self.ir.get(spec.network)
            if g is None or spec.method in GRADIENT_FREE:
                continue
            for layer in spec.layers:
                try:
                    out[f"{name}:{layer}"] = self.explain_graph(g, layer)
                except NotDifferentiable:
                    continue
        return out

    # ------------------------------------------------------------------ decisions
    def target_hardware(self, cam: str):
        """The hardware of the first target that runs this cam (for `auto`), if any."""
        checked = self.checked
        for t in checked.targets.values():
            if t.cam == cam:
                return checked.hardware.get(t.hardware)
        return None

    def strategy(self, spec: CamSpec, g: Graph | None = None) -> tuple[str, str]:
        """(strategy, why) for `spec` (a declared cam, possibly with overrides) on `g`
        (default: its network at default arguments).  Raises NotDifferentiable for an
        explicit `compiled` that is not possible."""
        if g is None:
            g = self.graph(spec.network)
        return choose_strategy(g, spec, self.explainer(g), self.target_hardware(spec.name))

    @cached_property
    def strategies(self) -> dict[str, tuple[str, str]]:
        """cam -> (strategy, why) at the declared settings, for every cam whose network
        has a graph at its default arguments."""
        return {name: self.strategy(spec, self.ir[spec.network])
                for name, spec in self.checked.cams.items() if spec.network in self.ir}

    @cached_property
    def warnings(self) -> list:
        """Warning diagnostics: explainers whose chosen strategy (or method) costs more than
        evo.cam_work.LIMIT x inference, with the estimate and the cheaper strategy."""
        from evo.cam_work import LIMIT, cheaper_strategy, estimate
        from evo.codes import EXPLAINER_TOO_EXPENSIVE
        from evo.diagnostics import Diagnostic

        out = []
        for name, (strategy, _why) in self.strategies.items():
            spec = self.checked.cams[name]
            g = self.ir[spec.network]
            possible: dict = {}
            try:
                possible["compiled"] = [is_folded(self.explain_graph(g, layer)) for layer in spec.layers]
            except NotDifferentiable:
                pass
            possible.update({"autograd": None, "forward": None})
            s = strategy if strategy != "none" else "autograd"
            work = estimate(g, spec, s, possible.get("compiled"))
            if work.ratio <= LIMIT:
                continue
            hint = None
            if spec.method not in GRADIENT_FREE and spec.method != "smoothgradcampp":
                alt = cheaper_strategy(g, spec, s, possible)
                if alt is not None and alt[1].ratio < work.ratio:
                    hint = f"use strategy = {alt[0]} (~{alt[1].ratio:.1f}x inference)"
            if hint is None:
                hint = "a one-pass method (gradcam, layercam, ...) costs ~1-2x inference"
            what = f"method {spec.method}" + (f" with strategy {strategy}" if strategy != "none" else "")
            out.append(Diagnostic(EXPLAINER_TOO_EXPENSIVE,
                                  f"cam '{name}': {what} does about {work.ratio:,.0f}x the work of inference "
                                  f"({work.passes})", spec.span, hint, severity="warning"))
        return out

    # ------------------------------------------------------------------ output
    @cached_property
    def ir_text(self) -> str:
        parts = [print_graph(g) for g in self.ir.values()]
        for key, eg in self.explain_graphs.items():
            parts.append(f"# cam {key.split(':')[0]}: the compiled gradient at {key.split(':', 1)[1]}\n"
                         + print_graph(eg))
        return "\n".join(parts)

    @cached_property
    def python(self) -> str:
        from evo.codegen import emit_program

        plans = []
        for name, spec in self.checked.cams.items():
            g = self.ir.get(spec.network)
            if g is None:
                continue
            strategy, note = self.strategies[name]
            plans.append((g, spec, strategy, note, self.explainer(g)))
        return emit_program(list(self.ir.values()), self.filename, plans)
