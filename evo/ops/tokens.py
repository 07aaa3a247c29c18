"""Where a CAM layer's spatial grid is: token sequences and channels-last maps.

A CAM explains a map `[N, C, H, W]`.  Transformers carry their activations as a token
sequence `[N, T, C]` (ViT: a class token, maybe register tokens, then the H x W patch
tokens) or as a channels-last map `[N, H, W, C]` (Swin, ConvNeXt's MLP).  Every CAM
tool asks its user for a `reshape_transform` that drops the extra tokens and folds the
rest into the grid; evo knows the shapes at compile time and infers it.

`infer_layouts(g)` follows every value's layout forward from the input image: a
convolution's output is `nchw` with its H x W; `flatten`/`reshape` of a channels-first
map to `[N, C, H*W]` is `nct`; a permute or transpose of that is `tokens` (the H*W
patch tokens); a concat along the tokens with tensors that are not tokens (a class
token, register tokens) shifts where the patch tokens start; ops that keep the token
dimension (layer norm, linear, attention, elementwise, adds) keep the layout; permutes
between channels-first and channels-last are followed.

`cam_layout(g, node, grid)` is the layout of a CAM layer: `None` for an ordinary
`[N, C, H, W]` map, a :class:`Layout` saying how to fold it otherwise; or it raises
:class:`NoGrid` with the reason when it cannot (the checker reports E0502 with a hint
for `grid = [H, W]`).
"""

from __future__ import annotations

from dataclasses import dataclass

from evo.ir.node import Graph, Node, Op


@dataclass(frozen=True)
class Layout:
    kind: str     # "tokens" ([N, T, C]: tokens skip..skip+h*w are the grid) | "nhwc"
    h: int
    w: int
    skip: int = 0  # tokens before the grid (class and register tokens)
    channels: int = 0
    tokens: int = 0  # T

    @property
    def dropped(self) -> int:
        return self.tokens - self.h * self.w if self.kind == "tokens" else 0

    def describe(self) -> str:
        if self.kind == "nhwc":
            return f"a channels-last map [N, {self.h}, {self.w}, {self.channels}], explained as " \
                   f"[N, {self.channels}, {self.h}, {self.w}]"
        extra = self.tokens - self.h * self.w
        what = f"drops {extra} token{'s' if extra != 1 else ''} ({self.skip} before the grid), " if extra else ""
        return f"{self.tokens} tokens: {what}folds {self.h * self.w} into {self.h}x{self.w}, explained as " \
               f"[N, {self.channels}, {self.h}, {self.w}]"


class NoGrid(Exception):
    pass


# layouts: ("nchw", h, w) | ("nhwc", h, w) | ("nct", h, w) | ("tokens", skip, h, w)

def _ints(shape) -> bool:
    return all(isinstance(d, int) for d in shape[1:])


def _perm(n: Node, r: int) -> tuple | None:
    a = n.attr_dict
    if n.op == Op("permute"):
        return tuple(d % r for d in a["dims"])
    if n.op == Op("transpose"):
        p = list(range(r))
        d0, d1 = a["dim0"] % r, a["dim1"] % r
        p[d0], p[d1] = p[d1], p[d0]
        return tuple(p)
    return None


def _step(n: Node, ins: list[tuple | None], g: Graph) -> tuple | None:
    s = n.shape
    if not _ints(s):
        return None
    r = len(s)
    in_shapes = [g.node(i).shape for i in n.inputs]
    first = ins[0] if ins else None
    perm = _perm(n, r)
    if perm is not None and first is not None:
        kind = first[0]
        if kind == "nchw" and perm == (0, 2, 3, 1):
            return ("nhwc", first[1], first[2])
        if kind == "nhwc" and perm == (0, 3, 1, 2):
            return ("nchw", first[1], first[2])
        if kind == "nct" and perm == (0, 2, 1):
            return ("tokens", 0, first[1], first[2])
        if kind == "tokens" and first[1] == 0 and perm == (0, 2, 1) and s[2] == first[2] * first[3]:
            return ("nct", first[2], first[3])
        return None
    if n.op in (Op("reshape"), Op("view"), Op("flatten")) and first is not None:
        kind = first[0]
        src = in_shapes[0]
        if kind == "nchw" and r == 3 and s[1] == src[1] and s[2] == first[1] * first[2]:
            return ("nct", first[1], first[2])
        if kind == "nhwc" and r == 3 and s[2] == src[3] and s[1] == first[1] * first[2]:
            return ("tokens", 0, first[1], first[2])
        if kind == "nct" and r == 4 and tuple(s[2:]) == (first[1], first[2]):
            return ("nchw", first[1], first[2])
        if kind == "tokens" and first[1] == 0 and r == 4 and tuple(s[1:3]) == (first[2], first[3]) \
                and src[1] == first[2] * first[3]:
            return ("nhwc", first[2], first[3])
        return None
    if n.op == Op("concat"):
        d = n.attr("dim") % r
        if r == 3 and d == 1:
            tok = [k for k, L in enumerate(ins) if L is not None and L[0] == "tokens"]
            if len(tok) != 1 or any(L is not None for k, L in enumerate(ins) if k != tok[0]):
                return None
            k = tok[0]
            before = sum(in_shapes[j][1] for j in range(k))
            L = ins[k]
            return ("tokens", before + L[1], L[2], L[3])
        if r == 4 and first is not None and first[0] == "nchw" and d == 1 and all(L == first for L in ins):
            return first
        if r == 4 and first is not None and first[0] == "nhwc" and d == 3 and all(L == first for L in ins):
            return first
        return None
    # ops that keep the positions: the layout of an input of the output's shape
    for L, shp in zip(ins, in_shapes):
        if L is None or len(shp) != r:
            continue
        if L[0] == "tokens" and r == 3 and shp[1] == s[1]:
            return L
        if L[0] == "nhwc" and r == 4 and tuple(shp[1:3]) == tuple(s[1:3]):
            return L
        if L[0] == "nct" and r == 3 and shp[2] == s[2]:
            return L
        if L[0] == "nchw" and r == 4:
            return ("nchw", s[2], s[3])
    return None


def infer_layouts(g: Graph) -> dict[int, tuple]:
    lay: dict[int, tuple] = {}
    for n in g.nodes:
        if n.op == Op.INPUT:
            if len(n.shape) == 4 and _ints(n.shape):
                lay[n.id] = ("nchw", n.shape[2], n.shape[3])
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
    if len(s) == 4:
        if L is not None and L[0] == "nhwc":
            return Layout("nhwc", L[1], L[2], 0, s[3], 0)
        return None  # channels first, as every convolutional map
    if L is not None and L[0] == "tokens" and L[1] + L[2] * L[3] <= s[1]:
        return Layout("tokens", L[2], L[3], L[1], s[2], s[1])
    raise NoGrid(f"has shape {_fmt(s)}: a token sequence whose grid cannot be inferred (no patch embedding "
                 "- a convolution flattened and transposed into tokens - leads to it)")


def _fmt(s) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def cam_chw(g: Graph, node: Node, grid: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """(C, H, W) of the map a CAM layer is explained as."""
    lay = cam_layout(g, node, grid)
    if lay is None:
        return int(node.shape[1]), int(node.shape[2]), int(node.shape[3])
    return lay.channels, lay.h, lay.w
