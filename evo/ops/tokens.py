"""Where a CAM layer's spatial grid is: token sequences and channels-last maps.

A CAM explains a map `[N, C, H, W]`.  Transformers carry their activations as a token
sequence `[N, T, C]` (ViT: a class token, maybe register tokens, then the H x W patch
tokens) or as a channels-last map `[N, H, W, C]` (Swin, ConvNeXt's MLP).  Every CAM
tool asks its user for a `reshape_transform` that drops the extra tokens and folds the
rest into the grid; evo knows the shapes at compile time and infers it.

`infer_layouts(g)` follows every value's layout forward from the input image: where its
H and W are, axis by axis (see the atoms below).  A convolution, 2-D pooling or 2-D norm
gives a channels-first map; reshapes regroup the axes (`flatten`/`reshape` to
`[N, C, H*W]` and a transpose make patch tokens `[N, H*W, C]`; Swin's and MaxViT's window
partitions split H and W into windows and back); permutes reorder them (channels-first
<-> channels-last); a concat along the tokens with tensors that are not tokens (a class
token, register tokens) puts extra tokens around the patch tokens, a concat along the
channels keeps the layout; strided slices, narrows and pads of a whole H or W give a
smaller or larger map (Swin's PatchMerging, its padding to a multiple of the window and
the crop back); ops that keep a dimension's meaning (layer norm, linear on the last
dimension, attention products, elementwise ops, adds, rolls) keep the layout.

`cam_layout(g, node, grid)` is the layout of a CAM layer: `None` for an ordinary
`[N, C, H, W]` map, a :class:`Layout` saying how to fold it otherwise; or it raises
:class:`NoGrid` with the reason when it cannot (the checker reports E0502 with a hint
for `grid = [H, W]`).
"""

from __future__ import annotations

from dataclasses import dataclass

from evo.ir.node import Graph, Node, Op
from evo.ops.base import lookup as ops_lookup


@dataclass(frozen=True)
class Layout:
    kind: str     # "tokens" ([N, T, C]: tokens skip..skip+h*w are the grid) | "nhwc" | "windows"
    h: int
    w: int
    skip: int = 0  # tokens before the grid (class and register tokens)
    channels: int = 0
    tokens: int = 0  # T
    # "windows" (MaxViT's window and grid partitions, [N, groups, tokens, C]): the channel axis
    # `chan` (after the batch), the other axes' sizes `dims` (in order) and, for each position of
    # those axes (row-major), the pixel h * w_size + w it holds (`order`, a permutation of H*W)
    chan: int = 0
    dims: tuple = ()
    order: tuple = ()

    @property
    def dropped(self) -> int:
        return self.tokens - self.h * self.w if self.kind == "tokens" else 0

    def describe(self) -> str:
        if self.kind == "windows":
            return f"the pixels of a {self.h}x{self.w} map in windows {list(self.dims)} with {self.channels} " \
                   f"channels, explained as [N, {self.channels}, {self.h}, {self.w}]"
        if self.kind == "nhwc":
            return f"a channels-last map [N, {self.h}, {self.w}, {self.channels}], explained as " \
                   f"[N, {self.channels}, {self.h}, {self.w}]"
        extra = self.tokens - self.h * self.w
        what = f"drops {extra} token{'s' if extra != 1 else ''} ({self.skip} before the grid), " if extra else ""
        return f"{self.tokens} tokens: {what}folds {self.h * self.w} into {self.h}x{self.w}, explained as " \
               f"[N, {self.channels}, {self.h}, {self.w}]"


class NoGrid(Exception):
    pass


# A value's layout says where the image's H and W went, axis by axis (the batch axis 0 aside):
# each axis is a tuple of atoms, major to minor, whose sizes multiply to the axis's size:
#   ("H", stride, size) / ("W", stride, size): `size` rows (columns) `stride` apart - a whole
#       H is ("H", 1, H); a window partition splits it into ("H", window, H / window) and
#       ("H", 1, window);
#   ("X", size): anything else (channels, heads, a number of pieces);
#   ("S", before, after): on a token axis only, `before` tokens ahead of the patch tokens and
#       `after` behind them (a class token, register tokens); the axis is then
#       ("S", b, a), ("H", 1, H), ("W", 1, W), of size b + H*W + a.
# Atoms of size 1 are dropped.  A layout is (H, W, axes).  Reshapes regroup the atoms
# (splitting one where an axis boundary cuts it), permutes reorder the axes, strided slices,
# narrows and pads of a whole H or W change its size, ops that keep a dimension keep its atoms.

def _ints(shape) -> bool:
    return all(isinstance(d, int) for d in shape[1:])


def to_channels_first(n: Node) -> bool:
    """Is `n` a permute (or transpose) of a 4-D channels-last map [N, H, W, C] to [N, C, H, W]?"""
    return len(n.shape) == 4 and _perm(n, 4) == (0, 3, 1, 2)


def _layout(n: Node, r: int, d=None) -> tuple:
    """What the op's entry `d` (looked up when not given) says it does to the axes
    (``OpDef.layout``); () where it keeps them."""
    d = d or ops_lookup(str(n.op))
    return d.layout(n.attr_dict, r) if d is not None and d.layout is not None else ()


def _perm(n: Node, r: int) -> tuple | None:
    lay = _layout(n, r)
    return lay[1] if lay and lay[0] == "permute" else None


def _whole(kind: str, size: int) -> tuple:
    return ((kind, 1, size),) if size > 1 else ()


def _fresh(h: int, w: int, channels: int) -> tuple:
    """The layout of a channels-first map [N, C, H, W]."""
    return (h, w, ((("X", channels),) if channels > 1 else (), _whole("H", h), _whole("W", w)))


def _spatial(axis: tuple) -> bool:
    return any(a[0] != "X" for a in axis)


def _size(a: tuple) -> int:
    return a[1] + a[2] if a[0] == "S" else a[-1]


def _canon(axis: list) -> tuple:
    """Merge neighbouring atoms that are one run (X with X; H with H where contiguous)."""
    out: list = []
    for a in axis:
        if a[0] != "S" and _size(a) == 1:
            continue
        if out:
            b = out[-1]
            if a[0] == b[0] == "X":
                out[-1] = ("X", b[1] * a[1])
                continue
            if a[0] == b[0] and a[0] in "HW" and b[1] == a[1] * a[2]:
                out[-1] = (a[0], a[1], b[2] * a[2])
                continue
        out.append(a)
    return tuple(out)


def _split(a: tuple, major: int) -> tuple[tuple, tuple] | None:
    """Atom a cut into its `major` outer part and the rest."""
    n = _size(a)
    if a[0] == "S" or n % major:
        return None
    if a[0] == "X":
        return ("X", major), ("X", n // major)
    return (a[0], a[1] * (n // major), major), (a[0], a[1], n // major)


def _reshape(L: tuple, dst: tuple) -> tuple | None:
    h, w, axes = L
    atoms: list = []
    for ax in axes:
        if any(a[0] == "S" for a in ax):
            atoms.append(("B", ax))  # a token axis with extra tokens moves whole or not at all
        else:
            atoms.extend(ax)
    out = []
    for d in dst:
        got: list = []
        need = d
        while need > 1:
            if not atoms:
                return None
            a = atoms.pop(0)
            if a[0] == "B":
                if got or _prod_size(a[1]) != need:
                    return None
                got.extend(a[1])
                need = 1
                continue
            n = _size(a)
            if n <= need:
                if need % n:
                    return None
                got.append(a)
                need //= n
            else:
                parts = _split(a, need)
                if parts is None:
                    return None
                got.append(parts[0])
                atoms.insert(0, parts[1])
                need = 1
        out.append(_canon(got))
    if any(a[0] == "B" or _size(a) > 1 for a in atoms):
        return None
    return (h, w, tuple(out))


def _prod_size(axis: tuple) -> int:
    if any(a[0] == "S" for a in axis):
        s = next(a for a in axis if a[0] == "S")
        hw = 1
        for a in axis:
            if a[0] != "S":
                hw *= _size(a)
        return s[1] + hw + s[2]
    n = 1
    for a in axis:
        n *= _size(a)
    return n


def _resize(L: tuple, d: int, size: int, start: int | None = None) -> tuple | None:
    """Axis d (1-based) cut or padded to `size`: a whole H or W becomes a smaller or larger one,
    another axis's size just changes; narrowing a token axis to exactly the patch tokens drops
    the extra tokens."""
    h, w, axes = L
    ax = axes[d - 1]
    if not _spatial(ax):
        new = (("X", size),) if size > 1 else ()
    elif any(a[0] == "S" for a in ax):
        s = ax[0]
        if start != s[1] or size != _prod_size(ax) - s[1] - s[2]:
            return None
        new = ax[1:]
    elif len(ax) == 1 and ax[0][1] == 1 and ax[0][2] == (h if ax[0][0] == "H" else w):
        kind = ax[0][0]
        new = _whole(kind, size)
        h, w = (size, w) if kind == "H" else (h, size)
    else:
        return None
    return (h, w, axes[:d - 1] + (new,) + axes[d:])


def _regrid(L: tuple, s: tuple) -> tuple:
    """A 4-D reshape whose H axis holds H's rows each subdivided (H major, then atoms that are not
    H or W) and whose W axis likewise, with a channel axis: a finer map (a pixel shuffle's
    [N, C, H*r, W*r], channels first or last).  Anything else as it is."""
    if _kind(L)[0] is not None:
        return L
    h, w, axes = L

    def rows(ax, kind, total):
        return total > 1 and len(ax) > 1 and ax[0] == (kind, 1, total) and all(a[0] == "X" for a in ax[1:])

    for c, a, b in ((0, 1, 2), (2, 0, 1)):
        if not _spatial(axes[c]) and rows(axes[a], "H", h) and rows(axes[b], "W", w):
            new = list(axes)
            new[a], new[b] = _whole("H", s[a + 1]), _whole("W", s[b + 1])
            return (s[a + 1], s[b + 1], tuple(new))
    return L


def _keep(L: tuple, src: tuple, s: tuple) -> tuple | None:
    """An op that keeps every dimension's meaning (elementwise, layer norm, linear on the last
    dimension, a broadcast operand): sizes may change only on axes without H or W."""
    h, w, axes = L
    if len(src) != len(s):
        return None
    out = []
    for ax, a, b in zip(axes, src[1:], s[1:]):
        if a == b:
            out.append(ax)
        elif _spatial(ax):
            return None
        else:
            out.append((("X", b),) if b > 1 else ())
    return (h, w, tuple(out))


def _step(n: Node, ins: list[tuple | None], g: Graph) -> tuple | None:
    s = n.shape
    if not _ints(s):
        return None
    r = len(s)
    d = ops_lookup(str(n.op))
    if d is not None and d.channels_first and r == 4:
        return _fresh(s[2], s[3], s[1])
    in_shapes = [g.node(i).shape for i in n.inputs]
    first = ins[0] if ins else None
    lay = _layout(n, r, d)
    kind = lay[0] if lay else ""
    if kind == "permute":
        perm = lay[1]
        if first is None or perm[0] != 0:
            return None
        h, w, axes = first
        return (h, w, tuple(axes[p - 1] for p in perm[1:]))
    if kind == "regroup":
        L = None if first is None else _reshape(first, tuple(s[1:]))
        return _regrid(L, s) if L is not None and r == 4 else L
    if kind == "join":
        return _concat(lay[1], ins, in_shapes, s)
    if kind == "resize" and first is not None and len(in_shapes[0]) == r:
        L = first
        for ax, start in lay[1]:  # whole dimensions sliced, narrowed or padded (never the batch)
            L = _resize(L, ax, s[ax], start) if ax else None
            if L is None:
                return None
        return L
    # ops that keep the positions: an input of the output's shape (they must agree), else one
    # that differs only in dimensions without H or W
    exact = {L for L, shp in zip(ins, in_shapes) if L is not None and tuple(shp) == tuple(s)}
    if exact:
        return exact.pop() if len(exact) == 1 else None
    for L, shp in zip(ins, in_shapes):
        if L is not None:
            got = _keep(L, shp, s)
            if got is not None:
                return got
    # any other op on a channels-first map, to a 4-D output: a channels-first map
    if first is not None and r == 4 and len(in_shapes[0]) == 4 and _kind(first)[0] == "nchw":
        return _fresh(s[2], s[3], s[1])
    return None


def _concat(d: int, ins: list, in_shapes: list, s: tuple) -> tuple | None:
    """A concat along dimension `d` of the output `s`."""
    r = len(s)
    if d == 0:
        return None
    have = [k for k, L in enumerate(ins) if L is not None]
    if len(have) == len(ins) and all(len(sh) == r for sh in in_shapes):
        L0 = ins[0]
        rest = [tuple(ax for i, ax in enumerate(L[2]) if i != d - 1) for L in ins]
        if all(L[:2] == L0[:2] for L in ins) and all(x == rest[0] for x in rest) \
                and not any(_spatial(L[2][d - 1]) for L in ins):
            return (L0[0], L0[1], tuple(L0[2][:d - 1]) + ((("X", s[d]),) if s[d] > 1 else (),) + tuple(L0[2][d:]))
    # patch tokens joined with tokens that are not (a class token, register tokens)
    tok = [k for k in have if _spatial(ins[k][2][d - 1])]
    if len(tok) != 1 or len(have) != 1:
        return None
    k = tok[0]
    h, w, axes = ins[k]
    ax = axes[d - 1]
    b, a = (ax[0][1], ax[0][2]) if ax[0][0] == "S" else (0, 0)
    core = ax[1:] if ax[0][0] == "S" else ax
    if core != _whole("H", h) + _whole("W", w):
        return None
    before = sum(in_shapes[j][d] for j in range(k))
    after = sum(in_shapes[j][d] for j in range(k + 1, len(ins)))
    new = (("S", before + b, a + after),) + core
    return (h, w, axes[:d - 1] + (new,) + axes[d:])


def _kind(L: tuple | None) -> tuple:
    """("nchw",) / ("nhwc",) / ("tokens", before) / ("nct",) / (None,): how a layout reads."""
    if L is None:
        return (None,)
    h, w, axes = L
    H, W = _whole("H", h), _whole("W", w)
    if len(axes) == 3:
        if axes[1] == H and axes[2] == W and not _spatial(axes[0]):
            return ("nchw",)
        if axes[0] == H and axes[1] == W and not _spatial(axes[2]):
            return ("nhwc",)
    if len(axes) == 2 and not _spatial(axes[1]):
        ax = axes[0]
        if ax and ax[0][0] == "S" and ax[1:] == H + W:
            return ("tokens", ax[0][1])
        if ax == H + W:
            return ("tokens", 0)
    if len(axes) == 2 and not _spatial(axes[0]) and axes[1] == H + W:
        return ("nct",)
    return (None,)


def infer_layouts(g: Graph) -> dict[int, tuple]:
    lay: dict[int, tuple] = {}
    for n in g.nodes:
        if n.op == Op.INPUT:
            if len(n.shape) == 4 and _ints(n.shape):
                lay[n.id] = _fresh(n.shape[2], n.shape[3], n.shape[1])
            continue
        L = _step(n, [lay.get(i) for i in n.inputs], g)
        if L is not None:
            lay[n.id] = L
    return lay


def cam_layout(g: Graph, node: Node, grid: tuple[int, int] | None = None) -> Layout | None:
    """None: an ordinary [N, C, H, W] map; else how to fold the layer (NoGrid: it cannot)."""
    s = node.shape
    if len(s) not in (3, 4) or not _ints(s):
        raise NoGrid(f"has shape {_fmt(s)}; a CAM needs a spatial map [N, C, H, W], a token sequence "
                     "[N, T, C] or a channels-last map [N, H, W, C]")
    if grid is not None:
        h, w = grid
        if len(s) == 4:
            if tuple(s[2:]) == (h, w):
                return None
            if tuple(s[1:3]) == (h, w):
                return Layout("nhwc", h, w, 0, s[3], 0)
            raise NoGrid(f"has shape {_fmt(s)}, which has no {h}x{w} grid (neither [N, C, {h}, {w}] nor "
                         f"[N, {h}, {w}, C])")
        if h * w > s[1]:
            raise NoGrid(f"has {s[1]} tokens, fewer than the {h}x{w} = {h * w} of grid = [{h}, {w}]")
        return Layout("tokens", h, w, s[1] - h * w, s[2], s[1])
    L = infer_layouts(g).get(node.id)
    kind = _kind(L)
    if len(s) == 4:
        if kind[0] == "nhwc":
            return Layout("nhwc", L[0], L[1], 0, s[3], 0)
        if kind[0] == "nchw":
            return None  # channels first, as every convolutional map
        win = _windows(L, s)
        if win is not None:
            return win
        raise NoGrid(f"has shape {_fmt(s)}, whose layout cannot be inferred: it is neither a channels-first map "
                     "[N, C, H, W] (the input image through convolutions and ops that keep the layout), nor a "
                     "channels-last map [N, H, W, C] (one permuted from it), nor the map's pixels in windows")
    if kind[0] == "tokens":
        return Layout("tokens", L[0], L[1], kind[1], s[2], s[1])
    win = _windows(L, s)  # the windows flattened into one token axis
    if win is not None:
        return win
    raise NoGrid(f"has shape {_fmt(s)}: a token sequence whose grid cannot be inferred (no patch embedding "
                 "- a convolution flattened and transposed into tokens - leads to it)")


def _windows(L: tuple | None, s: tuple) -> Layout | None:
    """The layout of a value whose axes hold the map's pixels regrouped (MaxViT's window partition
    [N, (H/p)(W/p), p*p, C], its grid partition, swapped) and one axis its channels: a Layout
    "windows" giving each position's pixel; None for anything else (extra tokens, channels mixed
    into a spatial axis, a pixel missing or twice)."""
    if L is None:
        return None
    h, w, axes = L
    if len(axes) != len(s) - 1:
        return None
    chan = [i for i, ax in enumerate(axes) if not _spatial(ax)]
    if len(chan) != 1 or any(a[0] not in "HW" for i, ax in enumerate(axes) if i != chan[0] for a in ax):
        return None
    c = chan[0]
    dims = tuple(s[i + 1] for i in range(len(axes)) if i != c)
    order = [0]
    for i, ax in enumerate(axes):
        if i == c:
            continue
        for kind, stride, size in ax:  # major to minor: each atom's index moves its pixel by stride rows/columns
            step = stride * (w if kind == "H" else 1)
            order = [o + k * step for o in order for k in range(size)]
    if len(order) != h * w or sorted(order) != list(range(h * w)):
        return None
    return Layout("windows", h, w, 0, int(s[c + 1]), 0, chan=c, dims=dims, order=tuple(order))


def _fmt(s) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def cam_chw(g: Graph, node: Node, grid: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """(C, H, W) of the map a CAM layer is explained as."""
    lay = cam_layout(g, node, grid)
    if lay is None:
        return int(node.shape[1]), int(node.shape[2]), int(node.shape[3])
    return lay.channels, lay.h, lay.w
