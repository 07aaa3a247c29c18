"""Calibrating a tier's power on measured silicon.

A chip's measured power over an op is its static power (clock network, control and
leakage, drawn whatever the op) plus the dynamic energy the model counts over the op's
latency.  The model's dynamic energy scales with the absolute energy of its unit (the
[E16] ratios are relative to one MAC), and the static power is seldom published; both
enter linearly, so given the model's dynamic energy and latency of a few ops at the
chip's own mappings and the chip's measured power over each, :func:`fit_power` finds the
two by least squares, and :meth:`Hardware.with_energy_scale` applies them.  The bench
``bench/bench_eyeriss.py`` calibrates the Eyeriss tier so on the chip's AlexNet
measurements and tests it on VGG-16 (docs/cost-model.md, section 17).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerFit:
    """``measured ~ static_power_w + energy_scale * dynamic / latency`` at least squares;
    ``residuals``: measured - fitted power per point, watts."""

    static_power_w: float
    energy_scale: float
    residuals: tuple[float, ...]

    def power_w(self, dynamic_j: float, latency_s: float) -> float:
        """The fitted power of an op of `dynamic_j` joules over `latency_s` seconds."""
        return self.static_power_w + self.energy_scale * dynamic_j / latency_s


def fit_power(dynamic_j: Sequence[float], latency_s: Sequence[float], measured_w: Sequence[float]) -> PowerFit:
    """Static power and energy scale fitted to measured power (one value per op: the model's
    dynamic energy in J and latency in s, the measured power in W; sequences or numpy arrays).
    Needs at least two ops whose dynamic power differs; a ``ValueError`` says what is wrong
    otherwise.  The fit is returned as found: a negative static power or scale says the
    measurements do not follow the model (or the ops were not costed at the chip's mappings)."""
    n = len(dynamic_j)
    if not (n == len(latency_s) == len(measured_w)):
        raise ValueError(f"fit_power needs one dynamic energy, latency and measured power per op; got "
                         f"{len(dynamic_j)}, {len(latency_s)} and {len(measured_w)}")
    if n < 2:
        raise ValueError(f"fit_power needs at least two ops to separate static from dynamic power; got {n}")
    for what, seq, positive in (("dynamic energy", dynamic_j, False), ("latency", latency_s, True),
                                ("measured power", measured_w, False)):
        for v in seq:
            if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v < 0 \
                    or (positive and v == 0):
                sign = "positive" if positive else "non-negative"
                raise ValueError(f"fit_power: every {what} must be a finite {sign} number; got {v!r}")
    dyn_w = np.asarray(dynamic_j, dtype=np.float64) / np.asarray(latency_s, dtype=np.float64)
    if np.ptp(dyn_w) <= 1e-12 * max(1.0, float(np.max(np.abs(dyn_w)))):
        raise ValueError("fit_power: every op draws the same dynamic power, so static and dynamic power cannot "
                         "be told apart; give ops of different intensity")
    A = np.column_stack([np.ones(n), dyn_w])
    y = np.asarray(measured_w, dtype=np.float64)
    (static, scale), *_ = np.linalg.lstsq(A, y, rcond=None)
    return PowerFit(float(static), float(scale), tuple(float(r) for r in y - A @ np.array([static, scale])))
