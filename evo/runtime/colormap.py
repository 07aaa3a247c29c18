"""Colormaps for CAM overlays: matplotlib's, as 256-entry uint8 lookup tables applied
with torch indexing.

Any name of ``matplotlib.colormaps`` works (``viridis``, ``magma``, ``jet``, ``turbo``,
``gray``, ``..._r`` reversed maps ...).  The table of a map holds its colours at the
centres of 256 equal bins of [0, 1], exactly as ``cmap(x, bytes=True)`` gives them, and
a value v is looked up the way matplotlib does it: bin ``floor(v * 256)`` clipped to
0..255 (so for the usual 256-colour maps the result equals ``cmap(v, bytes=True)``
bit for bit).  Values below 0 take the low end, above 1 the high end, NaN the low end.

The default is ``viridis``: perceptually uniform, with lightness increasing
monotonically from low to high, so a brighter overlay always means a larger map
value, also in grey print and for colour-blind readers.  Rainbow maps (``jet``,
``turbo``) are not perceptually uniform (bands of equal value change look unequal);
``--colormap jet`` gives the look of most other CAM tools.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

DEFAULT_COLORMAP = "viridis"


def colormap_names() -> list[str]:
    """Every colormap name matplotlib knows, sorted."""
    import matplotlib

    return sorted(matplotlib.colormaps)


@functools.lru_cache(maxsize=None)
def _table(name: str) -> torch.Tensor:
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        from evo.diagnostics import did_you_mean

        hint = did_you_mean(name, colormap_names())
        raise ValueError(f"unknown colormap {name!r}" + (f"; {hint}" if hint else "") +
                         " (any name of matplotlib.colormaps)") from None
    centres = (np.arange(256, dtype=np.float64) + 0.5) / 256.0
    return torch.from_numpy(np.ascontiguousarray(cmap(centres, bytes=True)[:, :3]))


def get_colormap(name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The [256, 3] uint8 table of a colormap by name (ValueError with a did-you-mean
    for a name matplotlib does not know)."""
    if not isinstance(name, str):
        raise TypeError(f"colormap: expected a name, got {type(name).__name__}")
    table = _table(name).numpy().copy()
    table.setflags(write=False)
    return table


def check_colormap(name: str) -> str:
    """`name` when it is a known colormap, else ValueError (with a did-you-mean)."""
    get_colormap(name)
    return name


def apply_colormap(map01, name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Colour a map [H, W] with values in [0, 1] (numpy array or torch tensor): bin
    ``floor(v * 256)`` clipped to 0..255 (NaN counts as 0) of the colormap's table.
    Returns uint8 [H, W, 3]."""
    if not isinstance(name, str):
        raise TypeError(f"colormap: expected a name, got {type(name).__name__}")
    table = _table(name)
    m = map01.detach().cpu() if isinstance(map01, torch.Tensor) else torch.from_numpy(np.asarray(map01))
    if m.dim() != 2:
        raise ValueError(f"apply_colormap: expected a 2-D map, got shape {tuple(m.shape)}")
    if not m.is_floating_point():
        m = m.to(torch.float64)
    # v * 256 is exact in every float type (a power of two), so the bins are matplotlib's
    idx = torch.nan_to_num(m * 256, nan=0.0).floor_().clamp_(0, 255).to(torch.long)
    return table[idx].numpy()
