"""Evolution: `evolve` blocks searched with the cost model as fitness (`evoc evolve`,
`Program.evolve`).

An evolve block names a target, genes (network parameters and hardware attributes of
the target's tier), objectives and constraints over the cost metrics.  `run_evolve`
turns the genes into a search space (`evo.evolve`), evaluates a candidate by

* instantiating the target's network with the network genes (cached by those
  arguments), checked like the compiler checks it (shapes, parameter types, and
  every cam of that network against the new graph);
* building the target's tier with the hardware genes as the compiler would build
  ``hardware <Tier>_<evolve>_<k> extends <Tier> { <attr> = <value>; ... }``, i.e.
  with the checker's own rules (units, positive values, PE memory no larger than the
  global memory, ``B/cycle`` bandwidths at the tier's frequency; cached by the
  values);
* costing the graph on that tier at the target's batch and objective
  (`cost_graph`), plus the target's cam (`explainer_cost`) when a ``cam_*`` metric
  is an objective or a constraint (cached by graph and tier);

and runs NSGA-II (`evo.evolve.search`).  A candidate that cannot be built is
infeasible, with the compiler's message as the reason.

Every point of the front can be written back as a plain evo program (see
`EvolveResult.program`): the original file with the target network's parameter
defaults set to the gene values, an extending tier that sets the hardware genes
appended and the target pointed at it, and the evolve blocks of the target
dropped; the text is then formatted canonically.  `evoc cost --target` on it gives
exactly the figures the search reported, because the search costed that very tier
and graph.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evo import codes as C
from evo import units as U
from evo.diagnostics import Diagnostic, EvoError, Span
from evo.evolve.writeback import WriteBackError  # noqa: F401 -- re-exported

__all__ = ["METRIC_UNITS", "Evaluator", "EvolveResult", "WriteBackError", "evaluator", "format_metric", "run_evolve"]


# ---------------------------------------------------------------------------- metric spelling

# the unit of each cost metric in its SI base ("count": a plain number)
METRIC_UNITS = {
    "latency": "s", "cam_latency": "s", "roofline_latency": "s",
    "energy": "J", "cam_energy": "J", "edp": "J*s",
    "offchip_bytes": "B", "global_bytes": "B", "pe_bytes": "B", "compulsory_offchip_bytes": "B",
    "params": "count", "macs": "count", "cycles": "count", "utilization": "fraction",
    "area": "m²", "power": "W",
}


def format_metric(name: str, value: Any) -> str:
    """A metric for people, through the one SI formatter (`evo.cost.si.format_si`, 4
    significant digits, trailing zeros dropped): ``1.234 ms``, ``8.58 µJ``, ``12.5K``."""
    from evo.cost.si import format_area, format_si

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if name == "area":
        return format_area(v, digits=4)
    unit = METRIC_UNITS.get(name)
    if unit in ("s", "J"):
        return format_si(v, unit, digits=4, smallest="p" if unit == "s" else "f", trim=True)
    if unit == "B":
        return format_si(v, "B", digits=4, smallest="", trim=True)
    if unit == "count":
        return format_si(v, "", digits=4, smallest="", sep="", trim=True)
    if unit == "W":
        return format_si(v, "W", digits=4, smallest="n", trim=True, kilo="k")
    if name == "edp":
        return f"{v:.4g} J*s"
    if name == "utilization":
        return f"{v:.3f}"
    if isinstance(value, int):
        return str(value)
    if 1e-3 <= abs(v) < 1e7:  # 4 significant digits, fixed point: 30910, 939.2, 5.5
        decimals = max(0, 3 - math.floor(math.log10(abs(v))))
        text = f"{v:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{v:.4g}"


# ---------------------------------------------------------------------------- literals

_LITERAL = re.compile(r"^\s*(\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)\s*([A-Za-z]+2?(?:/[A-Za-z]+)?)?\s*$")
_BASE_UNIT = {U.FREQUENCY: "Hz", U.SIZE: "B", U.BANDWIDTH: "B/s", U.BANDWIDTH_CYCLE: "B/cycle",
              U.ENERGY: "J", U.ENERGY_PER_SIZE: "J/B", U.TIME: "s"}


def _read_number(numtext: str) -> int | float:
    """The number as the lexer reads it (digits only: int, else float)."""
    clean = numtext.replace("_", "")
    return int(clean) if clean.isdigit() else float(clean)


def _literal_value(numtext: str, unit: str | None) -> tuple[Any, str | None] | None:
    """(value, dimension) of ``numtext unit`` exactly as the compiler evaluates it."""
    v = _read_number(numtext)
    if unit is None:
        return v, None
    parsed = U.parse_unit(unit)
    if parsed is None:
        return None
    scale, dim = parsed
    x = v * scale
    if dim == U.COUNT:
        return (int(x) if float(x).is_integer() else x), None
    return x, dim


def _number_text(v: float) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _quantity_literal(q: Any) -> tuple[str, str | None]:
    """(number text, unit) spelling `q` (a Quantity or a plain number) so that the compiler
    reads back exactly the same value: the text as written when it does, else the tidiest
    unit (`evo.units.format_quantity`), else the base unit with a round-trip float."""
    if not isinstance(q, U.Quantity):
        if isinstance(q, float) and q.is_integer():
            return str(int(q)), None
        return _number_text(q), None
    tries: list[str] = []
    if q.text:
        tries.append(q.text)
    tries.append(U.format_quantity(q.value, q.dim))
    for text in tries:
        m = _LITERAL.match(text)
        if not m or m.group(2) is None:
            continue
        got = _literal_value(m.group(1), m.group(2))
        if got is not None and got[1] == q.dim and got[0] == q.value:
            return m.group(1), m.group(2)
    return repr(float(q.value)), _BASE_UNIT[q.dim]


def _value_literal(v: Any) -> str:
    """A network argument as an evo literal."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if any(c in r for c in ".e") else r + ".0"
    raise TypeError(f"cannot write {v!r} as an evo literal")


# ---------------------------------------------------------------------------- gene domains

def _vkey(v: Any) -> tuple:
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("n", float(v))
    return ("o", repr(v))


class _Values:
    """A gene domain over the checker's enumerated values (exact; O(1) `index_of`)."""

    def __init__(self, values: tuple):
        self.values = tuple(values)
        self.size = len(self.values)
        self._index: dict[tuple, int] = {}
        for i, v in enumerate(self.values):
            self._index.setdefault(_vkey(v), i)
        nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)
        pairs = list(itertools.pairwise(self.values)) if nums else []
        self.ordered = self.size <= 2 or (nums and (all(a < b for a, b in pairs) or all(a > b for a, b in pairs)))

    def value(self, index: int) -> Any:
        return self.values[index]

    def index_of(self, value: Any) -> int:
        i = self._index.get(_vkey(value))
        if i is None:
            raise ValueError(f"{value!r} is not one of the gene's values")
        return i

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(self.values)


# ---------------------------------------------------------------------------- evaluation

def _reason(e: EvoError) -> str:
    d = e.diagnostics[0]
    return d.message


class Evaluator:
    """``evaluate(values) -> metrics`` for one evolve block of a program.

    Caches graphs by network arguments, tiers by hardware values and costs by both, so
    repeated searches on the same program (other seeds, budgets) reuse earlier work.
    Raises `evo.evolve.Infeasible` for candidates that cannot be built.
    """

    def __init__(self, prog, name: str):
        comp = prog.compilation  # (no reference to `prog`: the evaluator cache is keyed weakly by it)
        self.comp = comp
        self.checked = comp.checked
        self.program = comp.program
        self.spec = self.checked.evolves[name]
        spec = self.spec
        self.target = self.checked.targets[spec.target]
        self.net_genes = [g for g in spec.genes if g.kind == "network"]
        self.hw_genes = [g for g in spec.genes if g.kind == "hardware"]
        self.domains = {g.name: _Values(g.values) for g in spec.genes}
        used = {m for m, _ in spec.objectives} | {c[0] for c in spec.constraints}
        self.cam = self.checked.cams.get(self.target.cam) if self.target.cam else None
        self.need_cam = self.cam is not None and any(m.startswith("cam_") for m in used)
        self.tier = self.target.hardware
        self.literals = {g.name: self._literals(g) for g in self.hw_genes}
        self.graphs: dict[tuple, Any] = {}
        self.tiers: dict[tuple, Any] = {}
        self.costs: dict[tuple, Any] = {}
        self.prepared: dict[tuple, Any] = {}  # graph key -> (op items, parameter count)
        self.converted: dict[tuple, Any] = {}  # tier key -> evo.cost.Hardware
        self.calls = 0
        self.cost_hits = 0
        pes = [int(v) for g in self.hw_genes if tuple(g.path[1:]) == ("pes",) for v in g.values]
        if pes:  # one PE half per op for every PE count of the gene (same figures, less work)
            from evo.cost.mapping import share_pe_halves

            share_pe_halves(max(pes))

    # -- the genes as written ----------------------------------------------------
    def _literals(self, g) -> list[tuple[str, str | None]]:
        """Per value of a hardware gene: (number text, unit) that reads back exactly as
        written (`2 B/cycle` stays per cycle, so it follows a frequency gene)."""
        from evo.check import hardware_gene_values

        written = hardware_gene_values(self.checked, self.spec.name, g.path)
        if written is None or len(written) != len(g.values):  # cannot happen for a checked program
            written = tuple(U.Quantity(v, g.dim) if g.dim != U.COUNT else v for v in g.values)
        return [_quantity_literal(q) for q in written]

    def spelled(self, name: str, value: Any) -> str:
        """A gene value as evo text: `256 KiB`, `2 B/cycle`, `64`, `true`."""
        if name in self.literals:
            num, unit = self.literals[name][self.domains[name].index_of(value)]
            return f"{num} {unit}" if unit else num
        return _value_literal(value)

    def hardware_items(self, values: dict[str, Any]) -> list[tuple[tuple[str, ...], str, str | None]]:
        """(attribute path, number text, unit) for the hardware genes of a candidate."""
        out = []
        for g in self.hw_genes:
            num, unit = self.literals[g.name][self.domains[g.name].index_of(values[g.name])]
            out.append((g.path[1:], num, unit))
        return out

    # -- building a candidate ------------------------------------------------------
    def graph(self, args: dict[str, Any]):
        from evo.evolve import Infeasible

        key = tuple((k, type(v).__name__, v) for k, v in args.items())
        hit = self.graphs.get(key)
        if hit is None:
            try:
                hit = (key, self._build_graph(args))
            except EvoError as e:
                hit = (key, Infeasible(_reason(e)))
            self.graphs[key] = hit
        if isinstance(hit[1], Infeasible):
            raise Infeasible(hit[1].reason)  # a fresh exception: a cached one would grow its traceback
        return hit

    def _build_graph(self, args: dict[str, Any]):
        from evo.check import instantiate_network
        from evo.passes import run_pipeline

        net = self.target.network
        if not args:
            return self.comp.graph(net)
        # the instance, and every cam on the network checked against it (as the checker demands
        # of the written-back program)
        return run_pipeline(instantiate_network(self.checked, net, args, check_cams=True))

    def hardware(self, values: dict[str, Any]):
        """The target's tier with the hardware genes set, built and validated by the checker."""
        from evo.evolve import Infeasible

        items = self.hardware_items(values)
        key = tuple((".".join(p), n, u) for p, n, u in items)
        hit = self.tiers.get(key)
        if hit is None:
            hit = (key, self._build_tier(items))
            self.tiers[key] = hit
        if isinstance(hit[1], Infeasible):
            raise Infeasible(hit[1].reason)  # a fresh exception: a cached one would grow its traceback
        return hit

    def _build_tier(self, items):
        from evo.check import hardware_variant
        from evo.evolve import Infeasible

        if not items:
            return self.checked.hardware[self.tier]
        spans = {g.path[1:]: g.span for g in self.hw_genes}
        overrides = [(path, num, unit, spans.get(tuple(path))) for path, num, unit in items]
        try:
            # named `<tier>~<evolve>`: not an identifier, never a definition's name
            spec = hardware_variant(self.checked, self.tier, overrides, name=f"{self.tier}~{self.spec.name}",
                                    span=self.spec.span or Span.unknown(self.comp.filename))
        except EvoError as e:
            return Infeasible(e.diagnostics[0].message)
        if spec is None:
            return Infeasible(f"hardware '{self.tier}' cannot be built")
        return spec

    def cost(self, gkey: tuple, graph, hkey: tuple, hw) -> dict[str, float]:
        from evo.cost.hardware import HardwareError, as_hardware
        from evo.cost.network import cost_graph, explainer_cost, prepare_graph
        from evo.evolve import Infeasible

        key = (gkey, hkey)
        hit = self.costs.get(key)
        if hit is not None:
            self.cost_hits += 1
        else:
            t = self.target
            try:
                # the graph's op list once per graph, the tier converted once per tier: the
                # same workload and tier objects then key the op-cost caches by identity
                prep = self.prepared.get(gkey)
                if prep is None:
                    prep = self.prepared[gkey] = prepare_graph(graph, t.batch)
                hwc = self.converted.get(hkey)
                if hwc is None:
                    hwc = self.converted[hkey] = as_hardware(hw)
                rep = cost_graph(graph, hwc, batch=t.batch, objective=t.objective, prepared=prep)
                m = dict(rep.metrics)
                if self.need_cam:
                    cam = explainer_cost(graph, self.cam, hwc, t.batch, t.objective)
                    m["cam_latency"] = cam["latency_s"]
                    m["cam_energy"] = cam["energy_j"]
                elif self.cam is not None:  # not computed: do not report inference figures as the cam's
                    m.pop("cam_latency", None)
                    m.pop("cam_energy", None)
                hit = m
            except HardwareError as e:
                hit = Infeasible(str(e))
            self.costs[key] = hit
        if isinstance(hit, Infeasible):
            raise Infeasible(hit.reason)
        return dict(hit)

    def __call__(self, values: dict[str, Any]) -> dict[str, float]:
        self.calls += 1
        args = {g.path[0]: values[g.name] for g in self.net_genes}
        gkey, graph = self.graph(args)
        hkey, hw = self.hardware(values)
        return self.cost(gkey, graph, hkey, hw)

    # -- the program as written ------------------------------------------------------
    def baseline_values(self) -> dict[str, Any] | None:
        """The genes' values in the program as written, when each is one of its gene's values."""
        out: dict[str, Any] = {}
        g0 = self.checked.graphs.get(self.target.network)
        args = dict(g0.args) if g0 is not None else {}
        hw = self.checked.hardware[self.tier]
        for g in self.spec.genes:
            v = args.get(g.path[0]) if g.kind == "network" else hw.get(g.path[1:])
            if v is None:
                return None
            try:
                out[g.name] = self.domains[g.name].value(self.domains[g.name].index_of(v))
            except ValueError:
                return None
        return out

    def baseline(self) -> dict[str, float] | None:
        """The metrics of the target as written (None if its network needs arguments)."""
        from evo.evolve import Infeasible

        try:
            gkey, graph = self.graph({})
            return self.cost(gkey, graph, ("<as written>",), self.checked.hardware[self.tier])
        except Infeasible:
            return None


_EVALUATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def evaluator(prog, name: str) -> Evaluator:
    """The (cached) evaluator of evolve block `name` of `prog`."""
    per = _EVALUATORS.setdefault(prog, {})
    ev = per.get(name)
    if ev is None:
        ev = per[name] = Evaluator(prog, name)
    return ev


# ---------------------------------------------------------------------------- result

@dataclass
class EvolveResult:
    """The outcome of searching one evolve block.

    ``front`` holds `evo.evolve.Point`s (``values``: gene name -> value in base units,
    ``metrics``: metric -> SI value, ``genome``), sorted by objectives; ``search`` is the
    engine's `SearchResult` (every evaluated point, counts, wall time).
    """

    name: str
    spec: Any
    target: Any
    search: Any
    baseline: dict[str, float] | None
    evaluator: Evaluator = field(repr=False)

    # -- counts ----------------------------------------------------------------
    @property
    def front(self) -> list:
        return list(self.search.front)

    @property
    def evaluated(self) -> list:
        return list(self.search.evaluated)

    @property
    def evaluations(self) -> int:
        return self.search.evaluations

    @property
    def generations(self) -> int:
        return self.search.generations

    @property
    def wall_time(self) -> float:
        return self.search.wall_time

    @property
    def space_size(self) -> int:
        return self.search.space.size

    @property
    def infeasible(self) -> int:
        """Candidates that could not be built."""
        return sum(1 for p in self.search.evaluated if math.isinf(p.violation))

    @property
    def violating(self) -> int:
        """Candidates built and costed that break a constraint."""
        return sum(1 for p in self.search.evaluated if 0 < p.violation < math.inf)

    def spelled(self, point) -> dict[str, str]:
        """A point's gene values as evo text (``{"Chip.global.size": "256 KiB"}``)."""
        return {k: self.evaluator.spelled(k, v) for k, v in point.values.items()}

    def _index(self, point) -> int:
        if isinstance(point, int):
            if not 0 <= point < len(self.search.front):
                raise IndexError(f"front point {point} out of range (the front has {len(self.search.front)})")
            return point
        for i, p in enumerate(self.search.front):
            if p is point or p.genome == getattr(point, "genome", None):
                return i
        raise ValueError("not a point of this front")

    # -- reports -----------------------------------------------------------------
    def _shown_metrics(self) -> list[str]:
        out = [m for m, _ in self.spec.objectives]
        for c in self.spec.constraints:
            if c[0] not in out:
                out.append(c[0])
        return out

    def summary(self) -> str:
        t = self.target
        lines = [(f"evolve {self.name}: target {t.name} ({t.network} on {t.hardware}, batch {t.batch}); "
                  f"{len(self.spec.genes)} genes, {self.space_size:,} points")]
        what = f"{self.generations} generation{'s' if self.generations != 1 else ''} of {self.search.population}"
        extra = []
        if self.infeasible:
            extra.append(f"{self.infeasible} infeasible")
        if self.violating:
            extra.append(f"{self.violating} violate constraints")
        lines.append(f"{what}: {self.evaluations} evaluations" + (f" ({', '.join(extra)})" if extra else "")
                     + (", the whole space" if self.search.exhausted else "")
                     + f"; {len(self.search.front)} on the Pareto front")
        if self.baseline is not None:
            shown = self._shown_metrics()
            lines.append("as written: " + ", ".join(f"{m} {format_metric(m, self.baseline[m])}"
                                                    for m in shown if m in self.baseline))
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        """The front as a fixed-width table (gene values as evo text, metrics with units)."""
        from types import SimpleNamespace

        from evo.evolve import format_table

        shown = self._shown_metrics()
        rows = [SimpleNamespace(values=self.spelled(p), metrics={m: format_metric(m, p.metrics[m])
                                                                for m in shown if m in p.metrics})
                for p in self.search.front]
        objs = [m for m, _ in self.spec.objectives]
        return format_table(rows, self.spec.objectives, genes=[g.name for g in self.spec.genes],
                            metrics=[m for m in shown if m not in objs])

    def to_dict(self, programs: dict[int, str] | None = None) -> dict[str, Any]:
        """JSON-ready: the search setup, counts, and per front point its genome, gene values
        (base units and as evo text), all metrics (SI) and, if written, its program file."""
        from evo.evolve.front import _jsonable

        t, s = self.target, self.search
        genes = []
        for g in self.spec.genes:
            d = {"name": g.name, "kind": g.kind, "size": len(g.values)}
            if len(g.values) <= 100:
                d["values"] = [self.evaluator.spelled(g.name, v) for v in g.values]
            genes.append(d)
        front = []
        for i, p in enumerate(s.front):
            e = {"genome": [int(x) for x in p.genome], "values": _jsonable(dict(p.values)),
                 "spelled": self.spelled(p), "metrics": {k: _jsonable(p.metrics[k]) for k in sorted(p.metrics)}}
            if programs and i in programs:
                e["program"] = programs[i]
            front.append(e)
        return {
            "evolve": self.name,
            "target": {"name": t.name, "network": t.network, "hardware": t.hardware, "batch": t.batch,
                       "cam": t.cam, "objective": t.objective},
            "objectives": [{"name": n, "sense": se} for n, se in self.spec.objectives],
            "constraints": [{"metric": m, "op": op, "bound": _jsonable(b)} for m, op, b in self.spec.constraints],
            "genes": genes,
            "space_size": self.space_size,
            "population": s.population,
            "generations": s.generations,
            "requested_generations": s.requested_generations,
            "seed": s.seed,
            "evaluations": s.evaluations,
            "infeasible": self.infeasible,
            "violating": self.violating,
            "exhausted": bool(s.exhausted),
            "baseline": None if self.baseline is None else {k: _jsonable(v) for k, v in sorted(self.baseline.items())},
            "front": front,
        }

    def to_json(self, programs: dict[int, str] | None = None) -> str:
        import json

        return json.dumps(self.to_dict(programs), indent=2, allow_nan=False) + "\n"

    def figure(self):
        """A matplotlib figure of the objectives: the front over every evaluated point,
        each axis in its metric's unit."""
        from evo.evolve.front import front_figure

        return front_figure(self.search.front, self.search.evaluated, self.spec.objectives,
                            title=f"evolve {self.name}", units=METRIC_UNITS)

    def render_plot(self, format: str = "png") -> bytes:
        """The bytes of :meth:`figure` as `format` (png, svg or pdf), deterministic."""
        from evo.cost.plot import render

        return render(self.figure(), format)

    def plot(self, path, format: str | None = None):
        """Write :meth:`figure` to `path` (a file name, or a binary file object) as PNG,
        SVG or PDF, chosen by the suffix or `format`."""
        from evo.cost.plot import plot_format, render

        if hasattr(path, "write"):
            path.write(render(self.figure(), format or "png"))
            return path
        from evo.fileio import write_atomic

        write_atomic(path, render(self.figure(), plot_format(path, format)))
        return Path(path)

    # -- write-back -----------------------------------------------------------------
    def tier_name(self, point) -> str:
        i = self._index(point)
        defs = self.evaluator.program.defs
        base = f"{self.target.hardware}_{self.name}_{i + 1}"
        name, k = base, 2
        while name in defs:
            name, k = f"{base}_{k}", k + 1
        return name

    def program(self, point, directory: str | os.PathLike | None = None) -> str:
        """Front point `point` (an index into ``front`` or a Point) as a plain evo program.

        The original file, with the target network's parameter defaults set to the
        network genes' values; when there are hardware genes, a new tier
        ``<Tier>_<evolve>_<k> extends <Tier>`` setting them (placed after the tier, or
        before the target when the tier is imported) and the target pointed at it; the
        evolve blocks of this target dropped (their genes would name the old tier); and
        a comment saying where it came from.  Formatted canonically.  With `directory`,
        import paths are rewritten relative to it (where the file will be written).
        """
        from evo.evolve.writeback import write_back

        i = self._index(point)
        p = self.search.front[i]
        return write_back(self, i, p, directory)

    def write_programs(self, directory: str | os.PathLike) -> list[Path]:
        """Every front point as ``<directory>/<evolve>_<k>.evo`` (k from 1, the table's #),
        each through the safe atomic writer (`evo.fileio`; OutputError for an output that
        must not be replaced)."""
        from evo.fileio import output_dir, write_atomic

        d = output_dir(directory)
        out = []
        for i in range(len(self.search.front)):
            path = d / f"{self.name}_{i + 1}.evo"
            write_atomic(path, self.program(i, d))
            out.append(path)
        return out


# ---------------------------------------------------------------------------- the search

def run_evolve(prog, name: str, generations: int | None = None, population: int | None = None,
               seed: int | None = None, progress=None, workers: int = 1, cluster=None) -> EvolveResult:
    """Search evolve block `name` of `prog` (an `evo.Program`); the block's population,
    generations and seed unless given.  `progress(generation, generations, evaluations,
    front_size)` is called after each generation (`evoc evolve` draws it as a progress bar).
    `workers` > 1 evaluates each generation's candidates in that many processes;
    `cluster` (a dask.distributed scheduler address, Cluster or Client) on a dask
    cluster.  Either gives the same points and front as a serial run."""
    from evo.evolve import Gene, Space, search

    evolves = prog.compilation.checked.evolves
    if name not in evolves:
        from evo.diagnostics import did_you_mean

        hint = did_you_mean(name, evolves) or (f"defined: {', '.join(sorted(evolves))}" if evolves else None)
        raise EvoError(Diagnostic(C.UNKNOWN_TARGET, f"no evolve block named '{name}'",
                                  Span.unknown(prog.compilation.filename), hint))
    spec = evolves[name]
    gens = spec.generations if generations is None else generations
    pop = spec.population if population is None else population
    sd = spec.seed if seed is None else seed
    for what, v, lo in (("generations", gens, 1), ("population", pop, 2), ("seed", sd, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{what} must be an int >= {lo}, got {v!r}")
    ev = evaluator(prog, name)
    space = Space([Gene(g.name, ev.domains[g.name]) for g in spec.genes])
    base = ev.baseline_values()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    from evo.evolve.parallel import ProgramRef, evaluate_many_for

    many = evaluate_many_for(worker_evaluator, ProgramRef.of(prog, name), workers, cluster)
    try:
        result = search(space, ev, spec.objectives, spec.constraints, population=pop, generations=gens, seed=sd,
                        progress=progress, initial=[base] if base is not None else (), evaluate_many=many)
    finally:
        if many is not None:
            many.close()
    return EvolveResult(name, spec, ev.target, result, ev.baseline(), ev)


class _WorkerProgram:
    """What an evaluator needs of a program: its compilation (no evo.api in a worker)."""

    def __init__(self, comp):
        self.compilation = comp


def worker_evaluator(ref):
    """The evaluator of `ref` (an `evo.evolve.parallel.ProgramRef`), compiled in a worker
    process (plugins loaded as `evo.compile` loads them)."""
    from evo.compilation import Compilation
    from evo.extend import load_plugins

    load_plugins()
    prog = _WorkerProgram(Compilation(ref.source, ref.filename, None if ref.base_dir is None else Path(ref.base_dir)))
    prog.compilation.checked  # a bad program fails here, as in the parent
    ev = Evaluator(prog, ref.name)
    return ev
