"""Workloads: what one IR op asks of the hardware, one frozen dataclass per op family.

Every workload has

* ``macs``: multiply-accumulates (for non-MAC families: MAC-equivalent ALU
  operations, e.g. one compare per max-pool tap, ``ops_per_element`` per element);
* ``tensors``: the tensors it touches, each a :class:`TensorUse` with a role
  (``input`` / ``weight`` / ``output``) and an element count;
* ``word_bits``: the element size.  ``None`` (the default) means "the hardware
  word"; :func:`with_word` / ``cost_op`` resolve it from the tier.

Dimension names follow the usual accelerator convention (Eyeriss, Timeloop):
N batch, K output channels, C input channels, P x Q output rows x columns,
R x S filter rows x columns.  For convolutions K and C are the *total* channel
counts (PyTorch semantics); with ``groups = g`` each group maps C/g inputs to K/g
outputs (depthwise: ``groups = C``).  A linear layer is a convolution with
P = Q = R = S = 1 (see :func:`linear`); a transposed convolution is costed as the
convolution that computes it on the (dilated) output gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "ConvWorkload",
    "CopyWorkload",
    "EltwiseWorkload",
    "MatmulWorkload",
    "PoolWorkload",
    "ReduceWorkload",
    "TensorUse",
    "Workload",
    "WorkloadError",
    "adaptive_pool",
    "conv2d",
    "linear",
    "output_elements",
    "with_word",
]


class WorkloadError(ValueError):
    """An impossible workload (non-positive sizes, groups that do not divide...)."""


@dataclass(frozen=True)
class TensorUse:
    name: str
    role: str  # input | weight | output
    elements: int


def _ints(obj, names) -> None:
    for n in names:
        v = getattr(obj, n)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise WorkloadError(f"{type(obj).__name__}.{n} must be a positive integer, got {v!r}")


def _word(obj) -> None:
    w = obj.word_bits
    if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0):
        raise WorkloadError(f"word_bits must be positive, got {w!r}")


def _infer_pad(out: int, stride: int, k: int, dil: int, inp: int) -> int:
    """Symmetric padding that yields `out` outputs (PyTorch: floor((in + 2p - d(k-1) - 1)/s) + 1)."""
    need = (out - 1) * stride + dil * (k - 1) + 1 - inp
    return max(0, -(-need // 2))


@dataclass(frozen=True)
class ConvWorkload:
    """2-D convolution (also linear and grouped / depthwise convolution).

    ``transposed=True`` describes the gradient of this convolution with respect to its
    input (a transposed convolution): the same loop nest and MACs, but the N x K x P x Q
    tensor is read and the N x C x H_in x W_in tensor (its rows a window touches) is
    written, so a stride-2 layer's input gradient is four times its output gradient."""

    N: int
    K: int
    C: int
    P: int
    Q: int
    R: int = 1
    S: int = 1
    stride_h: int = 1
    stride_w: int = 1
    dil_h: int = 1
    dil_w: int = 1
    groups: int = 1
    H_in: int | None = None
    W_in: int | None = None
    bias: bool = False
    pad_h: int | None = None  # None: inferred from H_in, P, R, stride, dilation
    pad_w: int | None = None
    word_bits: float | None = None
    transposed: bool = False  # the gradient w.r.t. the input of this convolution (see below)

    kind = "conv"

    def __post_init__(self) -> None:
        _ints(self, ("N", "K", "C", "P", "Q", "R", "S", "stride_h", "stride_w", "dil_h", "dil_w", "groups"))
        _word(self)
        if self.K % self.groups or self.C % self.groups:
            raise WorkloadError(f"groups={self.groups} must divide both K={self.K} and C={self.C}")
        if self.H_in is None:
            object.__setattr__(self, "H_in", (self.P - 1) * self.stride_h + self.dil_h * (self.R - 1) + 1)
        if self.W_in is None:
            object.__setattr__(self, "W_in", (self.Q - 1) * self.stride_w + self.dil_w * (self.S - 1) + 1)
        _ints(self, ("H_in", "W_in"))
        if self.pad_h is None:
            object.__setattr__(self, "pad_h", _infer_pad(self.P, self.stride_h, self.R, self.dil_h, self.H_in))
        if self.pad_w is None:
            object.__setattr__(self, "pad_w", _infer_pad(self.Q, self.stride_w, self.S, self.dil_w, self.W_in))
        for n in ("pad_h", "pad_w"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise WorkloadError(f"ConvWorkload.{n} must be a non-negative integer, got {v!r}")

    @property
    def macs(self) -> int:
        return self.N * self.K * (self.C // self.groups) * self.P * self.Q * self.R * self.S

    @property
    def tensors(self) -> tuple[TensorUse, ...]:
        x = self.N * self.C * self.H_in * self.W_in
        y = self.N * self.K * self.P * self.Q
        if self.transposed:  # reads the output-sized gradient, writes the input-sized one
            x, y = y, x
        t = [TensorUse("input", "input", x),
             TensorUse("weight", "weight", self.K * (self.C // self.groups) * self.R * self.S)]
        if self.bias:
            t.append(TensorUse("bias", "weight", self.K))
        t.append(TensorUse("output", "output", y))
        return tuple(t)


@dataclass(frozen=True)
class MatmulWorkload:
    """C[b, M, N] = sum_K A[b, M, K] * B[b, K, N]; gradient ops and attention-style products.

    A is reported as the ``input`` and B as the ``weight`` operand."""

    M: int
    N: int
    K: int
    batch: int = 1
    word_bits: float | None = None

    kind = "matmul"

    def __post_init__(self) -> None:
        _ints(self, ("M", "N", "K", "batch"))
        _word(self)

    @property
    def macs(self) -> int:
        return self.batch * self.M * self.N * self.K

    @property
    def tensors(self) -> tuple[TensorUse, ...]:
        b = self.batch
        return (TensorUse("A", "input", b * self.M * self.K), TensorUse("B", "weight", b * self.K * self.N),
                TensorUse("C", "output", b * self.M * self.N))


@dataclass(frozen=True)
class EltwiseWorkload:
    """Elementwise op over `elements` outputs with `n_inputs` same-sized inputs.

    relu / activations: n_inputs=1; add / mul: n_inputs=2; batchnorm in eval mode:
    n_inputs=1, ops_per_element=1 (one multiply-add), params=2*C (scale and shift)."""

    elements: int
    n_inputs: int = 1
    ops_per_element: int = 1
    params: int = 0
    word_bits: float | None = None

    kind = "eltwise"

    def __post_init__(self) -> None:
        _ints(self, ("elements", "n_inputs", "ops_per_element"))
        if isinstance(self.params, bool) or not isinstance(self.params, int) or self.params < 0:
            raise WorkloadError(f"EltwiseWorkload.params must be a non-negative integer, got {self.params!r}")
        _word(self)

    @property
    def macs(self) -> int:
        return self.elements * self.ops_per_element

    @property
    def tensors(self) -> tuple[TensorUse, ...]:
        t = [TensorUse(f"input{i}" if self.n_inputs > 1 else "input", "input", self.elements)
             for i in range(self.n_inputs)]
        if self.params:
            t.append(TensorUse("params", "weight", self.params))
        t.append(TensorUse("output", "output", self.elements))
        return tuple(t)


@dataclass(frozen=True)
class PoolWorkload:
    """Max / average / adaptive pooling: N x C planes, an R x S window, P x Q outputs.

    ``stride`` defaults to the window (PyTorch's default); adaptive pooling passes
    the window and stride it reduces to (global pooling: R=H_in, S=W_in, P=Q=1)."""

    N: int
    C: int
    P: int
    Q: int
    R: int
    S: int
    H_in: int
    W_in: int
    stride_h: int | None = None
    stride_w: int | None = None
    pad_h: int | None = None
    pad_w: int | None = None
    op: str = "max"
    word_bits: float | None = None

    kind = "pool"

    def __post_init__(self) -> None:
        _ints(self, ("N", "C", "P", "Q", "R", "S", "H_in", "W_in"))
        _word(self)
        if self.stride_h is None:
            object.__setattr__(self, "stride_h", self.R)
        if self.stride_w is None:
            object.__setattr__(self, "stride_w", self.S)
        _ints(self, ("stride_h", "stride_w"))
        if self.pad_h is None:
            object.__setattr__(self, "pad_h", _infer_pad(self.P, self.stride_h, self.R, 1, self.H_in))
        if self.pad_w is None:
            object.__setattr__(self, "pad_w", _infer_pad(self.Q, self.stride_w, self.S, 1, self.W_in))

    @property
    def macs(self) -> int:
        return self.N * self.C * self.P * self.Q * self.R * self.S

    @property
    def tensors(self) -> tuple[TensorUse, ...]:
        return (TensorUse("input", "input", self.N * self.C * self.H_in * self.W_in),
                TensorUse("output", "output", self.N * self.C * self.P * self.Q))


@dataclass(frozen=True)
class CopyWorkload:
    """Data movement only: concat, reshape, flatten.

    ``view=True`` (flatten / reshape of a contiguous tensor, identity, dropout in
    eval mode) moves nothing and costs nothing."""

    elements_in: int
    elements_out: int
    view: bool = False
    word_bits: float | None = None

    kind = "copy"

    def __post_init__(self) -> None:
        _ints(self, ("elements_in", "elements_out"))
        _word(self)

    @property
    def macs(self) -> int:
        return 0

    @property
    def tensors(self) -> tuple[TensorUse, ...]:
        return (TensorUse("input", "input", self.elements_in), TensorUse("output", "output", self.elements_out))


@dataclass(frozen=True)
class ReduceWorkload:
    """`rows` independent reductions of `length` elements each.

    Global sum / mean: ``out_per_row=1``.  Softmax: ``out_per_row=length``,
    ``ops_per_element`` about 4 (max, subtract-exp, sum, divide)."""

    rows: int
    length: int
    ops_per_element: int = 1
    out_per_row: int = 1
    word_bits: float | None = None

    kind = "reduce"

    def __post_init__(self) -> None:
        _ints(self, ("rows", "length", "ops_per_element", "out_per_row"))
        if self.out_per_row not in (1, self.length):
            raise WorkloadError("ReduceWorkload.out_per_row must be 1 or length")
        _word(self)

    @property
    def macs(self) -> int:
        return self.rows * self.length * self.ops_per_element

    @property
    def tensors(self) -> tuple[TensorUse, ...]:
        return (TensorUse("input", "input", self.rows * self.length),
                TensorUse("output", "output", self.rows * self.out_per_row))


Workload = ConvWorkload | MatmulWorkload | EltwiseWorkload | PoolWorkload | CopyWorkload | ReduceWorkload


def with_word(w: Workload, word_bits: float) -> Workload:
    """`w` with its element size set (used to take the hardware word when unset)."""
    return w if w.word_bits == word_bits else replace(w, word_bits=word_bits)


def output_elements(w: Workload) -> int:
    return sum(t.elements for t in w.tensors if t.role == "output")


# ---------------------------------------------------------------------------
# builders with PyTorch-style arguments
def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(N: int, C: int, H: int, W: int, K: int, kernel, stride=1, padding=0, dilation=1, groups: int = 1,
           bias: bool = False, word_bits: float | None = None) -> ConvWorkload:
    """`nn.Conv2d(C, K, kernel, stride, padding, dilation, groups, bias)` on an N x C x H x W input."""
    (R, S), (sh, sw), (ph, pw), (dh, dw) = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    P = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    if P < 1 or Q < 1:
        raise WorkloadError(f"the kernel does not fit the {H}x{W} input")
    return ConvWorkload(N, K, C, P, Q, R, S, sh, sw, dh, dw, groups, H, W, bias, ph, pw, word_bits)


def linear(N: int, in_features: int, out_features: int, bias: bool = True,
           word_bits: float | None = None) -> ConvWorkload:
    """`nn.Linear(in, out)` on an N x in input: a 1x1 convolution on a 1x1 map."""
    return ConvWorkload(N, out_features, in_features, 1, 1, bias=bias, word_bits=word_bits)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def adaptive_pool(N: int, C: int, H: int, W: int, out_h: int, out_w: int, op: str = "avg",
                  word_bits: float | None = None) -> PoolWorkload:
    """`nn.AdaptiveAvgPool2d((out_h, out_w))`: window ceil(H/out), stride floor(H/out)."""
    R, S = _ceil_div(H, out_h), _ceil_div(W, out_w)
    sh, sw = max(1, H // out_h), max(1, W // out_w)
    return PoolWorkload(N, C, out_h, out_w, R, S, H, W, sh, sw, 0, 0, op, word_bits)

