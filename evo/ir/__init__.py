"""The IR: frozen nodes with an op enum, a verifier and a deterministic printer."""
from evo.ir.node import Graph, Node, Op, Scope
from evo.ir.printer import print_graph
from evo.ir.verify import IRError, verify

__all__ = ["Graph", "Node", "Op", "Scope", "print_graph", "verify", "IRError"]
