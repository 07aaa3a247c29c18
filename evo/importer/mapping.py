"""PyTorch modules and functions -> evo ops.

Every mapping returns the evo op name and its *full* argument dict in evo's
normal form (every parameter present, pairs as 2-tuples), so that the emitter
can compare instances argument by argument; the renderer drops arguments
equal to evo's defaults.  Anything without an evo op raises
:class:`NotConvertible` with a one-line reason.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from evo import ops


class NotConvertible(Exception):
    """`reason` says why (one line, no path: the caller adds where and what)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return (int(v[0]), int(v[0]))
        if len(v) != 2:
            raise NotConvertible(f"a {len(v)}-D window/size where evo expects 2-D")
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


# ----------------------------------------------------------------------- the op table's aliases
#
# Ops name the torch modules, functions, Tensor methods and ATen ops they import
# from (`OpDef.imports`, evo/ops); the tables below add the ones that need more than
# a name (argument conversion, checks).  Plugins register later than this module
# is imported: the aliases are read from the op table on use.


def _resolve(name: str):
    """A torch object for an alias ("nn.ReLU", "F.relu", "torch.relu"), or None."""
    head, _, attr = name.partition(".")
    root = {"nn": nn, "F": F, "torch": torch}.get(head)
    return getattr(root, attr, None) if root is not None and attr else None


_alias_cache: dict = {}


def registry_aliases() -> dict:
    """{"modules": {class: op}, "functions": {fn: (kind, display)}, "methods": {name: kind},
    "aten": {name: op}} from the op table (cached until the table changes)."""
    key = tuple((k, id(d)) for k, d in ops.REGISTRY.items())
    if _alias_cache.get("key") != key:
        mods: dict = {}
        fns: dict = {}
        meths: dict = {}
        aten: dict = {}
        classes: dict = {}
        for name, d in ops.REGISTRY.items():
            for c in d.imports.classes:
                classes[c] = name
            for m in d.imports.modules:
                cls = _resolve(m)
                if cls is not None:
                    mods[cls] = name
            for f in d.imports.functions:
                fn = _resolve(f)
                if fn is not None:
                    fns[fn] = ("op:" + name, f)
            for m in d.imports.methods:
                meths[m] = "op:" + name
            for a in d.imports.aten:
                aten[a] = name
        _alias_cache.clear()
        _alias_cache.update(key=key, modules=mods, functions=fns, methods=meths, aten=aten, classes=classes)
    return _alias_cache


def registry_args(op: str, given: dict | None = None) -> dict:
    """The full arguments of an op the op table imports by name: `given` plus the defaults."""
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
    "LayerNorm": "no evo op for layer normalisation", "GroupNorm": "no evo op for group normalisation",
    "InstanceNorm1d": "no evo op for instance normalisation",
    "InstanceNorm2d": "no evo op for instance normalisation",
    "InstanceNorm3d": "no evo op for instance normalisation",
    "LocalResponseNorm": "no evo op for local response normalisation",
    "Embedding": "no evo op for embeddings", "EmbeddingBag": "no evo op for embeddings",
    "RNN": "no evo op for recurrent layers", "LSTM": "no evo op for recurrent layers",
    "GRU": "no evo op for recurrent layers", "MultiheadAttention": "no evo op for attention",
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
    "ZeroPad2d": "no evo op for padding (fold it into the convolution's padding)",
    "ConstantPad2d": "no evo op for padding", "ReflectionPad2d": "no evo op for padding",
    "ReplicationPad2d": "no evo op for padding", "ChannelShuffle": "no evo op for channel shuffle",
}


def leaf_types() -> dict:
    """torch.nn class -> converter (module, input shape) -> (evo op, args)."""
    return {**{cls: _registry_module(op) for cls, op in registry_aliases()["modules"].items()}, **LEAF_TYPES}


def named_leaf(m: nn.Module) -> tuple[str, dict] | None:
    """(evo op, full args) for a module of a class outside torch that an op imports by class name
    (`Imports.classes`: torchvision's StochasticDepth) and whose attributes fit; else None."""
    op = registry_aliases()["classes"].get(type(m).__name__)
    if op is None or type(m).__module__.startswith("torch.nn"):
        return None
    d = ops.REGISTRY[op]
    try:
        return op, registry_args(op, d.from_module(m, None))
    except (ValueError, TypeError, AttributeError, NotConvertible):
        return None


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


def torch_name(m: nn.Module) -> str:
    t = type(m)
    if t.__module__.startswith("torch.nn"):
        return f"nn.{t.__name__}"
    return t.__name__


def _conv(m: nn.Conv2d, shape) -> tuple[str, dict]:
    if m.padding_mode != "zeros":
        raise NotConvertible(f"padding_mode='{m.padding_mode}' (evo pads with zeros only)")
    k, s, d = pair(m.kernel_size), pair(m.stride), pair(m.dilation)
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = (0, 0)
        else:  # 'same': total padding d*(k-1) per dimension, split left/right
            tot = [d[i] * (k[i] - 1) for i in range(2)]
            if any(t % 2 for t in tot):
                raise NotConvertible("padding='same' with an even kernel pads asymmetrically; evo pads "
                                     "symmetrically")
            pad = (tot[0] // 2, tot[1] // 2)
    return "conv2d", {"out": m.out_channels, "kernel": k, "stride": s, "padding": pair(pad), "dilation": d,
                      "groups": m.groups, "bias": m.bias is not None}


def _linear(m: nn.Linear, shape) -> tuple[str, dict]:
    if len(shape) < 2:
        raise NotConvertible(f"applied to a {len(shape)}-D tensor; evo's linear takes [N, ..., features]")
    return "linear", {"out": m.out_features, "bias": m.bias is not None}


def _bn(rank_ok: tuple[int, ...], op: str):
    def f(m, shape) -> tuple[str, dict]:
        if not m.affine:
            raise NotConvertible("affine=False (evo's batch norm always has weight and bias)")
        if not m.track_running_stats:
            raise NotConvertible("track_running_stats=False (evo's batch norm uses running statistics)")
        if len(shape) not in rank_ok:
            raise NotConvertible(f"applied to a {len(shape)}-D tensor")
        return op, {"eps": float(m.eps)}
    return f


def _leaky(m: nn.LeakyReLU, shape):
    return "leaky_relu", {"slope": float(m.negative_slope)}


def _gelu(m: nn.GELU, shape):
    if m.approximate != "none":
        raise NotConvertible(f"approximate='{m.approximate}' (evo's gelu is the exact one)")
    return "gelu", {}


def _pool4(shape, what: str):
    if len(shape) != 4:
        raise NotConvertible(f"{what} of a {len(shape)}-D tensor; evo pools [N, C, H, W]")


def max_pool_args(kernel, stride, padding, dilation, ceil_mode, return_indices=False) -> dict:
    if return_indices:
        raise NotConvertible("return_indices=True (evo's maxpool2d returns values only)")
    k = pair(kernel)
    return {"kernel": k, "stride": pair(stride) if stride not in (None, [], ()) else k, "padding": pair(padding),
            "dilation": pair(dilation), "ceil": bool(ceil_mode)}


def avg_pool_args(kernel, stride, padding, ceil_mode, count_include_pad, divisor_override=None) -> dict:
    if divisor_override is not None:
        raise NotConvertible("divisor_override is set (evo's avgpool2d divides by the window size)")
    k = pair(kernel)
    return {"kernel": k, "stride": pair(stride) if stride not in (None, [], ()) else k, "padding": pair(padding),
            "ceil": bool(ceil_mode), "count_include_pad": bool(count_include_pad)}


def _maxpool(m: nn.MaxPool2d, shape):
    _pool4(shape, "max pooling")
    return "maxpool2d", max_pool_args(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode,
                                      m.return_indices)


def _avgpool(m: nn.AvgPool2d, shape):
    _pool4(shape, "average pooling")
    return "avgpool2d", avg_pool_args(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                      m.divisor_override)


def adaptive_size(size, shape) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise NotConvertible("a non-2-D output size")
        size = tuple(shape[-2 + i] if v is None else v for i, v in enumerate(size))
    return pair(size)


def _adaptive(m: nn.AdaptiveAvgPool2d, shape):
    if len(shape) not in (3, 4):
        raise NotConvertible(f"adaptive pooling of a {len(shape)}-D tensor")
    return "adaptive_avgpool2d", {"size": adaptive_size(m.output_size, shape)}


def _flatten(m: nn.Flatten, shape):
    return "flatten", flatten_args(m.start_dim, m.end_dim, shape)


def flatten_args(start: int, end: int, shape) -> dict:
    r = len(shape)
    if not -r <= start < r or not -r <= end < r:
        raise NotConvertible("dimension out of range")
    if start % r == 0:
        raise NotConvertible("flattens the batch dimension (evo keeps the batch dimension N separate)")
    return {"start": int(start), "end": int(end)}


def _dropout(m: nn.Dropout, shape):
    return "dropout", {"p": float(m.p)}


def softmax_dim(dim, rank: int) -> int:
    if dim is None:  # PyTorch's legacy implicit choice
        return 0 if rank in (0, 1, 3) else 1
    return int(dim)


def _softmax(m: nn.Softmax, shape):
    d = softmax_dim(m.dim, len(shape))
    if d % len(shape) == 0:
        raise NotConvertible("softmax over the batch dimension")
    return "softmax", {"dim": d}


LEAF_TYPES = {
    nn.Conv2d: _conv, nn.Linear: _linear,
    nn.BatchNorm2d: _bn((4,), "batchnorm2d"), nn.BatchNorm1d: _bn((2, 3), "batchnorm1d"),
    nn.LeakyReLU: _leaky, nn.GELU: _gelu,
    nn.MaxPool2d: _maxpool, nn.AvgPool2d: _avgpool, nn.AdaptiveAvgPool2d: _adaptive,
    nn.Flatten: _flatten, nn.Dropout: _dropout, nn.Identity: lambda m, s: ("identity", {}),
    nn.Softmax: _softmax,
}


# ----------------------------------------------------------------------- functions
#
# A functional call is described by its parameter names (in order) and defaults;
# the converter binds the traced call's args/kwargs to them and hands the
# bound dict to a small function returning one or more evo steps.

# ops the op table imports by name take (input, inplace); their kind is "op:<name>"

# name -> (parameter names, defaults)
_SIGS: dict[str, tuple[list[str], dict]] = {
    "unary": (["input", "inplace"], {"inplace": False}),
    "gelu": (["input", "approximate"], {"approximate": "none"}),
    "leaky_relu": (["input", "negative_slope", "inplace"], {"negative_slope": 0.01, "inplace": False}),
    "hardtanh": (["input", "min_val", "max_val", "inplace"], {"min_val": -1.0, "max_val": 1.0, "inplace": False}),
    "max_pool2d": (["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
                   {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}),
    "avg_pool2d": (["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                    "divisor_override"],
                   {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                    "divisor_override": None}),
    "adaptive_avg_pool2d": (["input", "output_size"], {}),
    "flatten": (["input", "start_dim", "end_dim"], {"start_dim": 0, "end_dim": -1}),
    "dropout": (["input", "p", "training", "inplace"], {"p": 0.5, "training": True, "inplace": False}),
    "cat": (["tensors", "dim"], {"dim": 0}),
    "softmax": (["input", "dim", "_stacklevel", "dtype"], {"dim": None, "_stacklevel": 3, "dtype": None}),
    "add": (["input", "other", "alpha"], {"alpha": 1}),
    "mul": (["input", "other"], {}),
    "mean": (["input", "dim", "keepdim", "dtype"], {"dim": None, "keepdim": False, "dtype": None}),
    "alias": (["input"], {}),
}


def _fn_table() -> dict:
    t: dict[Any, tuple[str, str]] = {}  # target -> (kind, display name)
    for name in ("gelu", "leaky_relu", "hardtanh", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "dropout",
                 "softmax"):
        if hasattr(F, name):
            t[getattr(F, name)] = (name, f"F.{name}")
    t[torch.flatten] = ("flatten", "torch.flatten")
    for name in ("cat", "concat", "concatenate"):
        if hasattr(torch, name):
            t[getattr(torch, name)] = ("cat", f"torch.{name}")
    t[torch.softmax] = ("softmax", "torch.softmax")
    t[torch.add] = ("add", "torch.add")
    t[torch.mul] = ("mul", "torch.mul")
    t[torch.mean] = ("mean", "torch.mean")
    t[operator.add] = ("add", "operator +")
    t[operator.iadd] = ("add", "operator +=")
    t[operator.mul] = ("mul", "operator *")
    t[operator.imul] = ("mul", "operator *=")
    if hasattr(torch, "max_pool2d"):
        t[torch.max_pool2d] = ("max_pool2d", "torch.max_pool2d")
    if hasattr(torch, "avg_pool2d"):
        t[torch.avg_pool2d] = ("avg_pool2d", "torch.avg_pool2d")
    if hasattr(torch, "adaptive_avg_pool2d"):
        t[torch.adaptive_avg_pool2d] = ("adaptive_avg_pool2d", "torch.adaptive_avg_pool2d")
    return t


_FUNCTIONS = _fn_table()

_METHODS = {
    "flatten": "flatten", "softmax": "softmax", "add": "add", "add_": "add", "mul": "mul",
    "mul_": "mul", "mean": "mean", "contiguous": "alias", "clone": "alias",
}


def functions() -> dict:
    """Traced function target -> (kind, display name): the op table's aliases and the table above."""
    return {**registry_aliases()["functions"], **_FUNCTIONS}


def methods() -> dict:
    """Tensor method name -> kind."""
    return {**registry_aliases()["methods"], **_METHODS}


def aten_op(base: str) -> str | None:
    """The evo op an ATen op converts to by name alone (no arguments), or None."""
    return registry_aliases()["aten"].get(base)

_NO_FN = {
    "interpolate": "no evo op for interpolation/upsampling", "upsample": "no evo op for upsampling",
    "pad": "no evo op for padding", "sub": "no evo op for subtraction", "truediv": "no evo op for division",
    "div": "no evo op for division", "matmul": "no evo op for matrix products (use nn.Linear)",
    "bmm": "no evo op for matrix products", "permute": "no evo op for permuting dimensions",
    "transpose": "no evo op for transposing", "unsqueeze": "no evo op for adding dimensions",
    "squeeze": "no evo op for removing dimensions", "chunk": "no evo op for splitting tensors",
    "split": "no evo op for splitting tensors", "getitem": "no evo op for indexing or slicing tensors",
    "layer_norm": "no evo op for layer normalisation", "conv2d": "a functional convolution with explicit "
    "weights (use nn.Conv2d)", "linear": "a functional linear layer with explicit weights (use nn.Linear)",
    "batch_norm": "a functional batch norm with explicit statistics (use nn.BatchNorm2d)",
    "max": "no evo op for max over dimensions", "sum": "no evo op for sums", "exp": "no evo op for exp",
    "log_softmax": "no evo op for log-softmax", "neg": "no evo op for negation",
}


def no_fn_reason(name: str) -> str:
    base = name.rsplit(".", 1)[-1].lstrip("_")
    if base.startswith("upsample"):
        return "no evo op for upsampling"
    return _NO_FN.get(base, f"no evo op for {name}")


def bind(kind: str, args: tuple, kwargs: dict) -> dict:
    names, defaults = _SIGS[kind if kind in _SIGS else "unary"]
    out = dict(defaults)
    if len(args) > len(names):
        raise NotConvertible("called with more arguments than expected")
    for n, v in zip(names, args):
        out[n] = v
    for k, v in kwargs.items():
        if k not in names:
            raise NotConvertible(f"argument '{k}' is not supported")
        out[k] = v
    return out


def function_steps(kind: str, b: dict, shape) -> list[tuple[str, dict]]:
    """Evo steps (op, args) for a bound functional call; `shape` is the first input's shape.

    Ops taking several tensors (add, mul, cat) return a single step; the caller
    supplies the tensor inputs."""
    if kind.startswith("op:"):
        return [(kind[3:], registry_args(kind[3:]))]
    if kind == "gelu":
        if b.get("approximate", "none") != "none":
            raise NotConvertible(f"approximate='{b['approximate']}' (evo's gelu is the exact one)")
        return [("gelu", {})]
    if kind == "leaky_relu":
        return [("leaky_relu", {"slope": float(b["negative_slope"])})]
    if kind == "hardtanh":
        if float(b["min_val"]) == 0.0 and float(b["max_val"]) == 6.0:
            return [("relu6", {})]
        raise NotConvertible("no evo op for hardtanh (only relu6 = hardtanh(0, 6))")
    if kind == "max_pool2d":
        _pool4(shape, "max pooling")
        return [("maxpool2d", max_pool_args(b["kernel_size"], b["stride"], b["padding"], b["dilation"],
                                            b["ceil_mode"], b["return_indices"]))]
    if kind == "avg_pool2d":
        _pool4(shape, "average pooling")
        return [("avgpool2d", avg_pool_args(b["kernel_size"], b["stride"], b["padding"], b["ceil_mode"],
                                            b["count_include_pad"], b["divisor_override"]))]
    if kind == "adaptive_avg_pool2d":
        if len(shape) not in (3, 4):
            raise NotConvertible(f"adaptive pooling of a {len(shape)}-D tensor")
        return [("adaptive_avgpool2d", {"size": adaptive_size(b["output_size"], shape)})]
    if kind == "flatten":
        return [("flatten", flatten_args(b["start_dim"], b["end_dim"], shape))]
    if kind == "dropout":
        return [("dropout", {"p": float(b["p"])})]
    if kind == "softmax":
        if b.get("dtype") is not None:
            raise NotConvertible("softmax with a dtype")
        d = softmax_dim(b["dim"], len(shape))
        if d % len(shape) == 0:
            raise NotConvertible("softmax over the batch dimension")
        return [("softmax", {"dim": d})]
    if kind == "mean":
        dims = b["dim"]
        if isinstance(dims, int):
            dims = (dims,)
        if dims is None or len(shape) != 4 or sorted(d % 4 for d in dims) != [2, 3] or b.get("dtype") is not None:
            raise NotConvertible("a mean other than over the spatial dimensions (2, 3) of [N, C, H, W]")
        steps = [("adaptive_avgpool2d", {"size": (1, 1)})]
        if not b["keepdim"]:
            steps.append(("flatten", {"start": 1, "end": -1}))
        return steps
    if kind == "alias":
        return []
    raise NotConvertible(f"no evo op for {kind}")
