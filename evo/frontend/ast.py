"""The typed syntax tree.  Frozen dataclasses; every node has a source span.

The tree is syntax only: names are not resolved and nothing is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Union

from evo.diagnostics import Span


@dataclass(frozen=True)
class Node:
    span: Span

    def children(self):
        for f in fields(self):
            if f.name == "span":
                continue
            v = getattr(self, f.name)
            if isinstance(v, Node):
                yield v
            elif isinstance(v, tuple):
                for x in v:
                    if isinstance(x, Node):
                        yield x

    def walk(self):
        yield self
        for c in self.children():
            yield from c.walk()


# ------------------------------------------------------------------ expressions

@dataclass(frozen=True)
class Num(Node):
    value: Union[int, float]
    unit: str | None
    text: str


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Bool(Node):
    value: bool


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Word(Name):
    """A keyword written as a setting's value (`method = cam`): a name that the
    formatter keeps plain."""


@dataclass(frozen=True)
class Attr(Node):
    obj: "Expr"
    attr: str  # a name or a decimal index (path component like layer1.0)


@dataclass(frozen=True)
class Index(Node):
    obj: "Expr"
    index: "Expr"


@dataclass(frozen=True)
class Keyword(Node):
    name: str
    value: "Expr"
    name_span: Span


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple["Expr", ...]
    kwargs: tuple[Keyword, ...]
    func_span: Span


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / // % == != < <= > >= and or
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # - + not
    operand: "Expr"


@dataclass(frozen=True)
class CondExpr(Node):
    body: "Expr"
    cond: "Expr"
    orelse: "Expr"


@dataclass(frozen=True)
class ListExpr(Node):
    items: tuple["Expr", ...]


@dataclass(frozen=True)
class StageCall(Node):
    func: str
    args: tuple["Expr", ...]
    kwargs: tuple[Keyword, ...]
    bare: bool  # written without parentheses


@dataclass(frozen=True)
class StageIf(Node):
    cond: "Expr"
    then: tuple["Stage", ...]
    orelse: tuple["Stage", ...] | None


@dataclass(frozen=True)
class StageRepeat(Node):
    count: "Expr"
    stages: tuple["Stage", ...]


@dataclass(frozen=True)
class StageFor(Node):
    var: str
    start: "Expr"
    stop: "Expr"
    stages: tuple["Stage", ...]


Stage = Union[StageCall, StageIf, StageRepeat, StageFor]


@dataclass(frozen=True)
class Seq(Node):
    input: "Expr"
    stages: tuple[Stage, ...]


Expr = Union[Num, Str, Bool, Name, Attr, Index, Call, BinOp, UnaryOp, CondExpr, ListExpr, Seq]


# ------------------------------------------------------------------ statements

@dataclass(frozen=True)
class Assign(Node):
    name: str
    value: Expr
    name_span: Span
    training: bool = False  # `training aux = ...`: a training-only submodule (network bodies only)
    # `denselayer{i} = ...` in a `for` body: the module (value path) is named `name` followed by the
    # value of `number` (`denselayer1`, ...); the iteration reads the value as `name`
    number: "Expr | None" = None


@dataclass(frozen=True)
class Return(Node):
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class If(Node):
    cond: Expr
    then: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] | None


@dataclass(frozen=True)
class For(Node):
    """`for i in a..b { ... }` in a body: the statements once per `i` (a half-open range).  Names
    bound before the loop may be rebound in it (`features = features + [y]`); names first bound
    in it are the iteration's own."""
    var: str
    start: Expr
    stop: Expr
    body: tuple["Stmt", ...]
    var_span: Span


Stmt = Union[Assign, Return, If, For]


# ------------------------------------------------------------------ definitions

@dataclass(frozen=True)
class TypeRef(Node):
    name: str
    dims: tuple[Union[int, str], ...] | None
    is_list: bool = False  # `Tensor[]`: a list of tensors (a block parameter)


@dataclass(frozen=True)
class Param(Node):
    name: str
    type: TypeRef | None
    default: Expr | None


@dataclass(frozen=True)
class Block(Node):
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...] | None
    expr: Expr | None  # `block B(x) = seq(x) {...}`
    name_span: Span


@dataclass(frozen=True)
class Network(Node):
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...] | None
    name_span: Span
    expr: Expr | None = None  # `network N(x: ...) = seq(x) {...}`


@dataclass(frozen=True)
class HwAttr(Node):
    path: tuple[str, ...]
    value: Expr


@dataclass(frozen=True)
class HwLevel(Node):
    kind: str
    name: str
    attrs: tuple[HwAttr, ...]
    kind_span: Span


@dataclass(frozen=True)
class Hardware(Node):
    name: str
    extends: str | None
    items: tuple[Union[HwAttr, HwLevel], ...]
    name_span: Span
    extends_span: Span | None


@dataclass(frozen=True)
class Setting(Node):
    name: str
    value: Expr
    name_span: Span


@dataclass(frozen=True)
class Cam(Node):
    name: str
    settings: tuple[Setting, ...]
    name_span: Span


@dataclass(frozen=True)
class Target(Node):
    name: str
    settings: tuple[Setting, ...]
    name_span: Span


@dataclass(frozen=True)
class Range(Node):
    start: Expr
    stop: Expr
    step: Expr | None


@dataclass(frozen=True)
class Gene(Node):
    path: tuple[str, ...]
    domain: Union[Expr, Range]
    path_span: Span


@dataclass(frozen=True)
class Objective(Node):
    sense: str  # minimize | maximize
    metrics: tuple[str, ...]
    metric_spans: tuple[Span, ...]


@dataclass(frozen=True)
class Require(Node):
    constraints: tuple[Expr, ...]


@dataclass(frozen=True)
class Evolve(Node):
    name: str
    items: tuple[Union[Setting, Gene, Objective, Require], ...]
    name_span: Span


@dataclass(frozen=True)
class Import(Node):
    path: str


@dataclass(frozen=True)
class Header(Node):
    version: str


Item = Union[Import, Block, Network, Hardware, Cam, Target, Evolve]


@dataclass(frozen=True)
class Comment(Node):
    text: str


@dataclass(frozen=True)
class Module(Node):
    filename: str
    header: Header | None
    items: tuple[Item, ...]
    comments: tuple[Comment, ...] = ()
