"""The IR: frozen nodes named by their op, and a deterministic printer.

The verifier (it needs the op table's shape rules) is `evo.passes.verify`."""
from evo.ir.node import Graph, Node, Op, Scope
from evo.ir.printer import print_graph

__all__ = ["Graph", "Node", "Op", "Scope", "print_graph"]
