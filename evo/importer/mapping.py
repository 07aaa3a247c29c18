"""PyTorch modules and calls -> evo ops, read from the op table.

Every op names what it is imported from in its own entry (evo/ops): `imports.modules`
(nn classes, converted by the entry's `from_module`), `imports.functions` / `.methods` /
`.aten` (names called with the input alone) and `imports.calls` (functions, Tensor
methods, operators and ATen ops with arguments, each with its parameter list and
converter).  This module names no op: it builds the lookup tables from the registry
(plugins included: they are read on use), binds a call's arguments to an alias'
parameters and returns the op's *full* argument dict in evo's normal form (every
parameter present, pairs as 2-tuples), so that the emitter can compare instances
argument by argument; the renderer drops arguments equal to evo's defaults.  Anything
without an evo op raises :class:`NotConvertible` with a one-line reason.
"""

from __future__ import annotations

import operator
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from evo import ops
from evo.ops.base import Call, NotConvertible, pair  # noqa: F401  (re-exported: the importer's error)

# a name called with the input alone (and maybe `inplace`)
UNARY = Call((), ("input", "inplace"), lambda b, shapes: {}, {"inplace": False})

# calls that change nothing evo sees (no op): Tensor methods and ATen ops
IDENTITY_METHODS = frozenset({"contiguous", "clone"})
IDENTITY_ATEN = frozenset({"clone", "contiguous", "alias", "lift_fresh_copy"})


def _resolve(name: str):
    """A Python object for an alias ("nn.<Class>", "F.<name>", "torch.<name>", "operator.<name>"), or None."""
    head, _, attr = name.partition(".")
    root = {"nn": nn, "F": F, "torch": torch, "operator": operator}.get(head)
    return getattr(root, attr, None) if root is not None and attr else None


_alias_cache: dict = {}


def registry_aliases() -> dict:
    """The importer's tables, from the op table (cached until the table changes):
    "modules" {class: op}, "classes" {class name: op}, "functions" {callable: [(op, Call, display), ...]},
    "methods" {Tensor method: [(op, Call), ...]}, "aten" {ATen base name: [(op, Call), ...]}: a name's
    candidates in the order they are tried (the guarded calls, `Call.when`, first; then the last
    registered call without a guard)."""
    key = tuple((k, id(d)) for k, d in ops.REGISTRY.items())
    if _alias_cache.get("key") != key:
        mods: dict = {}
        fns: dict = {}
        meths: dict = {}
        aten: dict = {}
        classes: dict = {}

        def add(table, k, cand, call):
            lst = table.setdefault(k, [])
            if call.when is None:
                lst[:] = [c for c in lst if c[1].when is not None]
            lst.append(cand)
            lst.sort(key=lambda c: c[1].when is None)

        for name, d in ops.REGISTRY.items():
            im = d.imports
            for c in im.classes:
                classes[c] = name
            for m in im.modules:
                cls = _resolve(m)
                if cls is not None:
                    mods[cls] = name
            for f in im.functions:
                fn = _resolve(f)
                if fn is not None:
                    add(fns, fn, (name, UNARY, f), UNARY)
            for m in im.methods:
                add(meths, m, (name, UNARY), UNARY)
            for a in im.aten:
                add(aten, a, (name, UNARY), UNARY)
            for call in im.calls:
                for alias in call.names:
                    kind, _, base = alias.partition(".")
                    if kind == "Tensor":
                        add(meths, base, (name, call), call)
                    elif kind == "aten":
                        add(aten, base, (name, call), call)
                    else:
                        fn = _resolve(alias)
                        if fn is not None:
                            add(fns, fn, (name, call, alias), call)
        _alias_cache.clear()
        _alias_cache.update(key=key, modules=mods, functions=fns, methods=meths, aten=aten, classes=classes)
    return _alias_cache


def registry_args(op: str, given: dict | None = None) -> dict:
    """The full arguments of an op: `given` plus the defaults."""
    d = ops.REGISTRY[op]
    args = ops.normalize_args(d, given or {})
    missing = [k for k, v in args.items() if v is ops.REQUIRED]
    if missing:
        raise NotConvertible(f"evo's {op} needs {', '.join(missing)}, which the call does not give")
    return args


def _registry_module(op: str):
    def f(m, shape) -> tuple[str, dict]:
        d = ops.REGISTRY[op]
        return op, registry_args(op, d.from_module(m, shape) if d.from_module is not None else {})
    return f


# ----------------------------------------------------------------------- modules

# torch.nn modules without an evo op: the reason shown to the user.
_NO_OP = {
    "Upsample": "no evo op for upsampling", "UpsamplingBilinear2d": "no evo op for upsampling",
    "UpsamplingNearest2d": "no evo op for upsampling", "PixelShuffle": "no evo op for pixel shuffle",
    "ConvTranspose1d": "no evo op for transposed convolution",
    "ConvTranspose2d": "no evo op for transposed convolution",
    "ConvTranspose3d": "no evo op for transposed convolution",
    "Conv1d": "evo has 2-D convolution only", "Conv3d": "evo has 2-D convolution only",
    "MaxPool1d": "evo pools in 2-D only", "MaxPool3d": "evo pools in 2-D only",
    "AvgPool1d": "evo pools in 2-D only", "AvgPool3d": "evo pools in 2-D only",
    "AdaptiveAvgPool1d": "evo pools in 2-D only", "AdaptiveAvgPool3d": "evo pools in 2-D only",
    "AdaptiveMaxPool1d": "no evo op for adaptive max pooling",
    "AdaptiveMaxPool2d": "no evo op for adaptive max pooling",
    "AdaptiveMaxPool3d": "no evo op for adaptive max pooling",
    "BatchNorm3d": "evo has 1-D and 2-D batch normalisation only",
    "SyncBatchNorm": "no evo op for synchronised batch normalisation (convert it to BatchNorm2d first)",
    "GroupNorm": "no evo op for group normalisation",
    "InstanceNorm1d": "no evo op for instance normalisation",
    "InstanceNorm2d": "no evo op for instance normalisation",
    "InstanceNorm3d": "no evo op for instance normalisation",
    "LocalResponseNorm": "no evo op for local response normalisation",
    "Embedding": "no evo op for embeddings", "EmbeddingBag": "no evo op for embeddings",
    "RNN": "no evo op for recurrent layers", "LSTM": "no evo op for recurrent layers",
    "GRU": "no evo op for recurrent layers",
    "Transformer": "no evo op for attention", "TransformerEncoder": "no evo op for attention",
    "TransformerEncoderLayer": "no evo op for attention", "TransformerDecoder": "no evo op for attention",
    "TransformerDecoderLayer": "no evo op for attention",
    "PReLU": "no evo op for PReLU (a learned slope)", "ELU": "no evo op for ELU", "SELU": "no evo op for SELU",
    "CELU": "no evo op for CELU", "Softplus": "no evo op for softplus", "Mish": "no evo op for Mish",
    "Hardtanh": "no evo op for hardtanh (only relu6 = hardtanh(0, 6))", "LogSoftmax": "no evo op for log-softmax",
    "Softmax2d": "no evo op for Softmax2d (use softmax(x, dim=1))",
    "Dropout1d": "no evo op for channel dropout (only nn.Dropout)",
    "Dropout2d": "no evo op for channel dropout (only nn.Dropout)",
    "Dropout3d": "no evo op for channel dropout (only nn.Dropout)",
    "AlphaDropout": "no evo op for alpha dropout (only nn.Dropout)",
    "Bilinear": "no evo op for bilinear layers", "Unflatten": "no evo op for unflattening",
    **{f"{k}Pad{d}d": f"{k.lower()} padding: evo's pad pads with zeros only"
       for k in ("Reflection", "Replication", "Circular") for d in (1, 2, 3)},
    "ChannelShuffle": "no evo op for channel shuffle",
}


def leaf_types() -> dict:
    """torch.nn class -> converter (module, input shape) -> (evo op, args)."""
    return {cls: _registry_module(op) for cls, op in registry_aliases()["modules"].items()}


def passthrough_types() -> tuple:
    """The nn classes of ops that are the identity at inference (their functional form returns the
    input), which an exported eval-mode graph leaves out."""
    out = []
    for cls, op in registry_aliases()["modules"].items():
        d = ops.REGISTRY[op]
        try:
            same = d.functional is not None and d.functional(ops.normalize_args(d, {}), ["x"]) == "x"
        except (KeyError, TypeError, ValueError):
            same = False
        if same:
            out.append(cls)
    return tuple(out)


def named_leaf(m: nn.Module) -> tuple[str, dict] | None:
    """(evo op, full args) for a module of a class outside torch that an op imports by class name
    (`Imports.classes`: torchvision's StochasticDepth) and whose attributes fit; else None."""
    op = registry_aliases()["classes"].get(type(m).__name__)
    if op is None or type(m).__module__.startswith("torch.nn"):
        return None
    hit = _named_cache.get(m)
    if hit is not None and hit[0] == op:
        return hit[1]
    d = ops.REGISTRY[op]
    try:
        res = op, registry_args(op, d.from_module(m, None))
    except (ValueError, TypeError, AttributeError, NotConvertible):
        res = None
    _named_cache[m] = (op, res)
    return res


_named_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (op, named_leaf's answer)


def supported_leaf(m: nn.Module) -> type | None:
    """The torch.nn class `m` converts as (itself, or a base whose forward it does not override),
    or its own class for a module an op imports by class name or a block template writes
    (evo/importer/templates.py)."""
    from evo.importer.templates import template_of

    if named_leaf(m) is not None or template_of(m) is not None:
        return type(m)
    leaves = leaf_types()
    for base in type(m).__mro__:
        if base in leaves:
            if type(m).forward is base.forward:
                return base
            return None
    return None


def module_op(m: nn.Module, in_shapes: list[tuple], out_shape: tuple | None = None) -> tuple[str, dict]:
    """(evo op, full args) for a leaf module call with input shapes `in_shapes` (and output shape
    `out_shape`, which block templates may read)."""
    from evo.importer.templates import template_of

    named = named_leaf(m)
    if named is not None:
        if len(in_shapes) != 1:
            raise NotConvertible(f"called with {len(in_shapes)} tensors; evo layers take one input")
        return named
    tpl = template_of(m)
    if tpl is not None:  # a block template: its name stands for the op, its arguments for the call's
        if len(in_shapes) != 1:
            raise NotConvertible(f"called with {len(in_shapes)} tensors; evo blocks take one input")
        return tpl.name, tpl.args(m, in_shapes[0], out_shape)
    base = supported_leaf(m)
    if base is None:
        name = type(m).__name__
        if name in _NO_OP and type(m).__module__.startswith("torch.nn"):
            raise NotConvertible(_NO_OP[name])
        raise NotConvertible(f"no evo op for {torch_name(m)}")
    if len(in_shapes) != 1:
        raise NotConvertible(f"called with {len(in_shapes)} tensors; evo layers take one input")
    shape = in_shapes[0]
    return leaf_types()[base](m, shape)


def _entry_of(m: nn.Module):
    base = supported_leaf(m)
    op = registry_aliases()["modules"].get(base) if base is not None else None
    return ops.REGISTRY[op] if op is not None else None


def tuple_output(m: nn.Module) -> tuple[int, str] | None:
    """(index of the op's output, reason for another) for a module whose op's entry says it returns
    a tuple (`Imports.output`: nn.MultiheadAttention), else None."""
    d = _entry_of(m)
    return d.imports.output if d is not None else None


def module_call(m: nn.Module) -> Call:
    """How a call of the module binds (`Imports.module_call` of its op's entry; the input alone
    without one)."""
    d = _entry_of(m)
    return d.imports.module_call if d is not None and d.imports.module_call is not None else UNARY


def tensor_op(t) -> tuple[str, dict] | None:
    """(evo op, full args) for a tensor a block reads itself, by the op that imports its class
    (an nn.Parameter: `parameter`, its shape and value from the entry's `from_module`), or None."""
    mods = registry_aliases()["modules"]
    op = next((mods[c] for c in type(t).__mro__ if c in mods), None)
    if op is None:
        return None
    d = ops.REGISTRY[op]
    try:
        return op, registry_args(op, d.from_module(t, None) if d.from_module is not None else {})
    except NotConvertible:
        return None


def torch_name(m: nn.Module) -> str:
    t = type(m)
    if t.__module__.startswith("torch.nn"):
        return f"nn.{t.__name__}"
    return t.__name__


# ----------------------------------------------------------------------- calls

def function_alias(target) -> tuple[str, Call, str] | None:
    """(evo op, its Call, display name) for a traced function target (its first candidate), or None."""
    c = registry_aliases()["functions"].get(target)
    return c[0] if c else None


def function_calls(target) -> list:
    """[(evo op, Call, display name), ...]: the candidates for a traced function target."""
    return registry_aliases()["functions"].get(target, [])


def method_calls(name: str) -> list:
    """[(evo op, Call), ...]: the candidates for a Tensor method name."""
    return registry_aliases()["methods"].get(name, [])


def aten_calls(base: str) -> list:
    """[(evo op, Call), ...]: the candidates for an ATen op's base name."""
    return registry_aliases()["aten"].get(base, [])


def pick(candidates, args: tuple, kwargs: dict) -> tuple[str, Call, dict] | None:
    """(evo op, Call, bound arguments) of the first candidate that takes the call: a guarded one
    (`Call.when`) whose arguments bind and whose guard holds, else the unguarded one (its binding
    errors are the call's); None when no candidate takes it."""
    for cand in candidates:
        op, call = cand[0], cand[1]
        if call.when is None:
            return op, call, bind(call, args, kwargs)
        try:
            b = bind(call, args, kwargs)
        except NotConvertible:
            continue
        if call.when(b):
            return op, call, b
    return None


_NO_FN = {
    "interpolate": "no evo op for interpolation/upsampling", "upsample": "no evo op for upsampling",
    "sub": "no evo op for subtraction", "truediv": "no evo op for division by a tensor (by a number: scale_by)",
    "div": "no evo op for division by a tensor or with rounding (by a number: scale_by)",
    "layer_norm": "a functional layer norm with explicit weights (use nn.LayerNorm)", "conv2d": "a functional convolution with explicit "
    "weights (use nn.Conv2d)", "linear": "a functional linear layer with explicit weights (use nn.Linear)",
    "batch_norm": "a functional batch norm with explicit statistics (use nn.BatchNorm2d)",
    "max": "no evo op for max over dimensions", "sum": "no evo op for sums",
    "log_softmax": "no evo op for log-softmax",
}


def no_fn_reason(name: str) -> str:
    base = name.rsplit(".", 1)[-1].lstrip("_")
    if base.startswith("upsample"):
        return "no evo op for upsampling"
    return _NO_FN.get(base, f"no evo op for {name}")


def bind(call: Call, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by parameter name, defaults filled in (the `varargs` parameter collects
    the positional arguments from its place on)."""
    names = call.params
    out = dict(call.defaults)
    args = tuple(args)
    if call.varargs:
        i = names.index(call.varargs)
        if len(args) > i + 1 or (len(args) == i + 1 and not isinstance(args[i], (list, tuple))):
            args = args[:i] + (tuple(args[i:]),)
        elif len(args) == i + 1:
            args = args[:i] + (tuple(args[i]),)
        if len(args) <= i and call.varargs not in kwargs:
            out.setdefault(call.varargs, ())
    if len(args) > len(names):
        raise NotConvertible("called with more arguments than expected")
    for n, v in zip(names, args):
        out[n] = v
    for k, v in kwargs.items():
        if k not in names:
            raise NotConvertible(f"argument '{k}' is not supported")
        out[k] = v
    return out


def call_steps(op: str, call: Call, bound: dict, shapes: list, out_shape=None) -> list[tuple[str, dict]]:
    """Evo steps (op, full args) for a bound call whose tensor inputs have `shapes` (and whose traced
    output has `out_shape`): the entry's converter's arguments for `op`, or the steps it returns."""
    r = call.convert(bound, shapes, out_shape) if call.output else call.convert(bound, shapes)
    if isinstance(r, dict):
        return [(op, registry_args(op, r))]
    return [(o, registry_args(o, a)) for o, a in r]
