"""Lowering: AST -> IR.  Block instantiation, seq expansion and shape inference.

Instantiating a network with its scalar arguments evaluates every compile-time
expression and `if` (with the evaluator of :mod:`evo.check.evaluate`), expands
seqs (`repeat`, `for`) under a hard size limit, instantiates blocks, infers
every tensor's shape with the op's rule from the op table (:mod:`evo.ops`), and
assigns module paths by the spec's naming rules.  The result is the network's
IR graph; errors are collected with the span of the offending argument.
"""

from __future__ import annotations

import math
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from evo import codes as C
from evo import limits, ops
from evo.check.evaluate import POISON, Evaluator, TensorV, TupleV, Ctx, fmt_number, is_number, join, type_name
from evo.check.program import Program
from evo.diagnostics import Abort, Collector, Fatal, Note, Span, did_you_mean
from evo.frontend import ast as A
from evo.frontend.literals import quote
from evo.frontend.names import q
from evo.ir.node import Graph, Node, Op, Scope

# Names a layer (a submodule) cannot have in PyTorch.
RESERVED_MODULE_NAMES = frozenset({"training"})

MAX_EXPANDED = limits.value("layers")      # layers (IR nodes) per network
MAX_DEPTH = limits.value("block_depth")     # nested block instances
MAX_INT_ARG = limits.value("int_argument")  # |integer op argument|, input dimensions

# Instantiating MAX_DEPTH nested blocks, each evaluating an expression nested as
# deep as the parser allows, takes more Python frames than the default limit of
# 1000 leaves once a caller's own frames are counted: lowering runs with this
# much headroom above the caller's depth.
RECURSION_HEADROOM = 4000
_headroom_lock = threading.Lock()
_headroom_users = 0
_headroom_saved = 0


@contextmanager
def recursion_headroom(frames: int = RECURSION_HEADROOM):
    """Raise the recursion limit to at least the current depth + `frames` (restored after;
    nested and concurrent uses share one raise)."""
    global _headroom_users, _headroom_saved
    depth = 0
    f = sys._getframe()
    while f is not None:
        depth += 1
        f = f.f_back
    with _headroom_lock:
        if _headroom_users == 0:
            _headroom_saved = sys.getrecursionlimit()
        _headroom_users += 1
        if sys.getrecursionlimit() < depth + frames:
            sys.setrecursionlimit(depth + frames)
    try:
        yield
    finally:
        with _headroom_lock:
            _headroom_users -= 1
            if _headroom_users == 0:
                sys.setrecursionlimit(_headroom_saved)



@dataclass
class _Builder:
    nodes: list[Node] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)
    values: dict[str, int] = field(default_factory=dict)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    used_paths: set[str] = field(default_factory=set)
    reserved: set[str] = field(default_factory=set)  # paths of every name a body binds
    train_outputs: list[int] = field(default_factory=list)  # `training name = ...` values
    expanded: int = 0   # nodes made so far (the layer limit)
    idle: int = 0       # if/repeat/for expansions that yielded no stage

    def gen_path(self, scope: str, base: str) -> str:
        while True:
            k = self.counters.get((scope, base), 0)
            self.counters[(scope, base)] = k + 1
            p = join(scope, f"{base}_{k}")
            if p not in self.used_paths and p not in self.reserved:
                return p

    def reserve(self, scope: str, stmts) -> None:
        """Generated names skip the names the body binds, also those bound further down
        (`y = relu(conv2d(x, ...))` then `conv2d_0 = ...`: the nested conv is conv2d_1)."""
        todo = list(stmts)
        while todo:
            s = todo.pop()
            if isinstance(s, A.Assign):
                self.reserved.add(join(scope, s.name))
            elif isinstance(s, A.If):
                todo.extend(s.then)
                todo.extend(s.orelse or ())
            elif isinstance(s, A.For):
                todo.extend(s.body)


class Lowerer(Evaluator):
    """AST -> IR: instantiates a network (blocks, seqs, ops) into its graph."""

    def __init__(self, prog: Program, col: Collector):
        super().__init__(prog, col)
        self.b = _Builder()
        self.loops = 0  # `for` bodies being run

    # ------------------------------------------------------------------ entry
    def network(self, net: A.Network, args: dict[str, Any] | None = None,
                args_span: Span | None = None) -> Graph | None:
        with recursion_headroom():
            try:
                return self._network(net, args, args_span)
            except RecursionError:  # a safety net: the limits below should make this unreachable
                self.col.error(C.EXPANSION_TOO_LARGE, f"network '{net.name}' nests too deeply to be instantiated",
                               net.name_span, "flatten nested blocks or expressions")
                return None

    def _network(self, net: A.Network, args: dict[str, Any] | None,
                 args_span: Span | None) -> Graph | None:
        args = dict(args or {})
        self.b = _Builder()
        n_before = len(self.col.diagnostics)
        try:
            inp = net.params[0]
            shape = self.input_shape(net, inp)
            node = self.add(Op.INPUT, (), {}, shape, inp.span, "", None, inp.name)
            env: dict[str, Any] = {inp.name: node}
            self.b.values[inp.name] = node.nid
            for p in net.params[1:]:
                if p.name in args:
                    v = args.pop(p.name)
                    env[p.name] = self.check_param_type(p, v, args_span or p.span, f"network '{net.name}'")
                elif p.default is not None:
                    v = self.eval(p.default, Ctx("", env))
                    env[p.name] = self.check_param_type(p, v, p.default.span, f"network '{net.name}'")
                else:
                    raise self.fail(C.MISSING_ARGUMENT, f"network '{net.name}' needs a value for parameter '{p.name}'",
                                    p.span, f"give it a default, e.g. {p.name}: int = 10")
            for extra in args:
                raise self.fail(C.UNKNOWN_KEYWORD_ARGUMENT, f"network '{net.name}' has no parameter '{extra}'",
                                args_span or net.name_span,
                                did_you_mean(extra, [p.name for p in net.params[1:]]))
            ctx = Ctx("", env, 0, f"network '{net.name}'")
            root_seq = isinstance(net.expr, A.Seq)
            if net.expr is None:
                self.b.reserve("", net.body)
                outs = self.exec_body(net.body, ctx)
            elif root_seq:  # `network N(x) = seq(x) {...}`: the seq's stages are the network's children
                v = self.e_Seq(net.expr, ctx, None, own_path="", label=net.name)
                outs = [(v, net.expr)]
            else:
                outs = [(self.eval(net.expr, ctx), net.expr)]
            if outs is None:
                raise self.fail(C.MISSING_RETURN, f"network '{net.name}' does not return a value", net.name_span)
        except Abort:
            return None
        if len(self.col.diagnostics) > n_before:
            return None
        out_ids = []
        for v, e in _flatten_outputs(outs):
            if not isinstance(v, TensorV):
                self.col.error(C.NOT_A_TENSOR, f"a network returns tensors, not {type_name(v)}", e.span)
                return None
            out_ids.append(v.nid)
        if net.expr is not None and isinstance(net.expr, A.Seq):
            # the root is the seq itself (an nn.Sequential network)
            self.b.scopes = [Scope("", "seq", net.name, None, node.nid, tuple(out_ids), net.span) if sc.path == ""
                             else sc for sc in self.b.scopes]
            self.b.scopes.sort(key=lambda sc: sc.path != "")
        else:
            self.b.scopes.insert(0, Scope("", "network", net.name, None, node.nid, tuple(out_ids), net.span))
        if not self.within_budget(net):
            return None
        pargs = tuple((p.name, env[p.name]) for p in net.params[1:])
        return Graph(net.name, tuple(self.b.nodes), (node.nid,), tuple(out_ids), tuple(self.b.scopes),
                     tuple(sorted(self.b.values.items())), pargs, net.span, tuple(self.b.train_outputs))

    def input_shape(self, net: A.Network, p: A.Param) -> tuple:
        t = p.type
        if t is None or t.name != "Tensor" or t.dims is None:
            raise self.fail(C.INVALID_INPUT_DECLARATION, f"the first parameter of network '{net.name}' must be its input tensor "
                            "with a declared shape", p.span,
                            f"write e.g. {p.name}: Tensor[N, 3, 224, 224]")
        for i, d in enumerate(t.dims):
            if isinstance(d, str) and i > 0:
                raise self.fail(C.INVALID_INPUT_DECLARATION, f"dimension {i} of the input is the symbol '{d}'; only the first "
                                "(batch) dimension may be symbolic", t.span,
                                "give channels and spatial sizes as integers")
            if isinstance(d, int) and d <= 0:
                raise self.fail(C.INVALID_INPUT_DECLARATION, f"dimension {i} of the input must be positive, got {d}", t.span)
            if isinstance(d, int) and d > MAX_INT_ARG:
                raise self.fail(C.VALUE_OUT_OF_RANGE, limits.exceeded("int_argument", d, f"dimension {i} of the input"),
                                t.span, limits.LIMITS["int_argument"].how())
        return tuple(t.dims)

    def within_budget(self, net: A.Network) -> bool:
        """The parameter count and the activation memory (one sample, float32) of the
        network are within their limits: building or running it will not exhaust memory."""
        nodes = self.b.nodes
        params = act = 0
        for n in nodes:
            elems = 1
            for x in n.shape[1:] if n.shape and not isinstance(n.shape[0], int) else n.shape:
                elems *= x if isinstance(x, int) else 1
            act += 4 * elems
            if n.op != Op.INPUT:
                try:
                    params += ops.param_count(ops.of_node(n), n.attr_dict, [nodes[i].shape for i in n.inputs])
                except Exception:  # noqa: BLE001 - a custom op's weight rule: not counted
                    pass
        for name, got in (("params", params), ("activation_bytes", act)):
            if got > limits.value(name):
                self.col.error(C.EXPANSION_TOO_LARGE, limits.exceeded(name, got, f"network '{net.name}' has too many "
                                                        f"{'parameters' if name == 'params' else 'activation bytes'}"),
                               net.name_span, limits.LIMITS[name].how())
                return False
        return True

    # ------------------------------------------------------------------ nodes
    def add(self, op: Op, inputs: tuple, attrs: dict, shape: tuple, span: Span, scope: str,
            path: str | None, name: str) -> TensorV:
        self.tick(span)
        nid = len(self.b.nodes)
        if path is not None:
            self.b.used_paths.add(path)
        self.b.nodes.append(Node(nid, op, tuple(inputs), tuple(sorted(attrs.items())), tuple(shape), span,
                                 scope, path, name))
        return TensorV(nid, tuple(shape))

    def tick(self, span: Span, n: int = 1) -> None:
        self.b.expanded += n
        if self.b.expanded > MAX_EXPANDED:
            raise self.limit(span)

    def limit(self, span: Span) -> Fatal:
        """The layer limit: reported once, it ends the network (every later statement
        would exceed it again)."""
        self.col.error(C.EXPANSION_TOO_LARGE, f"the network expands to more than {MAX_EXPANDED:,} layers", span,
                       "reduce the repeat/for counts, or " + limits.LIMITS["layers"].how())
        return Fatal()

    # ------------------------------------------------------------------ statements
    def exec_body(self, stmts, ctx: Ctx):
        for s in stmts:
            if isinstance(s, A.Assign):
                try:
                    bind = s.name if s.number is None else self.numbered(s, ctx)
                    v = self.eval(s.value, ctx, bind=bind)
                except Fatal:
                    raise
                except Abort:
                    v, bind = POISON, s.name
                ctx.env[s.name] = v
                if isinstance(v, TensorV):
                    self.b.values.setdefault(join(ctx.scope, bind), v.nid)
                    if s.training:
                        self.b.train_outputs.append(v.nid)
                elif s.training and v is not POISON:
                    self.col.error(C.NOT_A_TENSOR, f"a training-only statement binds a tensor, not {type_name(v)}",
                                   s.value.span)
            elif isinstance(s, A.Return):
                vals = []
                for e in s.values:
                    v = self.eval(e, ctx)
                    if v is POISON:
                        raise Abort()
                    vals.append((v, e))
                return vals
            elif isinstance(s, A.For):
                self.exec_for(s, ctx)
            elif isinstance(s, A.If):
                c = self.eval_bool(s.cond, ctx)
                branch = s.then if c else s.orelse
                if branch is not None:
                    r = self.exec_body(branch, ctx)
                    if r is not None:
                        return r
        return None

    def exec_for(self, s: A.For, ctx: Ctx) -> None:
        """`for i in a..b { ... }`: the body once per i; names bound before the loop keep the value
        the last iteration gave them (an accumulator), the others are the iteration's own."""
        a = self.eval_int(s.start, ctx, "a range start")
        b = self.eval_int(s.stop, ctx, "a range end")
        if b - a > MAX_EXPANDED:
            raise self.fail(C.EXPANSION_TOO_LARGE, f"for {s.var} in {a}..{b} expands past the limit of "
                            f"{MAX_EXPANDED:,} layers", s.span, "reduce the range")
        outer = set(ctx.env)
        self.loops += 1
        try:
            for i in range(a, b):
                self.tick(s.span, 0)
                self.b.idle += 1
                if self.b.idle > MAX_EXPANDED:
                    raise self.fail(C.EXPANSION_TOO_LARGE, f"'for' loops run more than {MAX_EXPANDED:,} times",
                                    s.span, "reduce the ranges")
                env = dict(ctx.env)
                env[s.var] = i
                self.exec_body(s.body, Ctx(ctx.scope, env, ctx.depth, ctx.what))
                for k in outer:
                    ctx.env[k] = env[k]
        finally:
            self.loops -= 1

    def numbered(self, s: A.Assign, ctx: Ctx) -> str:
        """The module name of `name{number} = ...`: the name followed by the number's value."""
        k = self.eval(s.number, ctx)
        if k is POISON:
            raise Abort()
        if isinstance(k, bool) or not isinstance(k, (int, str)):
            raise self.fail(C.TYPE_MISMATCH, f"the number of a numbered name must be an int or a string, not "
                            f"{type_name(k)}", s.number.span)
        return f"{s.name}{k}"

    # ------------------------------------------------------------------ expressions
    def tensor_binop(self, op: str, a, b, e: A.BinOp, ctx, bind):
        """`a + b`, `a * b` on tensors: the ops whose entry names the operator (add, mul)."""
        d = ops.by_operator(op)
        if d is None:
            have = " and ".join(x.operator for x in ops.REGISTRY.values() if x.operator)
            raise self.fail(C.TYPE_MISMATCH, f"'{op}' is not defined on tensors", e.span,
                            f"tensors support {have} (elementwise)")
        for v, sub in ((a, e.left), (b, e.right)):
            if not isinstance(v, TensorV):
                raise self.fail(C.TYPE_MISMATCH, f"cannot {d.operator_verb or 'apply ' + op + ' to'} a tensor and "
                                f"{type_name(v)}", sub.span, "both operands must be tensors")
        try:
            shape = d.shape([a.shape, b.shape], {})
        except ops.OpError as err:
            raise self.fail(err.code, err.message, e.span, err.hint) from None
        return self.add(d.op, (a.nid, b.nid), {}, shape, e.span, ctx.scope, None, bind or "")

    def e_Call(self, e: A.Call, ctx: Ctx, bind):
        if e.func in ("min", "max"):
            return self.builtin_call(e, ctx)
        pos = [(self.eval(a, ctx), a.span) for a in e.args]
        kw = {}
        for k in e.kwargs:
            if k.name in kw:
                raise self.fail(C.ARGUMENT_GIVEN_TWICE, f"argument '{k.name}' is given twice", k.name_span)
            kw[k.name] = (self.eval(k.value, ctx), k.value.span, k.name_span)
        if any(v is POISON for v, _ in pos) or any(v[0] is POISON for v in kw.values()):
            return POISON
        block = self.prog.blocks.get(e.func)
        if block is not None:
            if not pos:
                raise self.fail(C.MISSING_ARGUMENT, f"block '{e.func}' needs its input tensor as first argument", e.span)
            x, xspan = pos[0]
            return self.call_block(block, x, xspan, pos[1:], kw, ctx, bind, e.span, None,
                                   args=e.args, kwargs={k.name: k.value for k in e.kwargs})
        d = ops.language_op(e.func)
        if d is None:  # reported by the names check
            raise Abort()
        if d.n_inputs == 0:  # a learnable tensor: no input
            inputs, rest = [], pos
            for v, sp in rest:
                if isinstance(v, TensorV):
                    raise self.fail(C.NOT_A_TENSOR, f"{d.name} takes no tensor input", sp)
        elif d.n_inputs is None:
            if pos and isinstance(pos[0][0], tuple):  # `concat(xs)`, `concat([a, b])`: a list of tensors
                inputs = self.tensor_list(pos[0][0], pos[0][1], e.args[0], f"the first argument of {d.name}")
                rest = pos[1:]
                for v, sp in rest:
                    if isinstance(v, TensorV):
                        raise self.fail(C.NOT_A_TENSOR, f"{d.name} takes its tensors either as a list or one by one, "
                                        "not both", sp, "put every tensor in the list")
            else:
                lead, pos = pos[:d.leading], pos[d.leading:]  # einsum("bij,bjk->bik", a, b): the equation first
                for v, sp in lead:
                    if isinstance(v, TensorV):
                        raise self.fail(C.NOT_A_TENSOR, f"{d.name} takes its {d.params[0].name} before the tensors, "
                                        "not a tensor", sp, f"write {d.doc_call or d.name + '(...)'}")
                k = 0
                while k < len(pos) and isinstance(pos[k][0], TensorV):
                    k += 1
                inputs, rest = pos[:k], lead + pos[k:]
                if not inputs and d.leading:
                    raise self.fail(C.NOT_A_TENSOR, f"{d.name} needs tensors after its {d.params[0].name}",
                                    pos[0][1] if pos else e.span, f"write {d.doc_call}")
                if not inputs:
                    raise self.fail(C.NOT_A_TENSOR, f"{d.name} needs tensors as its first arguments, or a list of "
                                    "tensors", pos[0][1] if pos else e.span, f"write {d.name}(a, b) or {d.name}([a, b])")
        else:
            if not pos:
                raise self.fail(C.MISSING_ARGUMENT, f"{d.name} needs its input tensor as first argument", e.span,
                                f"write {d.name}(x, ...)")
            n_in = d.n_inputs
            if n_in > 1 and (len(pos) < n_in or not all(isinstance(v, TensorV) for v, _ in pos[:n_in])):
                raise self.fail(C.MISSING_ARGUMENT, f"{d.name} needs {n_in} tensors as its first arguments", e.span,
                                f"write {d.name}({', '.join(f'x{i + 1}' for i in range(n_in))}, ...)")
            inputs, rest = pos[:n_in], pos[n_in:]
        for v, sp in inputs:
            if not isinstance(v, TensorV):
                raise self.fail(C.NOT_A_TENSOR, f"the first argument of {d.name} must be a tensor, not {type_name(v)}",
                                sp)
        return self.apply_op(d, inputs, rest, kw, ctx, bind, e.span, e.func_span, None)

    def tensor_list(self, v, span: Span, e, what: str) -> list:
        """The (tensor, span) items of a list of tensors given as `what` (each item's own span when
        the list is written out); an empty list or an item that is no tensor is an error there."""
        if not isinstance(v, tuple):
            raise self.fail(C.NOT_A_TENSOR, f"{what} must be a list of tensors, not {type_name(v)}", span,
                            "write the tensors as a list: [a, b]")
        if not v:
            raise self.fail(C.MISSING_ARGUMENT, f"{what} is an empty list; it needs at least one tensor", span)
        spans = ([x.span for x in e.items] if isinstance(e, A.ListExpr) and len(e.items) == len(v)
                 else [span] * len(v))
        for i, (x, sp) in enumerate(zip(v, spans)):
            if x is POISON:
                raise Abort()
            if not isinstance(x, TensorV):
                raise self.fail(C.NOT_A_TENSOR, f"item {i} of {what} is {type_name(x)}; the list must hold tensors only",
                                sp)
        return list(zip(v, spans))

    def apply_op(self, d: ops.OpDef, inputs, pos, kw, ctx: Ctx, bind, span: Span, fspan: Span,
                 stage_path: str | None):
        given: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        params = list(d.params)
        if len(pos) > len(params):
            extra = pos[len(params)][1]
            if not params:
                raise self.fail(C.WRONG_NUMBER_OF_ARGUMENTS, f"{d.name} takes no arguments besides its input", extra)
            raise self.fail(C.WRONG_NUMBER_OF_ARGUMENTS, f"{d.name} takes at most {len(params)} argument"
                            f"{'s' if len(params) != 1 else ''} after its input "
                            f"({', '.join(p.name for p in params)}), got {len(pos)}", extra)
        for p, (v, sp) in zip(params, pos):
            given[p.name], spans[p.name] = v, sp
        names = [p.name for p in params]
        for k, (v, sp, nsp) in kw.items():
            if k not in names:
                raise self.fail(C.UNKNOWN_KEYWORD_ARGUMENT, f"{d.name} has no argument '{k}'", nsp,
                                did_you_mean(k, names) or (f"its arguments are {', '.join(names)}" if names
                                                           else f"{d.name} takes no arguments"))
            if k in given:
                raise self.fail(C.ARGUMENT_GIVEN_TWICE, f"argument '{k}' of {d.name} is given twice", nsp)
            given[k], spans[k] = v, sp
        for p in params:
            if p.name not in given:
                if p.default is ops.REQUIRED:
                    raise self.fail(C.MISSING_ARGUMENT, f"{d.name} needs argument '{p.name}'" +
                                    (f" ({p.doc})" if p.doc else ""), span,
                                    f"e.g. {d.name}({'x, ' if d.n_inputs == 1 else ''}{p.name}=...)")
                continue
            given[p.name] = self.check_arg(d, p, given[p.name], spans[p.name])
        attrs = ops.normalize_args(d, given)
        shapes = [v.shape for v, _ in inputs]
        try:
            shape = d.shape(shapes, attrs)
        except ops.OpError as err:
            if err.arg is None:
                sp = inputs[0][1] if inputs else span
            elif err.arg.startswith("#"):
                sp = inputs[int(err.arg[1:])][1]
            else:
                sp = spans.get(err.arg, span)
            raise self.fail(err.code, err.message, sp, err.hint) from None
        if d.pieces is not None:  # several outputs: one op of the input each (a narrow)
            outs = []
            for piece, pa in d.pieces(attrs, shapes[0]):
                pd = ops.lookup(piece)
                outs.append(self.add(pd.op, (inputs[0][0].nid,), pa, pd.shape(shapes, pa), span, ctx.scope, None, ""))
            return TupleV(tuple(outs))
        if stage_path is not None:
            path = stage_path
        elif d.parametric:
            path = self.module_path(ctx.scope, bind, span) if bind else self.b.gen_path(ctx.scope, d.name)
        else:
            path = None
        return self.add(d.op, tuple(v.nid for v, _ in inputs), attrs, shape, span, ctx.scope, path, bind or "")

    def module_path(self, scope: str, name: str, span: Span) -> str:
        """The path of a module bound to `name`.  PyTorch modules set `self.training`, so
        no submodule can be called that."""
        if name in RESERVED_MODULE_NAMES:
            raise self.fail(C.KEYWORD_AS_NAME, f"{q(name)} cannot name a layer: PyTorch modules reserve it", span,
                            f"choose another name, e.g. {q(name + '_')}")
        if join(scope, name) in self.b.used_paths:
            if self.loops:
                raise self.fail(C.NAME_BOUND_TWICE, f"{q(name)} names a module in every iteration of the loop", span,
                                f"number it: {name}{{i}} = ... (one module per iteration)")
            raise self.fail(C.NAME_BOUND_TWICE, f"a module named {q(name)} already exists here (a numbered name of "
                            "a loop, or a generated name, took it)", span, "choose another name")
        return join(scope, name)

    def check_arg(self, d: ops.OpDef, p: ops.ParamSpec, v: Any, span: Span) -> Any:
        def bad(what):
            return self.fail(C.TYPE_MISMATCH, f"argument '{p.name}' of {d.name} must be {what}, not {type_name(v)}", span)

        def rng(x):
            if isinstance(x, float) and not math.isfinite(x):
                raise self.fail(C.VALUE_OUT_OF_RANGE, f"argument '{p.name}' of {d.name} must be a finite number, got {x}", span)
            if isinstance(x, int) and abs(x) > MAX_INT_ARG:
                raise self.fail(C.VALUE_OUT_OF_RANGE, limits.exceeded("int_argument", abs(x), f"argument '{p.name}' of {d.name}"),
                                span, limits.LIMITS["int_argument"].how())
            if p.min is not None and x < p.min:
                raise self.fail(C.VALUE_OUT_OF_RANGE, f"argument '{p.name}' of {d.name} must be at least "
                                f"{fmt_number(p.min)}, got {fmt_number(x)}", span)
            if p.max is not None and x > p.max:
                raise self.fail(C.VALUE_OUT_OF_RANGE, f"argument '{p.name}' of {d.name} must be at most "
                                f"{fmt_number(p.max)}, got {fmt_number(x)}", span)
            return x

        if p.kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad("an int")
            return rng(v)
        if p.kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise bad("a number")
            return rng(float(v))
        if p.kind == "bool":
            if not isinstance(v, bool):
                raise bad("true or false")
            return v
        if p.kind == "ints":
            items = v if isinstance(v, tuple) else (v,)
            if not items or any(isinstance(x, bool) or not isinstance(x, int) for x in items):
                raise bad("an int or a list of ints")
            return tuple(rng(x) for x in items)
        if p.kind == "str":
            if not isinstance(v, str):
                raise bad("a string")
            if p.choices and v not in p.choices:
                raise self.fail(C.VALUE_OUT_OF_RANGE, f"argument '{p.name}' of {d.name} must be "
                                f"{' or '.join(quote(c) for c in p.choices)}, got {quote(v)}", span)
            return v
        if p.kind == "int2":
            if isinstance(v, tuple):
                if len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
                    raise bad("an int or a list of two ints")
                return (rng(v[0]), rng(v[1]))
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad("an int or a list of two ints")
            return rng(v)
        raise AssertionError(p.kind)

    def check_param_type(self, p: A.Param, v: Any, span: Span, owner: str) -> Any:
        if v is POISON or p.type is None:
            return v
        t = p.type.name
        if p.type.is_list and t != "Tensor":
            raise self.fail(C.TYPE_MISMATCH, f"'{t}[]' is not a type; only a list of tensors is declared with [] "
                            f"('{p.name}: Tensor[]')", p.type.span, "leave a list of compile-time values untyped")
        ok = {"int": lambda: isinstance(v, int) and not isinstance(v, bool),
              "float": lambda: is_number(v),
              "bool": lambda: isinstance(v, bool),
              "Tensor": lambda: isinstance(v, TensorV)}.get(t)
        if ok is None:
            raise self.fail(C.TYPE_MISMATCH, f"unknown type '{t}' for parameter '{p.name}'", p.type.span,
                            did_you_mean(t, ["int", "float", "bool", "Tensor"]))
        if not ok():
            raise self.fail(C.TYPE_MISMATCH, f"parameter '{p.name}' of {owner} is {t}{'[]' if p.type.is_list else ''}, "
                            f"got {type_name(v)}", span)
        if t == "float":
            return float(v)
        return v

    # ------------------------------------------------------------------ blocks
    def call_block(self, b: A.Block, x, xspan: Span, pos, kw, ctx: Ctx, bind, span: Span,
                   stage_path: str | None, args=(), kwargs=None):
        params = b.params
        if stage_path is not None:
            several = [p for p in params[1:] if tensor_kind(p)]
            if tensor_kind(params[0]) == "list" or several:
                why = (f"its input '{params[0].name}' is a list of tensors" if not several
                       else f"it takes several tensors (parameter '{several[0].name}')")
                raise self.fail(C.NOT_A_TENSOR, f"block '{b.name}' cannot be a seq stage: {why}", span,
                                "a seq stage takes the previous stage's output only; call the block outside the seq")
        exprs = {p.name: a for p, a in zip(params, args)}
        exprs.update(kwargs or {})
        x = self.block_tensor_arg(b, params[0], x, xspan, exprs.get(params[0].name), first=True, declared=False)
        if ctx.depth >= MAX_DEPTH:
            raise self.fail(C.EXPANSION_TOO_LARGE, f"blocks are nested more than {MAX_DEPTH} deep", span)
        if len(pos) > len(params) - 1:
            raise self.fail(C.WRONG_NUMBER_OF_ARGUMENTS, f"block '{b.name}' takes {len(params) - 1} argument"
                            f"{'s' if len(params) != 2 else ''} after its input, got {len(pos)}", span)
        if params[0].type is not None and params[0].type.name != "Tensor":
            raise self.fail(C.TYPE_MISMATCH, f"the first parameter of block '{b.name}' is its input tensor",
                            params[0].span)
        if isinstance(x, TensorV):
            self.check_declared_input(b, params[0], x, xspan)
        env: dict[str, Any] = {}
        sig: list[tuple[str, Any]] = []
        multi = tensor_kind(params[0]) == "list" or any(tensor_kind(p) for p in params[1:])
        env[params[0].name] = x
        sig.append((params[0].name, tuple(t.nid for t in x) if isinstance(x, tuple) else x.nid))
        given = {p.name: (v, sp) for p, (v, sp) in zip(params[1:], pos)}
        for k, (v, sp, nsp) in kw.items():
            if k not in [p.name for p in params[1:]]:
                raise self.fail(C.UNKNOWN_KEYWORD_ARGUMENT, f"block '{b.name}' has no parameter '{k}'", nsp,
                                did_you_mean(k, [p.name for p in params[1:]]))
            if k in given:
                raise self.fail(C.ARGUMENT_GIVEN_TWICE, f"argument '{k}' is given twice", nsp)
            given[k] = (v, sp)
        for p in params[1:]:
            if p.name in given:
                v, sp = given[p.name]
            elif p.default is not None:
                v, sp = self.eval(p.default, Ctx(ctx.scope, dict(env), ctx.depth)), p.default.span
                exprs[p.name] = p.default
            else:
                raise self.fail(C.MISSING_ARGUMENT, f"block '{b.name}' needs argument '{p.name}'", span)
            if v is POISON:
                raise Abort()
            if tensor_kind(p):
                v = self.block_tensor_arg(b, p, v, sp, exprs.get(p.name), first=False)
                sig.append((p.name, tuple(t.nid for t in v) if isinstance(v, tuple) else v.nid))
                env[p.name] = v
                continue
            if isinstance(v, TensorV):
                raise self.fail(C.NOT_A_TENSOR, f"parameter '{p.name}' of block '{b.name}' is a compile-time value, "
                                f"not a tensor", sp, f"declare it '{p.name}: Tensor' to pass a tensor")
            if isinstance(v, tuple) and any(isinstance(t, TensorV) for t in v):
                raise self.fail(C.NOT_A_TENSOR, f"parameter '{p.name}' of block '{b.name}' is a compile-time value, "
                                f"not a list of tensors", sp, f"declare it '{p.name}: Tensor[]' to pass a list of tensors")
            env[p.name] = self.check_param_type(p, v, sp, f"block '{b.name}'")
        first_in = sig[0][1][0] if isinstance(sig[0][1], tuple) else sig[0][1]
        if stage_path is not None:
            path = stage_path
        elif bind:
            path = self.module_path(ctx.scope, bind, span)
        else:
            path = self.b.gen_path(ctx.scope, b.name)
        self.b.used_paths.add(path)
        inner = Ctx(path, env, ctx.depth + 1, f"block '{b.name}'")
        note = [Note(f"in block '{b.name}' instantiated here", span)]
        n0 = len(self.col.diagnostics)
        try:
            if b.expr is not None:
                if isinstance(b.expr, A.Seq):
                    out = self.e_Seq(b.expr, inner, None, own_path=path, label=b.name, parent=ctx.scope)
                    self.b.values[path] = out.nid
                    return out
                v = self.eval(b.expr, inner)
                outs = [(v, b.expr)]
            else:
                self.b.reserve(path, b.body)
                outs = self.exec_body(b.body, inner)
                if outs is None:
                    raise self.fail(C.MISSING_RETURN, f"block '{b.name}' does not return a value on this path", span)
        except Abort:
            self._add_note(n0, note)
            raise
        outs = _flatten_outputs(outs)
        for v, e in outs:
            if v is POISON:
                raise Abort()
            if not isinstance(v, TensorV):
                raise self.fail(C.NOT_A_TENSOR, f"block '{b.name}' must return tensors, not {type_name(v)}", e.span)
        self.b.scopes.append(Scope(path, "block", b.name, ctx.scope, first_in, tuple(v.nid for v, _ in outs), span,
                                   tuple(sig) if multi else ()))
        if len(outs) == 1:
            self.b.values[path] = outs[0][0].nid
            return outs[0][0]
        return TupleV(tuple(v for v, _ in outs))

    def block_tensor_arg(self, b: A.Block, p: A.Param, v, span: Span, e, first: bool, declared: bool = True):
        """The value of a tensor parameter (`x`, `skip: Tensor`, `xs: Tensor[]`) of block `b`,
        checked: a tensor (of the declared shape) or a non-empty list of tensors."""
        what = "the first argument" if first else f"argument '{p.name}'"
        if tensor_kind(p) == "list":
            if isinstance(v, TensorV):
                raise self.fail(C.NOT_A_TENSOR, f"{what} of block '{b.name}' must be a list of tensors, not "
                                f"{type_name(v)}", span, "write it as a list: [x]")
            return tuple(t for t, _ in self.tensor_list(v, span, e, f"{what} of block '{b.name}'"))
        if not isinstance(v, TensorV):
            hint = None
            if isinstance(v, tuple) and v and all(isinstance(t, TensorV) for t in v):
                hint = f"declare the parameter '{p.name}: Tensor[]' to take a list of tensors"
            raise self.fail(C.NOT_A_TENSOR, f"{what} of block '{b.name}' must be a tensor, not {type_name(v)}",
                            span, hint)
        if declared:
            self.check_declared_input(b, p, v, span)
        return v

    def check_declared_input(self, b: A.Block, p: A.Param, x: TensorV, xspan: Span) -> None:
        """`block B(x: Tensor[N, 64, H, W])`: the rank and the integer dimensions are checked
        at each use (a symbol matches any size)."""
        t = p.type
        if t is None or t.dims is None:
            return
        want = ops.fmt_shape(t.dims)
        first = p is b.params[0]
        which = "input" if first else f"argument '{p.name}'"
        note = [Note(f"'{b.name}' declares its {which} as Tensor{want}", t.span)]
        if len(t.dims) != len(x.shape):
            raise self.fail(C.WRONG_TENSOR_RANK, f"block '{b.name}' takes a {len(t.dims)}-D {which}, got a "
                            f"{len(x.shape)}-D tensor of shape {ops.fmt_shape(x.shape)}", xspan, notes=note)
        for i, (w, d) in enumerate(zip(t.dims, x.shape)):
            if isinstance(w, int) and w != d:
                raise self.fail(C.SHAPE_MISMATCH, f"dimension {i} of {'the ' if first else ''}{which} of block "
                                f"'{b.name}' must be {w}, "
                                f"got {d} (shape {ops.fmt_shape(x.shape)})", xspan, notes=note)

    def _add_note(self, n0: int, notes) -> None:
        # Errors inside a block instance say which instance (the call site).
        from dataclasses import replace
        for i in range(n0, len(self.col.diagnostics)):
            d = self.col.diagnostics[i]
            if len(d.notes) < 3:
                self.col.diagnostics[i] = replace(d, notes=d.notes + tuple(notes))

    # ------------------------------------------------------------------ seqs
    def e_Seq(self, e: A.Seq, ctx: Ctx, bind, own_path: str | None = None, label: str = "seq",
              parent: str | None = None):
        x = self.eval(e.input, ctx)
        if x is POISON:
            return POISON
        if not isinstance(x, TensorV):
            raise self.fail(C.NOT_A_TENSOR, f"seq needs a tensor input, not {type_name(x)}", e.input.span)
        if own_path is not None:
            path = own_path
        elif bind:
            path = self.module_path(ctx.scope, bind, e.span)
        else:
            path = self.b.gen_path(ctx.scope, "seq")
        self.b.used_paths.add(path)
        expanded: list[tuple[A.StageCall, dict]] = []
        self.expand(e.stages, dict(ctx.env), ctx, expanded)
        cur = x
        # Stages are at the same block depth as the seq (a block instance counts one level).
        sctx = Ctx(path, ctx.env, ctx.depth, ctx.what)
        for i, (st, env) in enumerate(expanded):
            stage_path = join(path, str(i))
            ectx = Ctx(ctx.scope, env, ctx.depth)
            pos = [(self.eval(a, ectx), a.span) for a in st.args]
            kw = {}
            for k in st.kwargs:
                if k.name in kw:
                    raise self.fail(C.ARGUMENT_GIVEN_TWICE, f"argument '{k.name}' is given twice", k.name_span)
                kw[k.name] = (self.eval(k.value, ectx), k.value.span, k.name_span)
            for v, sp in pos + [(v[0], v[1]) for v in kw.values()]:
                if isinstance(v, TensorV):
                    raise self.fail(C.NOT_A_TENSOR, "a seq stage takes no tensor arguments: the previous stage's output "
                                    "is its input", sp, "use a block, or compute this outside the seq")
                if v is POISON:
                    raise Abort()
            block = self.prog.blocks.get(st.func)
            if block is not None:
                cur = self.call_block(block, cur, st.span, pos, kw, sctx, None, st.span, stage_path)
                if isinstance(cur, TupleV):
                    raise self.fail(C.NOT_A_TENSOR, f"block '{st.func}' returns several values; a seq stage must "
                                    "return one tensor", st.span)
            else:
                d = ops.language_op(st.func)
                if d is None:
                    raise Abort()
                if d.module is None or d.n_inputs != 1:
                    why = "it takes several tensors" if d.n_inputs != 1 else "it has no PyTorch module form"
                    raise self.fail(C.NOT_A_TENSOR, f"{d.name} cannot be a seq stage ({why})",
                                    st.span, "apply it outside the seq")
                cur = self.apply_op(d, [(cur, st.span)], pos, kw, sctx, None, st.span, st.span, stage_path)
            self.b.values[stage_path] = cur.nid
        self.b.scopes.append(Scope(path, "seq", label, parent if parent is not None else ctx.scope,
                                   x.nid, (cur.nid,), e.span))
        self.b.values[path] = cur.nid
        return cur

    def expand(self, stages, env: dict, ctx: Ctx, out: list) -> None:
        for st in stages:
            ectx = Ctx(ctx.scope, env, ctx.depth)
            if isinstance(st, A.StageCall):
                # Every stage makes at least one layer (unless it is a block that returns
                # its input unchanged): stop before a huge list of stages is built.
                if self.b.expanded + len(out) + 1 > MAX_EXPANDED:
                    raise self.limit(st.span)
                out.append((st, env))
            elif isinstance(st, A.StageIf):
                branch = st.then if self.eval_bool(st.cond, ectx) else st.orelse
                n0 = len(out)
                if branch:
                    self.expand(branch, env, ctx, out)
                if len(out) == n0:
                    self.idle(st, 1)
            elif isinstance(st, A.StageRepeat):
                n = self.eval_int(st.count, ectx, "a repeat count")
                if n < 0:
                    raise self.fail(C.VALUE_OUT_OF_RANGE, f"a repeat count must not be negative, got {n}", st.count.span)
                if n > MAX_EXPANDED:
                    raise self.fail(C.EXPANSION_TOO_LARGE, f"repeat {n:,} expands past the limit of {MAX_EXPANDED:,} layers",
                                    st.count.span, "reduce the count")
                self.loop(st, range(n), None, env, ctx, out)
            elif isinstance(st, A.StageFor):
                a = self.eval_int(st.start, ectx, "a range start")
                b = self.eval_int(st.stop, ectx, "a range end")
                if b - a > MAX_EXPANDED:
                    raise self.fail(C.EXPANSION_TOO_LARGE, f"for {st.var} in {a}..{b} expands past the limit of "
                                    f"{MAX_EXPANDED:,} layers", st.span, "reduce the range")
                self.loop(st, range(a, b), st.var, env, ctx, out)

    def loop(self, st, it: range, var: str | None, env: dict, ctx: Ctx, out: list) -> None:
        if not st.stages:
            self.idle(st, len(it))
            return
        for i in it:
            n0 = len(out)
            self.expand(st.stages, env if var is None else {**env, var: i}, ctx, out)
            if len(out) == n0:
                self.idle(st, 1)

    def idle(self, st, n: int) -> None:
        """Count if/repeat/for expansions that yield no stage (`repeat n { if false {...} }`):
        they make no layers, so the layer limit does not bound them, but they take time."""
        self.b.idle += n
        if self.b.idle > MAX_EXPANDED:
            raise self.fail(C.EXPANSION_TOO_LARGE, f"the seq's if/repeat/for stages run more than {MAX_EXPANDED:,} times "
                            "without adding a stage", st.span, "remove loops that expand to no stage")


def tensor_kind(p: A.Param) -> str | None:
    """What a block parameter takes: "list" (`xs: Tensor[]`), "tensor" (`skip: Tensor`,
    `skip: Tensor[N, 8, H, W]`) or None (a compile-time value; the first parameter, the
    block's input, is a tensor unless declared a list)."""
    if p.type is None or p.type.name != "Tensor":
        return None
    return "list" if p.type.is_list else "tensor"


def _flatten_outputs(outs):
    """`return B(x)` where B returns several tensors returns all of them."""
    flat = []
    for v, e in outs:
        if isinstance(v, TupleV):
            flat.extend((x, e) for x in v.items)
        else:
            flat.append((v, e))
    return flat
