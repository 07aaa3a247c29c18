"""Perceptual colormaps for CAM overlays, as 256-entry uint8 lookup tables.

Both tables are computed (not copied) from published polynomial approximations,
evaluated at t = i / 255 (i = 0..255), clipped to [0, 1] and rounded to 8 bits:

* ``turbo`` -- Turbo, "an improved rainbow colormap" by Anton Mikhailov (Google AI
  blog, 2019); polynomial approximation (degree 5) by Ruofei Du, published with
  the colormap (Apache-2.0). Jet-like: blue = low, red = high. Default for
  overlays, since that is how CAMs are usually read.
* ``viridis`` -- matplotlib's viridis (van der Walt & Smith, CC0), degree-6
  polynomial fit by Matt Zucker ("fitting polynomials to matplotlib colormaps",
  shadertoy WlfXRN, CC0). Perceptually uniform with monotonically increasing
  luminance: dark purple = low, yellow = high.
"""

from __future__ import annotations

import numpy as np

# Turbo: r(t) = sum_i R[i] t^i (degree 5), likewise g and b.
_TURBO_COEFFS = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ],
    dtype=np.float64,
)

# Viridis: c0 + t*(c1 + t*(c2 + ... + t*c6)); rows are c0..c6, columns r, g, b.
_VIRIDIS_COEFFS = np.array(
    [
        [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
        [0.1050930431085774, 1.404613529898575, 1.384590162594685],
        [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
        [-4.634230498983486, -5.799100973351585, -19.33244095627987],
        [6.228269936347081, 14.17993336680509, 56.69055260068105],
        [4.776384997670288, -13.74514537774601, -65.35303263337234],
        [-5.435455855934631, 4.645852612178535, 26.3124352495832],
    ],
    dtype=np.float64,
)


def _to_table(rgb01: np.ndarray) -> np.ndarray:
    table = np.rint(np.clip(rgb01, 0.0, 1.0) * 255.0).astype(np.uint8)
    table.setflags(write=False)
    return table


def _turbo_table() -> np.ndarray:
    t = np.arange(256, dtype=np.float64) / 255.0
    powers = np.stack([t**i for i in range(6)], axis=1)  # [256, 6]
    return _to_table(powers @ _TURBO_COEFFS.T)


def _viridis_table() -> np.ndarray:
    t = (np.arange(256, dtype=np.float64) / 255.0)[:, None]
    acc = np.broadcast_to(_VIRIDIS_COEFFS[6], (256, 3)).copy()
    for c in _VIRIDIS_COEFFS[5::-1]:
        acc = c + t * acc
    return _to_table(acc)


TURBO: np.ndarray = _turbo_table()  # [256, 3] uint8, read-only
VIRIDIS: np.ndarray = _viridis_table()  # [256, 3] uint8, read-only
COLORMAPS = {"turbo": TURBO, "viridis": VIRIDIS}
DEFAULT_COLORMAP = "turbo"


def get_colormap(name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The [256, 3] uint8 table of a colormap by name ("turbo" or "viridis")."""
    try:
        return COLORMAPS[name]
    except KeyError:
        raise ValueError(
            f"unknown colormap {name!r} (expected one of {', '.join(sorted(COLORMAPS))})"
        ) from None


def apply_colormap(map01, name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Colour a map [H, W] with values in [0, 1] (numpy array or torch tensor):
    values are clipped to [0, 1] (NaN counts as 0), quantised to round(v * 255) and
    looked up. Returns uint8 [H, W, 3]."""
    if hasattr(map01, "detach"):
        map01 = map01.detach().cpu().numpy()
    m = np.nan_to_num(np.asarray(map01, dtype=np.float64), nan=0.0)
    if m.ndim != 2:
        raise ValueError(f"apply_colormap: expected a 2-D map, got shape {m.shape}")
    idx = np.rint(np.clip(m, 0.0, 1.0) * 255.0).astype(np.intp)
    return get_colormap(name)[idx]
