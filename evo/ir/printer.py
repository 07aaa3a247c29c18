"""A deterministic text form of the IR (`evoc compile --emit ir`)."""

from __future__ import annotations

from evo.frontend.names import show_listed, show_module_path
from evo.ir.node import Graph, Node, fmt_shape


def _val(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_val(x) for x in v) + ")"
    if hasattr(v, "shape") and hasattr(v, "dtype"):  # a folded constant tensor
        return f"<const {fmt_shape(v.shape)}>"
    return str(v)


def node_line(n: Node) -> str:
    ins = ", ".join(f"%{i}" for i in n.inputs)
    attrs = ", ".join(f"{k}={_val(v)}" for k, v in n.attrs)
    s = f"%{n.id} = {n.op.value}({ins}{', ' if ins and attrs else ''}{attrs}) : {fmt_shape(n.shape)}"
    extra = []
    if n.path is not None:
        extra.append(f"module={show_module_path(n.path)}")
    if n.name:
        extra.append(f"name={show_listed(n.name)}")
    if n.scope:
        extra.append(f"scope={show_module_path(n.scope)}")
    if extra:
        s += "  ; " + " ".join(extra)
    return s


def print_graph(g: Graph) -> str:
    args = ", ".join(f"{k}={_val(v)}" for k, v in g.args)
    lines = [f"graph {g.name}({args}) {{"]
    for n in g.nodes:
        lines.append("  " + node_line(n))
    lines.append("  return " + ", ".join(f"%{o}" for o in g.outputs))
    if g.train_outputs:
        lines.append("  training return " + ", ".join(f"%{o}" for o in g.train_outputs))
    for s in g.scopes:
        if s.path:
            lines.append(f"  scope {show_module_path(s.path)}: {s.kind} {show_listed(s.label)} in={_scope_in(s)} out="
                         + ",".join(f"%{o}" for o in s.outputs))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _scope_in(s) -> str:
    if not s.args:
        return f"%{s.input}"
    return ",".join(f"[{','.join(f'%{i}' for i in v)}]" if isinstance(v, tuple) else f"%{v}" for _, v in s.args)


def print_graphs(graphs) -> str:
    return "\n".join(print_graph(g) for g in graphs)
