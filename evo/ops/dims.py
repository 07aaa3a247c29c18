"""Dimension ops: permute, transpose, reshape/view, narrow and the several-output chunk/split,
and `parameter` (a learnable tensor declared in a block).

The batch dimension stays first: evo's tensors are `[N, ...]` with a free batch `N`, and
every op here keeps dimension 0 where it is (so the compiled CAM's gradients, batched over
classes in that dimension, go through them unchanged).  Permutes and transposes move
data (a copy) unless they only move dimensions of size 1; reshapes, narrows and chunks
are views (no traffic).
"""

from __future__ import annotations

from evo import codes as C
from evo.ir.node import Op
from evo.ops.base import (Call, Imports, NotConvertible, OpDef, OpError, ParamSpec, fmt_shape, lit, norm_dim,
                          numel, register, slice_layout, tuple_lit, view_cost)
from evo.ops.gradient import RESHAPE

NARROW_T = Op("narrow_grad")  # the gradient of narrow: zero-padded back to the input's size

PERMUTE_HELPER = ("EvoPermute", '''class {name}(nn.Module):
    """x.permute(*dims) as a module (torch has no nn.Permute)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.permute(*self.dims)''')


def _moves_data(shape: tuple, perm: tuple) -> bool:
    """Does the permutation change the memory order of the elements?  Not when it only
    moves dimensions of size 1."""
    kept = [d for d in perm if shape[d] != 1]
    return kept != sorted(kept)


def _permute_cost(W, a, ins, out):
    perm = a["dims"] if "dims" in a else _transpose_perm(a, len(ins[0]))
    return W.CopyWorkload(numel(ins[0]), numel(out), view=not _moves_data(ins[0], perm))


def _permute_shape(shapes, a):
    (x,) = shapes
    r = len(x)
    dims = a["dims"]
    if len(dims) != r:
        raise OpError(f"permute of a {r}-D tensor needs {r} dimensions, got {len(dims)}", "dims", C.VALUE_OUT_OF_RANGE,
                      f"give a permutation of 0..{r - 1}, e.g. {list(range(r))}")
    norm = [norm_dim(d, r, "dims") for d in dims]
    if sorted(norm) != list(range(r)):
        dup = next(d for d in norm if norm.count(d) > 1)
        raise OpError(f"{list(dims)} is not a permutation of the {r} dimensions: dimension {dup} appears twice",
                      "dims", C.VALUE_OUT_OF_RANGE, f"each of 0..{r - 1} must appear once")
    if norm[0] != 0:
        raise OpError(f"permute moves the batch dimension 0 (to position {norm.index(0)})", "dims", C.VALUE_OUT_OF_RANGE,
                      "evo keeps the batch dimension first: start the permutation with 0")
    return tuple(x[d] for d in norm)


def _inverse(perm):
    inv = [0] * len(perm)
    for i, d in enumerate(perm):
        inv[d] = i
    return tuple(inv)


def _permute_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    perm = tuple(d % len(n.shape) for d in n.attr("dims"))
    return [(0, b.add(Op("permute"), (g,), {"dims": _inverse(perm)}, b.gshape(x), n.span, None,
                      f"d_{n.name or 'permute'}"))]


def _permute_from_module(m, shape):
    """torchvision's Permute module (ConvNeXt): its `dims` attribute, checked by running it."""
    import torch

    dims = getattr(m, "dims", None)
    if (not isinstance(dims, (list, tuple)) or not dims or not all(isinstance(d, int) for d in dims)
            or sorted(dims) != list(range(len(dims))) or dims[0] != 0 or any(True for _ in m.children())
            or any(True for _ in m.parameters()) or any(True for _ in m.buffers())):
        raise ValueError("not a batch-first Permute")
    x = torch.randn(*[2 + i for i in range(len(dims))])
    with torch.no_grad():
        if not torch.equal(type(m).forward(m, x), x.permute(*dims)):  # (not m(x): a tracer may intercept calls)
            raise ValueError("computes something else than a permute")
    return {"dims": tuple(dims)}


def _permute_call(b, shapes):
    """x.permute(0, 2, 1) / torch.permute(x, (0, 2, 1)) / aten.permute: a permutation that keeps the
    batch first."""
    r = len(shapes[0])
    dims = tuple(b["dims"])
    if len(dims) != r or sorted(int(d) % r for d in dims) != list(range(r)):
        raise NotConvertible("not a permutation of the dimensions")
    dims = tuple(int(d) % r for d in dims)
    if dims[0] != 0:
        raise NotConvertible("a permute that moves the batch dimension (evo keeps it first)")
    return {"dims": dims}


register(OpDef(
    "permute", (ParamSpec("dims", "ints", doc="a permutation of the dimensions"),), _permute_shape,
    module=lambda a, s: f"{{EvoPermute}}({lit(tuple(a['dims']))})", helper=PERMUTE_HELPER,
    functional=lambda a, xs: f"{xs[0]}.permute({', '.join(lit(d) for d in a['dims'])})",
    torch="Tensor.permute", doc="reorder the dimensions", affine=True, keeps_zeros=True, grad=_permute_grad, cost=_permute_cost,
    layout=lambda a, r: ("permute", tuple(d % r for d in a["dims"])),
    imports=Imports(classes=("Permute",), calls=(Call(("torch.permute", "Tensor.permute", "aten.permute"),
                                                       ("input", "dims"), _permute_call, varargs="dims"),)),
    from_module=_permute_from_module,
    doc_call="permute(x, dims)", doc_args="`dims` list of ints: a permutation of the dimensions, starting with 0",
    doc_shape="`len(dims)` = rank and each dimension once (E0203); the batch dimension stays first (E0203); "
              "output dimension i is input dimension `dims[i]`. A copy unless only size-1 dimensions move"))


def _transpose_perm(a, r):
    d0, d1 = a["dim0"] % r, a["dim1"] % r
    perm = list(range(r))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return tuple(perm)


def _transpose_shape(shapes, a):
    (x,) = shapes
    r = len(x)
    d0, d1 = norm_dim(a["dim0"], r, "dim0"), norm_dim(a["dim1"], r, "dim1")
    for d, arg in ((d0, "dim0"), (d1, "dim1")):
        if d == 0 and d0 != d1:
            raise OpError("transpose moves the batch dimension 0", arg, C.VALUE_OUT_OF_RANGE,
                          "evo keeps the batch dimension first: transpose dimensions 1 and above")
    out = list(x)
    out[d0], out[d1] = out[d1], out[d0]
    return tuple(out)


def _transpose_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(n.op, (g,), n.attr_dict, b.gshape(x), n.span, None, f"d_{n.name or 'transpose'}"))]


def _transpose_call(b, shapes):
    """x.transpose(1, 2) / torch.swapaxes / aten.transpose: two dimensions other than the batch (the
    same one twice: the input itself)."""
    if b.get("dim0") is None or b.get("dim1") is None:
        raise NotConvertible("a transpose without two dimensions")
    r = len(shapes[0])
    d0, d1 = int(b["dim0"]), int(b["dim1"])
    if d0 % r == d1 % r:
        return []
    if 0 in (d0 % r, d1 % r):
        raise NotConvertible("a transpose of the batch dimension (evo keeps it first)")
    return {"dim0": d0, "dim1": d1}


_TRANSPOSE_NAMES = ("torch.transpose", "torch.swapaxes", "torch.swapdims", "Tensor.transpose", "Tensor.swapaxes",
                    "Tensor.swapdims", "aten.transpose", "aten.swapaxes")

register(OpDef(
    "transpose", (ParamSpec("dim0", "int"), ParamSpec("dim1", "int")), _transpose_shape,
    module=lambda a, s: f"{{EvoPermute}}({lit(_transpose_perm(a, len(s[0])))})", helper=PERMUTE_HELPER,
    functional=lambda a, xs: f"{xs[0]}.transpose({lit(a['dim0'])}, {lit(a['dim1'])})",
    torch="torch.transpose", doc="swap two dimensions", affine=True, keeps_zeros=True, grad=_transpose_grad, cost=_permute_cost,
    layout=lambda a, r: ("permute", _transpose_perm(a, r)),
    imports=Imports(calls=(Call(_TRANSPOSE_NAMES, ("input", "dim0", "dim1"), _transpose_call),)),
    doc_call="transpose(x, dim0, dim1)", doc_args="`dim0`, `dim1` ints, in range",
    doc_shape="dimensions `dim0` and `dim1` swapped; both in range (E0206), neither the batch dimension 0 "
              "(E0203). A copy unless only size-1 dimensions move"))


def _reshape_shape(shapes, a):
    (x,) = shapes
    want = list(a["shape"])
    free = [i for i, d in enumerate(want) if d == -1]
    if len(free) > 1:
        raise OpError(f"reshape to {list(want)}: only one dimension may be -1", "shape", C.VALUE_OUT_OF_RANGE)
    bad = [d for d in want if d < -1 or d == 0]
    if bad:
        raise OpError(f"reshape to {list(want)}: dimension {bad[0]} is not a size (sizes are ≥ 1, or -1 once)",
                      "shape", C.VALUE_OUT_OF_RANGE)
    sym = [d for d in x if not isinstance(d, int)]
    known_in = numel([d for d in x if isinstance(d, int)])
    known_out = numel([d for d in want if d != -1])
    if sym:
        # a free batch dimension: -1 must stand for it (the other sizes multiply to the rest)
        if not free or known_in != known_out:
            have = " x ".join(str(d) for d in x)
            raise OpError(f"cannot reshape {fmt_shape(x)} ({have} elements) to {list(want)}: the sizes other than "
                          f"the batch multiply to {known_out}, not {known_in}", "shape", C.ELEMENT_COUNT_MISMATCH,
                          "write -1 for the batch dimension and sizes whose product is the rest")
        want[free[0]] = sym[0]
    elif free:
        if known_in % known_out:
            raise OpError(f"cannot reshape {fmt_shape(x)} ({known_in} elements) to {list(want)}: {known_in} is "
                          f"not a multiple of {known_out}", "shape", C.ELEMENT_COUNT_MISMATCH)
        want[free[0]] = known_in // known_out
    elif known_in != known_out:
        raise OpError(f"cannot reshape {fmt_shape(x)} ({known_in} elements) to {list(want)} ({known_out} "
                      "elements)", "shape", C.ELEMENT_COUNT_MISMATCH, "the sizes must multiply to the input's element count")
    if want[0] != x[0]:
        raise OpError(f"reshape to {list(want)} changes the batch dimension ({x[0]} -> {want[0]})", "shape",
                      C.ELEMENT_COUNT_MISMATCH, "evo keeps the batch dimension first: give it as -1")
    return tuple(want)


def _reshape_code(method):
    def code(a, xs):
        # the shape as given; the batch symbol stays -1
        return f"{xs[0]}.{method}({', '.join(lit(d) for d in a['shape'])})"
    return code


def _reshape_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(RESHAPE, (g,), {}, b.gshape(x), n.span, None, f"d_{n.name or 'reshape'}"))]


def _reshape_grad_code(a, ins, k, const, path):
    """The gradient form of `reshape` (RESHAPE: from the rules of flatten, reshape and view, and a
    broadcast gradient summed back to its input's shape), [K*B, ...] to the node's shape."""
    if a.get("sum_to"):
        return [f"{{out}} = _evo_sum_to({ins[0]}, {tuple(a['@shape'][1:])!r})"]
    return [f"{{out}} = {ins[0]}.reshape(-1, {', '.join(str(d) for d in a['@shape'][1:])})"]


def reshape_steps(a: tuple | None, b: tuple | None) -> list:
    """An importer's steps for a reshape of `a` to `b` (x.view / x.reshape, read from the traced shapes):
    none when nothing changes, a flatten when it is one, else a reshape with the batch written -1."""
    if a is None or b is None:
        raise NotConvertible("reshapes a non-tensor")
    if len(a) >= 1 and len(b) >= 1 and b[0] == a[0]:
        for s in range(1, len(a)):
            for e in range(s, len(a)):
                if tuple(a[:s]) + (numel(a[s:e + 1]),) + tuple(a[e + 1:]) == tuple(b):
                    if s == e and len(a) == len(b):
                        return []
                    return [("flatten", {"start": s, "end": e - len(a) if e == len(a) - 1 else e})]
    if len(a) >= 1 and len(b) >= 2 and b[0] == a[0]:  # the batch kept first: a reshape of the rest
        return [("reshape", {"shape": (-1,) + tuple(int(d) for d in b[1:])})]
    raise NotConvertible(f"reshapes {list(a)} to {list(b)}; evo keeps the batch dimension first and separate")


def _view_call(b, shapes, out):
    """x.view(...): as a reshape, but a reshape that is not a flatten stays a view."""
    steps = reshape_steps(shapes[0], out)
    return steps[0][1] if len(steps) == 1 and steps[0][0] == "reshape" else steps


def _reshape_call(b, shapes, out):
    return reshape_steps(shapes[0], out)


# the sizes are read from the traced output (x.view(x.size(0), -1): computed in the graph)
_RESHAPE_CALLS = dict(params=("input", "shape"), varargs="shape", free=("shape",), output=True,
                      constant="reshapes a non-tensor")
for _name, _method, _imports in (
        ("reshape", "reshape", Imports(calls=(Call(("torch.reshape", "Tensor.reshape", "aten.reshape", "aten.view",
                                                    "aten._unsafe_view"), convert=_reshape_call, **_RESHAPE_CALLS),
                                               # x.unsqueeze(1), x.squeeze(-1): a reshape to the traced shape
                                               Call(("torch.unsqueeze", "Tensor.unsqueeze", "aten.unsqueeze",
                                                     "torch.squeeze", "Tensor.squeeze", "aten.squeeze"),
                                                    ("input", "dim"), _reshape_call, {"dim": None}, output=True,
                                                    constant="reshapes a non-tensor")))),
        ("view", "view", Imports(calls=(Call(("Tensor.view",), convert=_view_call, **_RESHAPE_CALLS),)))):
    register(OpDef(
        _name, (ParamSpec("shape", "ints", doc="the new shape, -1 once for an inferred size"),), _reshape_shape,
        functional=_reshape_code(_method), torch=f"Tensor.{_method}", affine=True, keeps_zeros=True, reshapes=True,
        grad=_reshape_grad, layout=lambda a, r: ("regroup",),
        cost=view_cost, imports=_imports, grad_code=_reshape_grad_code if _name == "reshape" else None,
        doc=f"{'reshape' if _name == 'reshape' else 'reshape a contiguous tensor (torch view)'}",
        doc_call=f"{_name}(x, shape)", doc_args="`shape` list of ints ≥ 1, `-1` once (inferred)",
        doc_shape="the sizes multiply to the input's element count (E0305); at most one −1 (E0203); the batch "
                  "dimension stays first (write −1 for a free batch `N`). A view (no traffic)"))


def _cut_dim(what: str, dim, shapes) -> int:
    """The importer's dimension of a narrow / chunk / split call (not the batch dimension)."""
    r = len(shapes[0])
    d = int(dim) % r
    if d == 0:
        raise NotConvertible(f"{what} the batch dimension (evo keeps the batch dimension whole)")
    return d


def _narrow_call(b, shapes):
    return {"dim": _cut_dim("cuts", b["dim"], shapes), "start": int(b["start"]), "length": int(b["length"])}


def _chunk_call(b, shapes):
    return {"chunks": int(b["chunks"]), "dim": _cut_dim("splits", b["dim"], shapes)}


def _split_call(b, shapes):
    size = b["split_size_or_sections"]
    size = (int(size),) if isinstance(size, int) else tuple(int(v) for v in size)
    return {"size": size, "dim": _cut_dim("splits", b["dim"], shapes)}


def _slice_call(b, shapes):
    """aten.slice (x[:, a:b], x[..., ::2] in an exported graph): the input itself when it takes
    everything, a narrow, or a subsample when it runs to the end in steps."""
    steps = slice_steps(b["dim"], b["start"], b["end"], b["step"], shapes[0])
    return steps[0][1] if len(steps) == 1 and steps[0][0] == "narrow" else steps


def slice_steps(dim, start, end, step, x: tuple) -> list:
    """Dimension `dim` of a tensor of shape `x` sliced start:end:step (None: the default) as steps:
    [] (everything), [("narrow", args)], or [("subsample", args)] in steps (then a narrow to the
    first elements where it stops before the end) (aten.slice in an exported graph, x[:, a:b] /
    x[..., ::2] in an fx graph)."""
    d = int(dim) % len(x)
    size = x[d]
    step = int(step)
    if step < 1:
        raise NotConvertible(f"a slice with step {step}")
    start = 0 if start is None else int(start)
    end = size if end is None else int(end)
    start = max(0, start + size if start < 0 else start)
    end = min(size, end + size if end < 0 else end)
    if start == 0 and end >= size and step == 1:
        return []
    if d == 0:
        raise NotConvertible("a slice of the batch dimension")
    if end <= start:
        raise NotConvertible(f"an empty slice ({start}:{end} of size {size})")
    if step == 1:
        return [("narrow", {"dim": d, "start": start, "length": end - start})]
    steps = [("subsample", {"dim": d, "start": start, "step": step})]
    n = (end - start + step - 1) // step
    if n < (size - start + step - 1) // step:  # stops before the end: the first n of the subsample
        steps.append(("narrow", {"dim": d, "start": 0, "length": n}))
    return steps


def _narrow_shape(shapes, a):
    (x,) = shapes
    d = norm_dim(a["dim"], len(x), "dim")
    if d == 0:
        raise OpError("narrow cuts the batch dimension 0", "dim", C.VALUE_OUT_OF_RANGE, "narrow dimension 1 or above")
    size = x[d]
    if a["start"] >= size:
        raise OpError(f"start {a['start']} is past the end of dimension {a['dim']} (size {size})", "start", C.VALUE_OUT_OF_RANGE)
    if a["start"] + a["length"] > size:
        raise OpError(f"start {a['start']} + length {a['length']} runs past dimension {a['dim']} (size {size})",
                      "length", C.VALUE_OUT_OF_RANGE)
    out = list(x)
    out[d] = a["length"]
    return tuple(out)


def _narrow_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    d = n.attr("dim") % len(n.shape)
    attrs = {"dim": d, "start": n.attr("start"), "after": x.shape[d] - n.attr("start") - n.attr("length"),
             "rank": len(n.shape)}
    return [(0, b.add(NARROW_T, (g,), attrs, b.gshape(x), n.span, None, f"d_{n.name or 'narrow'}"))]


def _narrow_grad_code(a, ins, k, const, path):
    pad = [0, 0] * (a["rank"] - 1 - a["dim"]) + [a["start"], a["after"]]
    return [f"{{out}} = F.pad({ins[0]}, {tuple_lit(pad)})"]


register(OpDef(NARROW_T, (), None, n_inputs=None, gradient_only=True, grad_code=_narrow_grad_code,
               cost=lambda W, a, ins, out: W.CopyWorkload(numel(ins[0]), numel(out)),
               doc="gradient of narrow (chunk, split): zero-padded to the input's size"))

register(OpDef(
    "narrow", (ParamSpec("dim", "int"), ParamSpec("start", "int", min=0), ParamSpec("length", "int", min=1)),
    _narrow_shape, functional=lambda a, xs: f"{xs[0]}.narrow({lit(a['dim'])}, {lit(a['start'])}, "
                                            f"{lit(a['length'])})",
    torch="torch.narrow", doc="a slice of one dimension", affine=True, grad=_narrow_grad, cost=view_cost,
    layout=slice_layout,
    imports=Imports(calls=(Call(("torch.narrow", "Tensor.narrow"), ("input", "dim", "start", "length"), _narrow_call),
                           Call(("aten.slice",), ("input", "dim", "start", "end", "step"), _slice_call,
                                {"dim": 0, "start": None, "end": None, "step": 1}))),
    doc_call="narrow(x, dim, start, length)", doc_args="`dim` int, in range, not 0; `start` int ≥ 0; "
                                                      "`length` int ≥ 1",
    doc_shape="dimension `dim` cut to `start..start+length` (E0203 past the end). A view"))


def narrow_rows(start: int, length: int) -> tuple[Op, dict]:
    """The op and attrs taking positions start..start+length of dimension 1 (a view): what the
    compiled CAM reads of a value that a row-restricted head uses (evo/passes/gradient.py)."""
    return Op("narrow"), {"dim": 1, "start": start, "length": length}


def _split_dim(shapes, a):
    (x,) = shapes
    d = norm_dim(a["dim"], len(x), "dim")
    if d == 0:
        raise OpError(f"{'chunk' if 'chunks' in a else 'split'} cuts the batch dimension 0", "dim", C.VALUE_OUT_OF_RANGE,
                      "split dimension 1 or above (e.g. the channels: dim=1)")
    if not isinstance(x[d], int):
        raise OpError(f"dimension {a['dim']} is the symbol '{x[d]}'", "dim", C.INVALID_INPUT_DECLARATION)
    return x


def _chunk_pieces(a, x):
    d = a["dim"] % len(x)
    size = x[d]
    step = -(-size // a["chunks"])  # torch.chunk: ceil(size / chunks) each, the last one shorter
    return [("narrow", {"dim": d, "start": s, "length": min(step, size - s)}) for s in range(0, size, step)]


def _split_pieces(a, x):
    d = a["dim"] % len(x)
    size = x[d]
    sizes = a["size"]
    if len(sizes) == 1:  # torch.split(x, n): pieces of n, the last one shorter
        n = sizes[0]
        return [("narrow", {"dim": d, "start": s, "length": min(n, size - s)}) for s in range(0, size, n)]
    out, start = [], 0
    for n in sizes:
        out.append(("narrow", {"dim": d, "start": start, "length": n}))
        start += n
    return out


def _split_shape(shapes, a):
    x = _split_dim(shapes, a)
    sizes = a["size"]
    d = a["dim"] % len(x)
    if len(sizes) > 1 and sum(sizes) != x[d]:
        raise OpError(f"split sizes {list(sizes)} add up to {sum(sizes)}, but dimension {a['dim']} has size "
                      f"{x[d]}", "size", C.ELEMENT_COUNT_MISMATCH)
    return x


register(OpDef(
    "chunk", (ParamSpec("chunks", "int", min=1), ParamSpec("dim", "int", 1)), _split_dim,
    pieces=_chunk_pieces, torch="torch.chunk", doc="split into equal pieces (several outputs)", affine=True,
    imports=Imports(calls=(Call(("torch.chunk", "Tensor.chunk"), ("input", "chunks", "dim"), _chunk_call,
                                 {"dim": 0}),)),
    doc_call="a = chunk(x, chunks, dim=1)", doc_args="`chunks` int ≥ 1; `dim` int (1: the channels), in range, not 0",
    doc_shape="as torch.chunk: pieces of `ceil(size / chunks)`, the last shorter; the value holds the pieces "
              "(`a[0]`, `a[1]`, …), each a view (narrow)"))

register(OpDef(
    "split", (ParamSpec("size", "ints", min=1), ParamSpec("dim", "int", 1)), _split_shape,
    pieces=_split_pieces, torch="torch.split", doc="split into pieces of given sizes (several outputs)",
    affine=True, imports=Imports(calls=(Call(("torch.split", "Tensor.split"), ("input", "split_size_or_sections", "dim"),
                                              _split_call, {"dim": 0}),)),
    doc_call="a = split(x, size, dim=1)", doc_args="`size` int ≥ 1, or a list of sizes; `dim` int (1), in range, not 0",
    doc_shape="as torch.split: pieces of `size` (the last shorter), or of the listed sizes, which add up to the "
              "dimension (E0305); each piece a view (narrow)"))


# ----------------------------------------------------------------- learnable tensors

def _parameter_shape(shapes, a):
    return tuple(a["shape"])


def _short_float(v: float, dtype) -> float:
    """The shortest decimal that is `v` in `dtype` (1e-6, not float32's 9.999999974752427e-07)."""
    import torch

    for digits in range(1, 18):
        s = float(f"{v:.{digits}g}")
        if torch.tensor(s, dtype=dtype).item() == v:
            return s
    return v


def _parameter_from_tensor(t, shape):
    """An nn.Parameter a block reads itself (`self.layer_scale`): its shape, and the value it holds
    when every element holds it (else 0.0)."""
    if t.dim() == 0:
        raise NotConvertible("a 0-D parameter")
    flat = t.detach().flatten()
    init = _short_float(float(flat[0]), t.dtype) if bool((flat == flat[0]).all()) else 0.0
    return {"shape": tuple(int(d) for d in t.shape), "init": init}


register(OpDef(
    "parameter", (ParamSpec("shape", "ints", min=1, doc="the tensor's shape"), ParamSpec("init", "float", 0.0)),
    _parameter_shape, n_inputs=0, tensor=True, parametric=True,
    imports=Imports(modules=("nn.Parameter",)), from_module=_parameter_from_tensor,
    module=lambda a, s: f"nn.Parameter(torch.full({tuple_lit(a['shape'])}, {lit(a['init'])}))",
    torch="nn.Parameter", doc="a learnable tensor of the block (ConvNeXt's layer scale, a class token)",
    doc_call="name = parameter(shape, init=0.0)",
    doc_args="`shape` list of ints ≥ 1; `init` number (0.0), the value it starts with",
    doc_shape="the tensor itself, of `shape` (no input, no batch dimension: it broadcasts). Its state_dict key is "
              "the name it is bound to (`layer_scale` in a block at `features.1.0`: `features.1.0.layer_scale`)"))
