"""The importer's IR (a tree of module calls) -> readable evo source.

1. `prepare`: ModuleList-style containers whose members are applied one after
   another become seqs; names are checked (a module whose name is an evo
   keyword, or not an identifier, cannot be bound); each call is classified as
   an inline `seq`, a block defined as a seq, or a block with a body.
2. Every module class (one per class and nesting depth) becomes one block:
   the instances' bodies are built with their literal arguments, then merged
   into one template.  Where instances differ only in literals the literals
   become block parameters (equal ones shared, derived ones written as
   `x.channels`, `p * 4`, `(k - 1) // 2`); where they differ in structure, a
   compile-time `if` on a parameter (or a module attribute) separates them;
   when no condition can be found the class is split into `Name`, `Name2`...
3. Everything is rendered as text and run through the canonical formatter.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from evo import ops
from evo.importer.trace import Call, Problems, Step, Val, type_label

KEYWORDS = {"network", "block", "hardware", "cam", "target", "evolve", "import", "if", "else", "for", "in",
            "repeat", "return", "seq", "gene", "minimize", "maximize", "require", "true", "false", "and",
            "or", "not", "evo", "extends"}
RESERVED = KEYWORDS | {"min", "max"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WILD = object()  # a value that does not matter for this instance


def legal_name(s: str) -> bool:
    return bool(_IDENT.match(s)) and s not in RESERVED


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


@dataclass(eq=False)
class BinE:
    op: str
    left: Any
    right: Any


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


@dataclass(eq=False)
class Ret:
    exprs: list


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
    kind: str  # chan | mul | halfk | chanmul | chandiv
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
        return ("B", id(n.var), key(n.input), tuple((k, key(v)) for k, v in n.args.items()))
    if isinstance(n, BinE):
        return ("Bin", n.op, key(n.left), key(n.right))
    if isinstance(n, SeqE):
        return ("S", key(n.input))
    if isinstance(n, SOp):
        return ("SO", n.op, tuple((k, key(v)) for k, v in n.args.items()))
    if isinstance(n, SBlock):
        return ("SB", id(n.var), tuple((k, key(v)) for k, v in n.args.items()))
    if isinstance(n, Assign):
        return ("A", n.name, key(n.expr))
    if isinstance(n, Ret):
        return ("R", tuple(key(e) for e in n.exprs))
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
        return ("B", id(n.var), full_key(n.input), tuple((k, key(v)) for k, v in n.args.items()))
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
        for v in n.args.values():
            lits_of(v, out)
    elif isinstance(n, BinE):
        lits_of(n.left, out)
        lits_of(n.right, out)
    elif isinstance(n, SeqE):
        lits_of(n.input, out)
        for s in n.stages:
            lits_of(s, out)
    elif isinstance(n, (SOp, SBlock)):
        for v in n.args.values():
            lits_of(v, out)
    elif isinstance(n, Assign):
        lits_of(n.expr, out)
    elif isinstance(n, Ret):
        for e in n.exprs:
            lits_of(e, out)
    elif isinstance(n, list):
        for x in n:
            lits_of(x, out)
    return out


class NoMerge(Exception):
    pass


# ============================================================================ merging


class Merger:
    """Merges the bodies of a class's instances into one template."""

    def __init__(self, insts: list[Call], allow_if: bool):
        self.insts = insts
        self.allow_if = allow_if
        self.holes: list[Hole] = []
        self.extra: list[Param] = []
        self.chan = {i: (c.inputs[0].shape[1] if c.inputs and c.inputs[0].shape and len(c.inputs[0].shape) > 1
                         else None) for i, c in enumerate(insts)}

    # ---------------------------------------------------------------- nodes
    def node(self, items: list[tuple[int, Any]]):
        n0 = items[0][1]
        if isinstance(n0, Lit):
            h = Hole(n0.role, n0.kind, {i: n.value for i, n in items}, n0.loc,
                     next((n.fallback for _, n in items if n.fallback is not None), None))
            self.holes.append(h)
            return h
        if isinstance(n0, Name):
            return n0
        if isinstance(n0, OpE):
            return OpE(n0.op, [self.node([(i, n.inputs[k]) for i, n in items]) for k in range(len(n0.inputs))],
                       {a: self.node([(i, n.args[a]) for i, n in items]) for a in n0.args})
        if isinstance(n0, BlockE):
            return BlockE(n0.var, self.node([(i, n.input) for i, n in items]),
                          {a: self.node([(i, n.args[a]) for i, n in items]) for a in n0.args})
        if isinstance(n0, BinE):
            return BinE(n0.op, self.node([(i, n.left) for i, n in items]),
                        self.node([(i, n.right) for i, n in items]))
        if isinstance(n0, SeqE):
            inp = self.node([(i, n.input) for i, n in items])
            return SeqE(inp, self.stages([(i, n.stages) for i, n in items]))
        if isinstance(n0, SOp):
            return SOp(n0.op, {a: self.node([(i, n.args[a]) for i, n in items]) for a in n0.args})
        if isinstance(n0, SBlock):
            return SBlock(n0.var, {a: self.node([(i, n.args[a]) for i, n in items]) for a in n0.args})
        if isinstance(n0, Assign):
            return Assign(n0.name, self.node([(i, n.expr) for i, n in items]))
        if isinstance(n0, Ret):
            return Ret([self.node([(i, n.exprs[k]) for i, n in items]) for k in range(len(n0.exprs))])
        raise TypeError(type(n0))

    # ---------------------------------------------------------------- statements
    def body(self, items: list[tuple[int, list]]) -> list:
        keys = {i: tuple(key(s) for s in st) for i, st in items}
        n = min(len(st) for _, st in items)
        p = 0
        while p < n and len({keys[i][p] for i, _ in items}) == 1:
            p += 1
        out = [self.node([(i, st[k]) for i, st in items]) for k in range(p)]
        rest = [(i, st[p:]) for i, st in items]
        if all(len(st) == 0 for _, st in rest):
            return out
        groups: dict[Any, list[int]] = {}
        for i, st in rest:
            groups.setdefault(tuple(key(s) for s in st), []).append(i)
        if len(groups) == 1:  # cannot happen (the prefix would be longer)
            raise NoMerge()
        insts = [i for i, _ in rest]
        longer = max(groups.values(), key=lambda g: (len(dict(rest)[g[0]]), -insts.index(g[0])))
        pred = self.predicate(list(groups.values()), prefer_true=set(longer))
        a = [(i, st) for i, st in rest if self.eval(pred, i)]
        b = [(i, st) for i, st in rest if not self.eval(pred, i)]
        if not all(st and isinstance(st[-1], Ret) for _, st in a):
            raise NoMerge()
        out.append(IfS(pred, self.body(a)))
        out.extend(self.body(b))
        return out

    # ---------------------------------------------------------------- seq stages
    def stages(self, items: list[tuple[int, list]]) -> list:
        keys = {i: [key(s) for s in st] for i, st in items}
        if len({tuple(k) for k in keys.values()}) == 1:
            n = len(items[0][1])
            return [self.node([(i, st[k]) for i, st in items]) for k in range(n)]
        if not self.allow_if:
            raise NoMerge()
        n = min(len(st) for _, st in items)
        pmax = 0
        while pmax < n and len({keys[i][pmax] for i, _ in items}) == 1:
            pmax += 1
        smax = 0
        while smax < n and len({keys[i][len(keys[i]) - 1 - smax] for i, _ in items}) == 1:
            smax += 1
        # two alignments: as much common prefix as possible, or as much common suffix
        cands = []
        for p, s in ((pmax, min(smax, n - pmax)), (min(pmax, n - smax), smax)):
            cands.append((self.align_cost(items, p, s), -s, p, s))
        _, _, p, s = min(cands)
        pre = [self.node([(i, st[k]) for i, st in items]) for k in range(p)]
        suf = [self.node([(i, st[len(st) - s + k]) for i, st in items]) for k in range(s)]
        mids = [(i, st[p:len(st) - s]) for i, st in items]
        groups: dict[Any, list[int]] = {}
        for i, st in mids:
            groups.setdefault(tuple(key(x) for x in st), []).append(i)
        nonempty = [i for i, st in mids if st]
        pred = self.predicate(list(groups.values()), prefer_true=set(nonempty))
        a = [(i, st) for i, st in mids if self.eval(pred, i)]
        b = [(i, st) for i, st in mids if not self.eval(pred, i)]
        then = self.stages(a) if any(st for _, st in a) else []
        orelse = self.stages(b) if any(st for _, st in b) else None
        if not then:
            pred, then, orelse = negate(pred), orelse or [], None
        return pre + [SIf(pred, then, orelse)] + suf

    def align_cost(self, items, p: int, s: int) -> int:
        cost = 0
        for k in range(p):
            cost += _varying([(i, st[k]) for i, st in items])
        for k in range(s):
            cost += _varying([(i, st[len(st) - s + k]) for i, st in items])
        return cost

    # ---------------------------------------------------------------- predicates
    def predicate(self, groups: list[list[int]], prefer_true: set[int]):
        if not self.allow_if:
            raise NoMerge()
        insts = [i for g in groups for i in g]

        def valid(p) -> bool:
            vals = set()
            for g in groups:
                v = {self.eval(p, i) for i in g}
                if len(v) != 1:
                    return False
                vals |= v
            return len(vals) == 2

        full = [h for h in self.holes if h.kind == "int"
                and all(h.values.get(i, WILD) is not WILD for i in insts)]
        strides, chans = [], []
        seen_truth: set = set()
        for h in full:
            vals = sorted({h.values[i] for i in insts})
            if len(vals) < 2:
                continue
            if h.role == "stride":
                cand = [PCmp(h, "!=", 1)] if 1 in vals else [PCmp(h, "==", v) for v in vals]
                strides.extend(cand)
            elif h.role not in _NOT_CHANNELS and all(self.chan.get(i) is not None for i in insts):
                c = PChan(h, "!=")
                t = tuple(self.eval(c, i) for i in insts)
                if t not in seen_truth:
                    seen_truth.add(t)
                    chans.append(c)
        cands = strides + chans
        cands += [PBin("or", a, b) for a in strides for b in chans]
        for p in cands:
            if valid(p):
                return self.orient(p, insts, prefer_true)
        for p in self.attr_preds(insts):
            if valid(p):
                if p.param not in self.extra:
                    self.extra.append(p.param)
                return self.orient(p, insts, prefer_true)
        raise NoMerge()

    def orient(self, p, insts, prefer_true: set[int]):
        t = {i for i in insts if self.eval(p, i)}
        if prefer_true and not (t & prefer_true) and prefer_true != set(insts):
            return negate(p)
        return p

    def attr_preds(self, insts: list[int]) -> list:
        mods = [self.insts[i].module for i in insts]
        out = []
        names = [k for k, v in vars(mods[0]).items() if not k.startswith("_") and k != "training"
                 and isinstance(v, bool)]
        for k in names:
            if all(isinstance(getattr(m, k, None), bool) for m in mods) and legal_name(k):
                p = self.extra_param(k, {i: getattr(self.insts[i].module, k) for i in range(len(self.insts))})
                out.append(PBool(p))
        # optional children: present in some instances, None in others
        kids: list[str] = []
        for m in mods:
            for k in m._modules:
                if k not in kids:
                    kids.append(k)
        for k in kids:
            present = [m._modules.get(k) is not None for m in mods]
            if any(present) and not all(present) and legal_name(f"has_{k}"):
                p = self.extra_param(f"has_{k}", {i: self.insts[i].module._modules.get(k) is not None
                                                  for i in range(len(self.insts))})
                out.append(PBool(p))
        return out

    def extra_param(self, name: str, values: dict) -> Param:
        for p in self.extra:
            if p.name == name:
                return p
        return Param(name, "bool", values, name=name, fixed_name=True)

    def eval(self, p, i: int) -> bool:
        if isinstance(p, PCmp):
            v = p.hole.values[i]
            return (v == p.value) if p.op == "==" else (v != p.value)
        if isinstance(p, PChan):
            v = p.hole.values[i]
            c = self.chan[i]
            return (c == v) if p.op == "==" else (c != v)
        if isinstance(p, PBool):
            return bool(p.param.values[i]) != p.neg
        if isinstance(p, PBin):
            a, b = self.eval(p.a, i), self.eval(p.b, i)
            return (a and b) if p.op == "and" else (a or b)
        raise TypeError(type(p))


_NOT_CHANNELS = {"kernel", "stride", "padding", "dilation", "dim", "start", "end", "size"}


def _varying(items) -> int:
    lits = [lits_of(n, []) for _, n in items]
    cnt = 0
    for k in range(len(lits[0])):
        vals = {repr(ls[k].value) for ls in lits if k < len(ls) and ls[k].value is not WILD}
        cnt += len(vals) > 1
    return cnt


def negate(p):
    if isinstance(p, PCmp):
        return PCmp(p.hole, "==" if p.op == "!=" else "!=", p.value)
    if isinstance(p, PChan):
        return PChan(p.hole, "==" if p.op == "!=" else "!=")
    if isinstance(p, PBool):
        return PBool(p.param, not p.neg)
    if isinstance(p, PBin):
        return PBin("and" if p.op == "or" else "or", negate(p.a), negate(p.b))
    raise TypeError(type(p))


# ============================================================================ parameters


def resolve(m: Merger, n_insts: int) -> list[Param]:
    params: list[Param] = []

    def compat(p: Param, vals: dict) -> bool:
        return all(p.values[i] == v for i, v in vals.items() if i in p.values)

    def covers(p: Param, vals: dict) -> bool:
        return all(i in p.values for i in vals)

    for h in m.holes:
        vals = {i: v for i, v in h.values.items() if v is not WILD}
        distinct = set(vals.values())
        partial = len(vals) < n_insts
        if h.kind == "int2" or len(distinct) <= 1:
            same_role = [p for p in params if p.role == h.role and p.kind == h.kind and compat(p, vals)]
            if partial and distinct and same_role and h.kind != "int2":
                same_role[0].values.update(vals)
                h.res = same_role[0]
            else:
                h.res = Const(next(iter(distinct)) if distinct else (h.fallback if h.fallback is not None else 1))
            continue
        p = next((p for p in params if p.role == h.role and p.kind == h.kind and compat(p, vals)), None)
        if p is None:
            p = next((p for p in params if p.kind == h.kind and covers(p, vals) and compat(p, vals)), None)
        if p is not None:
            p.values.update(vals)
            h.res = p
            continue
        if h.kind == "int":
            e = _relation(m, params, vals)
            if e is not None:
                h.res = e
                continue
        p = Param(h.role, h.kind, dict(vals), loc=h.loc)
        params.append(p)
        h.res = p
    return params + m.extra


def _relation(m: Merger, params: list[Param], vals: dict) -> Expr | None:
    chan = m.chan
    if all(chan.get(i) is not None for i in vals) and all(v == chan[i] for i, v in vals.items()):
        return Expr("chan")
    for p in params:
        if p.kind != "int" or not all(i in p.values for i in vals):
            continue
        for k in range(2, 9):
            if all(v == p.values[i] * k for i, v in vals.items()):
                return Expr("mul", p, k)
        if all(v == (p.values[i] - 1) // 2 for i, v in vals.items()):
            return Expr("halfk", p)
    if all(chan.get(i) is not None for i in vals):
        for k in range(2, 9):
            if all(v == chan[i] * k for i, v in vals.items()):
                return Expr("chanmul", None, k)
            if all(chan[i] % k == 0 and v == chan[i] // k for i, v in vals.items()):
                return Expr("chandiv", None, k)
    return None


_NO_DEFAULT_ROLES = {"out", "size"}


def name_params(params: list[Param], insts: list[Call], taken: set[str]) -> None:
    used = set(taken)
    mods = [c.module for c in insts]
    attrs = [k for k, v in vars(mods[0]).items() if not k.startswith("_") and k != "training"
             and isinstance(v, (int, float, bool))] if mods else []
    out_ch = {i: (c.outputs[0].shape[1] if c.outputs and c.outputs[0].shape and len(c.outputs[0].shape) > 1
                  else None) for i, c in enumerate(insts)}

    def take(p: Param, nm: str) -> None:
        p.name = nm
        used.add(nm)

    for p in params:
        if p.fixed_name:
            nm, k = p.name, 2
            while nm in used:
                nm = f"{p.name}{k}"
                k += 1
            take(p, nm)
    todo = [p for p in params if not p.fixed_name]
    # 1. a module attribute with the same value in every instance (e.g. `stride`, `out_channels`)
    for p in list(todo):
        for a in attrs:
            if a in used or not legal_name(a):
                continue
            ok = True
            for i, v in p.values.items():
                av = getattr(insts[i].module, a, None)
                if av is None or isinstance(av, bool) != (p.kind == "bool") or av != v:
                    ok = False
                    break
            if ok:
                take(p, a)
                todo.remove(p)
                break
    # 2. the role (`out`, `stride`, ...); an `out` that is not the block's output is a hidden width
    for p in todo:
        cands = []
        if p.role == "out" and not all(out_ch.get(i) == v for i, v in p.values.items()):
            cands = [f"{p.loc}_out"] if p.loc else []
            cands.append("hidden")
        cands.append(p.role)
        if p.loc:
            cands.append(f"{p.loc}_{p.role}")
        nm = next((c for c in cands if legal_name(c) and c not in used), None)
        if nm is None:
            k = 2
            while f"{p.role}{k}" in used or not legal_name(f"{p.role}{k}"):
                k += 1
            nm = f"{p.role}{k}"
        take(p, nm)
    # defaults: the value most instances share (not for channel counts)
    for p in params:
        if p.role in _NO_DEFAULT_ROLES:
            continue
        vals = [v for v in p.values.values() if v is not WILD]
        if len(vals) >= 2:
            c = Counter(vals)
            v, cnt = c.most_common(1)[0]
            if cnt * 2 > len(insts) or (len(vals) < len(insts) and cnt * 2 > len(vals)):
                p.default, p.has_default = v, True
    params.sort(key=lambda p: p.has_default)


# ============================================================================ the emitter


class Emitter:
    def __init__(self, root: Call, problems: Problems, name: str, input_shape: tuple):
        self.root = root
        self.p = problems
        self.net_name = name
        self.input_shape = input_shape
        self.kind: dict[Call, str] = {}
        self.role: dict[Call, str] = {}
        self.cls_of: dict[Call, ClassInfo] = {}
        self.classes: dict[tuple, ClassInfo] = {}
        self.variant_of: dict[Call, Variant] = {}
        self.block_names: set[str] = set()
        self.order: list[ClassInfo] = []

    # ---------------------------------------------------------------- prepare
    def prepare(self) -> None:
        resolve_aliases(self.root)
        self.regroup(self.root)
        self.classify(self.root, None)
        r = self.root
        if self.kind[r] == "seq":
            self.p.add(f"not expressible: the model itself is an {type_label(r.module)}: its layers would be named "
                       "0, 1, ... at the top level, which an evo network cannot bind; wrap it in a module "
                       "(e.g. self.layers = nn.Sequential(...)) and import that, or write it as "
                       "`network N(x: Tensor[...]) = seq(x) {...}`, whose stages are 0, 1, ...")
        if r.n_tensor_args != 1:
            self.p.add(f"not convertible: <model> ({type_label(r.module)}): takes {r.n_tensor_args} tensor inputs; "
                       "an evo network takes one")

    def regroup(self, c: Call) -> None:
        for it in c.items:
            if isinstance(it, Call):
                self.regroup(it)
        uses = _uses(c)
        out: list = []
        items = c.items
        k = 0
        reported: set[str] = set()
        while k < len(items):
            it = items[k]
            r = _item_rel(c, it)
            if r is None or "." not in r or c.synthetic:
                out.append(it)
                k += 1
                continue
            head = r.split(".")[0]
            run = [it]
            j = k + 1
            while j < len(items):
                r2 = _item_rel(c, items[j])
                if r2 is None or r2.split(".")[0] != head or "." not in r2:
                    break
                run.append(items[j])
                j += 1
            ok = all(_item_rel(c, x) == f"{head}.{n}" for n, x in enumerate(run))
            ok = ok and len(run) == sum(1 for x in items if (_item_rel(c, x) or "").split(".")[0] == head)
            for a, b in itertools.pairwise(run):
                if _item_inputs(b) != [_item_out(a)] or uses.get(_item_out(a), 0) != 1:
                    ok = False
            if ok and (len(_item_inputs(run[0])) != 1 or _item_out(run[-1]) is None):
                ok = False
            cpath = f"{c.path}.{head}" if c.path else head
            try:
                container = c.module.get_submodule(head)
            except AttributeError:
                container = None
            if ok and container is not None and head not in reported:
                syn = Call(cpath, container, [_item_inputs(run[0])[0]], [_item_out(run[-1])], list(run), c,
                           1, synthetic=True)
                for x in run:
                    if isinstance(x, Call):
                        x.parent = syn
                out.append(syn)
                reported.add(head)
            else:
                if head not in reported:
                    what = type_label(container) if container is not None else "submodule"
                    self.p.not_convertible(cpath, what, f"its members are called directly from "
                                           f"{c.path or 'the model'}'s forward and not one after another; evo "
                                           "can express a container only as a seq (each member applied to the "
                                           "previous one's output)")
                    reported.add(head)
                out.extend(run)
            k = j
        c.items = out

    def classify(self, c: Call, parent: Call | None) -> None:
        m = c.module
        seq_like = c.synthetic or (isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward)
        if seq_like and not c.synthetic:
            names = list(m._modules)
            seq_like = names == [str(i) for i in range(len(names))]
            if seq_like and not self.p and [_item_rel(c, it) for it in c.items] != names:
                self.p.not_convertible(c.path, type_label(m), "its layers are not applied one after another")
        self.kind[c] = "seq" if seq_like else "body"
        if parent is None:
            self.role[c] = "network"
        elif seq_like and (c.synthetic or type(m) is nn.Sequential) and self.kind[parent] == "body":
            self.role[c] = "inline"
        else:
            self.role[c] = "block"
        if parent is not None and c.n_tensor_args != 1:
            self.p.not_convertible(c.path, type_label(m), f"takes {c.n_tensor_args} tensor inputs; an evo block "
                                   "takes one")
        if self.kind[c] == "body":
            for it in c.items:
                r = _item_rel(c, it)
                if r is None or "." in r:
                    continue
                needs_name = (isinstance(it, Step) and ops.REGISTRY[it.op].parametric) or (
                    isinstance(it, Call) and _has_state(it.module))
                if needs_name and not legal_name(r):
                    what = type_label(it.module) if it.module is not None else "module"
                    if r in KEYWORDS:
                        why = f"'{r}' is an evo keyword and cannot name a module"
                    elif r in RESERVED:
                        why = f"'{r}' is a built-in function name in evo and cannot name a module"
                    else:
                        why = f"'{r}' is not an evo identifier and cannot name a module"
                    self.p.add(f"not expressible: {it.path} ({what}): {why}")
        for it in c.items:
            if isinstance(it, Call):
                self.classify(it, c)
        if self.role[c] == "block":
            self.class_for(c)

    def class_for(self, c: Call) -> None:
        m = c.module
        plain = type(m) is nn.Sequential or c.synthetic
        base = "Sequential" if plain else type(m).__name__
        tkey = ("Sequential",) if plain else (type(m),)
        depth = 0
        a = c.parent
        while a is not None:
            if a in self.cls_of and self.cls_of[a].key[:-1] == tkey:
                depth += 1
            a = a.parent
        k = tkey + (depth,)
        ci = self.classes.get(k)
        if ci is None:
            ci = self.classes[k] = ClassInfo(k, base, self.kind[c], allow_if=not plain)
        ci.insts.append(c)
        self.cls_of[c] = ci

    # ---------------------------------------------------------------- classes
    def run(self) -> str:
        if not self.kind:
            self.prepare()
        if self.p:
            return ""
        self.toposort()
        for ci in self.order:
            self.build_class(ci)
        if self.p:
            return ""
        root_var = self.build_root()
        return self.render(root_var)

    def toposort(self) -> None:
        deps: dict[tuple, list[tuple]] = {k: [] for k in self.classes}

        def child_classes(c: Call, out: list):
            for it in c.items:
                if isinstance(it, Call):
                    if self.role[it] == "block":
                        out.append(self.cls_of[it].key)
                    else:
                        child_classes(it, out)
            return out

        for k, ci in self.classes.items():
            for inst in ci.insts:
                for d in child_classes(inst, []):
                    if d not in deps[k]:
                        deps[k].append(d)
        state: dict[tuple, int] = {}

        def visit(k):
            if state.get(k) == 2:
                return
            if state.get(k) == 1:
                return  # cannot happen: class keys include the nesting depth
            state[k] = 1
            for d in deps[k]:
                visit(d)
            state[k] = 2
            self.order.append(self.classes[k])

        # first-use order: walk the tree
        def walk(c: Call):
            for it in c.items:
                if isinstance(it, Call):
                    walk(it)
            if self.role.get(c) == "block":
                visit(self.cls_of[c].key)

        walk(self.root)

    def input_name(self, insts: list[Call]) -> str:
        names = set()
        for c in insts:
            names |= set(c.module._modules)
        for cand in ("x", "inp", "input", "x0", "x_in"):
            if cand not in names:
                return cand
        return "x_"

    def build_class(self, ci: ClassInfo) -> None:
        inp = self.input_name(ci.insts)
        bodies = [self.build_instance(c, inp) for c in ci.insts]
        groups: list[list[int]]
        try:
            groups = [list(range(len(ci.insts)))]
            variants = [self.merge(ci, [ci.insts[i] for i in groups[0]], [bodies[i] for i in groups[0]], inp,
                                   ci.allow_if)]
        except NoMerge:
            by: dict[Any, list[int]] = {}
            for i, b in enumerate(bodies):
                by.setdefault(full_key(b), []).append(i)
            variants = [self.merge(ci, [ci.insts[i] for i in g], [bodies[i] for i in g], inp, False)
                        for g in by.values()]
        for k, v in enumerate(variants):
            v.name = self.block_name(ci.base_name, k)
            for c in v.insts:
                self.variant_of[c] = v
        ci.variants = variants

    def block_name(self, base: str, k: int) -> str:
        b = re.sub(r"[^A-Za-z0-9_]", "_", base) or "Block"
        if b[0].isdigit():
            b = "B" + b
        if b in RESERVED or b in ops.language_ops():
            b = b + "Block"
        nm = b if k == 0 else f"{b}{k + 1}"
        n = k + 2
        while nm in self.block_names or nm == self.net_name:
            nm = f"{b}{n}"
            n += 1
        self.block_names.add(nm)
        return nm

    def merge(self, ci: ClassInfo, insts: list[Call], bodies: list[list], inp: str, allow_if: bool) -> Variant:
        m = Merger(insts, allow_if)
        items = list(enumerate(bodies))
        if ci.kind == "seq":
            tpl = m.stages(items)
        else:
            tpl = m.body(items)
        params = resolve(m, len(insts))
        name_params(params, insts, _bound_names(tpl) | {inp})
        return Variant("", ci.kind, params, tpl, insts, inp, ci)

    def build_root(self) -> Variant:
        r = self.root
        inp = self.input_name([r])
        body = self.build_instance(r, inp)
        m = Merger([r], False)
        tpl = m.body([(0, body)])
        resolve(m, 1)
        return Variant(self.net_name, "body", [], tpl, [r], inp, None)

    # ---------------------------------------------------------------- instance bodies
    def build_instance(self, c: Call, inp: str) -> list:
        if self.kind[c] == "seq":
            return self.stage_list(c)
        return self.statements(c, inp)

    def stage_list(self, c: Call) -> list:
        out = []
        for it in c.items:
            if isinstance(it, Step):
                out.append(SOp(it.op, {k: make_lit(v, k) for k, v in it.args.items()}))
            else:
                v = self.variant_of[it]
                out.append(SBlock(v, self.call_args(v, it, None)))
        return out

    def call_args(self, v: Variant, c: Call, loc: str | None) -> dict:
        args = {}
        for p in v.params:
            val = p.values.get(v.insts.index(c), WILD)
            fb = p.default if p.has_default else _mode([x for x in p.values.values() if x is not WILD])
            if val is WILD:
                args[p.name] = Lit(WILD, p.role, p.kind, loc, fb)
            else:
                lt = make_lit(val, p.role, loc)
                lt.kind = p.kind
                lt.fallback = fb
                args[p.name] = lt
        return args

    def statements(self, c: Call, inp: str) -> list:
        uses = _uses(c)
        expr_of: dict[Val, Any] = {}
        if c.inputs:
            expr_of[c.inputs[0]] = Name(inp)
        reserved = set(c.module._modules) | {inp} | RESERVED
        bound: set[str] = set()
        counters: Counter = Counter()

        def fresh(base: str) -> str:
            while True:
                k = counters[base]
                counters[base] += 1
                nm = base if k == 0 else f"{base}_{k}"
                if nm not in reserved and nm not in bound:
                    return nm

        stmts: list = []

        def get(v: Val):
            e = expr_of.get(v)
            if e is None:
                raise _Internal(f"value {v} used before it is defined in {c.path or 'the model'}")
            return e

        for it in c.items:
            if isinstance(it, Step):
                rel = _rel(c.path, it.path) if it.path else None
                if it.op in ("add", "mul"):
                    e = BinE("+" if it.op == "add" else "*", get(it.inputs[0]), get(it.inputs[1]))
                else:
                    loc = rel if rel and legal_name(rel) else None
                    e = OpE(it.op, [get(v) for v in it.inputs],
                            {k: make_lit(v, k, loc) for k, v in it.args.items()})
                parametric = ops.REGISTRY[it.op].parametric if it.op in ops.REGISTRY else False
                name = None
                if rel and legal_name(rel) and rel not in bound:
                    name = rel
                elif parametric:
                    raise _Internal(f"cannot name {it.path}")
                elif uses.get(it.out, 0) > 1:
                    name = fresh(_temp_base(it.op))
                out = it.out
            else:
                rel = _rel(c.path, it.path)
                if self.role[it] == "inline":
                    e = SeqE(get(it.inputs[0]), self.stage_list(it))
                else:
                    v = self.variant_of[it]
                    e = BlockE(v, get(it.inputs[0]), self.call_args(v, it, rel if legal_name(rel) else None))
                if legal_name(rel) and rel not in bound:
                    name = rel
                elif _has_state(it.module):
                    raise _Internal(f"cannot name {it.path}")
                else:
                    name = fresh(_temp_base(type(it.module).__name__.lower()))
                out = it.outputs[0] if it.outputs else None
            if name is not None:
                stmts.append(Assign(name, e))
                bound.add(name)
                if out is not None:
                    expr_of[out] = Name(name)
            elif out is not None and uses.get(out, 0) > 0:
                expr_of[out] = e
        stmts.append(Ret([get(o) for o in c.outputs]))
        return stmts

    # ---------------------------------------------------------------- rendering
    def render(self, root_var: Variant) -> str:
        parts = ["evo 0.1", "", f"# Imported from PyTorch ({type(self.root.module).__name__}) by evoc import.",
                 "# Module names follow the original model, so its state_dict loads with strict=True.", ""]
        for ci in self.order:
            for v in ci.variants:
                parts.append(self.render_block(v))
                parts.append("")
        parts.append(self.render_network(root_var))
        return "\n".join(parts) + "\n"

    def render_params(self, v: Variant) -> str:
        out = [v.inp]
        for p in v.params:
            s = f"{p.name}: {p.kind}"
            if p.has_default:
                s += f" = {lit_text(p.default)}"
            out.append(s)
        return ", ".join(out)

    def render_block(self, v: Variant) -> str:
        r = _Renderer(v)
        head = f"block {v.name}({self.render_params(v)})"
        if v.kind == "seq":
            return f"{head} = seq({v.inp}) {{\n{r.stages(v.template, '    ')}}}"
        return f"{head} {{\n{r.stmts(v.template, '    ')}}}"

    def render_network(self, v: Variant) -> str:
        shp = list(self.input_shape)
        dims = ", ".join(["N"] + [str(d) for d in shp[1:]])
        r = _Renderer(v)
        return f"network {v.name}({v.inp}: Tensor[{dims}]) {{\n{r.stmts(v.template, '    ')}}}"


class _Internal(Exception):
    pass


def _temp_base(s: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    if not s or s[0].isdigit():
        s = "t_" + s
    if s in RESERVED:
        s = s + "_"
    return s


def _has_state(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def _item_rel(c: Call, it) -> str | None:
    if isinstance(it, Step):
        return _rel(c.path, it.path) if it.path is not None else None
    return _rel(c.path, it.path)


def _item_inputs(it) -> list:
    return list(it.inputs)


def _item_out(it):
    if isinstance(it, Step):
        return it.out
    return it.outputs[0] if len(it.outputs) == 1 else None


def _uses(c: Call) -> dict:
    uses: Counter = Counter()
    for it in c.items:
        for v in _item_inputs(it):
            uses[v] += 1
    for v in c.outputs:
        uses[v] += 1
    return uses


def resolve_aliases(root: Call) -> None:
    alias: dict[Val, Val] = {}

    def find(v: Val) -> Val:
        while v in alias:
            v = alias[v]
        return v

    def collect(c: Call):
        keep = []
        for it in c.items:
            if isinstance(it, Step) and it.op == "@alias":
                alias[it.out] = it.inputs[0]
                continue
            if isinstance(it, Call):
                collect(it)
            keep.append(it)
        c.items = keep

    def subst(c: Call):
        c.inputs = [find(v) for v in c.inputs]
        c.outputs = [find(v) for v in c.outputs]
        for it in c.items:
            if isinstance(it, Step):
                it.inputs = [find(v) for v in it.inputs]
            else:
                subst(it)

    collect(root)
    subst(root)


def _bound_names(tpl) -> set[str]:
    out: set[str] = set()

    def walk(n):
        if isinstance(n, Assign):
            out.add(n.name)
        elif isinstance(n, IfS):
            for s in n.then:
                walk(s)
        elif isinstance(n, list):
            for s in n:
                walk(s)

    walk(tpl)
    return out


def fmt_float(v: float) -> str:
    s = repr(float(v))
    if "e" in s:
        m, e = s.split("e")
        s = f"{m}e{int(e)}"
    return s


def lit_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return fmt_float(v)
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == v[1]:
            return str(v[0])
        return "[" + ", ".join(str(x) for x in v) + "]"
    raise TypeError(type(v))


class _Renderer:
    def __init__(self, v: Variant):
        self.v = v

    # values
    def res_text(self, h: Hole) -> str:
        r = h.res
        if isinstance(r, Const):
            return lit_text(r.value)
        if isinstance(r, Param):
            return r.name
        if isinstance(r, Expr):
            x = self.v.inp
            if r.kind == "chan":
                return f"{x}.channels"
            if r.kind == "mul":
                return f"{r.param.name} * {r.k}"
            if r.kind == "halfk":
                return f"({r.param.name} - 1) // 2"
            if r.kind == "chanmul":
                return f"{x}.channels * {r.k}"
            if r.kind == "chandiv":
                return f"{x}.channels // {r.k}"
        raise TypeError(type(r))

    def const(self, h) -> Any:
        return h.res.value if isinstance(h, Hole) and isinstance(h.res, Const) else None

    def op_args(self, op: str, args: dict) -> list[str]:
        d = ops.REGISTRY[op]
        out = []
        for ps in d.params:
            h = args.get(ps.name)
            if h is None:
                continue
            c = self.const(h)
            if ps.default is ops.REQUIRED:
                out.append(self.res_text(h))
                continue
            default = ps.default
            if ps.name == "stride" and default is None:
                default = self.const(args.get("kernel"))
            if c is not None and default is not None and _eq(c, default):
                continue
            if op in _POSITIONAL:  # dropout(0.2), leaky_relu(x, 0.1): one argument, read positionally
                out.append(self.res_text(h))
                continue
            out.append(f"{ps.name}={self.res_text(h)}")
        return out

    def block_args(self, var: Variant, args: dict) -> list[str]:
        out = []
        for p in var.params:
            h = args[p.name]
            c = self.const(h)
            if p.has_default:
                if c is not None and _eq(c, p.default):
                    continue
                out.append(f"{p.name}={self.res_text(h)}")
            else:
                out.append(self.res_text(h))
        return out

    def expr(self, n, top: bool = False) -> str:
        if isinstance(n, Name):
            return n.id
        if isinstance(n, OpE):
            ins = [self.expr(i, True) for i in n.inputs]
            return f"{n.op}({', '.join(ins + self.op_args(n.op, n.args))})"
        if isinstance(n, BlockE):
            return f"{n.var.name}({', '.join([self.expr(n.input, True)] + self.block_args(n.var, n.args))})"
        if isinstance(n, BinE):
            prec = {"+": 1, "*": 2}
            a = self.expr(n.left)
            b = self.expr(n.right)
            if isinstance(n.left, BinE) and prec[n.left.op] < prec[n.op]:
                a = f"({a})"
            if isinstance(n.right, BinE) and prec[n.right.op] <= prec[n.op]:
                b = f"({b})"
            return f"{a} {n.op} {b}"
        if isinstance(n, SeqE):
            return f"seq({self.expr(n.input, True)}) {{\n{self.stages(n.stages, '        ')}}}"
        raise TypeError(type(n))

    def pred(self, p, top: bool = True) -> str:
        if isinstance(p, PCmp):
            return f"{self.res_text(p.hole)} {p.op} {p.value}"
        if isinstance(p, PChan):
            return f"{self.v.inp}.channels {p.op} {self.res_text(p.hole)}"
        if isinstance(p, PBool):
            return f"not {p.param.name}" if p.neg else p.param.name
        if isinstance(p, PBin):
            a, b = self.pred(p.a, False), self.pred(p.b, False)
            s = f"{a} {p.op} {b}"
            return s if top else f"({s})"
        raise TypeError(type(p))

    # statements
    def stmts(self, stmts: list, ind: str) -> str:
        out = []
        for s in stmts:
            if isinstance(s, Assign):
                out.append(f"{ind}{s.name} = {self.expr(s.expr, True)}\n")
            elif isinstance(s, Ret):
                out.append(f"{ind}return {', '.join(self.expr(e, True) for e in s.exprs)}\n")
            elif isinstance(s, IfS):
                out.append(f"{ind}if {self.pred(s.pred)} {{\n{self.stmts(s.then, ind + '    ')}{ind}}}\n")
        return "".join(out)

    def stage_text(self, s) -> str:
        if isinstance(s, SOp):
            return f"{s.op}({', '.join(self.op_args(s.op, s.args))})"
        return f"{s.var.name}({', '.join(self.block_args(s.var, s.args))})"

    def stages(self, stages: list, ind: str) -> str:
        out = []
        k = 0
        while k < len(stages):
            s = stages[k]
            if isinstance(s, SIf):
                txt = f"{ind}if {self.pred(s.pred)} {{\n{self.stages(s.then, ind + '    ')}{ind}}}"
                if s.orelse:
                    txt += f" else {{\n{self.stages(s.orelse, ind + '    ')}{ind}}}"
                out.append(txt + "\n")
                k += 1
                continue
            # runs of identical stages become `repeat`
            best = (1, 1)
            for L in range(1, 5):
                if k + L > len(stages) or any(isinstance(x, SIf) for x in stages[k:k + L]):
                    break
                unit = [self.stage_text(x) for x in stages[k:k + L]]
                n = 1
                while k + (n + 1) * L <= len(stages):
                    nxt = stages[k + n * L:k + (n + 1) * L]
                    if any(isinstance(x, SIf) for x in nxt) or [self.stage_text(x) for x in nxt] != unit:
                        break
                    n += 1
                if L > 1 and sum(isinstance(x, SBlock) for x in stages[k:k + L]) > 1:
                    continue  # repeat units of several blocks read worse than the list
                if n >= 2 and L * n >= 3 and L * n > best[0] * best[1]:
                    best = (L, n)
            L, n = best
            if n >= 2:
                inner = "".join(f"{ind}    {self.stage_text(x)}\n" for x in stages[k:k + L])
                out.append(f"{ind}repeat {n} {{\n{inner}{ind}}}\n")
                k += L * n
            else:
                out.append(f"{ind}{self.stage_text(s)}\n")
                k += 1
        return "".join(out)


_POSITIONAL = {"dropout", "leaky_relu"}


def _eq(a, b) -> bool:
    if isinstance(b, tuple) and len(b) == 2 and b[0] == b[1]:
        b = b[0]
    if isinstance(a, tuple) and len(a) == 2 and a[0] == a[1]:
        a = a[0]
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
