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
    def ir_text(self) -> str:
        return "\n".join(print_graph(g) for g in self.ir.values())

    @cached_property
    def python(self) -> str:
        from evo.codegen import emit_program

        return emit_program(self)
