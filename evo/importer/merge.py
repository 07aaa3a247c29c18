"""Merging the bodies of a module class's instances into one block template:
literals that differ become parameters (shared, derived or defaulted), structure
that differs becomes a compile-time `if` on a parameter or module attribute."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from evo.importer.trace import Call
from evo.importer.tree import (
    WILD,
    Assign,
    BinE,
    BlockE,
    Const,
    DimE,
    Expr,
    Hole,
    IfS,
    IndexE,
    ListE,
    Lit,
    LoopS,
    Name,
    OpE,
    Param,
    PBin,
    PBool,
    PChan,
    PCmp,
    Ret,
    SBlock,
    SeqE,
    SIf,
    SOp,
    TensorsE,
    key,
    legal_name,
    lits_of,
)


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
        # (a list input has no `.channels`: nothing is written from it)
        self.chan = {i: (c.inputs[0].shape[1] if c.inputs and c.inputs[0].shape and len(c.inputs[0].shape) > 1
                         and not c.list_input else None) for i, c in enumerate(insts)}

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
                          {a: self.node([(i, n.args[a]) for i, n in items]) for a in n0.args},
                          [self.node([(i, n.extra[k]) for i, n in items]) for k in range(len(n0.extra))])
        if isinstance(n0, BinE):
            return BinE(n0.op, self.node([(i, n.left) for i, n in items]),
                        self.node([(i, n.right) for i, n in items]))
        if isinstance(n0, TensorsE):
            if any(not isinstance(n, TensorsE) or len(n.items) != len(n0.items) for _, n in items):
                raise NoMerge()
            return TensorsE([self.node([(i, n.items[k]) for i, n in items]) for k in range(len(n0.items))])
        if isinstance(n0, ListE):
            return ListE([self.node([(i, n.items[k]) for i, n in items]) for k in range(len(n0.items))])
        if isinstance(n0, DimE):
            return DimE(self.node([(i, n.ref) for i, n in items]), n0.attr, n0.div)
        if isinstance(n0, IndexE):
            return IndexE(self.node([(i, n.ref) for i, n in items]), n0.index)
        if isinstance(n0, SeqE):
            inp = self.node([(i, n.input) for i, n in items])
            return SeqE(inp, self.stages([(i, n.stages) for i, n in items]))
        if isinstance(n0, SOp):
            return SOp(n0.op, {a: self.node([(i, n.args[a]) for i, n in items]) for a in n0.args})
        if isinstance(n0, SBlock):
            return SBlock(n0.var, {a: self.node([(i, n.args[a]) for i, n in items]) for a in n0.args})
        if isinstance(n0, Assign):
            return Assign(n0.name, self.node([(i, n.expr) for i, n in items]), n0.training)
        if isinstance(n0, Ret):
            return Ret([self.node([(i, n.exprs[k]) for i, n in items]) for k in range(len(n0.exprs))])
        if isinstance(n0, LoopS):
            return LoopS(n0.prefix, n0.start, self.node([(i, n.count) for i, n in items]), n0.var,
                         self.node([(i, n.first) for i, n in items]),
                         {a: self.node([(i, n.args[a]) for i, n in items]) for a in n0.args}, n0.acc, n0.index)
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
        try:
            return self.align_to_longest(items)
        except NoMerge:
            pass
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
        try:
            pred = self.predicate(list(groups.values()), prefer_true=set(nonempty))
        except NoMerge:
            pred = self.flag(mids, groups)
        a = [(i, st) for i, st in mids if self.eval(pred, i)]
        b = [(i, st) for i, st in mids if not self.eval(pred, i)]
        then = self.stages(a) if any(st for _, st in a) else []
        orelse = self.stages(b) if any(st for _, st in b) else None
        if not then:
            pred, then, orelse = negate(pred), orelse or [], None
        return pre + [SIf(pred, then, orelse)] + suf

    def align_to_longest(self, items: list[tuple[int, list]]) -> list:
        """Stage lists that are each the longest one with some stages left out (MobileNetV3's
        InvertedResidual: the expansion conv where the width changes, the squeeze-excitation where
        configured): each is aligned to the longest by dynamic programming (equal stage kinds,
        fewest differing literals), and every run of stages some instances lack becomes an `if`."""
        ref_i, ref = max(items, key=lambda t: len(t[1]))
        rkeys = [key(s) for s in ref]
        n_ref = len(ref)
        where: dict[int, list[int]] = {}
        for i, st in items:
            if i == ref_i:
                where[i] = list(range(n_ref))
                continue
            where[i] = _align(st, ref, rkeys)
        present = [frozenset(i for i, _ in items if b in where[i]) for b in range(n_ref)]
        everyone = frozenset(i for i, _ in items)
        at = {i: {b: k for k, b in enumerate(where[i])} for i, _ in items}
        st_of = dict(items)

        def merged(b: int, who) -> Any:
            return self.node([(i, st_of[i][at[i][b]]) for i in sorted(who, key=list(st_of).index)])

        anchors = {b: merged(b, everyone) for b in range(n_ref) if present[b] == everyone}
        out: list = []
        b = 0
        while b < n_ref:
            if b in anchors:
                out.append(anchors[b])
                b += 1
                continue
            run = [b]
            while run[-1] + 1 < n_ref and present[run[-1] + 1] == present[b]:
                run.append(run[-1] + 1)
            who = present[b]
            sub = [(i, [st_of[i][at[i][c]] for c in run]) for i, _ in items if i in who]
            groups = [[i for i, _ in items if i in who], [i for i, _ in items if i not in who]]
            try:
                pred = self.predicate(groups, prefer_true=set(who))
            except NoMerge:
                pred = self.presence_flag(ref[run[0]], who, everyone)
            out.append(SIf(pred, self.stages(sub), None))
            b = run[-1] + 1
        return out

    def presence_flag(self, stage, who, everyone) -> PBool:
        what = _snake(stage.var.cls.base_name if isinstance(stage, SBlock) else stage.op)
        name = f"has_{what}"
        if not legal_name(name):
            raise NoMerge()
        p = self.extra_param(name, {i: i in who for i in range(len(self.insts))})
        if p.name != name or any(p.values.get(i) != (i in who) for i in everyone):
            raise NoMerge()
        if p not in self.extra:
            self.extra.append(p)
        return PBool(p)

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

    def flag(self, mids: list[tuple[int, list]], groups: dict):
        """A bool parameter that chooses between optional or alternative single stages where nothing
        on the modules tells them apart (MobileNetV3's squeeze-excitation, its two activations):
        `if has_squeeze_excitation { SqueezeExcitation() }`, `if use_<op> { <op>() } else ...`.
        Longer differences stay separate blocks."""
        if not self.allow_if or any(len(st) > 1 for _, st in mids):
            raise NoMerge()
        by = dict(mids)
        nonempty = [g for g in groups.values() if by[g[0]]]
        first = max(nonempty, key=len)  # the most common single stage is the flag's true side
        stage = by[first[0]][0]
        what = _snake(stage.var.cls.base_name if isinstance(stage, SBlock) else stage.op)
        name = f"{'has' if len(nonempty) == 1 else 'use'}_{what}"
        if not legal_name(name):
            raise NoMerge()
        chosen = set(first)
        p = self.extra_param(name, {i: i in chosen for i in range(len(self.insts))})
        if p.name != name or any(p.values.get(i) != (i in chosen) for i, _ in mids):
            raise NoMerge()  # one flag per name and meaning
        if p not in self.extra:
            self.extra.append(p)
        return PBool(p)

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


def _stage_cost(a, b) -> int:
    """How many literals differ between two stages of one kind."""
    la, lb = lits_of(a, []), lits_of(b, [])

    def tied(ls):  # which int literals repeat the first one (a depthwise conv's groups = out)
        first = next((x.value for x in ls if x.kind == "int"), None)
        return [x.kind == "int" and x.value == first for x in ls]

    cost = sum(1 for x, y in zip(la, lb) if repr(x.value) != repr(y.value)) + abs(len(la) - len(lb))
    return cost + 2 * sum(1 for x, y in zip(tied(la), tied(lb)) if x != y)


def _align(st: list, ref: list, rkeys: list) -> list[int]:
    """The positions in `ref` of `st`'s stages: `st` as a subsequence of `ref` (equal keys), with the
    fewest differing literals (NoMerge when it is not one)."""
    inf = float("inf")
    m, n = len(st), len(ref)
    keys = [key(s) for s in st]
    dp = [[inf] * (n + 1) for _ in range(m + 1)]
    for j in range(n + 1):
        dp[0][j] = 0
    for a in range(1, m + 1):
        for j in range(a, n + 1):
            best = dp[a][j - 1]
            if keys[a - 1] == rkeys[j - 1] and dp[a - 1][j - 1] < inf:
                best = min(best, dp[a - 1][j - 1] + _stage_cost(st[a - 1], ref[j - 1]))
            dp[a][j] = best
    if dp[m][n] == inf:
        raise NoMerge()
    pos: list[int] = []
    a, j = m, n
    while a > 0:  # on a tie, match the later stage (what is left out is rather in front)
        if keys[a - 1] == rkeys[j - 1] and dp[a][j] == dp[a - 1][j - 1] + _stage_cost(st[a - 1], ref[j - 1]):
            pos.append(j - 1)
            a, j = a - 1, j - 1
        else:
            j -= 1
    return pos[::-1]


def _snake(name: str) -> str:
    """SqueezeExcitation -> squeeze_excitation."""
    out = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    return re.sub(r"[^a-z0-9_]", "_", out)


_NOT_CHANNELS = {"kernel", "stride", "padding", "dilation", "dim", "start", "end", "size", "shape", "chunks"}


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
                return Expr("times", p, k)
        if all(v == (p.values[i] - 1) // 2 for i, v in vals.items()):
            return Expr("halfk", p)
    if all(chan.get(i) is not None for i in vals):
        for k in range(2, 9):
            if all(v == chan[i] * k for i, v in vals.items()):
                return Expr("chanmul", None, k)
            if all(chan[i] % k == 0 and v == chan[i] // k for i, v in vals.items()):
                return Expr("chandiv", None, k)
    return None


_NO_DEFAULT_ROLES = {"out", "size", "shape"}


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


