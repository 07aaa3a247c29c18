"""Tracing a PyTorch model into the importer's IR: a tree of module calls.

Two front-ends produce the same IR: `torch.fx` symbolic tracing (preferred:
it sees module calls and Python-level functions) and, where that fails (for
example on control flow that depends on shapes), `torch.export`, whose ATen
graph carries each node's module stack.

IR: a :class:`Call` is one invocation of a non-leaf module (the root model, a
user block, an ``nn.Sequential``); its ``items`` are :class:`Step` s (one evo
op each, from a leaf module such as ``nn.Conv2d`` or from a function such as
``torch.cat``) and child :class:`Call` s, in execution order.  Values are
:class:`Val` objects with the concrete shape seen on the example input.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from evo import ops
from evo.importer import mapping as M
from evo.importer.mapping import NotConvertible


@dataclass(eq=False)
class Val:
    shape: tuple | None  # None: not a tensor (or unknown)

    def __repr__(self) -> str:
        return f"Val{list(self.shape) if self.shape is not None else '?'}"


@dataclass(eq=False)
class Step:
    op: str
    args: dict
    inputs: list[Val]
    out: Val
    path: str | None = None          # leaf module path, or None for a function
    module: nn.Module | None = None
    origin: str = ""                 # what it came from, for messages


@dataclass(eq=False)
class Call:
    path: str
    module: nn.Module
    inputs: list[Val] = field(default_factory=list)
    outputs: list[Val] = field(default_factory=list)
    items: list = field(default_factory=list)  # Step | Call
    parent: Call | None = None
    n_tensor_args: int = 1
    synthetic: bool = False  # a ModuleList/ModuleDict grouped into a seq by the emitter
    list_input: bool = False  # called with one list of tensors (DenseNet's _DenseLayer(features))
    # called with several tensors: forward's parameter for each of `inputs` (in forward's order)
    arg_names: list = field(default_factory=list)
    training: bool = False  # a training-only submodule (`training name = ...`)


class Problems:
    """Collects problems (deduplicated, in order)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, msg: str) -> None:
        if msg not in self.items:
            self.items.append(msg)

    def not_convertible(self, where: str, what: str, why: str) -> None:
        self.add(f"not convertible: {where or '<model>'} ({what}): {why}")

    def __bool__(self) -> bool:
        return bool(self.items)


def type_label(m: nn.Module) -> str:
    return M.torch_name(m)


def is_leaf(m: nn.Module) -> bool:
    if M.supported_leaf(m) is not None:
        return True
    if isinstance(m, nn.Sequential):
        return False
    mod = type(m).__module__
    return mod.startswith(("torch.nn", "torch.ao.nn"))


class TraceFailed(Exception):
    pass


# =============================================================================== fx


class _Rec:
    def __init__(self, path: str, module: nn.Module, args, kwargs, parent: _Rec | None):
        self.path = path
        self.module = module
        self.args = args
        self.kwargs = kwargs
        self.parent = parent
        self.items: list[tuple[str, Any]] = []
        self.out = None


class _Tracer(torch.fx.Tracer):
    def __init__(self, root: _Rec):
        super().__init__()
        self.cur = root

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_leaf(m)

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if is_leaf(m):
            return super().call_module(m, forward, args, kwargs)
        # (the arguments as they are now: a list the caller appends to later, as DenseNet's
        # features, must not grow here)
        rec = _Rec(path, m, _snapshot(args), _snapshot(kwargs), self.cur)
        self.cur.items.append(("call", rec))
        self.cur = rec
        try:
            out = super().call_module(m, forward, args, kwargs)
        finally:
            self.cur = rec.parent
        rec.out = out
        return out

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        n = super().create_node(kind, target, args, kwargs, name, type_expr)
        self.cur.items.append(("node", n))
        return n


def _snapshot(obj):
    if isinstance(obj, (list, tuple)):
        return tuple(_snapshot(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _snapshot(v) for k, v in obj.items()}
    return obj


def _proxies(obj) -> list:
    out = []
    if isinstance(obj, torch.fx.Proxy):
        out.append(obj.node)
    elif isinstance(obj, torch.fx.Node):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            out.extend(_proxies(x))
    elif isinstance(obj, dict):
        for x in obj.values():
            out.extend(_proxies(x))
    return out


def _concrete_args(model: nn.Module) -> dict:
    import inspect

    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return {}
    out = {}
    for i, p in enumerate(sig.parameters.values()):
        if i > 0 and p.default is not inspect.Parameter.empty:
            out[p.name] = p.default
    return out


def trace_fx(model: nn.Module, example: torch.Tensor, problems: Problems,
             training_only: tuple[str, ...] = ()) -> Call:
    from torch.fx.passes.shape_prop import ShapeProp

    for m in model.modules():  # modules matched by class name are checked by running them: not while tracing
        M.named_leaf(m)
    root = _Rec("", model, (), {}, None)
    tracer = _Tracer(root)
    try:
        graph = tracer.trace(model, concrete_args=_concrete_args(model) or None)
        gm = torch.fx.GraphModule(tracer.root, graph)
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as e:  # any tracing failure: the caller falls back to torch.export
        raise TraceFailed(f"{type(e).__name__}: {_first_line(e)}") from e
    try:
        return _FxConverter(model, problems, training_only).convert(root, graph)
    except Exception as e:
        raise TraceFailed(f"{type(e).__name__}: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else ""


class _FxConverter:
    def __init__(self, model: nn.Module, problems: Problems, training_only: tuple[str, ...] = ()):
        self.model = model
        self.p = problems
        self.training_only = training_only
        self.vals: dict[torch.fx.Node, Val] = {}
        self.meta: set[torch.fx.Node] = set()  # non-tensor values (sizes)
        self.leaf_calls: dict[str, int] = {}
        self.used_attrs: set[str] = set()
        self.tuple_calls: dict = {}  # call_module node of a module returning a tuple (attention) -> (path, module)

    def convert(self, root: _Rec, graph: torch.fx.Graph) -> Call:
        call = Call("", self.model)
        self.fill(call, root)
        call.n_tensor_args = len(call.inputs)
        check_unused(self.model, self.leaf_calls, self.used_attrs, self.p, self.training_only)
        return call

    def val(self, n: torch.fx.Node) -> Val:
        v = self.vals.get(n)
        if v is None:
            v = self.vals[n] = Val(_shape_of(n))
        return v

    def fill(self, call: Call, rec: _Rec) -> None:
        if rec.parent is not None:
            nodes = _proxies(rec.args) + _proxies(rec.kwargs)
            call.inputs = [self.val(n) for n in nodes if n not in self.meta]
            call.n_tensor_args = len(call.inputs)
            call.list_input = (len(rec.args) == 1 and not rec.kwargs and isinstance(rec.args[0], tuple)
                               and len(nodes) == len(rec.args[0]) == len(call.inputs))
            if len(call.inputs) > 1 and not call.list_input:
                self.name_inputs(call, rec)
            outs = _proxies(rec.out)
            call.outputs = [self.val(n) for n in outs]
            if rec.out is None or not outs:
                self.p.not_convertible(rec.path, type_label(rec.module), "returns no tensor")
            elif not isinstance(rec.out, torch.fx.Proxy):
                self.p.not_convertible(rec.path, type_label(rec.module),
                                       f"returns {len(outs)} tensors; an evo block returns one")
        where = rec.path
        for kind, x in rec.items:
            if kind == "call":
                child = Call(x.path, x.module, parent=call)
                self.fill(child, x)
                call.items.append(child)
                continue
            n: torch.fx.Node = x
            if n.op == "placeholder":
                if _shape_of(n) is not None:
                    call.inputs.append(self.val(n))
                continue
            if n.op == "output":
                outs = _proxies(n.args[0])
                call.outputs = [self.val(o) for o in outs]
                if not isinstance(n.args[0], (torch.fx.Node, tuple, list)) or not outs:
                    self.p.not_convertible("", type_label(self.model), "its output is not a tensor or a "
                                           "tuple of tensors")
                continue
            if n.op == "get_attr":
                self.used_attrs.add(str(n.target))
                step = self.own_parameter(n, rec)
                if step is not None:
                    call.items.append(step)
                    continue
                self.p.not_convertible(where, type_label(rec.module), f"uses the parameter or buffer "
                                       f"'{n.target}' directly; evo parameters live in layers only")
                self.val(n)
                continue
            if not n.users and n.op != "call_module":
                continue  # dead code
            if _pieces_call(n):  # chunk / split: several outputs, taken by getitem
                call.items.extend(self.node_steps(n, call, rec))
                continue
            if n.op == "call_module" and self.tuple_module(n):  # attention: (output, weights), taken by getitem
                continue
            if _shape_of(n) is None:
                self.meta.add(n)
                continue
            call.items.extend(self.node_steps(n, call, rec))

    def name_inputs(self, call: Call, rec: _Rec) -> None:
        """The forward parameter each tensor argument binds (`forward(self, x, skip)`), when each
        parameter gets one tensor or none."""
        import inspect

        try:
            bound = inspect.signature(rec.module.forward).bind(*rec.args, **rec.kwargs)
        except (TypeError, ValueError):
            return
        pairs = []
        for name, v in bound.arguments.items():
            ps = [n for n in _proxies(v) if n not in self.meta]
            if len(ps) > 1 or not isinstance(v, (torch.fx.Proxy, torch.fx.Node)) and ps:
                return
            if ps:
                pairs.append((name, ps[0]))
        if len(pairs) == len(call.inputs):
            call.inputs = [self.val(n) for _, n in pairs]
            call.arg_names = [name for name, _ in pairs]

    def node_steps(self, n: torch.fx.Node, call: Call, rec: _Rec) -> list[Step]:
        out = self.val(n)
        if n.op == "call_module":
            path = str(n.target)
            m = self.model.get_submodule(path)
            self.leaf_calls[path] = self.leaf_calls.get(path, 0) + 1
            ins = [a for a in _proxies(n.args) + _proxies(n.kwargs)]
            try:
                self.check_meta(ins)
                op, args = M.module_op(m, [self.val(a).shape for a in ins], out.shape)
            except NotConvertible as e:
                self.p.not_convertible(path, type_label(m), e.reason)
                return []
            return [Step(op, args, [self.val(a) for a in ins], out, path, m, type_label(m))]
        where, what = rec.path, type_label(rec.module)
        try:
            if n.op == "call_function":
                return self.function(n, out)
            if n.op == "call_method":
                return self.method(n, out)
        except NotConvertible as e:
            self.p.not_convertible(where, f"{what}: {self.display(n)}", e.reason)
            return []
        self.p.not_convertible(where, what, f"unsupported graph node {n.op} {n.target}")
        return []

    def own_parameter(self, n: torch.fx.Node, rec: _Rec) -> Step | None:
        """`self.layer_scale` read by the module that owns it: a learnable tensor declared in the
        block (the op that imports the tensor's class: `layer_scale = parameter([C, 1, 1], init=...)`;
        its state_dict key stays)."""
        target = str(n.target)
        owner, _, name = target.rpartition(".")
        if owner != rec.path:
            return None
        t = rec.module._parameters.get(name)
        res = M.tensor_op(t) if t is not None else None
        if res is None:
            return None
        return Step(res[0], res[1], [], self.val(n), target, None, f"nn.{type(t).__name__}")

    def display(self, n: torch.fx.Node) -> str:
        if n.op == "call_method":
            return f"Tensor.{n.target}"
        t = n.target
        alias = M.function_alias(t)
        if alias is not None:
            return alias[2]
        mod = getattr(t, "__module__", None) or ""
        name = getattr(t, "__name__", str(t))
        if mod in ("_operator", "operator"):
            return f"operator.{name}"
        if mod.startswith("torch.nn.functional"):
            return f"F.{name}"
        if mod.startswith("torch") or mod == "":
            return f"torch.{name}"
        return f"{mod}.{name}"

    def check_meta(self, nodes) -> None:
        for a in nodes:
            if a in self.meta:
                raise NotConvertible("computes with tensor sizes (x.size(), x.shape); evo shapes are static")
            if a not in self.vals and _shape_of(a) is None:
                raise NotConvertible("takes a non-tensor value computed in the graph")

    def function(self, n: torch.fx.Node, out: Val) -> list[Step]:
        t = n.target
        if t is operator.getitem:
            taken = self.take(n, out)
            if taken is not None:
                return taken
        what = self.display(n)
        return convert_call(M.function_calls(t), n.args, n.kwargs, out, what, self.val, self.check_meta, what)

    def method(self, n: torch.fx.Node, out: Val) -> list[Step]:
        name = str(n.target)
        if name in M.IDENTITY_METHODS:
            x = n.args[0] if n.args else None
            if not isinstance(x, torch.fx.Node):
                raise NotConvertible("applied to a non-tensor")
            self.check_meta([x])
            return chain_steps([], self.val(x), out, f"Tensor.{name}")
        return convert_call(M.method_calls(name), n.args, n.kwargs, out, f"Tensor.{name}", self.val, self.check_meta,
                            name)

    def tuple_module(self, n: torch.fx.Node) -> bool:
        """A module whose op's entry says it returns a tuple (nn.MultiheadAttention: (output,
        weights)): its call is kept until indexing takes the output."""
        path = str(n.target)
        m = self.model.get_submodule(path)
        if M.tuple_output(m) is None:
            return False
        self.leaf_calls[path] = self.leaf_calls.get(path, 0) + 1
        self.tuple_calls[n] = (path, m)
        return True

    def tuple_step(self, n: torch.fx.Node, i, out: Val) -> list[Step]:
        """Item `i` of a tuple-returning module's call: the op's output, the call bound and checked by
        its entry's `module_call`."""
        path, m = self.tuple_calls[n]
        where = f"{path} ({type_label(m)})"
        index, reason = M.tuple_output(m)
        if i != index:
            raise NotConvertible(reason)
        try:
            call = M.module_call(m)
            b = M.bind(call, tuple(n.args), dict(n.kwargs))
            ins = _call_tensors(call, b, self.check_meta)
            call.convert(b, [self.val(x).shape for x in ins])  # the entry's checks of the other arguments
            op, args = M.module_op(m, [self.val(x).shape for x in ins])
        except NotConvertible as e:
            raise NotConvertible(f"{where}: {e.reason}") from None
        return [Step(op, args, [self.val(x) for x in ins], out, path, m, type_label(m))]

    def take(self, n: torch.fx.Node, out: Val) -> list[Step] | None:
        """`parts[0]` (a piece of chunk / split) or `attn(x, x, x)[0]` (a tuple-returning module's
        output); other indexing (None) converts through the op table (`x[:, 0]`)."""
        src, i = n.args[0], n.args[1] if len(n.args) > 1 else None
        if isinstance(src, torch.fx.Node) and _pieces_call(src) and isinstance(i, int):
            return [Step("@index", {"index": i}, [self.val(src)], out, origin="getitem")]
        if isinstance(src, torch.fx.Node) and src in self.tuple_calls:
            return self.tuple_step(src, i, out)
        return None


def convert_call(candidates, args, kwargs, out: Val, what: str, val, check_meta=lambda nodes: None,
                 name: str = "") -> list[Step]:
    """Steps for a call the op table converts: the first of the name's candidates (op, Call, ...) that
    takes it (M.pick), its arguments bound to the Call's parameters, the tensors checked, the rest
    constants (but the Call's `free` ones), then the entry's converter.  No candidate: the reason
    `name` has no evo op."""
    picked = M.pick(candidates, tuple(args), dict(kwargs))
    if picked is None:
        raise NotConvertible(M.no_fn_reason(name))
    op, call, b = picked
    tensors = _call_tensors(call, b, check_meta)
    ins = [val(t) for t in tensors]
    steps = M.call_steps(op, call, b, [x.shape for x in ins], out.shape)
    if len(steps) == 1:
        return [Step(steps[0][0], steps[0][1], ins, out, origin=what)]
    return chain_steps(steps, ins[0], out, what)


def _call_tensors(call, b: dict, check_meta) -> list:
    """The tensor nodes of a bound call (its `tensors`, then the tensor whose batch size `batch_of`
    reads), checked; its other arguments must be constants (but its `free` ones)."""
    tensors = []
    for p in call.tensors:
        v = b.get(p)
        vs = list(v) if isinstance(v, (list, tuple)) else [v]
        if not vs or not all(isinstance(t, torch.fx.Node) for t in vs):
            raise NotConvertible(call.constant)
        tensors.extend(vs)
    if call.batch_of:
        v = b.get(call.batch_of) or ()
        like = _batch_source(v[0]) if v else None
        if like is not None:
            tensors.append(like)
    check_meta(tensors)
    for k, v in b.items():
        if k not in call.tensors and k not in call.free and _proxies(v):
            raise NotConvertible(f"argument '{k}' is computed in the graph; evo needs a constant")
    return tensors


def chain_steps(steps: list[tuple[str, dict]], x: Val, out: Val, what: str) -> list[Step]:
    """Steps applied one after another from x; the last produces `out`."""
    if not steps:
        return [Step("@alias", {}, [x], out, origin=what)]
    res = []
    cur = x
    for i, (op, args) in enumerate(steps):
        nxt = out if i == len(steps) - 1 else Val(_flat_shape(cur.shape, op, args))
        res.append(Step(op, args, [cur], nxt, origin=what))
        cur = nxt
    return res


def _flat_shape(shape, op, args):
    # the shape after one step of several (by the op's shape rule)
    return tuple(ops.REGISTRY[op].shape([tuple(shape)], args))


def _batch_source(size) -> torch.fx.Node | None:
    """The tensor whose batch size `size` is: x.shape[0], x.size(0) or x.size()[0]."""
    if not isinstance(size, torch.fx.Node):
        return None
    if size.op == "call_method" and size.target == "size" and len(size.args) == 2 and size.args[1] == 0:
        return size.args[0] if isinstance(size.args[0], torch.fx.Node) else None
    if size.op == "call_function" and size.target is operator.getitem and size.args[1] == 0:
        src = size.args[0]
        if isinstance(src, torch.fx.Node) and ((src.op == "call_function" and src.target is getattr
                                                 and src.args[1] == "shape")
                                                or (src.op == "call_method" and src.target == "size"
                                                    and len(src.args) == 1)):
            return src.args[0] if isinstance(src.args[0], torch.fx.Node) else None
    return None


def _pieces_call(n: torch.fx.Node) -> bool:
    """A call of an op with several outputs, taken by getitem (chunk / split: the entry's `pieces`)."""
    if n.op == "call_method":
        cands = M.method_calls(str(n.target))
    elif n.op == "call_function":
        cands = M.function_calls(n.target)
    else:
        return False
    return any(ops.REGISTRY[c[0]].pieces is not None for c in cands)


def _shape_of(n: torch.fx.Node):
    tm = n.meta.get("tensor_meta")
    if tm is not None and hasattr(tm, "shape"):
        return tuple(int(d) for d in tm.shape)
    v = n.meta.get("val")
    if isinstance(v, torch.Tensor):
        return tuple(int(d) for d in v.shape)
    return None


def check_unused(model: nn.Module, leaf_calls: dict[str, int], used_attrs: set[str], p: Problems,
                 training_only: tuple[str, ...] = ()) -> None:
    """Parameters that no converted layer owns would be missing from the program's state_dict
    (those of `training_only` submodules are imported apart)."""
    for path, k in leaf_calls.items():
        m = model.get_submodule(path)
        if k > 1 and any(True for _ in m.parameters()):
            p.not_convertible(path, type_label(m), f"called {k} times (shared weights); every evo layer is "
                              "its own module")
    seen: set[str] = set()
    for name in model.state_dict():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if name in used_attrs or owner in seen:
            continue
        if any(owner == t or owner.startswith(t + ".") for t in (*leaf_calls, *training_only)):
            # (a leaf's own parameters, or its submodules' when a block template owns them)
            continue
        seen.add(owner)
        m = model.get_submodule(owner)
        p.not_convertible(owner, type_label(m), "its parameters are never used by forward() (evo's "
                          "state_dict would not have them)")


# =============================================================================== torch.export


def trace_export(model: nn.Module, example: torch.Tensor, problems: Problems) -> Call:
    import logging
    import warnings

    old = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # torch.export logs failures with tracebacks; we report them ourselves
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(model, (example,))
    except Exception as e:
        raise TraceFailed(f"{type(e).__name__}: {_first_line(e)}") from e
    finally:
        logging.disable(old)
    try:
        return _ExportConverter(model, ep, problems).convert()
    except Exception as e:
        raise TraceFailed(f"internal error converting the exported graph: {type(e).__name__}: "
                          f"{_first_line(e)}") from e


class _ExportConverter:
    def __init__(self, model: nn.Module, ep, problems: Problems):
        self.model = model
        self.ep = ep
        self.p = problems
        self.vals: dict[torch.fx.Node, Val] = {}
        sig = ep.graph_signature
        self.params: dict[str, str] = {}  # placeholder name -> state_dict name
        self.user_inputs: list[str] = []
        for spec in sig.input_specs:
            kind = spec.kind.name
            if kind == "USER_INPUT":
                self.user_inputs.append(spec.arg.name)
            elif hasattr(spec.arg, "name"):
                self.params[spec.arg.name] = spec.target or ""
        self.leaf_calls: dict[str, int] = {}

    def val(self, n: torch.fx.Node) -> Val:
        v = self.vals.get(n)
        if v is None:
            v = self.vals[n] = Val(_shape_of(n))
        return v

    def convert(self) -> Call:
        g = self.ep.graph_module.graph
        root = Call("", self.model)
        calls: dict[str, Call] = {"": root}
        leaf_groups: dict[str, list[torch.fx.Node]] = {}
        leaf_info: dict[str, tuple[str, nn.Module, Call]] = {}
        order: list[tuple[Call, Any]] = []  # (scope, item)
        node_scope: dict[torch.fx.Node, Call] = {}
        outputs: list[torch.fx.Node] = []
        for n in g.nodes:
            if n.op == "placeholder":
                if n.name in self.user_inputs:
                    root.inputs.append(self.val(n))
                continue
            if n.op == "output":
                outputs = _proxies(n.args[0])
                continue
            if n.op == "get_attr":
                continue
            stack = list((n.meta.get("nn_module_stack") or {}).items())
            scope = root
            leaf_key = None
            for key, (path, _t) in stack:
                if path == "":
                    continue
                try:
                    m = self.model.get_submodule(path)
                except AttributeError:
                    break
                if is_leaf(m):
                    leaf_key = key
                    if key not in leaf_info:
                        leaf_info[key] = (path, m, scope)
                        self.leaf_calls[path] = self.leaf_calls.get(path, 0) + 1
                        order.append((scope, ("leaf", key)))
                    break
                c = calls.get(key)
                if c is None:
                    c = calls[key] = Call(path, m, parent=scope)
                    order.append((scope, c))
                scope = c
            node_scope[n] = scope
            if leaf_key is not None:
                leaf_groups.setdefault(leaf_key, []).append(n)
            else:
                order.append((scope, ("node", n)))
        in_group = {n: k for k, ns in leaf_groups.items() for n in ns}
        # scope membership of every node, for the inputs/outputs of each call
        members: dict[Call, set] = {c: set() for c in calls.values()}
        for n, sc in node_scope.items():
            c = sc
            while c is not None:
                members[c].add(n)
                c = c.parent
        for sc, item in order:
            if isinstance(item, Call):
                sc.items.append(item)
                continue
            kind, x = item
            if kind == "leaf":
                path, m, _ = leaf_info[x]
                sc.items.extend(self.leaf_steps(x, path, m, leaf_groups[x], in_group))
            else:
                if not x.users:
                    continue
                sc.items.extend(self.node_steps(x, sc))
        for c in calls.values():
            if c is root:
                continue
            mem = members[c]
            ins, outs = [], []
            for n in g.nodes:
                if n not in mem:
                    continue
                for a in _proxies(n.args) + _proxies(n.kwargs):
                    if a not in mem and a.name not in self.params and a not in ins and _shape_of(a) is not None:
                        ins.append(a)
                if any(u not in mem for u in n.users) and _shape_of(n) is not None:
                    outs.append(n)
            c.inputs = [self.val(a) for a in ins]
            c.n_tensor_args = len(ins)
            c.outputs = [self.val(o) for o in outs]
            if len(outs) != 1:
                self.p.not_convertible(c.path, type_label(c.module),
                                       f"returns {len(outs)} tensors; an evo block returns one")
        root.outputs = [self.val(o) for o in outputs]
        root.n_tensor_args = len(root.inputs)
        for c in calls.values():
            self.restore_passthrough(c)
        used = {self.params[n.name] for n in g.nodes if n.op == "placeholder" and n.name in self.params
                and any(u not in in_group for u in n.users)}
        for name in sorted(used):
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            self.p.not_convertible(owner, type_label(self.model.get_submodule(owner)),
                                   f"uses the parameter or buffer '{name}' directly; evo parameters live in "
                                   "layers only")
        check_unused(self.model, self.leaf_calls, used, self.p)
        return root

    def restore_passthrough(self, c: Call) -> None:
        """Modules that are the identity at inference (the op table's: identity, dropout) leave no node
        in an exported (eval-mode) graph; put them back into nn.Sequential containers so that the
        stage indices stay those of the model."""
        m = c.module
        if not isinstance(m, nn.Sequential) or type(m).forward is not nn.Sequential.forward:
            return
        names = list(m._modules)
        if names != [str(i) for i in range(len(names))]:
            return
        by_rel: dict[str, Any] = {}
        for it in c.items:
            by_rel[it.path[len(c.path) + 1:] if c.path else it.path] = it
        items: list = []
        cur = c.inputs[0] if c.inputs else None
        for nm in names:
            it = by_rel.get(nm)
            if it is None:
                sub = m._modules[nm]
                if isinstance(sub, M.passthrough_types()) and cur is not None:
                    op, args = M.module_op(sub, [cur.shape])
                    path = f"{c.path}.{nm}" if c.path else nm
                    it = Step(op, args, [cur], cur, path, sub, type_label(sub))
                else:
                    return
            items.append(it)
            cur = it.out if isinstance(it, Step) else (it.outputs[0] if it.outputs else None)
        c.items = items

    def leaf_steps(self, key, path, m, nodes, in_group) -> list[Step]:
        group = set(nodes)
        ins, outs = [], []
        for n in nodes:
            for a in _proxies(n.args) + _proxies(n.kwargs):
                if a not in group and a.name not in self.params and a not in ins and _shape_of(a) is not None:
                    ins.append(a)
            if any(u not in group for u in n.users) and _shape_of(n) is not None:
                outs.append(n)
        if len(outs) != 1:
            self.p.not_convertible(path, type_label(m), f"produces {len(outs)} tensors")
            return []
        try:
            op, args = M.module_op(m, [self.val(a).shape for a in ins], self.val(outs[0]).shape)
        except NotConvertible as e:
            self.p.not_convertible(path, type_label(m), e.reason)
            return []
        return [Step(op, args, [self.val(a) for a in ins], self.val(outs[0]), path, m, type_label(m))]

    def node_steps(self, n: torch.fx.Node, sc: Call) -> list[Step]:
        out = self.val(n)
        name = getattr(n.target, "__name__", str(n.target))  # e.g. 'relu_.default'
        base = name.split(".")[0]
        what = f"aten.{name}"
        try:
            if any(a.name in self.params for a in _proxies(n.args) + _proxies(n.kwargs)):
                return []  # reported once per parameter by convert()
            return self.aten(base, n, out, what)
        except NotConvertible as e:
            self.p.not_convertible(sc.path, f"{type_label(sc.module)}: {what}", e.reason)
            return []

    def aten(self, base: str, n, out: Val, what: str) -> list[Step]:
        args, kw = list(n.args), dict(n.kwargs)
        if base in M.IDENTITY_ATEN:
            if not isinstance(args[0], torch.fx.Node):
                raise NotConvertible("applied to a non-tensor")
            return chain_steps([], self.val(args[0]), out, what)
        if base == "getitem":
            raise NotConvertible("no evo op for indexing")
        return convert_call(M.aten_calls(base), args, kw, out, what, self.val, name=base)
