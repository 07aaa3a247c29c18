"""Variants of a checked program, built and validated by the checker itself.

The evolve driver (evo/evolve) explores network arguments and hardware attributes.
These entry points derive what it needs from a :class:`~evo.check.Checked` program
exactly as the checker checks the written program, so that a point written back
compiles as it was evaluated:

* `instantiate_network`: a network's graph for other argument values, and every cam on
  that network checked against it;
* `hardware_variant`: a hardware tier with some attributes set (as literals with their
  units), validated like a written tier that extends it;
* `hardware_gene_values`: the values of a hardware gene of an evolve block as written
  (quantities keep their units: `2 B/cycle` stays per cycle).

Each raises :class:`~evo.diagnostics.EvoError` with the checker's diagnostics.
"""

from __future__ import annotations

from typing import Any, Sequence

from evo.check.hardware import LEVEL_ATTRS, TOP_ATTRS, HardwareChecker, HardwareSpec
from evo.check.lower import Lowerer
from evo.check.program import Program
from evo.check.settings import SettingsChecker
from evo.diagnostics import Collector, EvoError, Span
from evo.frontend import ast as A
from evo.ir.node import Graph


def instantiate_network(checked, network: str, args: dict[str, Any] | None = None,
                        check_cams: bool = True) -> Graph:
    """The (unoptimised) graph of `network` for the scalar arguments `args`.  With
    `check_cams`, every cam of the program on that network must still hold on it (its layers
    exist and are [N, C, H, W], its class indices are in range)."""
    g = checked.instantiate(network, args or {})
    if check_cams:
        prog = checked.program
        cams = [c for c in prog.cams.values() if c.name in checked.cams and checked.cams[c.name].network == network]
        if cams:
            col = Collector(sources=prog.sources)
            sc = SettingsChecker(prog, col, {network: g}, checked.hardware, Lowerer(prog, col).constant)
            for c in cams:
                sc.cam(c)
            if col.diagnostics:
                raise EvoError(col.diagnostics, prog.sources)
    return g


def _number(text: str) -> int | float:
    """The number as the lexer reads it (digits only: int, else float)."""
    clean = text.replace("_", "")
    return int(clean) if clean.isdigit() else float(clean)


def hardware_variant(checked, tier: str, overrides: Sequence[tuple], name: str | None = None,
                     span: Span | None = None) -> HardwareSpec | None:
    """Tier `tier` with attributes set.  `overrides` holds (attribute path, number text, unit or
    None[, span]) per attribute, e.g. (("GLB", "size"), "64", "KiB"): literals as a program writes
    them.  The variant is checked as a tier named `name` (default `<tier>~variant`, not an
    identifier: never a definition's name) that extends `tier`; its errors point at each
    override's span (default `span`).  None when the tier cannot be resolved."""
    prog = checked.program
    if not overrides:
        return checked.hardware[tier]
    span = span or Span.unknown()
    attrs = []
    for o in overrides:
        path, num, unit = o[0], o[1], o[2]
        sp = (o[3] if len(o) > 3 else None) or span
        attrs.append(A.HwAttr(sp, tuple(path), A.Num(sp, _number(num), unit, f"{num} {unit}" if unit else num)))
    name = name or f"{tier}~variant"
    ext = A.Hardware(span, name, tier, tuple(attrs), span, span)
    view = Program(prog.modules, prog.sources, {**prog.defs, name: ext})
    col = Collector(sources=prog.sources)
    hc = HardwareChecker(view, col, Lowerer(view, col).constant)
    raw = hc.resolve(name, [])
    spec = hc.validate(ext, raw) if raw is not None else None
    if col.diagnostics:
        raise EvoError(col.diagnostics, prog.sources)
    return spec


def hardware_gene_values(checked, evolve: str, path: Sequence[str]) -> tuple | None:
    """The values of the hardware gene at `path` ("hw", attribute..., e.g. ("hw", "GLB", "size"))
    of evolve block `evolve`, as written: quantities with their units, ranges expanded."""
    prog = checked.program
    gene = next((it for it in prog.evolves[evolve].items if isinstance(it, A.Gene) and tuple(it.path) == tuple(path)),
                None)
    if gene is None:
        raise KeyError(tuple(path))
    rest = tuple(path[1:])
    dims = TOP_ATTRS[rest[0]][0] if len(rest) == 1 else LEVEL_ATTRS[rest[1]][0]
    col = Collector(sources=prog.sources)
    sc = SettingsChecker(prog, col, {}, checked.hardware, Lowerer(prog, col).constant)
    return sc.domain(gene, dims)
