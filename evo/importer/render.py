"""Rendering merged block templates as evo source text (literals through the front
end's literal printer; the canonical formatter then lays the text out)."""

from __future__ import annotations

from typing import Any

from evo import ops
from evo.importer.templates import TEMPLATES
from evo.frontend import names as quoting
from evo.frontend.literals import literal
from evo.importer.tree import (
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
    Variant,
)


class Renderer:
    def __init__(self, v: Variant):
        self.v = v

    # values
    def res_text(self, h: Hole) -> str:
        r = h.res
        if isinstance(r, Const):
            return literal(r.value)
        if isinstance(r, Param):
            return r.name
        if isinstance(r, Expr):
            x = self.v.inp
            if r.kind == "chan":
                return f"{x}.channels"
            if r.kind == "times":
                return f"{r.param.name} * {r.k}"
            if r.kind == "halfk":
                return f"({r.param.name} - 1) // 2"
            if r.kind == "chanmul":
                return f"{x}.channels * {r.k}"
            if r.kind == "chandiv":
                return f"{x}.channels // {r.k}"
        raise TypeError(type(r))

    def arg_text(self, h) -> str:
        """An argument: a hole's resolution, or a list of them, or a dimension of a value."""
        if isinstance(h, ListE):
            return "[" + ", ".join(self.arg_text(x) for x in h.items) + "]"
        if isinstance(h, DimE):
            return self.expr(h)
        return self.res_text(h)

    def const(self, h) -> Any:
        return h.res.value if isinstance(h, Hole) and isinstance(h.res, Const) else None

    def op_args(self, op: str, args: dict) -> list[str]:
        if op in TEMPLATES:  # a block template's call: required arguments positional, the rest by name
            out = []
            for name, default in TEMPLATES[op].params:
                h = args.get(name)
                if h is None:
                    continue
                c = self.const(h)
                if default is None:
                    out.append(self.res_text(h))
                elif c is None or not _eq(c, default):
                    out.append(f"{name}={self.res_text(h)}")
            return out
        d = ops.REGISTRY[op]
        out = []
        for ps in d.params:
            h = args.get(ps.name)
            if h is None:
                continue
            c = self.const(h)
            if ps.default is ops.REQUIRED:
                out.append(self.arg_text(h))
                continue
            default = ps.default
            if ps.name == "stride" and default is None:
                default = self.const(args.get("kernel"))
            if c is not None and default is not None and _eq(c, default):
                continue
            if d.positional:  # the entry says: its optional argument written positionally
                out.append(self.arg_text(h))
                continue
            out.append(f"{ps.name}={self.arg_text(h)}")
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
            return quoting.show(n.id)
        if isinstance(n, OpE):
            ins = [self.expr(i, True) for i in n.inputs]
            args = self.op_args(n.op, n.args)
            lead = ops.REGISTRY[n.op].leading if n.op in ops.REGISTRY else 0  # einsum's equation: first
            return f"{n.op}({', '.join(args[:lead] + ins + args[lead:])})"
        if isinstance(n, BlockE):
            ins = [self.expr(n.input, True)] + [self.expr(e, True) for e in n.extra]
            return f"{n.var.name}({', '.join(ins + self.block_args(n.var, n.args))})"
        if isinstance(n, BinE):
            prec = {"+": 1, "*": 2}
            a = self.expr(n.left)
            b = self.expr(n.right)
            if isinstance(n.left, BinE) and prec[n.left.op] < prec[n.op]:
                a = f"({a})"
            if isinstance(n.right, BinE) and prec[n.right.op] <= prec[n.op]:
                b = f"({b})"
            return f"{a} {n.op} {b}"
        if isinstance(n, DimE):
            s = f"{self.expr(n.ref)}.{n.attr}"
            return f"{s} // {n.div}" if n.div != 1 else s
        if isinstance(n, IndexE):
            return f"{self.expr(n.ref)}[{n.index}]"
        if isinstance(n, ListE):
            return self.arg_text(n)
        if isinstance(n, TensorsE):
            return "[" + ", ".join(self.expr(i, True) for i in n.items) + "]"
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
                mod = "training " if s.training else ""
                out.append(f"{ind}{mod}{quoting.show(s.name)} = {self.expr(s.expr, True)}\n")
            elif isinstance(s, Ret):
                out.append(f"{ind}return {', '.join(self.expr(e, True) for e in s.exprs)}\n")
            elif isinstance(s, IfS):
                out.append(f"{ind}if {self.pred(s.pred)} {{\n{self.stmts(s.then, ind + '    ')}{ind}}}\n")
            elif isinstance(s, LoopS):
                n = self.const(s.count)
                stop = str(s.start + n) if n is not None else f"{self.res_text(s.count)} + {s.start}" if s.start \
                    else self.res_text(s.count)
                call = f"{s.var.name}({', '.join([s.acc] + self.block_args(s.var, s.args))})"
                acc, name = quoting.show(s.acc), quoting.show(s.prefix)
                out.append(f"{ind}{acc} = [{self.expr(s.first, True)}]\n"
                           f"{ind}for {s.index} in {s.start}..{stop} {{\n"
                           f"{ind}    {name}{{{s.index}}} = {call}\n"
                           f"{ind}    {acc} = {acc} + [{name}]\n{ind}}}\n")
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


def _eq(a, b) -> bool:
    if isinstance(b, tuple) and len(b) == 2 and b[0] == b[1]:
        b = b[0]
    if isinstance(a, tuple) and len(a) == 2 and a[0] == a[1]:
        a = a[0]
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
