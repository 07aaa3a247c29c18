"""The importer's syntax tree for evo templates: literals and the holes that become
block parameters, expressions, statements, seq stages, predicates, and the keys
that compare the bodies of a module class's instances."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from evo.check.names import BUILTIN_FUNCS
from evo.frontend import names as quoting
from evo.frontend.parser import KEYWORDS as PARSER_KEYWORDS

# The front end's keywords, and the words that are keywords in one position only
# (`evo` in the header, `extends` in a hardware definition): no generated name is one.
CONTEXT_KEYWORDS = frozenset({"evo", "extends"})
KEYWORDS = PARSER_KEYWORDS | CONTEXT_KEYWORDS
# Words a generated program cannot bind: keywords and the built-in functions.
RESERVED = KEYWORDS | BUILTIN_FUNCS
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WILD = object()  # a value that does not matter for this instance


def legal_name(s: str) -> bool:
    return bool(_IDENT.match(s)) and s not in RESERVED


def bindable(s: str) -> bool:
    """Can a module named `s` be bound under its own name?  Any text a quoted name may
    hold (`block`, `block1-0`); the source writes it quoted where needed."""
    return quoting.problem(s) is None


def _rel(scope: str, path: str) -> str:
    return path[len(scope) + 1:] if scope else path




# ============================================================================ AST


@dataclass(eq=False)
class Lit:
    value: Any
    role: str
    kind: str
    loc: str | None = None
    fallback: Any = None


@dataclass(eq=False)
class Hole:
    role: str
    kind: str
    values: dict  # instance index -> value (or WILD)
    loc: str | None = None
    fallback: Any = None
    res: Any = None  # Const | Param | Expr after resolution


@dataclass(eq=False)
class Name:
    id: str


@dataclass(eq=False)
class OpE:
    op: str
    inputs: list
    args: dict


@dataclass(eq=False)
class BlockE:
    var: Variant
    input: Any
    args: dict
    extra: list = field(default_factory=list)  # further tensor arguments (`B(x, skip)`)


@dataclass(eq=False)
class BinE:
    op: str
    left: Any
    right: Any


@dataclass(eq=False)
class ListE:
    """A list argument whose elements merge one by one (a shape: `[x.channels, 1, 1]`)."""
    items: list


@dataclass(eq=False)
class TensorsE:
    """A list of tensors passed to a block that takes one (`_DenseLayer([x, denselayer1])`)."""
    items: list


@dataclass(eq=False)
class DimE:
    """A dimension of a named value: `ref.channels`, `ref.height`, `ref.width`, `ref.shape[i]`,
    optionally divided by a constant (`ref.channels // 2`)."""
    ref: Any
    attr: str  # "channels", "height", "width" or "shape[i]"
    div: int = 1


@dataclass(eq=False)
class IndexE:
    """A piece of a value with several outputs (chunk, split): `parts[0]`."""
    ref: Any
    index: int


@dataclass(eq=False)
class SeqE:
    input: Any
    stages: list


@dataclass(eq=False)
class SOp:
    op: str
    args: dict


@dataclass(eq=False)
class SBlock:
    var: Variant
    args: dict


@dataclass(eq=False)
class SIf:
    pred: Any
    then: list
    orelse: list | None


@dataclass(eq=False)
class Assign:
    name: str
    expr: Any
    training: bool = False  # `training name = ...` (a training-only submodule)


@dataclass(eq=False)
class Ret:
    exprs: list


@dataclass(eq=False)
class LoopS:
    """A dense block's loop (torchvision's _DenseBlock): `acc = [first]`, then for i in start..start+count
    `prefix{i} = var(acc, args...)` and `acc = acc + [prefix]`."""
    prefix: str
    start: int
    count: Any  # Lit / Hole: the number of layers
    var: Any  # Variant of the block called
    first: Any
    args: dict
    acc: str = "features"
    index: str = "i"


@dataclass(eq=False)
class IfS:
    pred: Any
    then: list


# predicates
@dataclass(eq=False)
class PCmp:
    hole: Hole
    op: str
    value: int


@dataclass(eq=False)
class PChan:
    hole: Hole
    op: str


@dataclass(eq=False)
class PBool:
    param: Param
    neg: bool = False


@dataclass(eq=False)
class PBin:
    op: str  # and | or
    a: Any
    b: Any


# resolutions
@dataclass(eq=False)
class Const:
    value: Any


@dataclass(eq=False)
class Param:
    role: str
    kind: str
    values: dict
    name: str = ""
    default: Any = None
    has_default: bool = False
    loc: str | None = None
    fixed_name: bool = False


@dataclass(eq=False)
class Expr:
    kind: str  # chan | times | halfk | chanmul | chandiv
    param: Param | None = None
    k: int = 1


@dataclass(eq=False)
class Variant:
    name: str
    kind: str  # seq | body
    params: list
    template: list
    insts: list  # Call
    inp: str
    cls: ClassInfo
    list_input: bool = False  # the block's input is a list of tensors (`inputs: Tensor[]`)
    extra: list = field(default_factory=list)  # names of further tensor parameters (`skip: Tensor`)


@dataclass(eq=False)
class ClassInfo:
    key: tuple
    base_name: str
    kind: str
    allow_if: bool
    insts: list = field(default_factory=list)
    variants: list = field(default_factory=list)


def _mode(vals: list):
    if not vals:
        return 1
    c = Counter(vals)
    best = max(c.values())
    for v in vals:
        if c[v] == best:
            return v


def lit_kind(v: Any) -> tuple[str, Any]:
    if isinstance(v, bool):
        return "bool", v
    if isinstance(v, int):
        return "int", v
    if isinstance(v, float):
        return "float", v
    if isinstance(v, str):
        return "str", v
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == v[1]:
            return "int", int(v[0])
        return "int2", tuple(int(x) for x in v)
    raise TypeError(type(v))


def make_lit(v: Any, role: str, loc: str | None = None) -> Lit:
    k, vv = lit_kind(v)
    return Lit(vv, role, k, loc)


# ============================================================================ keys


def key(n) -> Any:
    if isinstance(n, Lit):
        if n.kind == "int2":
            return ("L", "int2", n.value)
        return ("L", n.kind)
    if isinstance(n, Name):
        return ("N", n.id)
    if isinstance(n, OpE):
        return ("O", n.op, tuple(key(i) for i in n.inputs), tuple((k, key(v)) for k, v in n.args.items()))
    if isinstance(n, BlockE):
        return ("B", id(n.var), key(n.input), tuple((k, key(v)) for k, v in n.args.items()),
                tuple(key(e) for e in n.extra))
    if isinstance(n, BinE):
        return ("Bin", n.op, key(n.left), key(n.right))
    if isinstance(n, SeqE):
        return ("S", key(n.input))
    if isinstance(n, ListE):
        return ("List", tuple(key(i) for i in n.items))
    if isinstance(n, TensorsE):
        return ("Tensors", tuple(key(i) for i in n.items))
    if isinstance(n, DimE):
        return ("Dim", key(n.ref), n.attr, n.div)
    if isinstance(n, IndexE):
        return ("Idx", key(n.ref), n.index)
    if isinstance(n, SOp):
        return ("SO", n.op, tuple((k, key(v)) for k, v in n.args.items()))
    if isinstance(n, SBlock):
        return ("SB", id(n.var), tuple((k, key(v)) for k, v in n.args.items()))
    if isinstance(n, Assign):
        return ("A", n.name, key(n.expr))
    if isinstance(n, Ret):
        return ("R", tuple(key(e) for e in n.exprs))
    if isinstance(n, LoopS):
        return ("Loop", n.prefix, n.start, key(n.count), id(n.var), key(n.first), n.acc, n.index,
                tuple((k, key(v)) for k, v in n.args.items()))
    raise TypeError(type(n))


def full_key(n) -> Any:
    """Like key, with seq stages included."""
    if isinstance(n, SeqE):
        return ("S", full_key(n.input), tuple(full_key(s) for s in n.stages))
    if isinstance(n, Assign):
        return ("A", n.name, full_key(n.expr))
    if isinstance(n, Ret):
        return ("R", tuple(full_key(e) for e in n.exprs))
    if isinstance(n, OpE):
        return ("O", n.op, tuple(full_key(i) for i in n.inputs), tuple((k, key(v)) for k, v in n.args.items()))
    if isinstance(n, BlockE):
        return ("B", id(n.var), full_key(n.input), tuple((k, key(v)) for k, v in n.args.items()),
                tuple(full_key(e) for e in n.extra))
    if isinstance(n, BinE):
        return ("Bin", n.op, full_key(n.left), full_key(n.right))
    if isinstance(n, list):
        return tuple(full_key(x) for x in n)
    return key(n)


def lits_of(n, out: list) -> list:
    """Literals in a node, in order (seq stages included)."""
    if isinstance(n, Lit):
        out.append(n)
    elif isinstance(n, (OpE,)):
        for i in n.inputs:
            lits_of(i, out)
        for v in n.args.values():
            lits_of(v, out)
    elif isinstance(n, BlockE):
        lits_of(n.input, out)
        for e in n.extra:
            lits_of(e, out)
        for v in n.args.values():
            lits_of(v, out)
    elif isinstance(n, BinE):
        lits_of(n.left, out)
        lits_of(n.right, out)
    elif isinstance(n, (ListE, TensorsE)):
        for x in n.items:
            lits_of(x, out)
    elif isinstance(n, SeqE):
        lits_of(n.input, out)
        for s in n.stages:
            lits_of(s, out)
    elif isinstance(n, (SOp, SBlock)):
        for v in n.args.values():
            lits_of(v, out)
    elif isinstance(n, Assign):
        lits_of(n.expr, out)
    elif isinstance(n, LoopS):
        lits_of(n.count, out)
        lits_of(n.first, out)
        for v in n.args.values():
            lits_of(v, out)
    elif isinstance(n, Ret):
        for e in n.exprs:
            lits_of(e, out)
    elif isinstance(n, list):
        for x in n:
            lits_of(x, out)
    return out


