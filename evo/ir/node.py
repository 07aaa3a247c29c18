"""The IR: one frozen node type named by its op, shapes, spans and module paths.

A :class:`Graph` is one instantiated network: a topologically ordered tuple of
nodes (a node's inputs always come earlier), the scopes that mirror the
program's nesting (block instances and seqs, which become nested modules in the
generated code), and the value paths (`layer4`, `layer4.1.conv2`) a CAM can name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from evo.diagnostics import Span


class _OpNames(type):
    def __getattr__(cls, attr: str) -> "Op":
        # `Op.CONV2D` is shorthand for Op("conv2d"): the IR keeps no list of ops
        if attr.isupper() and not attr.startswith("_"):
            return cls(attr.lower())
        raise AttributeError(attr)


class Op(str, metaclass=_OpNames):
    """An op's name: the key of its entry in the op table (`evo.ops`).

    The IR knows no list of ops; every op, built-in, gradient-only or
    user-defined, is named by its registry entry.  `Op.CONV2D` spells
    `Op("conv2d")`; `value` is the name (as an enum's would be)."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str(self)


Shape = tuple  # of int | str (a free symbol such as "N")


def fmt_shape(shape) -> str:
    """A shape as the one text every message and listing shows: ``[N, 3, 224, 224]``."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class Node:
    id: int
    op: Op
    inputs: tuple[int, ...]
    attrs: tuple[tuple[str, Any], ...]
    shape: Shape
    span: Span
    scope: str = ""           # path of the enclosing block instance / seq ("" = network)
    path: str | None = None   # module path for layers that are modules (`layer1.0.conv1`)
    name: str = ""            # the program's name for the value, if any
    dtype: str = "float32"

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)

    def with_(self, **kw) -> "Node":
        return replace(self, **kw)


@dataclass(frozen=True)
class Scope:
    path: str
    kind: str              # "network" | "block" | "seq"
    label: str             # block or network name; "seq" for seqs
    parent: str | None
    input: int             # node id of the value that enters the scope
    outputs: tuple[int, ...]
    span: Span
    # A block with several tensor parameters or a list parameter (`block B(xs: Tensor[],
    # skip: Tensor)`): its tensor parameters in order, each (name, node id) or (name,
    # (node ids...)) for a list; empty for a block of one tensor input (`input`, which is
    # otherwise the first tensor passed).
    args: tuple[tuple[str, Any], ...] = ()

    def input_ids(self) -> tuple[int, ...]:
        """Every node id that enters the scope (its input, or all its tensor arguments)."""
        if not self.args:
            return (self.input,)
        out: list[int] = []
        for _, v in self.args:
            out.extend(v if isinstance(v, tuple) else (v,))
        return tuple(out)


@dataclass(frozen=True)
class Graph:
    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    scopes: tuple[Scope, ...] = ()
    values: tuple[tuple[str, int], ...] = ()    # value path -> node id
    args: tuple[tuple[str, Any], ...] = ()       # the network's scalar arguments
    span: Span = field(default_factory=Span.unknown)
    # values of `training name = ...` statements: computed (and returned after the
    # outputs) only in training mode; their modules are always in the module tree
    train_outputs: tuple[int, ...] = ()

    def node(self, nid: int) -> Node:
        n = self._index().get(nid)
        if n is None:
            raise KeyError(nid)
        return n

    def _index(self) -> dict[int, Node]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {n.id: n for n in self.nodes}
            object.__setattr__(self, "_idx", idx)
        return idx

    def training_only(self) -> set[int]:
        """Ids of the nodes only the training-only outputs need (not computed in eval)."""
        if not self.train_outputs:
            return set()

        def needed(roots) -> set[int]:
            need = set(roots)
            for n in reversed(self.nodes):
                if n.id in need:
                    need.update(n.inputs)
            return need

        return needed(self.train_outputs) - needed(self.outputs + self.inputs)

    def value(self, path: str) -> Node | None:
        for p, nid in self.values:
            if p == path:
                return self.node(nid)
        return None

    @property
    def value_paths(self) -> dict[str, int]:
        return dict(self.values)

    def users(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out[i].append(n.id)
        return out

    def scope(self, path: str) -> Scope | None:
        for s in self.scopes:
            if s.path == path:
                return s
        return None

    def with_(self, **kw) -> "Graph":
        return replace(self, **kw)
