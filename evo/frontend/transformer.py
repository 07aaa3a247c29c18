"""Lark tree -> typed AST.  Syntax only: no name resolution, no evaluation."""

from __future__ import annotations

import math
import re

from lark import Token, Transformer, v_args

from evo.diagnostics import Diagnostic, EvoError, SourceMap, Span
from evo.frontend import ast as A
from evo import codes as C
from evo.frontend import names
from evo.frontend.names import unquote
from evo.frontend.parser import KEYWORDS

_UNIT_RE = re.compile(r"^([\d_.eE+-]+?)[ \t]*([A-Za-z][A-Za-z/]*)$")


class _Fail(Exception):
    def __init__(self, diag: Diagnostic):
        self.diag = diag


class ToAst(Transformer):
    def __init__(self, filename: str):
        super().__init__(visit_tokens=False)
        self.filename = filename

    # ---------------------------------------------------------------- spans
    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span.unknown(self.filename)
        return Span(self.filename, meta.line, meta.column, meta.end_line, meta.end_column,
                    meta.start_pos, meta.end_pos)

    def _tspan(self, tok: Token) -> Span:
        return Span(self.filename, tok.line, tok.column, tok.end_line, tok.end_column,
                    tok.start_pos, tok.end_pos)

    def _id(self, tok: Token) -> str:
        """The text of a name token; a quoted name is checked and unquoted."""
        v = str(tok)
        if not v.startswith("`"):
            return v
        text = unquote(v)
        bad = names.problem(text)
        if bad is not None:
            raise _Fail(Diagnostic(C.INVALID_QUOTED_NAME, bad[0], self._tspan(tok), bad[1]))
        return text

    def _name(self, tok: Token) -> str:
        v = str(tok)
        if v.startswith("`"):
            return self._id(tok)
        if v in KEYWORDS:
            raise _Fail(Diagnostic(C.KEYWORD_AS_NAME, f"'{v}' is a reserved keyword and cannot be used as a name",
                                   self._tspan(tok), f"choose another name, e.g. '{v}_'"))
        return v

    # ---------------------------------------------------------------- top level
    @v_args(meta=True)
    def start(self, meta, items):
        header = None
        rest = []
        for it in items:
            if it is None:
                continue
            if isinstance(it, A.Header):
                header = it
            else:
                rest.append(it)
        return A.Module(self._span(meta), self.filename, header, tuple(rest))

    @v_args(meta=True)
    def header(self, meta, c):
        return A.Header(self._span(meta), str(c[0]))

    @v_args(meta=True)
    def import_(self, meta, c):
        return A.Import(self._span(meta), _unquote(str(c[0])))

    @v_args(meta=True)
    def block(self, meta, c):
        name, params, body = c
        return A.Block(self._span(meta), self._name(name), params, body, None, self._tspan(name))

    @v_args(meta=True)
    def block_expr(self, meta, c):
        name, params, expr = c
        return A.Block(self._span(meta), self._name(name), params, None, expr, self._tspan(name))

    @v_args(meta=True)
    def network(self, meta, c):
        name, params, body = c
        return A.Network(self._span(meta), self._name(name), params, body, self._tspan(name))

    @v_args(meta=True)
    def network_expr(self, meta, c):
        name, params, expr = c
        return A.Network(self._span(meta), self._name(name), params, None, self._tspan(name), expr)

    def params(self, c):
        return tuple(p for p in c if p is not None)

    @v_args(meta=True)
    def param(self, meta, c):
        name, type_, default = c
        return A.Param(self._span(meta), self._name(name), type_, default)

    @v_args(meta=True)
    def type_(self, meta, c):
        name = self._id(c[0])
        dims = None
        if len(c) > 1 and c[1] is not None:
            dims = tuple(d for d in c[1:] if d is not None)
        return A.TypeRef(self._span(meta), name, dims)

    @v_args(meta=True)
    def type_list(self, meta, c):
        return A.TypeRef(self._span(meta), self._id(c[0]), None, True)

    def dim(self, c):
        tok = c[0]
        return int(str(tok).replace("_", "")) if tok.type == "INT" else self._id(tok)

    def body(self, c):
        return tuple(s for s in c if s is not None)

    @v_args(meta=True)
    def assign(self, meta, c):
        name, value = c
        return A.Assign(self._span(meta), self._name(name), value, self._tspan(name))

    @v_args(meta=True)
    def modified_assign(self, meta, c):
        mod, name, value = c
        if str(mod) != "training":
            raise _Fail(Diagnostic(C.UNEXPECTED_TOKEN, f"unexpected name '{name}' after '{mod}'", self._tspan(name),
                                   "a statement is 'name = expr'; only 'training' may come before the name "
                                   "(a training-only submodule)"))
        return A.Assign(self._span(meta), self._name(name), value, self._tspan(name), training=True)

    @v_args(meta=True)
    def numbered_assign(self, meta, c):
        name, number, value = c
        return A.Assign(self._span(meta), self._name(name), value, self._tspan(name), number=number)

    @v_args(meta=True)
    def for_stmt(self, meta, c):
        var, start, stop, body = c
        return A.For(self._span(meta), self._name(var), start, stop, body, self._tspan(var))

    @v_args(meta=True)
    def return_(self, meta, c):
        return A.Return(self._span(meta), tuple(c))

    @v_args(meta=True)
    def if_stmt(self, meta, c):
        cond, then, orelse = c
        if isinstance(orelse, A.If):
            orelse = (orelse,)
        return A.If(self._span(meta), cond, then, orelse)

    # ---------------------------------------------------------------- expressions
    @v_args(meta=True)
    def number(self, meta, c):
        tok = c[0]
        text = str(tok)
        span = self._tspan(tok)
        unit = None
        numtext = text
        if tok.type == "NUMBER":
            m = re.match(r"^([\d_]+(?:\.[\d_]+)?(?:[eE][+-]?\d+)?)[ \t]*(\S+)$", text)
            assert m, text
            numtext, unit = m.group(1), m.group(2)
        clean = numtext.replace("_", "")
        if "__" in numtext or numtext.endswith("_") or "_." in numtext or "._" in numtext:
            raise _Fail(Diagnostic(C.INVALID_NUMBER_LITERAL, f"invalid number '{numtext}'", span,
                                   "underscores go between digits, e.g. 1_000_000"))
        try:
            if re.fullmatch(r"\d+", clean):
                value: int | float = int(clean)
            else:
                value = float(clean)
        except ValueError:
            raise _Fail(Diagnostic(C.INVALID_NUMBER_LITERAL, f"invalid number '{numtext}'", span)) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise _Fail(Diagnostic(C.INVALID_NUMBER_LITERAL, f"the number '{numtext}' is too large", span,
                                   "numbers must be finite (at most about 1.8e308)"))
        return A.Num(span, value, unit, text)

    @v_args(meta=True)
    def string(self, meta, c):
        return A.Str(self._span(meta), _unquote(str(c[0])))

    @v_args(meta=True)
    def true(self, meta, c):
        return A.Bool(self._span(meta), True)

    @v_args(meta=True)
    def false(self, meta, c):
        return A.Bool(self._span(meta), False)

    @v_args(meta=True)
    def name(self, meta, c):
        return A.Name(self._span(meta), self._name(c[0]))

    @v_args(meta=True)
    def attr(self, meta, c):
        return A.Attr(self._span(meta), c[0], self._id(c[1]))

    @v_args(meta=True)
    def attr_index(self, meta, c):
        return A.Attr(self._span(meta), c[0], str(int(str(c[1]).replace("_", ""))))

    @v_args(meta=True)
    def attr_float(self, meta, c):
        # `layer4.1.0` lexes its tail as the float `1.0`: split it back into parts.
        text = str(c[1])
        if not re.fullmatch(r"\d+\.\d+", text):
            raise _Fail(Diagnostic(C.UNEXPECTED_TOKEN, f"unexpected '{text}' after '.'", self._tspan(c[1]),
                                   "a path component is a name or an integer"))
        a, b = text.split(".")
        span = self._span(meta)
        return A.Attr(span, A.Attr(span, c[0], str(int(a))), str(int(b)))

    @v_args(meta=True)
    def index(self, meta, c):
        return A.Index(self._span(meta), c[0], c[1])

    @v_args(meta=True)
    def binop(self, meta, c):
        left, op, right = c
        return A.BinOp(self._span(meta), str(op), left, right)

    @v_args(meta=True)
    def compare(self, meta, c):
        left, op, right = c
        return A.BinOp(self._span(meta), str(op), left, right)

    @v_args(meta=True)
    def or_(self, meta, c):
        return A.BinOp(self._span(meta), "or", c[0], c[1])

    @v_args(meta=True)
    def and_(self, meta, c):
        return A.BinOp(self._span(meta), "and", c[0], c[1])

    @v_args(meta=True)
    def not_(self, meta, c):
        return A.UnaryOp(self._span(meta), "not", c[0])

    @v_args(meta=True)
    def neg(self, meta, c):
        return A.UnaryOp(self._span(meta), "-", c[1])

    @v_args(meta=True)
    def pos(self, meta, c):
        return A.UnaryOp(self._span(meta), "+", c[1])

    @v_args(meta=True)
    def cond_expr(self, meta, c):
        body, cond, orelse = c
        return A.CondExpr(self._span(meta), body, cond, orelse)

    @v_args(meta=True)
    def list_(self, meta, c):
        return A.ListExpr(self._span(meta), tuple(x for x in c if x is not None))

    def args(self, c):
        pos, kws = [], []
        for a in c:
            if a is None:
                continue
            if isinstance(a, A.Keyword):
                kws.append(a)
            else:
                if kws:
                    raise _Fail(Diagnostic(C.UNEXPECTED_TOKEN, "positional argument after a keyword argument",
                                           a.span, "put positional arguments first"))
                pos.append(a)
        return tuple(pos), tuple(kws)

    @v_args(meta=True)
    def kwarg(self, meta, c):
        name, value = c
        return A.Keyword(self._span(meta), self._id(name), value, self._tspan(name))

    @v_args(meta=True)
    def call(self, meta, c):
        name, (pos, kws) = c
        return A.Call(self._span(meta), self._id(name), pos, kws, self._tspan(name))

    @v_args(meta=True)
    def seq(self, meta, c):
        inp, stages = c
        return A.Seq(self._span(meta), inp, stages)

    def stages(self, c):
        return tuple(s for s in c if s is not None)

    @v_args(meta=True)
    def stage_call(self, meta, c):
        name, (pos, kws) = c
        return A.StageCall(self._span(meta), self._id(name), pos, kws, False)

    @v_args(meta=True)
    def stage_bare(self, meta, c):
        return A.StageCall(self._span(meta), self._id(c[0]), (), (), True)

    @v_args(meta=True)
    def stage_if(self, meta, c):
        cond, then, orelse = c
        if isinstance(orelse, A.StageIf):
            orelse = (orelse,)
        return A.StageIf(self._span(meta), cond, then, orelse)

    @v_args(meta=True)
    def stage_repeat(self, meta, c):
        return A.StageRepeat(self._span(meta), c[0], c[1])

    @v_args(meta=True)
    def stage_for(self, meta, c):
        var, start, stop, stages = c
        return A.StageFor(self._span(meta), self._name(var), start, stop, stages)

    # ---------------------------------------------------------------- hardware
    @v_args(meta=True)
    def hardware(self, meta, c):
        name, base, items = c
        return A.Hardware(self._span(meta), self._name(name), self._id(base) if base is not None else None,
                          items, self._tspan(name), self._tspan(base) if base is not None else None)

    def hw_body(self, c):
        return tuple(x for x in c if x is not None)

    level_body = hw_body

    @v_args(meta=True)
    def hw_attr(self, meta, c):
        path, value = c
        return A.HwAttr(self._span(meta), path, value)

    def dotted(self, c):
        return tuple(self._id(t) for t in c)

    @v_args(meta=True)
    def hw_level(self, meta, c):
        kind, name, attrs = c
        return A.HwLevel(self._span(meta), self._id(kind), self._id(name), attrs, self._tspan(kind))

    # ---------------------------------------------------------------- cam, target, evolve
    @v_args(meta=True)
    def cam(self, meta, c):
        return A.Cam(self._span(meta), self._name(c[0]), c[1], self._tspan(c[0]))

    @v_args(meta=True)
    def target(self, meta, c):
        return A.Target(self._span(meta), self._name(c[0]), c[1], self._tspan(c[0]))

    def attr_body(self, c):
        return tuple(x for x in c if x is not None)

    @v_args(meta=True)
    def setting(self, meta, c):
        tok, value = c
        return A.Setting(self._span(meta), self._id(tok), value, self._tspan(tok))

    @v_args(meta=True)
    def setting_word(self, meta, c):
        tok, word = c
        return A.Setting(self._span(meta), self._id(tok), A.Word(self._tspan(word), str(word)), self._tspan(tok))

    def word_value(self, c):
        return c[0]

    def attr_name(self, c):
        return c[0]

    @v_args(meta=True)
    def evolve(self, meta, c):
        return A.Evolve(self._span(meta), self._name(c[0]), c[1], self._tspan(c[0]))

    def evolve_body(self, c):
        return tuple(x for x in c if x is not None)

    @v_args(meta=True)
    def gene(self, meta, c):
        path_toks, domain = c
        span = self._tspan(path_toks[0]).merge(self._tspan(path_toks[-1]))
        return A.Gene(self._span(meta), tuple(self._id(t) for t in path_toks), domain, span)

    def gene_path(self, c):
        return list(c)

    def domain_expr(self, c):
        return c[0]

    @v_args(meta=True)
    def domain_range(self, meta, c):
        start, stop, step = c
        return A.Range(self._span(meta), start, stop, step)

    @v_args(meta=True)
    def objective(self, meta, c):
        sense = str(c[0])
        toks = [t for t in c[1:] if isinstance(t, Token) and t.type == "NAME"]
        return A.Objective(self._span(meta), sense, tuple(self._id(t) for t in toks),
                           tuple(self._tspan(t) for t in toks))

    @v_args(meta=True)
    def require(self, meta, c):
        return A.Require(self._span(meta), tuple(c))


def _unquote(s: str) -> str:
    body = s[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def parse(text: str, filename: str = "<string>") -> A.Module:
    """Parse evo source text into a typed AST, or raise EvoError."""
    from evo.frontend.parser import parse_tree

    tree, comments = parse_tree(text, filename)
    try:
        module = ToAst(filename).transform(tree)
    except _Fail as f:
        raise EvoError(f.diag, SourceMap({filename: text})) from None
    except Exception as e:  # lark wraps transformer errors in VisitError
        inner = getattr(e, "orig_exc", None)
        if isinstance(inner, _Fail):
            raise EvoError(inner.diag, SourceMap({filename: text})) from None
        raise
    cs = tuple(A.Comment(Span(filename, ln, col, ln, col + len(t), pos, pos + len(t)), t)
               for ln, col, pos, t in comments)
    return A.Module(module.span, module.filename, module.header, module.items, cs)
