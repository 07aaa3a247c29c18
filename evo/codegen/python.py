"""IR -> standalone PyTorch source, through a plain context dict and Jinja2.

Each scope of a graph (the network, every block instance, every seq) becomes
a module: seqs are `nn.Sequential`, blocks are classes whose `forward` follows
the IR.  Identical instances share one class.  Submodules are registered under
exactly the program's names, so `state_dict()` keys are the module paths.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources

import jinja2

from evo import ops
from evo.codegen.names import Namer, module_namer, module_ref, safe_attr
from evo.ir.node import Graph, Node, Op, Scope
from evo.version import __version__


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evo.codegen", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = repr
    return env


def cam_runtime_source() -> str:
    """The CAM and gradient runtimes pasted into generated files (their own
    import lines dropped: the generated file imports torch, F and nn once)."""
    parts = []
    for name in ("cam_runtime.py", "grad_runtime.py"):
        text = resources.files("evo.codegen").joinpath(name).read_text(encoding="utf-8")
        parts.append("\n".join(line for line in text.splitlines()
                               if not line.startswith(("import ", "from "))).strip())
    return "\n\n\n".join(parts)


@functools.lru_cache(maxsize=1)
def runtime_names() -> frozenset[str]:
    """Module-level names the CAM runtime defines in generated files (class names avoid them)."""
    import ast

    try:
        tree = ast.parse(cam_runtime_source())
    except SyntaxError:  # pragma: no cover - a runtime being edited
        return frozenset()
    names = set()
    for st in tree.body:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(st.name)
        elif isinstance(st, (ast.Assign, ast.AnnAssign)):
            for t in (st.targets if isinstance(st, ast.Assign) else [st.target]):
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return frozenset(names)


def _rel(scope: str, path: str) -> str:
    return path[len(scope) + 1:] if scope else path


@dataclass
class _ClassDef:
    name: str
    base: str
    doc: str
    init: list[str]
    forward: list[str]
    arg: str
    super_lines: list[str] = field(default_factory=list)

    def key(self) -> tuple:
        return (self.base, tuple(self.init), tuple(self.forward), self.arg, tuple(self.super_lines))

    def as_dict(self) -> dict:
        return {"name": self.name, "base": self.base, "doc": doc_text(self.doc), "init": _wrap_all(self.init, 8),
                "forward": _wrap_all(self.forward, 8), "arg": self.arg,
                "super_lines": _wrap_all([line + "," for line in self.super_lines], 12)}


# Generated lines are wrapped to this width (ruff's default), one argument per line.
LINE_WIDTH = 88


def _scan(text: str):
    """(index, char, bracket depth before it) for every character outside string literals."""
    depth, quote, escaped = 0, "", False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quote:
            if ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        else:
            yield i, ch, depth
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1


def _split_args(inner: str) -> list[str]:
    """Top-level comma-separated parts of an argument list."""
    parts, start = [], 0
    for i, ch, depth in _scan(inner):
        if ch == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    last = inner[start:].strip()
    if last:
        parts.append(last)
    return parts


def _wrap(line: str, indent: int) -> list[str]:
    """`line` (to be written at `indent`) as lines of at most LINE_WIDTH where its
    first call or tuple can be split, one argument per line; indentation relative."""
    if indent + len(line) <= LINE_WIDTH:
        return [line]
    open_at = -1
    for i, ch, depth in _scan(line):
        if ch == "(" and depth == 0 and open_at < 0:
            open_at = i
        elif ch == ")" and depth == 1 and open_at >= 0:
            head, inner, tail = line[:open_at + 1], line[open_at + 1:i], line[i + 1:]
            if any(c in tail for c in "()[]'\"") or not inner.strip():
                return [line]
            out = [head]
            for arg in _split_args(inner):
                out.extend("    " + x for x in _wrap(arg + ",", indent + 4))
            out.append(")" + tail)
            return out
    return [line]


def _wrap_all(lines: list[str], indent: int) -> list[str]:
    out = []
    for line in lines:
        w = _wrap(line, indent)
        if len(w) > 1:
            try:  # a split that is not valid Python (`f(x for x in y,)` from a custom op): keep the line
                compile("def _f():\n" + "\n".join("    " + x for x in w), "<wrap>", "exec")
            except SyntaxError:
                w = [line]
        out.extend(w)
    return out


def _needed_statements(fwd: list[tuple[str, list[str], list[str]]], rets) -> list:
    needed = set(rets)
    kept = []
    for st in reversed(fwd):
        if needed.intersection(st[1]):
            needed.update(st[2])
            kept.append(st)
    kept.reverse()
    return kept


def free_after_last_use(statements: list[tuple[str, list[str], list[str]]], keep) -> list[str]:
    """The lines of `statements` (line, variables set, variables read) with a `del` of every
    variable not in `keep` right after the statement that uses it last (unless it is the last
    statement), so that the allocator reuses its memory instead of touching fresh pages."""
    last: dict[str, int] = {}
    for k, (_, outs, ins) in enumerate(statements):
        for v in (*outs, *ins):
            last[v] = k
    lines = []
    for k, (line, outs, ins) in enumerate(statements):
        lines.append(line)
        if k + 1 < len(statements):
            dead = sorted({v for v in (*outs, *ins) if last[v] == k and v not in keep})
            if dead:
                lines.append("del " + ", ".join(dead))
    return lines


def _forward_body(fwd: list[tuple[str, list[str], list[str]]], rets: list[str], params: set[str],
                  train_rets: list[str] | None = None) -> list[str]:
    """The lines of a forward from its statements (line, variables set, variables read).

    Statements nothing returned depends on (a dead layer kept for its parameters)
    are not computed; their modules stay registered.  A local is deleted right
    after its last use when more statements follow, so the allocator reuses its
    memory as in a hand-written forward that rebinds `x` (keeping every
    intermediate of ResNet-18 alive until `return` cost ~10%).

    `train_rets` (the network's `training` values): the statements only they need
    run under `if self.training:`, which returns them after the outputs."""
    kept = _needed_statements(fwd, rets)
    train: list = []
    if train_rets:
        in_eval = {id(st) for st in kept}
        train = [st for st in _needed_statements(fwd, rets + train_rets) if id(st) not in in_eval]
    train_reads = {v for st in train for v in st[2]}
    lines = free_after_last_use(kept, {*rets, *params, *train_reads})
    if train_rets:
        lines.append("if self.training:")
        lines.extend("    " + st[0] for st in train)
        lines.append("    return " + ", ".join(rets + train_rets))
    lines.append("return " + ", ".join(rets))
    return lines


class ModuleGen:
    """Generates the classes of one or more graphs into one namespace."""

    def __init__(self) -> None:
        self.class_names = module_namer()
        self.classes: list[_ClassDef] = []
        self.by_key: dict[tuple, str] = {}
        self.helpers: dict[str, tuple[str, str]] = {}  # label -> (class name, source)

    def ctor(self, d, attrs: dict, shapes: list) -> str:
        """The constructor source of op `d`'s module; an op whose module is a helper class
        (evo/ops: `helper`) gets the class defined once in the file, under a free name."""
        src = d.module(attrs, shapes)
        if d.helper is not None:
            label, body = d.helper
            if label not in self.helpers:
                name = self.class_names.fresh(label)
                self.helpers[label] = (name, body.replace("{name}", name))
            src = src.replace("{" + label + "}", self.helpers[label][0])
        return src

    def add_class(self, c: _ClassDef, label: str) -> str:
        k = c.key()
        if k in self.by_key:
            return self.by_key[k]
        c.name = self.class_names.fresh(label)
        self.by_key[k] = c.name
        self.classes.append(c)
        return c.name

    # ------------------------------------------------------------------ graphs
    def graph(self, g: Graph) -> str:
        self.g = g
        self.scopes = {s.path: s for s in g.scopes}
        self.children: dict[str, list[Scope]] = {}
        for s in g.scopes:
            if s.parent is not None:
                self.children.setdefault(s.parent, []).append(s)
        self.in_scope: dict[str, list[Node]] = {}
        for n in g.nodes:
            self.in_scope.setdefault(n.scope, []).append(n)
        self.first_node: dict[str, int] = {}
        self.sub_nodes: dict[str, list[Node]] = {}  # scope -> its and its descendants' nodes, in order
        for n in g.nodes:
            p = n.scope
            while p:
                self.first_node.setdefault(p, n.id)
                self.sub_nodes.setdefault(p, []).append(n)
                p = self.scopes[p].parent or ""
        root = self.scopes[""]
        if root.kind == "seq":  # `network N(x) = seq(x) {...}`: an nn.Sequential network
            cls = _ClassDef("", "nn.Sequential", f"network {root.label}", [], [], "x", self.seq_stages(root))
            return self.add_class(cls, root.label)
        return self.block_class(root, network=True)

    def direct_child(self, scope: str, node_scope: str) -> str:
        p = node_scope
        while self.scopes[p].parent != scope:
            p = self.scopes[p].parent
        return p

    def module_expr(self, s: Scope) -> str:
        """Constructor expression for a child scope."""
        if s.kind == "seq" and s.label == "seq":
            stages = self.seq_stages(s)
            if not stages:
                return "nn.Sequential()"
            return "nn.Sequential(" + ", ".join(stages) + ")"
        if s.kind == "seq":
            stages = self.seq_stages(s)
            cls = _ClassDef("", "nn.Sequential", f"block {s.label} (a seq)", [], [], "x", stages)
            return self.add_class(cls, s.label) + "()"
        return self.block_class(s) + "()"

    def seq_stages(self, s: Scope) -> list[str]:
        items: list[tuple[int, str]] = []
        for n in self.in_scope.get(s.path, []):
            if n.op == Op.INPUT:  # the input of a network defined as a seq
                continue
            d = ops.of_node(n)
            items.append((int(_rel(s.path, n.path)), self.ctor(d, n.attr_dict, [self.g.node(i).shape for i in n.inputs])))
        for c in self.children.get(s.path, []):
            items.append((int(_rel(s.path, c.path)), self.module_expr(c)))
        items.sort()
        return [e for _, e in items]

    def block_class(self, s: Scope, network: bool = False) -> str:
        namer = Namer()
        var: dict[int, str] = {}
        lists: dict[tuple, str] = {}  # node ids of a list parameter -> its name in forward
        inp = self.g.node(s.input)
        if network:
            arg = namer.fresh(inp.name or "x")
        elif s.args:  # several tensor parameters, or a list: forward takes them under their names
            names = []
            for pname, v in s.args:
                a = namer.fresh(pname)
                names.append(a)
                if isinstance(v, tuple):
                    lists.setdefault(tuple(v), a)
                    for i, nid in enumerate(v):
                        var.setdefault(nid, f"{a}[{i}]")
                else:
                    var.setdefault(v, a)
            arg = ", ".join(names)
        else:
            arg = namer.fresh("x")
        var.setdefault(s.input, arg)
        params = {*var.values(), *arg.split(", ")}  # the forward's parameters (and their items): never deleted
        init: list[str] = []
        fwd: list[tuple[str, list[str], list[str]]] = []  # (line, variables set, variables read)
        registered: set[str] = set()
        done_children: set[str] = set()
        # empty child scopes (no nodes): register them so the module tree matches
        for n in self.g.nodes if network else self._scope_nodes(s):
            if n.op == Op.INPUT:
                continue
            if n.scope == s.path:
                self.emit_node(n, s, var, namer, init, fwd, registered, lists)
            else:
                child = self.direct_child(s.path, n.scope)
                if child in done_children:
                    continue
                done_children.add(child)
                cs = self.scopes[child]
                name = _rel(s.path, child)
                init.append(self.register(name, self.module_expr(cs)))
                registered.add(name)
                outs = [namer.fresh(self._out_name(cs, name)) for _ in cs.outputs]
                ins, reads = self.scope_args(cs, var)
                call = f"{module_ref('self', name)}({', '.join(ins)})"
                fwd.append((f"{', '.join(outs)} = {call}", outs, reads))
                for o, v in zip(cs.outputs, outs):
                    var[o] = v
        for cs in self.children.get(s.path, []):
            name = _rel(s.path, cs.path)
            if cs.path not in done_children and name not in registered:
                init.append(self.register(name, self.module_expr(cs)))
                for o in cs.outputs:
                    var.setdefault(o, var.get(cs.input, arg))
        rets = [var[o] for o in s.outputs]
        train_rets = [var[o] for o in self.g.train_outputs] if network else []
        doc = f"network {s.label}" if network else f"block {s.label}"
        cls = _ClassDef("", "nn.Module", doc, init, _forward_body(fwd, rets, params, train_rets), arg)
        return self.add_class(cls, s.label)

    @staticmethod
    def scope_args(cs: Scope, var: dict) -> tuple[list[str], list[str]]:
        """The arguments of a call of child scope `cs` (a list argument as a list display) and
        the variables they read."""
        if not cs.args:
            return [var[cs.input]], [var[cs.input]]
        ins = []
        for _, v in cs.args:
            ins.append("[" + ", ".join(var[i] for i in v) + "]" if isinstance(v, tuple) else var[v])
        return ins, sorted({var[i] for i in cs.input_ids()})

    def _scope_nodes(self, s: Scope):
        # the nodes of scope s and its descendants, in order
        return self.sub_nodes.get(s.path, [])

    def _out_name(self, cs: Scope, name: str) -> str:
        return name if re.match(r"^[A-Za-z_]", name) else f"{cs.label}_{name}"

    def register(self, name: str, ctor: str) -> str:
        if safe_attr(name):
            return f"self.{name} = {ctor}"
        # `add_module` refuses names that are attributes of nn.Module (`train`,
        # `forward`, `_modules`); the registry itself takes any name.
        return f"self._modules[{name!r}] = {ctor}"

    def emit_node(self, n: Node, s: Scope, var: dict, namer: Namer, init: list, fwd: list,
                  registered: set, lists: dict | None = None) -> None:
        d = ops.of_node(n)
        ins = [var[i] for i in n.inputs]
        shapes = [self.g.node(i).shape for i in n.inputs]
        out = namer.fresh(n.name or d.name)
        if n.path is not None and d.tensor:  # a learnable tensor: an nn.Parameter attribute, read as is
            name = _rel(s.path, n.path)
            ctor = self.ctor(d, n.attr_dict, shapes)
            if d.buffer:  # a buffer: registered (persistent or not), read as is
                ref = f"self.{name}" if safe_attr(name) else f"self._buffers[{name!r}]"
                keep = "" if d.buffer == "persistent" else ", persistent=False"
                init.append(f"self.register_buffer({name!r}, {ctor}{keep})")
            else:
                ref = f"self.{name}" if safe_attr(name) else f"self._parameters[{name!r}]"
                init.append(f"{ref} = {ctor}")
            registered.add(name)
            fwd.append((f"{out} = {ref}", [out], []))
        elif n.path is not None:
            name = _rel(s.path, n.path)
            init.append(self.register(name, self.ctor(d, n.attr_dict, shapes)))
            registered.add(name)
            fwd.append((f"{out} = {module_ref('self', name)}({', '.join(ins)})", [out], ins))
        else:
            whole = (lists or {}).get(tuple(n.inputs)) if d.n_inputs is None and d.functional_list else None
            if whole is not None:  # the block's list parameter, whole: `torch.cat(xs, 1)`
                expr = d.functional_list(n.attr_dict, whole)
                ins = [whole]
            else:
                expr = d.functional(n.attr_dict, ins)
            train = d.training(n.attr_dict, ins, shapes) if d.training is not None else None
            if train is not None:  # differs in training (stochastic depth): torch's semantics there
                expr = f"{train} if self.training else {expr}"
            if expr == ins[0] and not n.name:
                var[n.id] = ins[0]  # identity / dropout in eval
                namer.used.discard(out)
                return
            fwd.append((f"{out} = {expr}", [out], ins))
        var[n.id] = out


def generate(graphs: list[Graph], source: str = "<string>", explainers=None) -> str:
    """Standalone PyTorch source for `graphs`, plus explainer classes if `explainers`
    is given: a function of the module's class namespace (a `Namer`, in which the
    networks' classes are already named) returning (sources, [(key, class name)])."""
    gen = ModuleGen()
    nets = []
    for g in graphs:
        cls = gen.graph(g)
        nets.append({"key": repr(g.name), "cls": cls})
    explainers, explainer_index = explainers(gen.class_names) if explainers is not None else ([], [])
    ctx = {
        "version": __version__,
        "source": _safe_comment(source),
        "classes": [c.as_dict() for c in gen.classes],
        "helpers": [src for _, src in gen.helpers.values()],
        "networks": nets,
        "explainers": explainers or [],
        "explainer_index": explainer_index or [],
        "cam_runtime": cam_runtime_source().strip() if explainers else "",
    }
    # import only what the file uses (an unused import is a lint error)
    body = "\n".join([ctx["cam_runtime"], *ctx["explainers"], *ctx["helpers"]]
                     + [line for c in ctx["classes"] for key in ("init", "forward", "super_lines")
                        for line in c[key]])
    ctx["uses_torch"] = bool(re.search(r"(?<![\w.])torch\.", body))
    ctx["uses_F"] = bool(re.search(r"(?<![\w.])F\.", body))
    ctx["uses_nn"] = bool(re.search(r"(?<![\w.])nn\.", body)) or bool(ctx["classes"])
    return environment().get_template("module.py.j2").render(**ctx)


def doc_text(s: str) -> str:
    """Text that reads back as itself inside a generated \"\"\"docstring\"\"\": program names
    (quoted names may hold quotes and backslashes) never end it or form an escape."""
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _safe_comment(s: str) -> str:
    s = s.replace("\\", "/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", s) or "_"
