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

The parts: evo/importer/tree.py (the template syntax tree and its keys),
merge.py (step 2's merging and parameters), this module (the emitter: steps 1
and 2's driver) and render.py (step 3, through the front end's literal printer).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Any

from torch import nn

from evo import ops
from evo.frontend import names as quoting
from evo.frontend.literals import literal
from evo.importer.merge import Merger, NoMerge, name_params, resolve
from evo.importer.render import Renderer
from evo.importer.templates import TEMPLATES
from evo.importer.trace import Call, Problems, Step, Val, type_label
from evo.importer.tree import (
    RESERVED,
    WILD,
    Assign,
    BinE,
    BlockE,
    ClassInfo,
    DimE,
    IfS,
    IndexE,
    ListE,
    Lit,
    LoopS,
    Name,
    OpE,
    Ret,
    SBlock,
    SeqE,
    SOp,
    TensorsE,
    Variant,
    _mode,
    _rel,
    full_key,
    key,
    bindable,
    legal_name,
    make_lit,
)

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
        self.block_names: set[str] = set(TEMPLATES)  # template blocks keep their names
        self.order: list[ClassInfo] = []

    # ---------------------------------------------------------------- prepare
    def prepare(self) -> None:
        resolve_aliases(self.root)
        list_input_concat(self.root)
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
        if parent is not None and c.n_tensor_args != 1 and not self.tensor_params(c):
            self.p.not_convertible(c.path, type_label(m), f"takes {c.n_tensor_args} tensor inputs, not each as "
                                   "a parameter of its forward; an evo block takes its tensors as parameters "
                                   "or as one list")
        if self.kind[c] == "body":
            for it in c.items:
                r = _item_rel(c, it)
                if r is None or "." in r:
                    continue
                needs_name = (isinstance(it, Step) and (it.op in TEMPLATES or ops.REGISTRY[it.op].parametric)) or (
                    isinstance(it, Call) and _has_state(it.module))
                if needs_name and not bindable(r):
                    what = type_label(it.module) if it.module is not None else "module"
                    why = f"{r!r} cannot name a module in evo: {quoting.problem(r)[0]}"
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
        while a is not None:  # (classes are made children first: the ancestors' are not made yet)
            a_key = ("Sequential",) if type(a.module) is nn.Sequential or a.synthetic else (type(a.module),)
            if self.role.get(a) == "block" and a_key == tkey:
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

    def tensor_params(self, c: Call) -> list[str]:
        """The names of the tensor parameters of a module called with several tensors, one per
        forward parameter (`forward(self, x, skip)`): the block's `x, skip: Tensor`; [] if not."""
        names = c.arg_names
        if (c.list_input or len(names) < 2 or len(names) != len(c.inputs) or self.kind.get(c) == "seq"
                or len(set(names)) != len(names)):
            return []
        if any(not legal_name(n) or n in c.module._modules for n in names):
            return []
        return list(names)

    def input_name(self, insts: list[Call]) -> str:
        names = set()
        for c in insts:
            names |= set(c.module._modules)
        cands: tuple[str, ...] = ("x", "inp", "input", "x0", "x_in")
        if insts and all(c.list_input for c in insts):  # forward's own name for the list (`inputs`)
            import inspect

            try:
                ps = list(inspect.signature(type(insts[0].module).forward).parameters)
            except (TypeError, ValueError):
                ps = []
            cands = ((ps[1],) if len(ps) == 2 and legal_name(ps[1]) else ()) + ("inputs", "features", "xs")
        for cand in cands:
            if cand not in names:
                return cand
        return "x_"

    def build_class(self, ci: ClassInfo) -> None:
        inp = self.input_name(ci.insts)
        several = [self.tensor_params(c) for c in ci.insts]
        if several[0] and any(s != several[0] for s in several):
            self.p.not_convertible(ci.insts[0].path, type_label(ci.insts[0].module), "its instances take "
                                   "their tensors under different parameters")
            return
        if several[0]:
            inp = several[0][0]
        bodies = [self.build_instance(c, inp) for c in ci.insts]
        if ci.kind == "body":
            taken = {inp, *several[0]} | {m for c in ci.insts for m in c.module._modules} | RESERVED
            bodies = [fold_dense_loop(b, taken) for b in bodies]
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
            v.extra = several[0][1:]
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
        name_params(params, insts, _bound_names(tpl) | {inp, *self.tensor_params(insts[0])})
        return Variant("", ci.kind, params, tpl, insts, inp, ci, all(c.list_input for c in insts))

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
        if c.inputs and not c.list_input:
            several = self.tensor_params(c) if c is not self.root else []
            for v, name in reversed(list(zip(c.inputs, several or [inp]))):
                expr_of[v] = Name(name)
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
        # values a reshape writes its shape from (`v.channels // 2`) and several-output values
        # (`parts[0]`) are bound to a name
        needs_name = {it.inputs[0] for it in c.items if isinstance(it, Step) and _reshapes(it.op)}

        def get(v: Val):
            e = expr_of.get(v)
            if e is None:
                raise _Internal(f"value {v} used before it is defined in {c.path or 'the model'}")
            return e

        for it in c.items:
            if isinstance(it, Step):
                rel = _rel(c.path, it.path) if it.path else None
                d = ops.REGISTRY.get(it.op)
                if d is not None and d.operator:
                    e = BinE(d.operator, get(it.inputs[0]), get(it.inputs[1]))
                elif it.op == "@index":
                    e = IndexE(get(it.inputs[0]), it.args["index"])
                elif c.list_input and it is c.items[0]:  # the leading concat of the list: `concat(inputs)`
                    e = OpE(it.op, [Name(inp)], _arg_nodes(it, None, get))
                else:
                    loc = rel if rel and legal_name(rel) else None
                    e = OpE(it.op, [get(v) for v in it.inputs], _arg_nodes(it, loc, get))
                parametric = d.parametric if d is not None else it.op in TEMPLATES
                name = None
                if rel and bindable(rel) and rel not in bound:
                    name = rel
                elif parametric:
                    raise _Internal(f"cannot name {it.path}")
                elif d is not None and d.pieces is not None:
                    name = fresh("parts")
                elif uses.get(it.out, 0) > 1 or it.out in needs_name:
                    name = fresh(_temp_base(it.op))
                out = it.out
            else:
                rel = _rel(c.path, it.path)
                if self.role[it] == "inline":
                    e = SeqE(get(it.inputs[0]), self.stage_list(it))
                else:
                    v = self.variant_of[it]
                    arg = TensorsE([get(x) for x in it.inputs]) if it.list_input else get(it.inputs[0])
                    extra = [get(x) for x in it.inputs[1:]] if self.tensor_params(it) else []
                    e = BlockE(v, arg, self.call_args(v, it, rel if legal_name(rel) else None), extra)
                if bindable(rel) and rel not in bound:
                    name = rel
                elif _has_state(it.module):
                    raise _Internal(f"cannot name {it.path}")
                else:
                    name = fresh(_temp_base(type(it.module).__name__.lower()))
                out = it.outputs[0] if it.outputs else None
            if name is not None:
                stmts.append(Assign(name, e, isinstance(it, Call) and it.training))
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
        for name in self.templates_used():  # block templates first (evo/importer/templates.py)
            parts.append(TEMPLATES[name].source)
        for ci in self.order:
            for v in ci.variants:
                parts.append(self.render_block(v))
                parts.append("")
        parts.append(self.render_network(root_var))
        return "\n".join(parts) + "\n"

    def templates_used(self) -> list[str]:
        used: list[str] = []

        def walk(c: Call):
            for it in c.items:
                if isinstance(it, Call):
                    walk(it)
                elif it.op in TEMPLATES and it.op not in used:
                    used.append(it.op)

        walk(self.root)
        return used

    def render_params(self, v: Variant) -> str:
        out = [f"{v.inp}: Tensor[]" if v.list_input else v.inp] + [f"{quoting.show(e)}: Tensor" for e in v.extra]
        for p in v.params:
            s = f"{p.name}: {p.kind}"
            if p.has_default:
                s += f" = {literal(p.default)}"
            out.append(s)
        return ", ".join(out)

    def render_block(self, v: Variant) -> str:
        r = Renderer(v)
        head = f"block {v.name}({self.render_params(v)})"
        if v.kind == "seq":
            return f"{head} = seq({v.inp}) {{\n{r.stages(v.template, '    ')}}}"
        return f"{head} {{\n{r.stmts(v.template, '    ')}}}"

    def render_network(self, v: Variant) -> str:
        shp = list(self.input_shape)
        dims = ", ".join(["N"] + [str(d) for d in shp[1:]])
        r = Renderer(v)
        return f"network {v.name}({v.inp}: Tensor[{dims}]) {{\n{r.stmts(v.template, '    ')}}}"


class _Internal(Exception):
    pass


def _arg_nodes(it: Step, loc: str | None, get) -> dict:
    """A step's arguments as template nodes: literals (block parameters where instances differ);
    a shape as a list merged element by element, a reshape's written from its input's dimensions."""
    args = {}
    for k, v in it.args.items():
        d = ops.REGISTRY.get(it.op)
        if k == "shape" and d is not None and d.tensor:  # a learnable tensor's shape, element by element
            args[k] = ListE([make_lit(int(x), "shape", loc) for x in v])
        elif k == "shape" and _reshapes(it.op):
            args[k] = _view_shape(get(it.inputs[0]), it.inputs[0].shape, it.out.shape, loc)
        else:
            args[k] = make_lit(v, k, loc)
    return args


def _reshapes(op: str) -> bool:
    d = ops.REGISTRY.get(op)
    return d is not None and d.reshapes


def _dim_attr(i: int, rank: int) -> str:
    if i == 1:
        return "channels"
    if rank == 4 and i in (2, 3):
        return "height" if i == 2 else "width"
    return f"shape[{i}]"


def _view_shape(ref, a: tuple, b: tuple, loc: str | None) -> ListE:
    """The target shape of a reshape from `a` to `b`, the batch written -1 and each size that is one
    of the input's a dimension of it (`v.height`); a dimension split in several is written as
    constants and the largest piece from the input (`[2, v.channels // 2]`)."""
    if not isinstance(ref, Name):
        return ListE([make_lit(-1, "shape", loc)] + [make_lit(int(d), "shape", loc) for d in b[1:]])
    r, q = len(a), len(b)
    lead = 1
    while lead < min(r, q) and a[lead] == b[lead]:
        lead += 1
    trail = 0
    while trail < min(r, q) - lead and a[r - 1 - trail] == b[q - 1 - trail]:
        trail += 1
    mid_a, mid_b = a[lead:r - trail], b[lead:q - trail]
    big = None
    if len(mid_a) == 1 and len(mid_b) > 1:
        big = max(range(len(mid_b)), key=lambda k: (mid_b[k], -k))
    items: list = [make_lit(-1, "shape", loc)]
    for i in range(1, q):
        if i < lead:
            items.append(DimE(ref, _dim_attr(i, r)))
        elif i >= q - trail:
            items.append(DimE(ref, _dim_attr(r - (q - i), r)))
        elif big is not None and i - lead == big:
            rest = 1
            for k, d in enumerate(mid_b):
                if k != big:
                    rest *= d
            items.append(DimE(ref, _dim_attr(lead, r), rest))
        else:
            items.append(make_lit(int(b[i]), "shape", loc))
    return ListE(items)


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


def fold_dense_loop(stmts: list, taken: set[str]) -> list:
    """A body that calls one list block with the growing list of every earlier output and returns
    their concatenation (torchvision's _DenseBlock: `denselayer1 = _DenseLayer([x])`, `denselayer2 =
    _DenseLayer([x, denselayer1])`, ..., `return concat(x, denselayer1, ...)`) becomes the loop
    that appends to the list (`for i in 1..n + 1 { denselayer{i} = _DenseLayer(features) ... }`)."""
    def numbered(name: str):
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*?)(\d+)", name)
        return (m.group(1), int(m.group(2))) if m and legal_name(m.group(1)) and not m.group(2).startswith("0") \
            else None

    def vals(args: dict):
        return tuple((k, key(v), getattr(v, "value", None)) for k, v in args.items())

    for p, s0 in enumerate(stmts):
        if not (isinstance(s0, Assign) and not s0.training and isinstance(s0.expr, BlockE)
                and isinstance(s0.expr.input, TensorsE) and len(s0.expr.input.items) == 1
                and isinstance(s0.expr.input.items[0], Name) and numbered(s0.name)):
            continue
        prefix, start = numbered(s0.name)
        if prefix in taken:
            continue
        first, var, args = s0.expr.input.items[0], s0.expr.var, s0.expr.args
        names = [s0.name]
        q = p + 1
        while q < len(stmts):
            s = stmts[q]
            want = [first.id] + names
            if not (isinstance(s, Assign) and not s.training and s.name == f"{prefix}{start + len(names)}"
                    and isinstance(s.expr, BlockE) and s.expr.var is var and vals(s.expr.args) == vals(args)
                    and isinstance(s.expr.input, TensorsE)
                    and [getattr(x, "id", None) for x in s.expr.input.items] == want):
                break
            names.append(s.name)
            q += 1
        ret = stmts[q] if q < len(stmts) else None
        join = ops.list_joiner()
        if (len(names) < 2 or join is None or not isinstance(ret, Ret) or len(ret.exprs) != 1
                or not isinstance(ret.exprs[0], OpE) or ret.exprs[0].op != join.name
                or [getattr(x, "id", None) for x in ret.exprs[0].inputs] != [first.id] + names):
            continue
        used = taken | set(names) | {prefix, first.id} | _bound_names(stmts)
        acc = next(c for c in ("features", "feats", "xs", "features_") if c not in used)
        index = next(c for c in ("i", "k", "j", "i_") if c not in used and c != acc)
        loop = LoopS(prefix, start, Lit(len(names), "layers", "int"), var, first, args, acc, index)
        return stmts[:p] + [loop, Ret([OpE(join.name, [Name(acc)], ret.exprs[0].args)])] + stmts[q + 1:]
    return stmts


def list_input_concat(c: Call) -> None:
    """A module called with one list of tensors that first concatenates them all (DenseNet's
    _DenseLayer, `torch.cat(inputs, 1)`) becomes a block taking the list (`inputs: Tensor[]`,
    `concat(inputs)` first: the op whose entry has `list_join`; called `_DenseLayer([x, denselayer1])`).
    The list of one tensor (torch.cat of [x], which the tracer records as no step) gets its concat
    back, so that every instance has the same body."""
    join = ops.list_joiner()
    if join is None:
        return
    for it in c.items:
        if not isinstance(it, Call):
            continue
        list_input_concat(it)
        first = it.items[0] if it.items else None
        leading = (isinstance(first, Step) and first.op == join.name and first.path is None
                   and first.inputs == it.inputs)
        # (called with several tensors it concatenates first, as the torch.export trace sees a
        # list: the same block)
        if not it.inputs or not (it.list_input or (leading and it.n_tensor_args > 1)):
            it.list_input = False
            continue
        it.list_input = True
        if len(it.inputs) == 1 and not leading:
            v = it.inputs[0]
            out = Val(v.shape)
            _substitute(it, v, out)
            first = Step(join.name, dict(join.list_join), [v], out, origin=join.torch)
            it.items.insert(0, first)
            leading = True
        if (not leading or any(v in it.inputs for x in it.items[1:] for v in _item_inputs(x))
                or any(v in it.inputs for v in it.outputs)):
            it.list_input = False  # the list is used otherwise: not a list block
            continue
        it.n_tensor_args = 1


def _substitute(c: Call, old: Val, new: Val) -> None:
    """Every read of `old` inside `c` (its steps and nested calls) reads `new`."""
    for it in c.items:
        it.inputs = [new if v is old else v for v in it.inputs]
        if isinstance(it, Call):
            _substitute(it, old, new)
    c.outputs = [new if v is old else v for v in c.outputs]


def _bound_names(tpl) -> set[str]:
    out: set[str] = set()

    def walk(n):
        if isinstance(n, Assign):
            out.add(n.name)
        elif isinstance(n, LoopS):
            out.update((n.acc, n.index, n.prefix))
        elif isinstance(n, IfS):
            for s in n.then:
                walk(s)
        elif isinstance(n, list):
            for s in n:
                walk(s)

    walk(tpl)
    return out


