"""Checks, each its own pass; each phase collects all its errors before stopping.

1. load: parse every file, resolve imports (not found, cycles), duplicate definitions;
2. names: undefined names, names bound twice, unknown layers/blocks, block arity,
   returns, recursion between blocks;
3. instantiate every network with its default arguments (compile-time evaluation,
   seq expansion under a size limit, shapes) and validate every hardware tier
   (units, required/unknown attributes, positive values, level order, extends);
4. cam, target and evolve settings and references.

Public entry points: `check_program`, `check_source` (-> :class:`Checked`), and for the
evolve driver the variants of a checked program (evo/check/variants.py):
`instantiate_network(checked, network, args)`, `hardware_variant(checked, tier, overrides)`,
`hardware_gene_values(checked, evolve, path)`.  Nothing outside evo/check needs its
internals (checkers, lowerer) for these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evo.check.lower import Lowerer
from evo.check.hardware import HardwareChecker, HardwareSpec
from evo.check.names import check_names
from evo.check.program import Program, load
from evo.check.settings import CamSpec, EvolveSpec, SettingsChecker, TargetSpec
from evo.check.variants import hardware_gene_values, hardware_variant, instantiate_network
from evo.diagnostics import Collector
from evo.ir.node import Graph

__all__ = ["Checked", "CamSpec", "EvolveSpec", "HardwareSpec", "Program", "TargetSpec", "check_program",
           "check_source", "hardware_gene_values", "hardware_variant", "instantiate_network", "load"]


@dataclass
class Checked:
    program: Program
    graphs: dict[str, Graph | None]          # network -> graph at default arguments (None: needs args)
    hardware: dict[str, HardwareSpec]
    cams: dict[str, CamSpec]
    targets: dict[str, TargetSpec]
    evolves: dict[str, EvolveSpec]
    extra: dict[str, Any] = field(default_factory=dict)

    def instantiate(self, network: str, args: dict[str, Any] | None = None) -> Graph:
        """The network's graph for the given scalar arguments (cached for defaults)."""
        if not args and self.graphs.get(network) is not None:
            return self.graphs[network]
        col = Collector(sources=self.program.sources)
        g = Lowerer(self.program, col).network(self.program.networks[network], args or {})
        col.raise_if_any()
        assert g is not None
        return g


def check_program(prog: Program) -> Checked:
    col = Collector(sources=prog.sources)
    check_names(prog, col)
    col.raise_if_any()

    graphs: dict[str, Graph | None] = {}
    for name, net in prog.networks.items():
        if all(p.default is not None for p in net.params[1:]):
            graphs[name] = Lowerer(prog, col).network(net)
        else:
            graphs[name] = None  # instantiated when arguments are given (build, evolve)
    const = Lowerer(prog, col).constant
    hardware = HardwareChecker(prog, col, const).check_all()
    col.raise_if_any()

    sc = SettingsChecker(prog, col, graphs, hardware, const)
    cams = {n: c for n, c in ((n, sc.cam(d)) for n, d in prog.cams.items()) if c is not None}
    targets = {n: t for n, t in ((n, sc.target(d, cams)) for n, d in prog.targets.items()) if t is not None}
    evolves = {n: e for n, e in ((n, sc.evolve(d, targets)) for n, d in prog.evolves.items()) if e is not None}
    col.raise_if_any()
    return Checked(prog, graphs, hardware, cams, targets, evolves)


def check_source(text: str, filename: str = "<string>", base_dir: str | Path | None = None) -> Checked:
    return check_program(load(text, filename, base_dir))
