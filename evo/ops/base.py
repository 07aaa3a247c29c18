"""The op table's core: one :class:`OpDef` per op, and the registry.

HOW AN ENTRY DECLARES ITS DERIVATIVE (adding an op is one visit to its family file):

* an elementwise single-input op gives `derivative=lambda a, x, y: "<torch expr of dy/dx>"` over the
  input and output expressions (x, y are variable names); that is its whole compiled-CAM rule, for
  built-in activations and `evo.extend.register_op` alike (no `grad`, no runtime branch, no name
  anywhere else).  See evo/ops/activation.py.
* any other op gives `grad=rule(b, n, g)` returning [(input index, gradient node id)]; the nodes it
  adds are gradient-only ops, each an ordinary entry (`gradient_only=True`, no shape rule) whose
  `grad_code(a, ins, k, const, path)` returns the PyTorch lines assigning `{out}` (the node's
  shape is `a["@shape"]`; put whatever else the code needs in the node's attrs in the rule).
  See `layernorm_grad` (norm.py), `narrow_grad` (dims.py), `softmax_grad` (shape.py) and
  evo/ops/gradient.py.  Name gradient ops `<op>_grad` (never the name of a forward op).
* evo/passes/ and evo/codegen/ name no op (tests/test_ops.py checks it): do not add a case there.

HOW AN ENTRY DECLARES ITS IMPORTER ALIASES (evo/importer holds no op's aliases or converters):

* `imports=Imports(modules=("nn.ReLU",), functions=("F.relu",), methods=("relu",), aten=("relu",))`:
  nn classes, and functions / Tensor methods / ATen ops called with the input alone; an nn class
  converts through `from_module=lambda m, shape: {args}` (read its attributes; raise
  NotConvertible(reason) for settings evo cannot express).
* a call with arguments is a `Call` in `Imports(calls=(...))`: its names ("F.max_pool2d",
  "torch.flatten", "Tensor.flatten", "operator.add", "aten.max_pool2d": ATen by base name), its
  parameter names in order (tensors first), a converter `(bound args, input shapes) -> {args}`
  (or [(op, args), ...] steps) and the defaults; `tensors=` names the tensor parameters when
  they are not just "input"; `varargs=`, `free=`, `output=` and `when=` cover x.permute(0, 2, 1),
  x.view(x.size(0), -1) (converted from the traced output shape) and a name shared by two ops
  (aten.mul by a number is scale_by); `batch_of=` a size read from another tensor's batch
  (t.expand(x.shape[0], -1): expand(t, x)).  See pool.py, shape.py, arith.py, activation.py, dims.py,
  window.py, attention.py.
* an nn module whose call takes more than its input (nn.MultiheadAttention(q, k, v, ...)) gives
  `Imports(module_call=Call((), params, check))`; one returning a tuple gives `output=(index,
  reason)`.  A tensor a block reads itself converts by the op that imports its class
  (`modules=("nn.Parameter",)`, `from_module(tensor, None)`).
* plugins (`evo.extend.register_op(..., imports=..., from_module=...)`) take the same road.

An :class:`OpDef` holds everything about one op, built-in or user-defined
alike: its arguments (types, defaults, ranges), the shape rule (exact PyTorch
output-size formulas), its parameter tensors, the `nn.Module` constructor and
the functional form the code generator writes, the derivative rule the
compiled CAM strategy uses, the cost workload rule, the flags the passes read
(elementwise, activation, affine, fusion role, gradient-only), the importer's
aliases (nn modules, functional, Tensor-method and ATen names) and its doc
line.  The families (`conv.py`, `norm.py`, `activation.py`, ...) register the
built-in ones; `evo.extend.register_op` registers user-defined ones into the
same table.

Nothing here imports the rest of evo beyond the IR's op-name type: the cost
rule receives the workload module (`evo.cost.workload`) and the gradient rule
the graph builder as arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from evo import codes as C
from evo.ir.node import Op, fmt_shape  # noqa: F401 - re-exported: the ops' messages use it


class OpError(Exception):
    """A shape or argument error; `arg` names the offending argument (or None for the input)."""

    def __init__(self, message: str, arg: str | None = None, code: str = C.SHAPE_MISMATCH, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.code = code
        self.hint = hint


class NotConvertible(Exception):
    """Raised by an importer converter (an entry's `from_module` or `Call.convert`) for what evo cannot
    express; `reason` says why (one line, no path: the importer adds where and what)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


REQUIRED = object()


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: str  # int | int2 | float | bool | ints (a list of ints, or one int) | str
    default: Any = REQUIRED
    min: float | None = None
    max: float | None = None
    doc: str = ""
    choices: tuple = ()  # kind "str": the strings allowed


@dataclass(frozen=True)
class Call:
    """A torch function, Tensor method, Python operator or ATen op that the importer converts to the
    op with arguments read from the call.

    names     "F.max_pool2d", "torch.flatten", "Tensor.flatten", "operator.add", "aten.max_pool2d" (ATen ops by
              their base name, without the overload)
    params    the call's parameters in order, the tensor(s) first ("input", ...)
    convert   (bound {parameter: value}, input shapes) -> the op's arguments (a dict; defaults are
              filled in), or steps [(op, args), ...] applied one after another (torch.mean over H and
              W: a pooling, then a flatten; [] for none: the input itself); raise NotConvertible(reason)
              for what evo cannot express
    defaults  {parameter: default} of the optional parameters
    tensors   the parameters holding the tensor inputs (a list parameter for torch.cat)
    constant  the reason given when one of those is not a tensor
    batch_of  a parameter whose first value is another tensor's batch size (`x.shape[0]`, `x.size(0)`):
              that tensor is the op's next input (t.expand(x.shape[0], -1, -1): expand(t, x))
    varargs   the parameter that takes the positional arguments from its place on (x.permute(0, 2, 1),
              x.view(n, -1)) as one tuple; a single list or tuple there is the tuple itself
    free      parameters the converter does not read as constants: they may be computed in the graph
              (x.view(x.size(0), -1), converted from the shape it produced)
    output    the converter also receives the traced output shape: convert(bound, shapes, out_shape)
    when      bound -> bool: the call is this op only when it holds (aten.mul by a number is a
              scale_by, by a tensor a mul): the importer tries the guarded calls of a name first, then
              the one without a guard; a guarded call whose arguments do not bind is passed over
    """
    names: tuple[str, ...]
    params: tuple[str, ...]
    convert: Callable
    defaults: dict = field(default_factory=dict)
    tensors: tuple[str, ...] = ("input",)
    constant: str = "applied to a non-tensor"
    varargs: str = ""
    batch_of: str = ""
    free: tuple[str, ...] = ()
    output: bool = False
    when: Callable | None = None


@dataclass(frozen=True)
class Imports:
    """Names the importer maps to this op with no arguments (or with `from_module`/`from_call`).

    modules    torch.nn classes, as written in code: "nn.ReLU"
    functions  "F.relu", "torch.relu" (called with the input tensor, and maybe `inplace`)
    methods    Tensor methods: "relu", "relu_"
    aten       ATen op names in an exported graph: "relu", "relu_"
    """
    modules: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    aten: tuple[str, ...] = ()
    # classes outside torch, matched by class name (torchvision's "StochasticDepth"): they convert
    # through `from_module`, which reads their attributes (a module whose attributes do not fit
    # is traced through like any other)
    classes: tuple[str, ...] = ()
    # calls with arguments (F.max_pool2d(x, 3, 2), torch.cat([a, b], 1), aten.max_pool2d(x, [3, 3]))
    calls: tuple[Call, ...] = ()
    # how a call of the imported nn module binds (its forward's parameters, `names` empty): the
    # tensors it takes and a converter that checks the other arguments ({} or NotConvertible)
    module_call: Call | None = None
    # the module returns a tuple: (the index of the op's output, the reason for taking another)
    # (nn.MultiheadAttention's (output, weights): `attn(x, x, x)[0]`)
    output: tuple[int, str] | None = None


@dataclass(frozen=True)
class CostSummary:
    """A summary line of the cost report over the steps of the cost rules (several steps, each
    `(label, workload)`) whose labels start with `label + ": "`: their share of the latency, energy
    and MACs, and the traffic of `what` on each memory level, counted in the steps named in
    `traffic` ((step, the traffic fields counted: "input", "output", "psum", "total"), ...).
    The attention ops' entries share one (evo/ops/attention.py)."""
    label: str
    what: str
    traffic: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, eq=False)
class OpDef:
    name: str
    params: tuple[ParamSpec, ...]
    shape: Callable[[list[tuple], dict], tuple] | None  # None: gradient-only ops carry their shapes
    n_inputs: int | None = 1  # None: variadic (concat)
    module: Callable[[dict, list[tuple]], str] | None = None  # nn.Module constructor source
    functional: Callable[[dict, list[str]], str] | None = None  # expression over input names
    # a variadic op applied to a whole list (a block's `xs: Tensor[]` parameter, in order): the expression
    # over the list's name (`torch.cat(xs, 1)`, as torch writes it); None: `functional` over its items
    functional_list: Callable[[dict, str], str] | None = None
    # (attrs, input names, input shapes) -> the expression in training mode, where it differs from
    # `functional` (the inference form): a network's generated forward writes
    # `<training> if self.training else <functional>`
    training: Callable[[dict, list[str], list[tuple]], str | None] | None = None
    weights: Callable[[dict, list[tuple]], dict[str, tuple]] = field(default=lambda a, s: {})
    doc: str = ""
    torch: str = ""  # the PyTorch equivalent, for the docs
    # --- flags (read by the passes)
    elementwise: bool = False  # shape-preserving, one output element per input element
    parametric: bool = False   # has parameter tensors (becomes a named submodule)
    activation: bool = False   # a pointwise nonlinearity: fuses into its producer's output path
    affine: bool = False       # output affine in the input: an affine head folds to channel weights
    fusion: str = ""           # "producer" (conv, linear), "join" (add, mul), "norm" (batch norms)
    gradient_only: bool = False  # emitted by the compiled-CAM pass only, not callable from programs
    # the output holds the input's elements, moved or as they are (a view, a permute, a roll, dropout
    # at inference): its zero fraction is the input's (evo.cost.sparsity passes it through)
    keeps_zeros: bool = False
    # its output is a channels-first map [N, C, H, W] whatever its input's layout (convolution, 2-D pooling
    # and norms): a CAM layer there is explained as it is (evo/ops/tokens.py's layout inference)
    channels_first: bool = False
    # layout(attrs, rank) -> how the op moves the axes of a map or a token sequence, for that inference:
    # ("permute", perm) (output dimension i is input dimension perm[i]), ("regroup",) (a reshape: the
    # axes regrouped), ("join", dim) (a concat along dim), ("resize", ((axis, start or None), ...)) (a
    # slice, narrow or pad of whole dimensions); None: the op keeps the positions of its input
    layout: Callable[[dict, int], tuple] | None = None
    operator_only: bool = False  # written with an operator (`+`), not callable by name
    # how many of its arguments a program writes before the tensors, as torch does (einsum's equation:
    # `einsum("bij,bjk->bik", a, b)`); they are its first params
    leading: int = 0
    operator: str = ""         # the binary operator a program writes it with on two tensors ("+", "*")
    operator_verb: str = ""    # the verb messages about the operator use ("cannot add a tensor and int")
    # the arguments with which the op joins a list of tensors a block takes (concat: {"dim": 1}, DenseNet's
    # `torch.cat(inputs, 1)`): the importer writes a block called with a list with this op first
    list_join: dict | None = None
    # its `shape` argument is the output's shape (view, reshape): the importer writes it from the
    # input's dimensions (`v.channels // 2`) and binds that input to a name
    reshapes: bool = False
    builtin: bool = True       # False for ops registered through evo.extend
    tensor: bool = False       # a learnable tensor (`parameter`): an nn.Parameter at its path, not a module
    # with `tensor`: a buffer instead of a parameter, "persistent" (in the state_dict: Swin's
    # relative_position_index) or "constant" (non-persistent: a mask computed from the shapes)
    buffer: str = ""
    # fullgrad_bias(attrs) -> bool: the module adds a per-channel bias [C] to a [N, C, H, W] output
    # (conv2d with a bias, batchnorm2d: an implicit one), a layer of FullGrad (method fullgrad)
    fullgrad_bias: Callable[[dict], bool] | None = None
    # pieces(attrs, input shape) -> [(op, attrs)]: an op with several outputs (chunk, split), each
    # piece one op of the input (a `narrow`); the call's value is the tuple of pieces
    pieces: Callable | None = None
    # helper: (class name, source) of a small nn.Module class the generated file defines when the op
    # is used as a module (torch has no nn.Permute or channels-first LayerNorm); the constructor
    # source names it
    helper: tuple[str, str] | None = None
    # grad_code(attrs, input expressions, k, const, path) -> [lines] assigning `{out}` (and `{out}_...`): how the
    # explainer writes this op where it computes a gradient (every gradient-only op; a forward op whose
    # functional form does not take a K-batched gradient, like `mul`); attrs["@shape"] is the node's shape,
    # `const(base, init)` a buffer computed once from the model, `path` the forward layer's module path;
    # where the input is the one-hot gradient seed, attrs["@seed"] names its class indices [K*B] (None at
    # run time when the explainer is given coefficients instead: the seed is then dense).
    # Without it a forward op applied to a gradient is written with `functional`
    grad_code: Callable | None = None
    # the input whose producer the explainer writes with its argmax indices (`with_indices`): grad_code
    # receives the indices' expression for it (the max-pool gradient's second input)
    indices_input: int | None = None
    # with_indices(attrs, input names) -> expression of (values, argmax indices) (max pooling)
    with_indices: Callable | None = None
    # --- token rows (the compiled CAM computes a head that reads one token, ViT's class token, on
    # that token's row only: evo/passes/gradient.py `restrict_rows`)
    # rowwise(attrs, input shapes) -> True where position i of the output's dimension 1 is a function
    # of position i of each input's dimension 1 only (inputs broadcast along it aside): layer norm over
    # the last dimension, linear on [N, T, F], elementwise ops
    rowwise: Callable | None = None
    # reads_rows(attrs, input shape) -> (start, length, attrs on those rows) where the op reads only
    # positions start..start+length of its input's dimension 1 (select of the class token), or None
    reads_rows: Callable | None = None
    # on_rows(attrs, input shapes, start, length) -> (op, attrs): the op that computes only positions
    # start..start+length of the output's dimension 1 from the whole input (attention: those query rows)
    on_rows: Callable | None = None
    # forward_code(attrs, input expressions, module expression) -> lines assigning `{out}` (and
    # `{out}_...`): how the explainer writes an op that exists only in explain graphs (`on_rows`'s ops;
    # the module expression is the layer at the node's path, whose parameters it reads)
    forward_code: Callable | None = None
    # --- rules
    # grad(builder, node, gradient id) -> [(input index, gradient node id)]: the reverse-mode rule of
    # the compiled CAM strategy (see evo/passes/gradient.py for the builder)
    grad: Callable | None = None
    # derivative(attrs, x, y) -> torch expression of d y / d x, from the input and output expressions: for
    # an elementwise single-input op (built-in activations and user-defined ops alike) it is the whole
    # gradient rule (`grad` may stay None; evo/ops/gradient.py's `derivative_grad` writes g * derivative)
    derivative: Callable | None = None
    # global_average(attrs) -> does the op average each channel over all positions ([N, C, H, W] ->
    # [N, C, 1, 1])?  An affine head starting with such an op folds to channel weights
    global_average: Callable | None = None
    # cost(W, attrs, input dims, output dims) -> workload, W being evo.cost.workload (None: costs nothing)
    cost: Callable | None = None
    # the cost report's summary line over the labelled steps of its cost rule (attention), or None
    cost_summary: CostSummary | None = None
    # --- importer
    imports: Imports = Imports()
    # (module, input shape) -> args of an imported nn module (`imports.modules`, `.classes`): read its
    # attributes, raise NotConvertible(reason) for settings evo cannot express
    from_module: Callable | None = None
    # the importer writes the op's optional arguments positionally, as PyTorch users read them:
    # `dropout(x, 0.2)`, `leaky_relu(x, 0.1)` (else by name: `softmax(x, dim=2)`)
    positional: bool = False
    # --- docs (the op table in docs/language.md is generated from these)
    doc_call: str = ""   # how it is written (default `name(x)`)
    doc_args: str = ""   # the arguments after the input (defaults)
    doc_shape: str = ""  # output shape and checks

    @property
    def op(self) -> Op:
        """The IR op of this entry (its name)."""
        return Op(self.name)


REGISTRY: dict[str, OpDef] = {}


def register(d: OpDef) -> OpDef:
    REGISTRY[d.name] = d
    return d


def lookup(name: str) -> OpDef | None:
    return REGISTRY.get(name)


def of_node(n) -> OpDef:
    """The OpDef of an IR node (KeyError for an input node or an unknown op)."""
    return REGISTRY[n.op]


def by_op(op) -> OpDef:
    return REGISTRY[op]


def language_ops() -> dict[str, OpDef]:
    """The ops a program can use (by name or by operator): not the gradient-only or folded ones
    (those have no shape rule)."""
    return {k: d for k, d in REGISTRY.items() if d.shape is not None}


def language_op(name: str) -> OpDef | None:
    """The op a program names `name` (None for unknown, gradient-only and folded ops)."""
    d = REGISTRY.get(name)
    return d if d is not None and d.shape is not None else None


def by_operator(symbol: str) -> OpDef | None:
    """The op a program writes with the binary operator `symbol` on two tensors ("+": add), or None."""
    return next((d for d in REGISTRY.values() if d.operator == symbol), None)


def list_joiner() -> OpDef | None:
    """The op that joins a list of tensors a block takes (its entry's `list_join`), or None."""
    return next((d for d in REGISTRY.values() if d.list_join is not None), None)


def cost_summaries() -> list[CostSummary]:
    """The cost report's summary lines the entries declare, each once, in registration order."""
    out: list[CostSummary] = []
    for d in REGISTRY.values():
        if d.cost_summary is not None and d.cost_summary not in out:
            out.append(d.cost_summary)
    return out


def callable_ops() -> set[str]:
    """Op names a program can call."""
    return {k for k, d in language_ops().items() if not d.operator_only}


# ----------------------------------------------------------------- helpers for the families

def lit(v: Any) -> str:
    """A Python literal for a compile-time value (numbers, bools, tuples only)."""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            raise ValueError("non-finite literal")
        return repr(v)
    if isinstance(v, str):
        return repr(v)  # a Python string literal: quotes and escapes are repr's
    if isinstance(v, tuple):
        if len(v) == 2 and v[0] == v[1]:
            return lit(v[0])
        return "(" + ", ".join(lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    raise TypeError(f"no literal for {type(v).__name__}")


def tuple_lit(v) -> str:
    """A tuple literal written out in full (`lit` shortens an equal pair to one number, as
    PyTorch's int-or-pair arguments take it; a shape or a list of dims must stay a tuple)."""
    return "(" + ", ".join(lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"


def rank(shape: tuple, want: int | tuple[int, ...], what: str) -> None:
    wants = (want,) if isinstance(want, int) else want
    if len(shape) not in wants:
        exp = " or ".join(f"{w}-D" for w in wants)
        raise OpError(f"{what} expects a {exp} input, got a {len(shape)}-D tensor of shape {fmt_shape(shape)}",
                      None, C.WRONG_TENSOR_RANK)


def concrete(d, what: str) -> int:
    if not isinstance(d, int):
        raise OpError(f"{what} must be a known integer, not the symbol '{d}'", None, C.INVALID_INPUT_DECLARATION)
    return d


def kwargs_src(a: dict, names_defaults: list[tuple[str, Any, str]]) -> list[str]:
    """Keyword arguments for a constructor, omitting those equal to PyTorch's default."""
    out = []
    for key, torch_default, torch_name in names_defaults:
        v = a[key]
        if v != torch_default:
            out.append(f"{torch_name}={lit(v)}")
    return out


def join(*parts) -> str:
    flat = []
    for p in parts:
        if isinstance(p, list):
            flat.extend(p)
        else:
            flat.append(p)
    return ", ".join(flat)


def same_shape(shapes, a):
    return shapes[0]


def rowwise_any(a, shapes) -> bool:
    """`rowwise` of an elementwise op: every position on its own."""
    return True


def norm_dim(d: int, rank_: int, arg: str) -> int:
    if not -rank_ <= d < rank_:
        raise OpError(f"dimension {d} is out of range for a {rank_}-D tensor", arg, C.INDEX_OUT_OF_RANGE)
    return d % rank_


def slice_layout(a: dict, r: int) -> tuple:
    """``OpDef.layout`` of an op that keeps part of one dimension, ``a["dim"]`` from ``a["start"]``
    (narrow, subsample)."""
    return ("resize", ((a["dim"] % r, a["start"]),))


def numel(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def eltwise_cost(ops_per_element: int, n_in: int = 1, params: bool = False) -> Callable:
    """A cost rule: `ops_per_element` ALU operations per output element, `n_in` inputs read,
    and (with `params`) two per-channel parameter vectors."""
    def cost(W, a, ins, out):
        return W.EltwiseWorkload(numel(out), n_in, ops_per_element, 2 * out[1] if params else 0)
    return cost


def view_cost(W, a, ins, out):
    """Moves nothing: a view of its input."""
    return W.CopyWorkload(numel(ins[0]), numel(out), view=True)


def pair(v: Any) -> tuple[int, int]:
    """An importer's reading of a torch size argument (int or 1-/2-sequence) as an int pair."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return (int(v[0]), int(v[0]))
        if len(v) != 2:
            raise NotConvertible(f"a {len(v)}-D window/size where evo expects 2-D")
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def normalize_args(d: OpDef, given: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and expand int2 pairs; `given` values are already type-checked."""
    a: dict[str, Any] = {}
    for p in d.params:
        v = given.get(p.name, p.default)
        if p.kind == "int2" and v is not None and not isinstance(v, tuple):
            v = (v, v)
        a[p.name] = v
    if "stride" in a and a["stride"] is None:  # pools: stride defaults to the kernel
        a["stride"] = a["kernel"]
    return a


def param_count(d: OpDef, attrs: dict, in_shapes: list[tuple]) -> int:
    total = 0
    if d.tensor:
        return 0 if d.buffer else numel(attrs["shape"])
    for name, shp in d.weights(attrs, in_shapes).items():
        if name in ("running_mean", "running_var", "num_batches_tracked"):
            continue
        n = 1
        for x in shp:
            n *= x
        total += n
    return total
