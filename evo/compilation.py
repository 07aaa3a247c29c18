"""One compilation: each stage of the pipeline as a cached property.

source -> ast (parse + imports) -> checked (names, shapes, units, hardware,
cam/target/evolve) -> ir (graphs after the pass pipeline) -> python (codegen);
`--emit` reads these.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from evo.check import Checked, check_program
from evo.check.program import Program, load
from evo.frontend.dump import dump
from evo.ir.node import Graph
from evo.ir.printer import print_graph
from evo.passes import run_pipeline


class Compilation:
    def __init__(self, source: str, filename: str = "<string>", base_dir: str | Path | None = None):
        self.source = source
        self.filename = filename
        self.base_dir = base_dir

    @cached_property
    def program(self) -> Program:
        from evo.extend import load_plugins

        load_plugins()
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

    @cached_property
    def ir(self) -> dict[str, Graph]:
        """Every network at its default arguments, after the pass pipeline."""
        return {name: run_pipeline(g) for name, g in self.checked.graphs.items() if g is not None}

    def graph(self, network: str, args: dict[str, Any] | None = None) -> Graph:
        if not args:
            if network in self.ir:
                return self.ir[network]
        return run_pipeline(self.checked.instantiate(network, args))

    @cached_property
    def explain_graphs(self) -> dict[str, Graph]:
        """For every cam layer: the compiled-CAM explain graph (after folding)."""
        from evo.passes.gradient import NotDifferentiable, compiled_explain_graph

        out: dict[str, Graph] = {}
        for name, spec in self.checked.cams.items():
            g = self.ir.get(spec.network)
            if g is None or spec.method in ("eigencam", "scorecam"):
                continue
            for layer in spec.layers:
                try:
                    out[f"{name}:{layer}"] = compiled_explain_graph(g, layer)
                except NotDifferentiable:
                    continue
        return out

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

        return emit_program(self)
