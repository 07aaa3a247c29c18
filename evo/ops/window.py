"""Window-attention ops (Swin v1/v2, MaxViT): batched `matmul`, `scale_by` a constant,
`roll`, strided `subsample`, `pad`, the relative-position buffers and the table lookup
(`relative_position_index`, `relative_coords_table`, `relative_bias`), the shifted-window
attention mask (`window_mask`), and Swin-V2's cosine attention pieces (`l2_normalize`,
`clamp`, `exp`).

Attention keeps evo's batch-first rule: windows are a dimension of their own
(`[N, windows, tokens, C]`, heads `[N, windows, heads, tokens, d]`), never folded into
the batch as torchvision's `B * nW` is.  The buffers are tensors of the block bound to
a name, like `parameter`: `relative_position_index` is a registered buffer (in the
`state_dict`, under the name it is bound to, as in torchvision), `window_mask` a
non-persistent one (a constant of the shapes, not in the `state_dict`).
"""

from __future__ import annotations

import math

from evo import codes as C
from evo.ir.node import Op
from evo.ops.base import (Call, Imports, NotConvertible, OpDef, OpError, ParamSpec, eltwise_cost, fmt_shape, lit,
                          norm_dim, numel, register, same_shape, slice_layout, tuple_lit, view_cost)

MATMUL_T = Op("matmul_grad")        # the gradient of matmul w.r.t. one operand
SUBSAMPLE_T = Op("subsample_grad")  # the gradient of a strided slice: scattered back into zeros
PAD_T = Op("pad_grad")              # the gradient of zero padding: the unpadded part
NORMALIZE_T = Op("l2_normalize_grad")  # the gradient of F.normalize
CLAMP_T = Op("clamp_grad")          # the gradient of clamp: passed where min <= x <= max


def _batched(x: tuple) -> bool:
    """Does the tensor have evo's free batch dimension (a symbol first)?  Learnable tensors
    and buffers (no batch) do not."""
    return bool(x) and not isinstance(x[0], int)


# ----------------------------------------------------------------------------------- matmul

def _matmul_shape(shapes, a):
    if len(shapes) != 2:
        raise OpError(f"matmul takes two tensors, got {len(shapes)}", None, C.MISSING_ARGUMENT, "write matmul(a, b)")
    x, y = shapes
    for i, s in enumerate(shapes):
        if len(s) < 2:
            raise OpError(f"matmul operand {i + 1} is {len(s)}-D, {fmt_shape(s)}; matmul multiplies matrices "
                          "(the last two dimensions)", f"#{i}", C.WRONG_TENSOR_RANK)
    if x[-1] != y[-2]:
        raise OpError(f"matmul of {fmt_shape(x)} and {fmt_shape(y)}: the inner sizes differ ({x[-1]} vs "
                      f"{y[-2]})", "#1", C.SHAPE_MISMATCH,
                      "a [..., m, k] times b [..., k, n]; transpose(b, -2, -1) if b is [..., n, k]")
    bx, by = x[:-2], y[:-2]
    lead = []
    for i in range(max(len(bx), len(by))):
        p = bx[len(bx) - 1 - i] if i < len(bx) else 1
        q = by[len(by) - 1 - i] if i < len(by) else 1
        if p == q or q == 1:
            lead.append(p)
        elif p == 1:
            lead.append(q)
        else:
            raise OpError(f"matmul of {fmt_shape(x)} and {fmt_shape(y)}: the batch dimensions do not broadcast "
                          f"({p} vs {q})", "#1", C.SHAPE_MISMATCH, "the dimensions before the last two must be equal or 1")
    return tuple(reversed(lead)) + (x[-2], y[-1])


def _matmul_grad(b, n, g):
    out = []
    for i in range(2):
        src = b.nodes[n.inputs[i]]
        other = n.inputs[1 - i]
        attrs = {"side": i, "full": tuple(n.shape[1:-2]) + ((src.shape[-2], src.shape[-1])),
                 "shape": tuple(src.shape[1:])}
        out.append((i, b.add(MATMUL_T, (g, other), attrs, b.gshape(src), n.span, None, f"d_{n.name or 'matmul'}")))
    return out


def _matmul_grad_code(a, ins, k, const, path):
    """d (A @ B): dA = g @ Bᵀ, dB = Aᵀ @ g; g [K*B, ...], the other operand a forward value
    ([B, ...], or without batch); summed back over broadcast dimensions."""
    g, other = ins
    if a["side"] == 0:
        prod = f"_evo_k({g}, {k}).matmul({other}.transpose(-2, -1))"
    else:
        prod = f"{other}.transpose(-2, -1).matmul(_evo_k({g}, {k}))"
    lines = [f"{{out}} = {prod}.reshape(-1, {', '.join(str(d) for d in a['full'])})"]
    if tuple(a["full"]) != tuple(a["shape"]):
        lines.append(f"{{out}} = _evo_sum_to({{out}}, {tuple_lit(a['shape'])})")
    return lines


def _matmul_cost(W, a, ins, out):
    x, y = ins
    return W.MatmulWorkload(x[-2], y[-1], x[-1], batch=numel(out[:-2]))


def _matmul_call(b, shapes):
    """torch.matmul / torch.bmm / `a @ b` of two tensors, both at least 2-D (evo's matmul multiplies
    matrices: torch's vector cases drop a dimension)."""
    for i, s in enumerate(shapes):
        if len(s) < 2:
            raise NotConvertible(f"a product with a {len(s)}-D operand ({'first' if i == 0 else 'second'}): evo's "
                                 "matmul multiplies matrices (both operands at least 2-D)")
    return {}


register(OpDef(MATMUL_T, (), None, n_inputs=None, gradient_only=True, grad_code=_matmul_grad_code,
               cost=lambda W, a, ins, out: W.MatmulWorkload(out[-2], out[-1], ins[0][-1] if a.get("side") == 0
                                                            else ins[0][-2], batch=numel(out[:-2])),
               doc="gradient of matmul w.r.t. one operand: a product with the other one"))

register(OpDef(
    "matmul", (), _matmul_shape, n_inputs=None,
    functional=lambda a, xs: f"torch.matmul({xs[0]}, {xs[1]})",
    torch="torch.matmul", doc="batched matrix product (attention scores, attention-weighted values)",
    grad=_matmul_grad, cost=_matmul_cost,
    imports=Imports(calls=(Call(("torch.matmul", "torch.bmm", "operator.matmul", "Tensor.matmul", "Tensor.bmm",
                                 "aten.matmul", "aten.bmm"), ("input", "other"), _matmul_call,
                                tensors=("input", "other"), constant="a matrix product with a non-tensor"),)),
    doc_call="matmul(a, b)", doc_args="two tensors",
    doc_shape="`a [..., m, k]` times `b [..., k, n]` → `[..., m, n]`: both at least 2-D (E0300), the inner "
              "sizes equal (E0301), the dimensions before the last two broadcast (E0301). Costed as "
              "`m·n·k` MACs per matrix, reading both operands and writing the result (the score matrix)"))


# ----------------------------------------------------------------------------------- scale_by

def _scale_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(n.op, (g,), n.attr_dict, b.gshape(x), n.span, None, f"d_{n.name or 'scale'}"))]


def _by_number(b) -> bool:
    """times or over a number (not a tensor, not a bool, no rounding)"""
    v = b["other"]
    return isinstance(v, (int, float)) and not isinstance(v, bool) and b.get("rounding_mode") is None


def _over(b, shapes):
    c = float(b["other"])
    if c == 0.0:
        raise NotConvertible("divides by zero")
    return {"factor": 1.0 / c}


register(OpDef(
    "scale_by", (ParamSpec("factor", "float", doc="the constant factor"),), same_shape,
    functional=lambda a, xs: f"{xs[0]} * {lit(float(a['factor']))}",
    torch="x * c", doc="multiply by a constant", elementwise=True, affine=True, grad=_scale_grad,
    cost=eltwise_cost(1),
    imports=Imports(calls=(Call(("torch.mul", "operator.mul", "operator.imul", "Tensor.mul", "Tensor.mul_", "aten.mul",
                                 "aten.mul_"), ("input", "other"), lambda b, shapes: {"factor": float(b["other"])},
                                when=_by_number),
                           # `2 * x` in an fx graph: the number first
                           Call(("operator.mul",), ("other", "input"), lambda b, shapes: {"factor": float(b["other"])},
                                when=_by_number),
                           Call(("operator.neg", "torch.neg", "Tensor.neg", "aten.neg"), ("input",),
                                lambda b, shapes: {"factor": -1.0}),
                           Call(("torch.div", "torch.true_divide", "operator.truediv", "operator.itruediv", "Tensor.div",
                                 "Tensor.div_", "aten.div", "aten.div_"), ("input", "other", "rounding_mode"), _over,
                                {"rounding_mode": None}, when=_by_number))),
    doc_call="scale_by(x, factor)", doc_args="`factor` number (required)",
    doc_shape="same shape: every element times `factor` (`x * 0.125`, `x / 8`, `16 * x` import as this)"))


# ----------------------------------------------------------------------------------- roll

def _roll_shape(shapes, a):
    (x,) = shapes
    shifts, dims = tuple(a["shifts"]), tuple(a["dims"])
    if len(shifts) != len(dims):
        def n(k, what):
            return f"{k} {what}{'' if k == 1 else 's'}"
        raise OpError(f"roll has {n(len(shifts), 'shift')} for {n(len(dims), 'dimension')}", "dims", C.VALUE_OUT_OF_RANGE,
                      "give one shift per dimension")
    seen = set()
    for d in dims:
        nd = norm_dim(d, len(x), "dims")
        if nd == 0 and _batched(x):
            raise OpError("roll moves elements along the batch dimension 0", "dims", C.VALUE_OUT_OF_RANGE,
                          "roll dimensions 1 and above (a channels-last map's height and width: [1, 2])")
        if nd in seen:
            raise OpError(f"roll names dimension {d} twice", "dims", C.VALUE_OUT_OF_RANGE)
        seen.add(nd)
    return x


def _roll_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    attrs = {"shifts": tuple(-s for s in n.attr("shifts")), "dims": tuple(n.attr("dims"))}
    return [(0, b.add(n.op, (g,), attrs, b.gshape(x), n.span, None, f"d_{n.name or 'roll'}"))]


def _roll_call(b, shapes):
    shifts, dims = b["shifts"], b["dims"]
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims) or not dims:
        raise NotConvertible("a roll of the flattened tensor (no dims)")
    return {"shifts": tuple(int(v) for v in shifts), "dims": tuple(int(d) for d in dims)}


register(OpDef(
    "roll", (ParamSpec("shifts", "ints", doc="the shift of each dimension"),
             ParamSpec("dims", "ints", doc="the dimensions rolled")), _roll_shape,
    functional=lambda a, xs: f"torch.roll({xs[0]}, {tuple_lit(a['shifts'])}, {tuple_lit(a['dims'])})",
    torch="torch.roll", doc="cyclic shift (Swin's shifted windows)", affine=True, keeps_zeros=True, grad=_roll_grad,
    cost=lambda W, a, ins, out: W.CopyWorkload(numel(ins[0]), numel(out)),
    imports=Imports(calls=(Call(("aten.roll",), ("input", "shifts", "dims"), _roll_call, {"shifts": (), "dims": ()}),)),
    doc_call="roll(x, shifts, dims)", doc_args="`shifts` list of ints; `dims` list of ints, as many, in range",
    doc_shape="same shape, elements shifted cyclically along each of `dims` (E0203: as many shifts as "
              "dimensions, each dimension once, never the batch; E0206 out of range). A copy"))


# ----------------------------------------------------------------------------------- subsample

def _subsample_shape(shapes, a):
    (x,) = shapes
    d = norm_dim(a["dim"], len(x), "dim")
    if d == 0 and _batched(x):
        raise OpError("subsample cuts the batch dimension 0", "dim", C.VALUE_OUT_OF_RANGE, "subsample dimension 1 or above")
    size = x[d]
    if a["start"] >= size:
        raise OpError(f"start {a['start']} is past the end of dimension {a['dim']} (size {size})", "start", C.VALUE_OUT_OF_RANGE)
    out = list(x)
    out[d] = (size - a["start"] + a["step"] - 1) // a["step"]
    return tuple(out)


def _subsample_index(dim: int, start: int, step: int) -> str:
    return ", ".join([":"] * dim + [f"{start}::{step}" if step != 1 else f"{start}:"])


def _subsample_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    d = n.attr("dim") % len(x.shape)
    attrs = {"dim": d, "start": n.attr("start"), "step": n.attr("step"), "shape": tuple(x.shape[1:])}
    return [(0, b.add(SUBSAMPLE_T, (g,), attrs, b.gshape(x), n.span, None, f"d_{n.name or 'subsample'}"))]


def _subsample_grad_code(a, ins, k, const, path):
    idx = _subsample_index(a["dim"], a["start"], a["step"])
    return [f"{{out}} = {ins[0]}.new_zeros(({ins[0]}.shape[0], {', '.join(str(d) for d in a['shape'])}))",
            f"{{out}}[{idx}] = {ins[0]}"]


register(OpDef(SUBSAMPLE_T, (), None, n_inputs=None, gradient_only=True, grad_code=_subsample_grad_code,
               cost=lambda W, a, ins, out: W.CopyWorkload(numel(ins[0]), numel(out)),
               doc="gradient of subsample: the gradient scattered into zeros at the kept positions"))


register(OpDef(
    "subsample", (ParamSpec("dim", "int"), ParamSpec("start", "int", 0, min=0), ParamSpec("step", "int", 1, min=1)),
    _subsample_shape, functional=lambda a, xs: _strided(a, xs),
    torch="x[..., start::step, ...]", doc="every step-th element of one dimension (a strided view)", affine=True,
    grad=_subsample_grad, cost=view_cost, layout=slice_layout,
    doc_call="subsample(x, dim, start=0, step=1)",
    doc_args="`dim` int, in range, not the batch; `start` int ≥ 0 (0); `step` int ≥ 1 (1)",
    doc_shape="dimension `dim` keeps elements `start, start+step, …` (`(size − start + step − 1) // step` of "
              "them; E0203 if `start` is past the end). A view (no traffic)"))


def _strided(a, xs):
    """x[:, :, start::step] with the dimension index normalised (negative dims count from the end)."""
    d = a["dim"]
    if d < 0:
        cut = f"{a['start']}::{a['step']}" if a["step"] != 1 else f"{a['start']}:"
        return f"{xs[0]}[{', '.join(['...', cut] + [':'] * (-d - 1))}]"
    return f"{xs[0]}[{_subsample_index(d, a['start'], a['step'])}]"


# ----------------------------------------------------------------------------------- pad

def _pad_shape(shapes, a):
    (x,) = shapes
    p = tuple(a["padding"])
    if len(p) % 2 or not p:
        raise OpError(f"pad needs (before, after) pairs, got {len(p)} numbers", "padding", C.VALUE_OUT_OF_RANGE,
                      "as F.pad: (last_before, last_after, second_last_before, ...)")
    k = len(p) // 2
    if k >= len(x) and _batched(x) or k > len(x):
        raise OpError(f"pad of {k} dimensions of a {len(x)}-D tensor would pad the batch dimension", "padding",
                      C.VALUE_OUT_OF_RANGE, f"at most {len(x) - 1} pairs for this input")
    if any(v < 0 for v in p):
        raise OpError("pad amounts must be ≥ 0 (evo pads, it does not crop: use narrow)", "padding", C.VALUE_OUT_OF_RANGE)
    out = list(x)
    for i in range(k):
        out[len(x) - 1 - i] = x[len(x) - 1 - i] + p[2 * i] + p[2 * i + 1]
    return tuple(out)


def _pad_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(PAD_T, (g,), {"padding": tuple(n.attr("padding")), "shape": tuple(x.shape[1:])},
                      b.gshape(x), n.span, None, f"d_{n.name or 'pad'}"))]


def _pad_grad_code(a, ins, k, const, path):
    p = a["padding"]
    shape = a["shape"]
    cuts = []
    for i in range(len(p) // 2):
        d = len(shape) - i  # dimension index in [KB, *shape]
        cuts.append(f".narrow({d}, {p[2 * i]}, {shape[d - 1]})")
    return [f"{{out}} = {ins[0]}{''.join(cuts)}"]


register(OpDef(PAD_T, (), None, n_inputs=None, gradient_only=True, grad_code=_pad_grad_code,
               cost=lambda W, a, ins, out: W.CopyWorkload(numel(out), numel(out)),
               doc="gradient of pad: the unpadded part"))

def _pad_args(pad, mode, value, shape) -> dict | list:
    """evo's pad for torch's padding `pad` (last dimension first), `mode` and `value` of an input of
    `shape` (no padding: [], the input itself); NotConvertible for what evo's pad cannot express."""
    if mode != "constant":
        raise NotConvertible(f"{mode} padding: evo's pad pads with zeros only (mode='constant', value=0)")
    if value not in (None, 0, 0.0):
        raise NotConvertible(f"padding with the value {value}: evo's pad pads with zeros only")
    pad = tuple(int(v) for v in pad)
    if any(v < 0 for v in pad):
        raise NotConvertible("negative padding (cropping): evo's pad only adds zeros (narrow crops)")
    if shape is not None and len(pad) // 2 >= len(shape):
        raise NotConvertible(f"pads all {len(shape)} dimensions, the batch dimension included: evo's pad pads "
                             "the last dimensions only")
    return {"padding": pad} if any(pad) else []


def _pad_call(b, shapes):
    """F.pad / aten.pad / aten.constant_pad_nd with zeros (none: the input itself)."""
    return _pad_args(b["pad"], b.get("mode", "constant"), b["value"], shapes[0])


def _pad_module(m, shape):
    """nn.ZeroPad1d/2d/3d and nn.ConstantPad1d/2d/3d with value 0."""
    r = _pad_args(m.padding, "constant", getattr(m, "value", 0), shape)
    return r or {"padding": tuple(int(v) for v in m.padding)}


register(OpDef(
    "pad", (ParamSpec("padding", "ints", doc="(before, after) per dimension, last dimension first"),),
    _pad_shape, functional=lambda a, xs: f"F.pad({xs[0]}, {tuple_lit(a['padding'])})",
    torch="F.pad", doc="zero padding of the last dimensions", affine=True, grad=_pad_grad,
    layout=lambda a, r: ("resize", tuple((r - 1 - i, None) for i in range(len(a["padding"]) // 2)
                                         if a["padding"][2 * i] or a["padding"][2 * i + 1])),
    cost=lambda W, a, ins, out: W.CopyWorkload(numel(ins[0]), numel(out)),
    imports=Imports(modules=tuple(f"nn.{k}Pad{d}d" for k in ("Zero", "Constant") for d in (1, 2, 3)),
                    calls=(Call(("F.pad", "aten.pad"), ("input", "pad", "mode", "value"), _pad_call,
                                {"pad": (), "mode": "constant", "value": None}),
                           Call(("aten.constant_pad_nd",), ("input", "pad", "value"), _pad_call, {"pad": (), "value": 0}))),
    from_module=_pad_module,
    doc_call="pad(x, padding)", doc_args="`padding` list of ints ≥ 0: (before, after) pairs, last dimension first",
    doc_shape="as F.pad with zeros: each padded dimension grows by its pair; never the batch (E0203). A copy"))


# ----------------------------------------------------------------------------------- buffers

def _window(a) -> tuple[int, int]:
    w = a["window"]
    return (w[0], w[1]) if isinstance(w, tuple) else (w, w)


def _rpi_shape(shapes, a):
    wh, ww = _window(a)
    t = wh * ww
    return (t * t,) if a["flat"] else (t, t)


RPI_HELPER = ("_evo_relative_position_index", '''def {name}(wh, ww):
    """torchvision's relative_position_index of a wh x ww window: [wh*ww, wh*ww] (int64)."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return (rel[:, :, 0] + wh - 1) * (2 * ww - 1) + rel[:, :, 1] + ww - 1''')

register(OpDef(
    "relative_position_index", (ParamSpec("window", "int2", min=1, doc="the window size"),
                                ParamSpec("flat", "bool", True)),
    _rpi_shape, n_inputs=0, tensor=True, parametric=True, buffer="persistent", helper=RPI_HELPER,
    module=lambda a, s: (f"{{_evo_relative_position_index}}({_window(a)[0]}, {_window(a)[1]})"
                         + (".flatten()" if a["flat"] else "")),
    torch="register_buffer", doc="Swin's relative-position index (a buffer of the block)",
    doc_call="name = relative_position_index(window, flat=true)",
    doc_args="`window` int or [h, w] ≥ 1; `flat` bool (true: `[T·T]` as Swin, false: `[T, T]` as MaxViT)",
    doc_shape="a registered int64 buffer (in the state_dict under the name it is bound to), T = h·w: entry "
              "(i, j) is the index of token j's offset from token i in a `[(2h − 1)·(2w − 1)]` table"))


def _rct_shape(shapes, a):
    wh, ww = _window(a)
    return (1, 2 * wh - 1, 2 * ww - 1, 2)


RCT_HELPER = ("_evo_relative_coords_table", '''def {name}(wh, ww):
    """torchvision's Swin-V2 relative_coords_table: [1, 2wh-1, 2ww-1, 2], log-spaced offsets."""
    rh = torch.arange(-(wh - 1), wh, dtype=torch.float32)
    rw = torch.arange(-(ww - 1), ww, dtype=torch.float32)
    t = torch.stack(torch.meshgrid([rh, rw], indexing="ij")).permute(1, 2, 0).contiguous().unsqueeze(0)
    t[:, :, :, 0] /= wh - 1
    t[:, :, :, 1] /= ww - 1
    t *= 8
    return torch.sign(t) * torch.log2(torch.abs(t) + 1.0) / 3.0''')

register(OpDef(
    "relative_coords_table", (ParamSpec("window", "int2", min=2, doc="the window size"),),
    _rct_shape, n_inputs=0, tensor=True, parametric=True, buffer="persistent", helper=RCT_HELPER,
    module=lambda a, s: f"{{_evo_relative_coords_table}}({_window(a)[0]}, {_window(a)[1]})",
    torch="register_buffer", doc="Swin-V2's log-spaced relative coordinates (a buffer of the block)",
    doc_call="name = relative_coords_table(window)", doc_args="`window` int or [h, w] ≥ 2",
    doc_shape="a registered float buffer `[1, 2h − 1, 2w − 1, 2]` (in the state_dict under its name), the input "
              "of Swin-V2's `cpb_mlp`"))


def _mask_shape(shapes, a):
    h, w = a["size"]
    wh, ww = _window(a)
    if h % wh or w % ww:
        raise OpError(f"a {h}x{w} map does not split into {wh}x{ww} windows", "window", C.ELEMENT_COUNT_MISMATCH,
                      "pad the map to a multiple of the window first")
    sh, sw = a["shift"]
    if not (0 <= sh < wh and 0 <= sw < ww):
        raise OpError(f"shift {[sh, sw]} must be below the window {[wh, ww]}", "shift", C.VALUE_OUT_OF_RANGE)
    t = wh * ww
    return ((h // wh) * (w // ww), 1, t, t)


MASK_HELPER = ("_evo_window_mask", '''def {name}(h, w, wh, ww, sh, sw):
    """Swin's shifted-window attention mask [windows, 1, T, T]: 0 within a region, -100 across."""
    mask = torch.zeros(h, w)
    count = 0
    for hs in ((0, h - wh), (h - wh, h - sh), (h - sh, h)):
        for ws in ((0, w - ww), (w - ww, w - sw), (w - sw, w)):
            mask[hs[0]:hs[1], ws[0]:ws[1]] = count
            count += 1
    mask = mask.view(h // wh, wh, w // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0).unsqueeze(1)''')

register(OpDef(
    "window_mask", (ParamSpec("size", "int2", min=1, doc="the map's [h, w]"),
                    ParamSpec("window", "int2", min=1, doc="the window size"),
                    ParamSpec("shift", "int2", min=0, doc="the shift")),
    _mask_shape, n_inputs=0, tensor=True, parametric=True, buffer="constant", helper=MASK_HELPER,
    module=lambda a, s: (f"{{_evo_window_mask}}({a['size'][0]}, {a['size'][1]}, {_window(a)[0]}, {_window(a)[1]}, "
                         f"{a['shift'][0]}, {a['shift'][1]})"),
    torch="(computed)", doc="the shifted-window attention mask of Swin (a constant of the shapes)",
    doc_call="name = window_mask(size, window, shift)",
    doc_args="`size` [h, w] ≥ 1; `window` int or [h, w] ≥ 1; `shift` int or [h, w] ≥ 0, below the window",
    doc_shape="a constant `[windows, 1, T, T]` (T = window tokens): 0 between tokens of one region of the "
              "rolled map, −100 across, as torchvision's; `size` a multiple of the window (E0305). A "
              "non-persistent buffer (not in the state_dict), added to `[N, windows, heads, T, T]` scores"))


def _bias_shape(shapes, a):
    if len(shapes) != 2:
        raise OpError(f"relative_bias takes a table and an index, got {len(shapes)} tensors", None, C.MISSING_ARGUMENT,
                      "write relative_bias(table, index)")
    table, index = shapes
    if len(table) < 2 or _batched(table):
        raise OpError(f"the table {fmt_shape(table)} must be a learned or computed [..., heads] tensor without "
                      "the batch dimension", "#0", C.WRONG_TENSOR_RANK)
    if _batched(index) or len(index) not in (1, 2):
        raise OpError(f"the index {fmt_shape(index)} must be a relative_position_index buffer, [T*T] or [T, T]",
                      "#1", C.WRONG_TENSOR_RANK)
    n = numel(index)
    t = math.isqrt(n)
    if t * t != n:
        raise OpError(f"the index has {n} entries, not T*T", "#1", C.ELEMENT_COUNT_MISMATCH)
    return (table[-1], t, t)


def _bias_grad(b, n, g):
    """No gradient reaches a CAM layer through the bias: both operands are unbatched (the shape
    rule refuses a batched table or index), and every value computed from a CAM layer keeps the
    batch dimension, so neither operand can depend on one."""
    return []


register(OpDef(
    "relative_bias", (), _bias_shape, n_inputs=None, grad=_bias_grad,
    functional=lambda a, xs: (f"{xs[0]}.flatten(0, -2)[{xs[1]}.flatten()].unflatten(0, (-1, "
                              f"int({xs[1]}.numel() ** 0.5))).permute(2, 0, 1)"),
    torch="table[index]", doc="a relative-position bias: rows of a table picked by a constant index",
    cost=lambda W, a, ins, out: W.CopyWorkload(numel(out), numel(out)),
    doc_call="relative_bias(table, index)",
    doc_args="a table `[..., heads]` (a learnable tensor, or Swin-V2's `cpb_mlp` output) and a "
             "`relative_position_index` buffer",
    doc_shape="`[heads, T, T]`: `table.reshape(-1, heads)[index]` as heads × queries × keys "
              "(torchvision's `table[index].view(T, T, -1).permute(2, 0, 1)`); neither operand batched (E0300), "
              "the index T·T entries (E0305). No gradient flows to a CAM layer through it (both unbatched)"))


# ----------------------------------------------------------------------------------- Swin-V2

def _normalize_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    attrs = {"dim": n.attr("dim") % len(x.shape) - len(x.shape), "eps": n.attr("eps")}
    return [(0, b.add(NORMALIZE_T, (g, x.id, n.id), attrs, b.gshape(x), n.span, None, f"d_{n.name or 'norm'}"))]


def _normalize_grad_code(a, ins, k, const, path):
    """y = x / max(|x|, eps): dx = (g − y·Σ g·y) / |x| where |x| > eps, else g / eps."""
    g, x, y = ins
    d, eps = a["dim"], lit(float(a["eps"]))
    return [f"{{out}}_n = {x}.norm(dim={d}, keepdim=True)",
            f"{{out}}_g = _evo_k({g}, {k})",
            f"{{out}} = torch.where({{out}}_n > {eps}, ({{out}}_g - {y} * ({{out}}_g * {y}).sum({d}, keepdim=True)) "
            f"/ {{out}}_n.clamp_min({eps}), {{out}}_g / {eps}).reshape({g}.shape)"]


register(OpDef(NORMALIZE_T, (), None, n_inputs=None, gradient_only=True, grad_code=_normalize_grad_code,
               cost=eltwise_cost(6, 3), doc="gradient of l2_normalize"))

register(OpDef(
    "l2_normalize", (ParamSpec("dim", "int", -1), ParamSpec("eps", "float", 1e-12, min=0.0)),
    lambda s, a: (norm_dim(a["dim"], len(s[0]), "dim"), s[0])[1],
    functional=lambda a, xs: f"F.normalize({xs[0]}, dim={lit(a['dim'])}" + (
        f", eps={lit(float(a['eps']))})" if a["eps"] != 1e-12 else ")"),
    torch="F.normalize", doc="L2-normalise along a dimension (Swin-V2's cosine attention)",
    grad=_normalize_grad,
    cost=lambda W, a, ins, out: W.ReduceWorkload(numel(out) // out[a["dim"] % len(out)],
                                                 out[a["dim"] % len(out)], 3, out[a["dim"] % len(out)]),
    doc_call="l2_normalize(x, dim=-1, eps=1e-12)", doc_args="`dim` int (−1), in range; `eps` number ≥ 0 (1e-12)",
    doc_shape="same shape: `x / max(‖x‖₂, eps)` along `dim` (E0206 out of range)"))


def _clamp_shape(shapes, a):
    if a["min"] is None and a["max"] is None:
        raise OpError("clamp needs min or max", None, C.MISSING_ARGUMENT, "write clamp(x, max=4.6) or clamp(x, min=0.0)")
    if a["min"] is not None and a["max"] is not None and a["min"] > a["max"]:
        raise OpError(f"clamp's min {a['min']} is above its max {a['max']}", "min", C.VALUE_OUT_OF_RANGE)
    return shapes[0]


def _clamp_code(a, xs):
    parts = [xs[0]] + [f"{k}={lit(float(a[k]))}" for k in ("min", "max") if a[k] is not None]
    return f"torch.clamp({', '.join(parts)})"


def _clamp_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(CLAMP_T, (g, x.id), {"min": n.attr("min"), "max": n.attr("max")}, b.gshape(x), n.span,
                      None, f"d_{n.name or 'clamp'}"))]


def _clamp_grad_code(a, ins, k, const, path):
    g, x = ins
    conds = []
    if a["min"] is not None:
        conds.append(f"({x} >= {lit(float(a['min']))})")
    if a["max"] is not None:
        conds.append(f"({x} <= {lit(float(a['max']))})")
    return [f"{{out}} = (_evo_k({g}, {k}) * ({' & '.join(conds)}).to({g}.dtype)).reshape({g}.shape)"]


register(OpDef(CLAMP_T, (), None, n_inputs=None, gradient_only=True, grad_code=_clamp_grad_code,
               cost=eltwise_cost(2, 2), doc="gradient of clamp"))

register(OpDef(
    "clamp", (ParamSpec("min", "float", None), ParamSpec("max", "float", None)), _clamp_shape,
    functional=_clamp_code, torch="torch.clamp", doc="limit to [min, max]", elementwise=True, grad=_clamp_grad,
    cost=eltwise_cost(1),
    imports=Imports(calls=(Call(("aten.clamp", "aten.clamp_"), ("input", "min", "max"),
                                lambda b, shapes: {k: None if b[k] is None else float(b[k]) for k in ("min", "max")},
                                {"min": None, "max": None}),)),
    doc_call="clamp(x, min=none, max=none)", doc_args="`min`, `max` numbers (at least one given, min ≤ max)",
    doc_shape="same shape (E0107 without bounds, E0203 if min > max)"))


def _exp_grad(b, n, g):
    x = b.nodes[n.inputs[0]]
    return [(0, b.add(Op("mul"), (g, n.id), {"k_batched": 0}, b.gshape(x), n.span, None, f"d_{n.name or 'exp'}"))]


register(OpDef(
    "exp", (), same_shape, functional=lambda a, xs: f"torch.exp({xs[0]})", torch="torch.exp",
    doc="exponential", elementwise=True, grad=_exp_grad, cost=eltwise_cost(4),
    imports=Imports(functions=("torch.exp",), methods=("exp",), aten=("exp",)),
    doc_call="exp(x)", doc_args="—", doc_shape="same shape"))
