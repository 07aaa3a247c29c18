"""Names and scopes: undefined names, names bound twice, unknown layers and blocks,
block arity and keywords, returns, and recursion between blocks.

Static: runs on the syntax tree of every block and network, used or not.
"""

from __future__ import annotations

from evo import codes as C
from evo import ops
from evo.check.program import BUILTIN_FUNCS, Program
from evo.diagnostics import Collector, Note, did_you_mean
from evo.frontend import ast as A
from evo.frontend.names import is_plain, q, show

__all__ = ["BUILTIN_FUNCS", "check_names"]


def check_names(prog: Program, col: Collector) -> None:
    callables = ops.callable_ops() | set(prog.blocks) | BUILTIN_FUNCS
    calls: dict[str, list[A.Call | A.StageCall]] = {}
    for name, d in prog.defs.items():
        if isinstance(d, (A.Block, A.Network)):
            c = _BodyChecker(prog, col, callables)
            c.check_def(d)
            calls[name] = c.block_calls
    _check_recursion(prog, calls, col)


class _BodyChecker:
    def __init__(self, prog: Program, col: Collector, callables: set[str]):
        self.prog = prog
        self.col = col
        self.callables = callables
        self.block_calls: list = []
        self.where = ""  # "block 'B'" while checking a block's body
        self.training: set[str] = set()  # names bound by `training name = ...`
        self.in_training = False

    def check_def(self, d: A.Block | A.Network) -> None:
        self.where = f"block {q(d.name)}" if isinstance(d, A.Block) else ""
        seen: set[str] = set()
        defined: set[str] = set()
        self.params = {p.name for p in d.params}
        for p in d.params:
            if p.name in seen:
                self.col.error(C.NAME_BOUND_TWICE, f"parameter {q(p.name)} is declared twice", p.span)
            seen.add(p.name)
            if p.default is not None:
                self.expr(p.default, defined)
            defined.add(p.name)
        if isinstance(d, A.Network):
            if not d.params:
                self.col.error(C.INVALID_INPUT_DECLARATION, f"network '{d.name}' has no input tensor", d.name_span,
                               "declare it first, e.g. network Net(x: Tensor[N, 3, 224, 224])")
        if d.body is not None:
            returns = self.stmts(d.body, defined)
            if not returns:
                self.col.error(C.MISSING_RETURN, f"{'network' if isinstance(d, A.Network) else 'block'} '{d.name}' "
                               "does not return a value on every path", d.name_span,
                               "end the body with 'return <tensor>'")
        else:
            self.expr(d.expr, defined)

    def stmts(self, stmts, defined: set[str], rebind: frozenset[str] = frozenset(), loop: bool = False) -> bool:
        """Checks statements; returns whether every path returns.  In a `for` body (`loop`) the
        names in `rebind` (bound before the loop, not parameters) may be bound again."""
        returned = False
        for s in stmts:
            if returned:
                self.col.error(C.STATEMENT_AFTER_RETURN, "statement after 'return' is never reached", s.span,
                               "remove it or move the return to the end")
                break
            if isinstance(s, A.Assign):
                if s.training and self.where:
                    self.col.error(C.TRAINING_ONLY_MISUSE, f"a training-only submodule is declared in a network's body, "
                                   f"not in {self.where}", s.span,
                                   "declare it in the network that uses the block, e.g. "
                                   "'training aux = Aux(block_output)'")
                self.in_training = s.training
                self.expr(s.value, defined)
                self.in_training = False
                if s.training:
                    self.training.add(s.name)
                if s.number is not None:
                    self.expr(s.number, defined)
                    if not loop:
                        self.col.error(C.NAME_BOUND_TWICE, f"a numbered name ({show(s.name)}{{...}}) is bound in a "
                                       "'for' body only", s.name_span,
                                       "it names one module per iteration; outside a loop write the name")
                if s.name in defined and s.name in rebind and s.number is None:
                    pass  # an accumulator of the loop (`features = features + [y]`)
                elif s.name in defined:
                    self.col.error(C.NAME_BOUND_TWICE, f"{q(s.name)} is already bound; each name is bound once per path",
                                   s.name_span, f"use a new name, e.g. {q(s.name + '2')}")
                defined.add(s.name)
            elif isinstance(s, A.Return):
                for v in s.values:
                    self.expr(v, defined)
                if loop:
                    self.col.error(C.STATEMENT_AFTER_RETURN, "'return' inside a 'for' body", s.span,
                                   "collect the values in a list and return after the loop")
                returned = True
            elif isinstance(s, A.For):
                self.expr(s.start, defined)
                self.expr(s.stop, defined)
                if s.var in defined:
                    self.col.error(C.NAME_BOUND_TWICE, f"{q(s.var)} is already bound; a loop variable is a new name",
                                   s.var_span, f"use a new name, e.g. {q(s.var + '2')}")
                outer = (rebind | defined) - self.params
                self.stmts(s.body, set(defined) | {s.var}, frozenset(outer), True)
            elif isinstance(s, A.If):
                self.expr(s.cond, defined)
                d1 = set(defined)
                r1 = self.stmts(s.then, d1, rebind, loop)
                d2 = set(defined)
                r2 = self.stmts(s.orelse, d2, rebind, loop) if s.orelse is not None else False
                # Names bound on some path are visible afterwards; whether they are
                # bound on the path taken is checked when the network is instantiated.
                defined |= (d1 if not r1 else set()) | (d2 if not r2 else set())
                returned = r1 and r2
        return returned

    def expr(self, e, defined: set[str]) -> None:
        if e is None:
            return
        if isinstance(e, A.Name):
            if e.id in self.training and not self.in_training:
                self.col.error(C.TRAINING_ONLY_MISUSE, f"{q(e.id)} is training-only: the eval path cannot use it", e.span,
                               "only other 'training' statements may read it; in training the network "
                               "also returns it")
            elif e.id not in defined:
                hint = did_you_mean(e.id, defined)
                close = hint[len("did you mean '"):-len("'?")] if hint else None
                if close is not None and not is_plain(close):
                    hint = f"did you mean {q(close)}?"
                if e.id in self.prog.defs:
                    hint = f"{q(e.id)} is a {type(self.prog.defs[e.id]).__name__.lower()}; call it with ( )"
                self.col.error(C.UNDEFINED_NAME, f"{q(e.id)} is not defined", e.span, hint)
        elif isinstance(e, A.Call):
            self.callee(e.func, e.func_span, e)
            for a in e.args:
                self.expr(a, defined)
            for k in e.kwargs:
                self.expr(k.value, defined)
        elif isinstance(e, A.Seq):
            self.expr(e.input, defined)
            self.stages(e.stages, set(defined))
        elif isinstance(e, A.Attr):
            self.expr(e.obj, defined)
        else:
            for c in e.children():
                self.expr(c, defined)

    def stages(self, stages, defined: set[str]) -> None:
        for st in stages:
            if isinstance(st, A.StageCall):
                self.callee(st.func, st.span, st, stage=True)
                for a in st.args:
                    self.expr(a, defined)
                for k in st.kwargs:
                    self.expr(k.value, defined)
            elif isinstance(st, A.StageIf):
                self.expr(st.cond, defined)
                self.stages(st.then, set(defined))
                if st.orelse is not None:
                    self.stages(st.orelse, set(defined))
            elif isinstance(st, A.StageRepeat):
                self.expr(st.count, defined)
                self.stages(st.stages, set(defined))
            elif isinstance(st, A.StageFor):
                self.expr(st.start, defined)
                self.expr(st.stop, defined)
                self.stages(st.stages, set(defined) | {st.var})

    def callee(self, func: str, span, call, stage: bool = False) -> None:
        if func in self.callables and not (stage and func in BUILTIN_FUNCS):
            if func in self.prog.blocks:
                self.block_calls.append(call)
                self.block_arity(self.prog.blocks[func], call, stage)
            return
        what = "layer or block"
        if func in self.prog.defs:
            kind = type(self.prog.defs[func]).__name__.lower()
            self.col.error(C.UNKNOWN_LAYER_OR_BLOCK, f"'{func}' is a {kind}, not a layer or block", span,
                           "networks cannot be called; turn the shared part into a block" if kind == "network"
                           else None)
            return
        if func in ops.OPERATOR_ONLY:
            self.col.error(C.UNKNOWN_LAYER_OR_BLOCK, f"'{func}' is written as an operator", span,
                           f"write a {ops.lookup(func).operator} b")
            return
        self.col.error(C.UNKNOWN_LAYER_OR_BLOCK, f"unknown {what} '{func}'", span,
                       did_you_mean(func, self.callables) or "see docs/language.md for the built-in layers")

    def block_arity(self, b: A.Block, call, stage: bool) -> None:
        params = b.params
        if stage:
            several = [p for p in params[1:] if p.type is not None and p.type.name == "Tensor"]
            first = params[0].type
            if several or (first is not None and first.is_list):
                why = (f"it takes several tensors (parameter {q(several[0].name)})" if several
                       else f"its input {q(params[0].name)} is a list of tensors")
                self.col.error(C.NOT_A_TENSOR, f"block {q(b.name)} cannot be a seq stage: {why}", call.span,
                               "a seq stage takes the previous stage's output only; call the block outside the seq",
                               [Note(f"{q(b.name)} is defined here", b.name_span)])
                return
        npos = len(call.args) + (0 if stage else 0)
        # In a call the first parameter (the input tensor) is the first positional
        # argument; in a seq stage it is implicit.
        avail = params[1:] if stage else params
        if npos > len(avail):
            self.col.error(C.WRONG_NUMBER_OF_ARGUMENTS, f"block '{b.name}' takes {len(avail)} positional argument"
                           f"{'s' if len(avail) != 1 else ''}{' in a seq stage' if stage else ''}, "
                           f"got {npos}", call.span,
                           "in a seq the input tensor is passed implicitly" if stage else None)
            return
        names = [p.name for p in avail]
        given = set(names[:npos])
        for k in call.kwargs:
            if k.name not in names:
                self.col.error(C.UNKNOWN_KEYWORD_ARGUMENT, f"block '{b.name}' has no parameter '{k.name}'", k.name_span,
                               did_you_mean(k.name, names))
            elif k.name in given:
                self.col.error(C.ARGUMENT_GIVEN_TWICE, f"argument '{k.name}' is given twice", k.name_span)
            given.add(k.name)
        for p in avail:
            if p.name not in given and p.default is None:
                self.col.error(C.MISSING_ARGUMENT, f"block '{b.name}' needs argument '{p.name}'", call.span,
                               f"pass it, e.g. {b.name}(..., {p.name}=...)",
                               [Note(f"'{b.name}' is defined here", b.name_span)])


def _check_recursion(prog: Program, calls: dict, col: Collector) -> None:
    """Report each cycle of block calls once.  Iterative (a chain of thousands of
    blocks must not exhaust Python's stack)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    reported: set[frozenset] = set()

    for root in sorted(prog.blocks):
        if root in state:
            continue
        state[root] = 1
        stack = [root]
        iters = [iter(calls.get(root, []))]
        while iters:
            call = next(iters[-1], None)
            if call is None:
                state[stack.pop()] = 2
                iters.pop()
                continue
            callee = call.func
            if callee not in prog.blocks:
                continue
            if state.get(callee) == 1:
                cycle = stack[stack.index(callee):] + [callee]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    col.error(C.RECURSIVE_BLOCK, "recursive block: " + " -> ".join(cycle), call.span,
                              "blocks are expanded at compile time; use repeat or for in a seq")
            elif state.get(callee) is None:
                state[callee] = 1
                stack.append(callee)
                iters.append(iter(calls.get(callee, [])))
