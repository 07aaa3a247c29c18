"""The compile-time evaluator: values, names, arithmetic, units, comparisons, indexing.

Programs compute with compile-time values (ints, floats, bools, strings, lists,
quantities with units) and tensors; the evaluator computes the former exactly as
the spec says and reports every error at its span.  What makes tensors (op and
block calls, `+`/`*` on tensors, seqs) is lowering, :mod:`evo.check.lower`,
whose :class:`~evo.check.lower.Lowerer` extends this class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from evo import codes as C
from evo import ops
from evo.check.program import Program
from evo.diagnostics import Abort, Collector, Span, did_you_mean
from evo.frontend import ast as A
from evo.units import COUNT, Quantity, parse_unit


# The most items a list built with `+` may hold (a value range, like the ±10¹⁸ of integers): a
# list doubled in a loop would otherwise exhaust memory, and one grown an item at a time costs
# the square of its length.
MAX_LIST = 10_000


@dataclass(frozen=True)
class TensorV:
    nid: int
    shape: tuple


@dataclass(frozen=True)
class TupleV:
    items: tuple


class _Poison:
    """The value of a name whose definition had an error (suppresses follow-on errors)."""


POISON = _Poison()


def type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, TensorV):
        return f"tensor {ops.fmt_shape(v.shape)}"
    if isinstance(v, TupleV):
        return f"{len(v.items)} values"
    if isinstance(v, Quantity):
        return f"quantity ({v.dim})"
    if isinstance(v, tuple):
        if v and all(isinstance(x, TensorV) for x in v):
            return f"list of {len(v)} tensor{'s' if len(v) != 1 else ''}"
        return "list"
    return type(v).__name__


def join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


@dataclass
class Ctx:
    scope: str
    env: dict[str, Any]
    depth: int = 0
    what: str = ""



class Evaluator:
    """Evaluates compile-time expressions; subclasses supply what makes tensors
    (`tensor_binop`, `e_Call`, `e_Seq`)."""

    def __init__(self, prog: Program, col: Collector):
        self.prog = prog
        self.col = col

    def constant(self, e) -> Any:
        """Evaluate a constant expression (no names in scope)."""
        return self.eval(e, Ctx("", {}))

    def fail(self, code: str, msg: str, span: Span, hint: str | None = None, notes=()) -> Abort:
        self.col.error(code, msg, span, hint, notes)
        return Abort()

    def tensor_binop(self, op: str, a, b, e: A.BinOp, ctx, bind):
        raise self.fail(C.TYPE_MISMATCH, f"'{op}' on tensors needs a network to build", e.span)

    def builtin_call(self, e: A.Call, ctx):
        """min(...) and max(...) of numbers."""
        vals = [self.eval(a, ctx) for a in e.args]
        if any(v is POISON for v in vals):
            return POISON
        if len(vals) < 2 or e.kwargs:
            raise self.fail(C.WRONG_NUMBER_OF_ARGUMENTS, f"{e.func}() takes two or more numbers", e.span)
        for v, a in zip(vals, e.args):
            if not is_number(v):
                raise self.fail(C.TYPE_MISMATCH, f"{e.func}() needs numbers, not {type_name(v)}", a.span)
        return min(vals) if e.func == "min" else max(vals)

    def eval_bool(self, e, ctx: Ctx) -> bool:
        v = self.eval(e, ctx)
        if v is POISON:
            raise Abort()
        if not isinstance(v, bool):
            raise self.fail(C.CONDITION_IS_NOT_COMPILE_TIME if isinstance(v, TensorV) else C.TYPE_MISMATCH,
                            f"a condition must be a compile-time bool, not {type_name(v)}", e.span,
                            "compare values, e.g. stride != 1")
        return v

    def eval_int(self, e, ctx: Ctx, what: str) -> int:
        v = self.eval(e, ctx)
        if v is POISON:
            raise Abort()
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                return int(v)
            raise self.fail(C.TYPE_MISMATCH, f"{what} must be an int, not {type_name(v)}", e.span)
        return v

    def eval(self, e, ctx: Ctx, bind: str | None = None) -> Any:
        m = getattr(self, "e_" + type(e).__name__)
        return m(e, ctx, bind)

    def e_Num(self, e: A.Num, ctx, bind):
        if e.unit is None:
            return e.value
        parsed = parse_unit(e.unit)
        if parsed is None:
            raise self.fail(C.UNKNOWN_UNIT, f"unknown unit '{e.unit}'", e.span)
        scale, dim = parsed
        if dim == COUNT:
            v = e.value * scale
            return int(v) if float(v).is_integer() else v
        return Quantity(e.value * scale, dim, e.text)

    def e_Str(self, e, ctx, bind):
        return e.value

    def e_Bool(self, e, ctx, bind):
        return e.value

    def e_Name(self, e: A.Name, ctx, bind):
        if e.id in ctx.env:
            return ctx.env[e.id]
        raise self.fail(C.UNDEFINED_NAME, f"'{e.id}' is not bound on this path", e.span,
                        "it is bound only in one branch of an 'if'; bind it in both")

    def e_ListExpr(self, e: A.ListExpr, ctx, bind):
        return tuple(self.eval(x, ctx) for x in e.items)

    def e_CondExpr(self, e: A.CondExpr, ctx, bind):
        return self.eval(e.body if self.eval_bool(e.cond, ctx) else e.orelse, ctx, bind)

    def e_UnaryOp(self, e: A.UnaryOp, ctx, bind):
        v = self.eval(e.operand, ctx)
        if v is POISON:
            return POISON
        if e.op == "not":
            if not isinstance(v, bool):
                raise self.fail(C.TYPE_MISMATCH, f"'not' needs a bool, not {type_name(v)}", e.operand.span)
            return not v
        if isinstance(v, bool) or not isinstance(v, (int, float, Quantity)):
            raise self.fail(C.TYPE_MISMATCH, f"unary '{e.op}' needs a number, not {type_name(v)}", e.operand.span)
        if isinstance(v, Quantity):
            return Quantity(-v.value if e.op == "-" else v.value, v.dim)
        return -v if e.op == "-" else v

    def e_BinOp(self, e: A.BinOp, ctx, bind):
        op = e.op
        if op in ("and", "or"):
            a = self.eval(e.left, ctx)
            if a is POISON:
                return POISON
            if not isinstance(a, bool):
                raise self.fail(C.TYPE_MISMATCH, f"'{op}' needs bools, not {type_name(a)}", e.left.span)
            if (op == "and" and not a) or (op == "or" and a):
                return a
            b = self.eval(e.right, ctx)
            if b is POISON:
                return POISON
            if not isinstance(b, bool):
                raise self.fail(C.TYPE_MISMATCH, f"'{op}' needs bools, not {type_name(b)}", e.right.span)
            return b
        a = self.eval(e.left, ctx)
        b = self.eval(e.right, ctx)
        if a is POISON or b is POISON:
            return POISON
        if isinstance(a, TensorV) or isinstance(b, TensorV):
            return self.tensor_binop(op, a, b, e, ctx, bind)
        return self.scalar_binop(op, a, b, e)

    def scalar_binop(self, op: str, a, b, e: A.BinOp):
        if isinstance(a, Quantity) or isinstance(b, Quantity):
            return self.quantity_binop(op, a, b, e)
        if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):  # lists: concatenation
            if len(a) + len(b) > MAX_LIST:
                raise self.fail(C.VALUE_OUT_OF_RANGE, f"the list would hold {len(a) + len(b):,} items; a list holds "
                                f"at most {MAX_LIST:,}", e.span)
            return a + b
        if op == "+" and (isinstance(a, tuple) or isinstance(b, tuple)):
            raise self.fail(C.TYPE_MISMATCH, f"'+' joins two lists, not {type_name(a)} and {type_name(b)}", e.span,
                            "write the item as a list: xs + [y]")
        if op in ("==", "!="):
            if type_name(a) != type_name(b) and not (is_number(a) and is_number(b)):
                raise self.fail(C.TYPE_MISMATCH, f"cannot compare {type_name(a)} with {type_name(b)}", e.span)
            return (a == b) if op == "==" else (a != b)
        for v, sub in ((a, e.left), (b, e.right)):
            if not is_number(v):
                raise self.fail(C.TYPE_MISMATCH, f"'{op}' needs numbers, not {type_name(v)}", sub.span)
        if op in ("<", "<=", ">", ">="):
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        if op in ("/", "//", "%") and b == 0:
            raise self.fail(C.DIVISION_BY_ZERO, "division by zero", e.right.span)
        r = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
             "//": lambda: a // b, "%": lambda: a % b}[op]()
        if isinstance(r, float) and not math.isfinite(r):
            raise self.fail(C.VALUE_OUT_OF_RANGE, "the result is not a finite number", e.span)
        if isinstance(r, int) and abs(r) > 10 ** 18:
            raise self.fail(C.VALUE_OUT_OF_RANGE, "the result is too large", e.span)
        return r

    def quantity_binop(self, op: str, a, b, e):
        qa, qb = isinstance(a, Quantity), isinstance(b, Quantity)
        if op in ("+", "-", "<", "<=", ">", ">=", "==", "!="):
            if not (qa and qb) or a.dim != b.dim:
                raise self.fail(C.WRONG_UNIT, f"'{op}' needs quantities of one dimension, got {type_name(a)} and "
                                f"{type_name(b)}", e.span)
            x, y = a.value, b.value
            return {"+": lambda: Quantity(x + y, a.dim), "-": lambda: Quantity(x - y, a.dim),
                    "<": lambda: x < y, "<=": lambda: x <= y, ">": lambda: x > y, ">=": lambda: x >= y,
                    "==": lambda: x == y, "!=": lambda: x != y}[op]()
        if op == "*" and qa != qb:
            q, s = (a, b) if qa else (b, a)
            if is_number(s):
                return Quantity(q.value * s, q.dim)
        if op == "/" and qa and not qb and is_number(b):
            if b == 0:
                raise self.fail(C.DIVISION_BY_ZERO, "division by zero", e.right.span)
            return Quantity(a.value / b, a.dim)
        raise self.fail(C.WRONG_UNIT, f"'{op}' is not defined for {type_name(a)} and {type_name(b)}", e.span)

    def e_Attr(self, e: A.Attr, ctx, bind):
        v = self.eval(e.obj, ctx)
        if v is POISON:
            return POISON
        if isinstance(v, TensorV):
            idx = {"channels": 1, "height": 2, "width": 3}
            if e.attr in idx:
                i = idx[e.attr]
                if len(v.shape) <= i:
                    raise self.fail(C.WRONG_TENSOR_RANK, f"'.{e.attr}' needs a 4-D tensor, this one is "
                                    f"{ops.fmt_shape(v.shape)}", e.span)
                return self.dim(v.shape[i], e)
            if e.attr == "shape":
                return tuple(v.shape)
            if e.attr == "rank":
                return len(v.shape)
            raise self.fail(C.UNKNOWN_ATTRIBUTE_OF_A_TENSOR, f"tensors have no attribute '{e.attr}'", e.span,
                            did_you_mean(e.attr, ["channels", "height", "width", "shape", "rank"])
                            or "use .channels, .height, .width, .shape[i] or .rank")
        raise self.fail(C.UNKNOWN_ATTRIBUTE_OF_A_TENSOR, f"{type_name(v)} has no attribute '{e.attr}'", e.span)

    def dim(self, d, e):
        if not isinstance(d, int):
            raise self.fail(C.CONDITION_IS_NOT_COMPILE_TIME, f"this dimension is the symbol '{d}', not known at compile time", e.span)
        return d

    def e_Index(self, e: A.Index, ctx, bind):
        v = self.eval(e.obj, ctx)
        i = self.eval(e.index, ctx)
        if v is POISON or i is POISON:
            return POISON
        if isinstance(v, TupleV):  # one output of a block that returns several
            if isinstance(i, bool) or not isinstance(i, int):
                raise self.fail(C.TYPE_MISMATCH, f"an index must be an int, not {type_name(i)}", e.index.span)
            if not -len(v.items) <= i < len(v.items):
                raise self.fail(C.INDEX_OUT_OF_RANGE, f"index {i} is out of range for {len(v.items)} values", e.index.span)
            return v.items[i]
        if not isinstance(v, tuple):
            raise self.fail(C.TYPE_MISMATCH, f"cannot index {type_name(v)}", e.obj.span,
                            "index a tensor's shape: x.shape[i]")
        if isinstance(i, bool) or not isinstance(i, int):
            raise self.fail(C.TYPE_MISMATCH, f"an index must be an int, not {type_name(i)}", e.index.span)
        if not -len(v) <= i < len(v):
            raise self.fail(C.INDEX_OUT_OF_RANGE, f"index {i} is out of range for {len(v)} items", e.index.span)
        r = v[i]
        if isinstance(r, str) and isinstance(e.obj, A.Attr) and e.obj.attr == "shape":
            return self.dim(r, e)
        return r

    # ------------------------------------------------------------------ calls


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fmt_number(x) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)

