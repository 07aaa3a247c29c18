"""The canonical formatter: AST (+ comments) -> text.

Rules: 4-space indentation; one blank line between top-level definitions;
`name = expr` without alignment; keyword arguments as `k=v`; a seq or a memory
level is written on one line when it has only plain stages/attributes, no
comments and fits in 100 columns, else one item per line; comments are kept,
own-line comments before the statement that follows them, end-of-line comments
after their statement.  `format_source(format_source(p)) == format_source(p)`.
"""

from __future__ import annotations

from evo.frontend import ast as A
from evo.frontend import parse
from evo.frontend.literals import quote
from evo.frontend.names import show, show_setting

WIDTH = 100
IND = "    "

_PREC = {"or": 2, "and": 3, "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5,
         "+": 6, "-": 6, "*": 7, "/": 7, "//": 7, "%": 7}
_COUNT_UNITS = ("K", "M", "G")


def prec(e) -> int:
    if isinstance(e, A.CondExpr):
        return 1
    if isinstance(e, A.BinOp):
        return _PREC[e.op]
    if isinstance(e, A.UnaryOp):
        return 4 if e.op == "not" else 8
    if isinstance(e, (A.Attr, A.Index)):
        return 9
    return 10


def number(e: A.Num) -> str:
    text = e.text
    if e.unit is None:
        return text
    numpart = text[: len(text) - len(e.unit)].strip()
    return f"{numpart}{e.unit}" if e.unit in _COUNT_UNITS else f"{numpart} {e.unit}"


def _setting_value(e) -> str:
    # a keyword standing as a setting's value (`method = cam`) stays plain there
    if isinstance(e, A.Word):
        return e.id
    return expr(e)


def expr(e, ind: str = "") -> str:
    if isinstance(e, A.Num):
        return number(e)
    if isinstance(e, A.Str):
        return quote(e.value)
    if isinstance(e, A.Bool):
        return "true" if e.value else "false"
    if isinstance(e, A.Name):
        return show(e.id)
    if isinstance(e, A.Attr):
        if isinstance(e.obj, A.Num):  # `(3).5` must not read back as the number 3.5
            return f"({expr(e.obj, ind)}).{_component(e.attr)}"
        return f"{_wrap(e.obj, 9, ind)}.{_component(e.attr)}"
    if isinstance(e, A.Index):
        return f"{_wrap(e.obj, 9, ind)}[{expr(e.index, ind)}]"
    if isinstance(e, A.Call):
        return f"{show(e.func)}({args(e.args, e.kwargs, ind)})"
    if isinstance(e, A.BinOp):
        p = _PREC[e.op]
        if p == 5:
            return f"{_wrap(e.left, 6, ind)} {e.op} {_wrap(e.right, 6, ind)}"
        return f"{_wrap(e.left, p, ind)} {e.op} {_wrap(e.right, p + 1, ind)}"
    if isinstance(e, A.UnaryOp):
        if e.op == "not":
            return f"not {_wrap(e.operand, 4, ind)}"
        return f"{e.op}{_wrap(e.operand, 8, ind)}"
    if isinstance(e, A.CondExpr):
        return f"{_wrap(e.body, 2, ind)} if {_wrap(e.cond, 2, ind)} else {_wrap(e.orelse, 1, ind)}"
    if isinstance(e, A.ListExpr):
        return "[" + ", ".join(expr(x, ind) for x in e.items) + "]"
    if isinstance(e, A.Seq):
        return seq_text(e, ind, None)
    raise TypeError(type(e).__name__)


def _wrap(e, need: int, ind: str) -> str:
    s = expr(e, ind)
    return f"({s})" if prec(e) < need else s


def args(pos, kws, ind: str) -> str:
    parts = [expr(a, ind) for a in pos] + [f"{show(k.name)}={expr(k.value, ind)}" for k in kws]
    return ", ".join(parts)


def stage_inline(st) -> str | None:
    if isinstance(st, A.StageCall):
        return f"{show(st.func)}({args(st.args, st.kwargs, '')})"
    return None


def seq_text(e: A.Seq, ind: str, printer: "_Printer | None", prefix: int = 0) -> str:
    head = f"seq({expr(e.input, ind)})"
    inline = [stage_inline(s) for s in e.stages]
    has_comments = printer is not None and printer.has_comment_in(e.span)
    if not e.stages:
        return head + " {}"
    if all(x is not None for x in inline) and not has_comments:
        one = head + " { " + "; ".join(inline) + " }"
        if len(ind) + prefix + len(one) <= WIDTH and "\n" not in one:
            return one
    lines = [head + " {"]
    sub = _Printer.sub(printer)
    sub.last_line = e.span.line
    sub.stages(e.stages, ind + IND)
    sub.close(e.span.end, ind + IND)
    lines.append(sub.text().rstrip("\n"))
    lines.append(ind + "}")
    if printer is not None:
        printer.last_line = max(printer.last_line, e.span.end_line)
    return "\n".join(lines)


class _Printer:
    def __init__(self, comments: list[A.Comment]):
        self.comments = comments  # sorted by position, shared queue
        self.out: list[str] = []
        self.last_line = 0       # last source line written; a gap > 1 keeps one blank line
        self.fresh = True        # at the start of a block: no blank line

    def gap(self, line: int) -> None:
        if not self.fresh and line > self.last_line + 1 and self.out and self.out[-1] != "\n":
            self.out.append("\n")
        self.fresh = False

    def mark(self, node) -> None:
        self.last_line = max(self.last_line, node.span.end_line)
        self.fresh = False

    def open_block(self, line: int) -> None:
        self.last_line = line
        self.fresh = True

    @classmethod
    def sub(cls, parent: "_Printer | None") -> "_Printer":
        p = cls(parent.comments if parent is not None else [])
        return p

    def text(self) -> str:
        return "".join(self.out)

    def has_comment_in(self, span) -> bool:
        return any(span.start <= c.span.start < span.end for c in self.comments)

    def leading(self, pos: int, ind: str, line: int | None = None) -> None:
        while self.comments and self.comments[0].span.start < pos:
            c = self.comments.pop(0)
            self.gap(c.span.line)
            self.out.append(f"{ind}{c.text}\n")
            self.last_line = c.span.line
        if line is not None:
            self.gap(line)

    def trailing(self, node) -> str:
        # a comment on the last line of the node, after it
        self.mark(node)
        if self.comments:
            c = self.comments[0]
            if c.span.line == node.span.end_line and c.span.start >= node.span.end:
                self.comments.pop(0)
                return f"  {c.text}"
        return ""

    def inner_leading(self, node, ind: str) -> None:
        """Comments inside a one-statement span (e.g. inside a multi-line call) move before it."""
        self.leading(node.span.start, ind, node.span.line)
        moved = [c for c in self.comments if node.span.start <= c.span.start < node.span.end
                 and c.span.line != node.span.end_line]
        for c in moved:
            self.comments.remove(c)
            self.out.append(f"{ind}{c.text}\n")

    def line(self, node, ind: str, text: str) -> None:
        self.inner_leading(node, ind)
        self.out.append(f"{ind}{text}{self.trailing(node)}\n")

    def close(self, end_pos: int, ind: str) -> None:
        self.leading(end_pos, ind)

    # ---------------------------------------------------------------- statements
    def stmts(self, stmts, ind: str, end_pos: int) -> None:
        for s in stmts:
            self.stmt(s, ind)
        self.close(end_pos, ind)

    def stmt(self, s, ind: str) -> None:
        if isinstance(s, A.Assign):
            lhs = ("training " if s.training else "") + show(s.name)
            if s.number is not None:
                lhs += f"{{{expr(s.number, ind)}}}"
            if isinstance(s.value, A.Seq):
                self.leading(s.span.start, ind, s.span.line)
                text = seq_text(s.value, ind, self, len(lhs) + 3)
                self.out.append(f"{ind}{lhs} = {text}{self.trailing(s)}\n")
            else:
                self.line(s, ind, f"{lhs} = {expr(s.value, ind)}")
        elif isinstance(s, A.Return):
            if len(s.values) == 1 and isinstance(s.values[0], A.Seq):
                self.leading(s.span.start, ind, s.span.line)
                self.out.append(f"{ind}return {seq_text(s.values[0], ind, self, 7)}{self.trailing(s)}\n")
            else:
                self.line(s, ind, "return " + ", ".join(expr(v, ind) for v in s.values))
        elif isinstance(s, A.If):
            self.leading(s.span.start, ind, s.span.line)
            self.if_(s, ind, first=True)
            self.mark(s)
        elif isinstance(s, A.For):
            self.leading(s.span.start, ind, s.span.line)
            self.out.append(f"{ind}for {show(s.var)} in {expr(s.start, ind)}..{expr(s.stop, ind)} {{\n")
            self.open_block(s.span.line)
            self.stmts(s.body, ind + IND, s.span.end)
            self.out.append(f"{ind}}}\n")
            self.mark(s)

    def if_(self, s: A.If, ind: str, first: bool) -> None:
        head = f"if {expr(s.cond, ind)} {{"
        if first:
            self.out.append(f"{ind}{head}\n")
        else:
            self.out[-1] = self.out[-1].rstrip("\n") + f" {head}\n"
        self.open_block(s.span.line)
        self.stmts(s.then, ind + IND, _then_end(s))
        self.out.append(f"{ind}}}\n")
        if s.orelse is not None:
            if len(s.orelse) == 1 and isinstance(s.orelse[0], A.If):
                self.out[-1] = f"{ind}}} else\n"
                self.if_(s.orelse[0], ind, first=False)
                return
            self.out[-1] = f"{ind}}} else {{\n"
            self.open_block(self.last_line)
            self.stmts(s.orelse, ind + IND, s.span.end)
            self.out.append(f"{ind}}}\n")

    def stages(self, stages, ind: str) -> None:
        for st in stages:
            if isinstance(st, A.StageCall):
                self.line(st, ind, stage_inline(st))
            elif isinstance(st, A.StageIf):
                self.leading(st.span.start, ind, st.span.line)
                self.stage_if(st, ind, True)
                self.mark(st)
            elif isinstance(st, (A.StageRepeat, A.StageFor)):
                self.leading(st.span.start, ind, st.span.line)
                if isinstance(st, A.StageRepeat):
                    self.out.append(f"{ind}repeat {expr(st.count, ind)} {{\n")
                else:
                    self.out.append(f"{ind}for {show(st.var)} in {expr(st.start, ind)}..{expr(st.stop, ind)} {{\n")
                self.open_block(st.span.line)
                self.stages(st.stages, ind + IND)
                self.close(st.span.end, ind + IND)
                self.out.append(f"{ind}}}\n")
                self.mark(st)

    def stage_if(self, st: A.StageIf, ind: str, first: bool) -> None:
        head = f"if {expr(st.cond, ind)} {{"
        if first:
            self.out.append(f"{ind}{head}\n")
        else:
            self.out[-1] = self.out[-1].rstrip("\n") + f" {head}\n"
        self.open_block(st.span.line)
        self.stages(st.then, ind + IND)
        self.close(_then_end(st), ind + IND)
        self.out.append(f"{ind}}}\n")
        if st.orelse is not None:
            if len(st.orelse) == 1 and isinstance(st.orelse[0], A.StageIf):
                self.out[-1] = f"{ind}}} else\n"
                self.stage_if(st.orelse[0], ind, first=False)
                return
            self.out[-1] = f"{ind}}} else {{\n"
            self.open_block(self.last_line)
            self.stages(st.orelse, ind + IND)
            self.close(st.span.end, ind + IND)
            self.out.append(f"{ind}}}\n")

    # ---------------------------------------------------------------- items
    def params(self, ps) -> str:
        out = []
        for p in ps:
            s = show(p.name)
            if p.type is not None:
                s += f": {show(p.type.name)}"
                if p.type.is_list:
                    s += "[]"
                elif p.type.dims is not None:
                    s += "[" + ", ".join(show(d) if isinstance(d, str) else str(d) for d in p.type.dims) + "]"
            if p.default is not None:
                s += f" = {expr(p.default)}"
            out.append(s)
        return ", ".join(out)

    def item(self, it) -> None:
        self.leading(it.span.start, "", it.span.line)
        self._item(it)
        self.mark(it)

    def _item(self, it) -> None:
        if isinstance(it, A.Import):
            self.line(it, "", f"import {quote(it.path)}")
        elif isinstance(it, (A.Block, A.Network)):
            kw = "block" if isinstance(it, A.Block) else "network"
            head = f"{kw} {show(it.name)}({self.params(it.params)})"
            if it.expr is not None:
                if isinstance(it.expr, A.Seq):
                    self.out.append(f"{head} = {seq_text(it.expr, '', self, len(head) + 3)}{self.trailing(it)}\n")
                else:
                    self.line(it, "", f"{head} = {expr(it.expr)}")
                return
            self.out.append(f"{head} {{{self.trailing_open(it)}\n")
            self.open_block(it.span.line)
            self.stmts(it.body, IND, it.span.end)
            self.out.append("}\n")
            self.mark(it)
        elif isinstance(it, A.Hardware):
            ext = f" extends {show(it.extends)}" if it.extends else ""
            self.out.append(f"hardware {show(it.name)}{ext} {{{self.trailing_open(it)}\n")
            self.open_block(it.span.line)
            for x in it.items:
                if isinstance(x, A.HwAttr):
                    self.line(x, IND, f"{_dotted(x.path)} = {expr(x.value)}")
                else:
                    self.level(x)
            self.close(it.span.end, IND)
            self.out.append("}\n")
        elif isinstance(it, (A.Cam, A.Target)):
            kw = "cam" if isinstance(it, A.Cam) else "target"
            self.out.append(f"{kw} {show(it.name)} {{{self.trailing_open(it)}\n")
            self.open_block(it.span.line)
            for s in it.settings:
                self.line(s, IND, f"{show_setting(s.name)} = {_setting_value(s.value)}")
            self.close(it.span.end, IND)
            self.out.append("}\n")
        elif isinstance(it, A.Evolve):
            self.out.append(f"evolve {show(it.name)} {{{self.trailing_open(it)}\n")
            self.open_block(it.span.line)
            for x in it.items:
                if isinstance(x, A.Setting):
                    self.line(x, IND, f"{show_setting(x.name)} = {_setting_value(x.value)}")
                elif isinstance(x, A.Gene):
                    d = x.domain
                    if isinstance(d, A.Range):
                        dom = f"{expr(d.start)}..{expr(d.stop)}" + (f" step {expr(d.step)}" if d.step else "")
                    else:
                        dom = expr(d)
                    self.line(x, IND, f"gene {_dotted(x.path)} in {dom}")
                elif isinstance(x, A.Objective):
                    self.line(x, IND, f"{x.sense} {', '.join(show(m) for m in x.metrics)}")
                elif isinstance(x, A.Require):
                    self.line(x, IND, "require " + ", ".join(expr(c) for c in x.constraints))
            self.close(it.span.end, IND)
            self.out.append("}\n")

    def trailing_open(self, it) -> str:
        # a comment on the item's first line, after its opening brace
        if self.comments:
            c = self.comments[0]
            if c.span.line == it.span.line and c.span.start > it.span.start:
                self.comments.pop(0)
                return f"  {c.text}"
        return ""

    def level(self, lv: A.HwLevel) -> None:
        self.leading(lv.span.start, IND, lv.span.line)
        attrs = [f"{_dotted(a.path)} = {expr(a.value)}" for a in lv.attrs]
        one = f"{IND}{show(lv.kind)} {show(lv.name)} {{ " + "; ".join(attrs) + " }"
        inner_comments = any(lv.span.start <= c.span.start < lv.span.end and c.span.line != lv.span.end_line
                             for c in self.comments)
        if attrs and len(one) <= WIDTH and not inner_comments:
            self.out.append(one + self.trailing(lv) + "\n")
            return
        self.out.append(f"{IND}{show(lv.kind)} {show(lv.name)} {{{self.trailing_open(lv)}\n")
        self.open_block(lv.span.line)
        for a in lv.attrs:
            self.line(a, IND * 2, f"{_dotted(a.path)} = {expr(a.value)}")
        self.close(lv.span.end, IND * 2)
        self.out.append(f"{IND}}}\n")
        self.mark(lv)


def _component(attr: str) -> str:
    """A path component after a dot: an index (`layer1.0`) or a name."""
    return attr if attr.isdigit() and attr.isascii() and str(int(attr)) == attr else show(attr)


def _dotted(path) -> str:
    return ".".join(show(p) for p in path)


def _then_end(s) -> int:
    """Comments up to the else branch (or the end) belong inside the then-branch."""
    if s.orelse:
        return s.orelse[0].span.start
    return s.span.end


def format_module(m: A.Module) -> str:
    p = _Printer(sorted(m.comments, key=lambda c: c.span.start))
    first = True
    if m.header is not None:
        p.leading(m.header.span.start, "")
        p.out.append(f"evo {m.header.version}{p.trailing(m.header)}\n")
        first = False
    prev = None
    for it in m.items:
        if not first:
            same_group = isinstance(it, A.Import) and isinstance(prev, A.Import)
            if not same_group:
                p.out.append("\n")
        p.item(it)
        first = False
        prev = it
    rest = p.comments
    if rest:
        if not first:
            p.out.append("\n")
        for c in rest:
            p.out.append(c.text + "\n")
        p.comments.clear()
    return p.text()


def format_source(text: str, filename: str = "<string>") -> str:
    return format_module(parse(text, filename))
