"""Pareto fronts: exact filtering, hypervolume, text/JSON formatting and PNG plots.

Points are duck-typed: anything with a ``metrics`` mapping (and, for formatting,
``values`` and ``genome``), such as :class:`evo.evolve.nsga2.Point`, or a plain
mapping of metric name to number. Objectives are ``(name, "min" | "max")`` pairs
(a bare name means ``"min"``; ``"minimize"``/``"maximize"`` are accepted too).

Everything here is deterministic: the same input gives the same text, JSON and
pixels. The plot uses Pillow's ``ImageDraw`` only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "dominates",
    "format_table",
    "format_value",
    "front_dict",
    "front_json",
    "hypervolume",
    "normalize_objectives",
    "objective_matrix",
    "pareto_front",
    "pareto_mask",
    "plot_front",
]

_SENSES = {"min": "min", "minimize": "min", "max": "max", "maximize": "max"}


def normalize_objectives(objectives: Iterable[Any]) -> list[tuple[str, str]]:
    """``[(name, "min"|"max"), ...]`` from pairs or bare names; rejects duplicates and bad senses."""
    out: list[tuple[str, str]] = []
    for obj in objectives:
        if isinstance(obj, str):
            name, sense = obj, "min"
        else:
            name, sense = obj
        if not isinstance(name, str) or not name:
            raise ValueError(f"bad objective name {name!r}")
        s = _SENSES.get(str(sense).lower())
        if s is None:
            raise ValueError(f"objective {name!r}: sense must be 'min' or 'max', got {sense!r}")
        if any(n == name for n, _ in out):
            raise ValueError(f"objective {name!r} given twice")
        out.append((name, s))
    if not out:
        raise ValueError("at least one objective is needed")
    return out


def _metrics_of(p: Any) -> Mapping[str, Any]:
    m = getattr(p, "metrics", None)
    if m is None:
        if isinstance(p, Mapping):
            return p
        raise TypeError(f"cannot read metrics of {type(p).__name__}")
    return m


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def objective_matrix(points: Sequence[Any], objectives: Iterable[Any]) -> np.ndarray:
    """``(N, M)`` float array of objectives turned into minimisation (max objectives negated).

    A missing or non-numeric metric gives NaN.
    """
    objs = normalize_objectives(objectives)
    F = np.empty((len(points), len(objs)), dtype=float)
    for i, p in enumerate(points):
        m = _metrics_of(p)
        for j, (name, sense) in enumerate(objs):
            v = _num(m[name]) if name in m else math.nan
            F[i, j] = -v if sense == "max" else v
    return F


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Pareto dominance of minimisation vectors: ``a <= b`` everywhere and ``<`` somewhere."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of a minimisation matrix.

    Exact. Rows with equal vectors do not dominate each other (all are kept if
    non-dominated). Rows containing NaN are never in the front and dominate nothing.
    """
    F = np.asarray(F, dtype=float)
    n = F.shape[0]
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    ok = ~np.isnan(F).any(axis=1)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return mask
    G = F[idx]
    # lexicographic order: a row can only be dominated by rows before it
    order = np.lexsort(G.T[::-1])
    front_rows: list[np.ndarray] = []
    front_arr = np.empty((0, G.shape[1]))
    for k in order:
        v = G[k]
        if front_arr.shape[0]:
            dom = np.all(front_arr <= v, axis=1) & np.any(front_arr < v, axis=1)
            if dom.any():
                continue
        front_rows.append(v)
        front_arr = np.vstack([front_arr, v[None, :]])
        mask[idx[k]] = True
    return mask


def pareto_front(points: Sequence[Any], objectives: Iterable[Any]) -> list[Any]:
    """The exact non-dominated subset of ``points`` (in their input order).

    ``points`` are Point-like objects (with ``.metrics``) or metric mappings.
    Points whose objective metrics are missing or NaN are left out. No
    feasibility filtering is done here: pass feasible points only.
    """
    points = list(points)
    mask = pareto_mask(objective_matrix(points, objectives))
    return [p for p, keep in zip(points, mask) if keep]


# ---------------------------------------------------------------------------
# hypervolume


def hypervolume(F: Any, ref: Sequence[float]) -> float:
    """Hypervolume dominated by minimisation vectors ``F`` and bounded by ``ref``.

    Exact: a sweep in 2-D, recursive slicing in higher dimensions (fine for the
    front sizes evolve produces). Rows not strictly better than ``ref`` in every
    objective contribute nothing.
    """
    F = np.asarray(F, dtype=float)
    ref = np.asarray(ref, dtype=float)
    if F.size == 0:
        return 0.0
    F = F.reshape(-1, ref.shape[0])
    F = F[np.all(F < ref, axis=1)]
    if F.shape[0] == 0:
        return 0.0
    F = F[pareto_mask(F)]
    return float(_hv(F, ref))


def _hv(F: np.ndarray, ref: np.ndarray) -> float:
    m = F.shape[1]
    if m == 1:
        return float(ref[0] - F[:, 0].min())
    if m == 2:
        order = np.lexsort((F[:, 1], F[:, 0]))
        vol, prev_y = 0.0, ref[1]
        for k in order:
            x, y = F[k]
            if y < prev_y:
                vol += (ref[0] - x) * (prev_y - y)
                prev_y = y
        return vol
    # slice along the last objective
    order = np.argsort(F[:, -1], kind="stable")
    vol = 0.0
    for pos, k in enumerate(order):
        z = F[k, -1]
        z_next = F[order[pos + 1], -1] if pos + 1 < len(order) else ref[-1]
        if z_next <= z:
            continue
        sub = F[order[: pos + 1], :-1]
        sub = sub[pareto_mask(sub)]
        vol += _hv(sub, ref[:-1]) * (z_next - z)
    return vol


# ---------------------------------------------------------------------------
# text and JSON


def format_value(v: Any) -> str:
    """How a gene value or metric is shown: evo spellings for bools, 6 significant digits for floats."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return format(f, ".6g")
    return str(v)


def format_table(
    points: Sequence[Any],
    objectives: Iterable[Any],
    *,
    genes: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> str:
    """A fixed-width text table: ``#``, gene values, objectives (with ``min``/``max``), extra metrics.

    ``genes`` defaults to the keys of the first point's ``values`` (gene order);
    ``metrics`` lists extra metric columns (default none). Numbers right-aligned.
    """
    objs = normalize_objectives(objectives)
    points = list(points)
    if genes is None:
        genes = list(getattr(points[0], "values", {}) or {}) if points else []
    metrics = [m for m in (metrics or []) if all(m != n for n, _ in objs)]
    header = ["#"] + list(genes) + [f"{n} ({s})" for n, s in objs] + list(metrics)
    rows: list[list[str]] = []
    for i, p in enumerate(points):
        vals = getattr(p, "values", {}) or {}
        mets = _metrics_of(p)
        row = [str(i + 1)]
        row += [format_value(vals[g]) if g in vals else "-" for g in genes]
        row += [format_value(mets[n]) if n in mets else "-" for n, _ in objs]
        row += [format_value(mets[m]) if m in mets else "-" for m in metrics]
        rows.append(row)
    widths = [max([len(header[c])] + [len(r[c]) for r in rows]) for c in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(cell.rjust(w) for cell, w in zip(r, widths)))
    if not rows:
        lines.append("(no feasible point)")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isfinite(f):
            return f
        return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def front_dict(
    points: Sequence[Any], objectives: Iterable[Any], *, meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-ready dict: ``{"objectives": [...], "front": [{"genome", "values", "metrics"}], **meta}``.

    Gene values keep gene order; metrics are sorted by name. Non-JSON values
    (quantities, ...) become ``str(value)``; non-finite floats become ``"inf"``/``"nan"``.
    """
    objs = normalize_objectives(objectives)
    front = []
    for p in points:
        mets = _metrics_of(p)
        entry: dict[str, Any] = {}
        if getattr(p, "genome", None) is not None:
            entry["genome"] = [int(i) for i in p.genome]
        entry["values"] = _jsonable(dict(getattr(p, "values", {}) or {}))
        entry["metrics"] = {k: _jsonable(mets[k]) for k in sorted(mets)}
        front.append(entry)
    out: dict[str, Any] = {"objectives": [{"name": n, "sense": s} for n, s in objs]}
    for k, v in (meta or {}).items():
        out[k] = _jsonable(v)
    out["front"] = front
    return out


def front_json(
    points: Sequence[Any],
    objectives: Iterable[Any],
    *,
    meta: Mapping[str, Any] | None = None,
    indent: int | None = 2,
) -> str:
    """``json.dumps(front_dict(...))`` with a trailing newline."""
    return json.dumps(front_dict(points, objectives, meta=meta), indent=indent, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------
# PNG plot (Pillow ImageDraw only)

_BG = (255, 255, 255)
_AXIS = (40, 40, 40)
_GRID = (232, 232, 232)
_ALL = (170, 170, 170)
_BAD = (235, 150, 150)
_FRONT = (31, 100, 200)
_FRONT_EDGE = (10, 40, 110)
_TEXT = (20, 20, 20)


def _nice_num(x: float, round_: bool) -> float:
    if x <= 0 or not math.isfinite(x):
        return 1.0
    e = math.floor(math.log10(x))
    f = x / 10**e
    if round_:
        nf = 1 if f < 1.5 else 2 if f < 3 else 5 if f < 7 else 10
    else:
        nf = 1 if f <= 1 else 2 if f <= 2 else 5 if f <= 5 else 10
    return nf * 10**e


def _linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = _nice_num((hi - lo) / max(1, n), True)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    for k in range(100):
        t = start + k * step
        if t > hi + step * 1e-9:
            break
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
    return ticks


def _fmt_tick(t: float, prec: int = 4) -> str:
    s = format(t, f".{prec}g")
    return s.replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


class _Axis:
    """Maps data values to pixels, linear or log10."""

    def __init__(self, values: np.ndarray, log: Any):
        v = values[np.isfinite(values)]
        self.log = False
        if v.size and np.all(v > 0) and (log is True or (log == "auto" and v.max() / v.min() >= 1e3)):
            self.log = True
            v = np.log10(v)
        if v.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = float(v.min()), float(v.max())
        if hi <= lo:
            pad = abs(lo) * 0.1 if lo != 0 else 1.0
            lo, hi = lo - pad, hi + pad
        else:
            pad = (hi - lo) * 0.05
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi = lo, hi

    def t(self, x: float) -> float:
        if self.log:
            x = math.log10(x) if x > 0 else -math.inf
        return (x - self.lo) / (self.hi - self.lo)

    def ticks(self) -> list[tuple[float, str]]:
        if self.log:
            a, b = math.ceil(self.lo), math.floor(self.hi)
            exps = list(range(a, b + 1))
            if len(exps) > 8:
                stride = math.ceil(len(exps) / 8)
                exps = exps[::stride]
            if not exps:
                return [(10**x, _fmt_tick(10**x)) for x in _linear_ticks(self.lo, self.hi)]
            return [(10.0**e, _fmt_tick(10.0**e)) for e in exps]
        ticks = _linear_ticks(self.lo, self.hi)
        for prec in range(4, 16):
            labels = [_fmt_tick(t, prec) for t in ticks]
            if len(set(labels)) == len(labels):
                break
        return list(zip(ticks, labels))


def _font(size: int = 11):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _text_size(draw, text: str, font) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


def _draw_panel(
    img,
    box: tuple[int, int, int, int],
    xs_all: np.ndarray,
    ys_all: np.ndarray,
    feas_all: np.ndarray,
    xs_f: np.ndarray,
    ys_f: np.ndarray,
    xlabel: str,
    ylabel: str,
    title: str,
    log: Any,
    connect: bool,
) -> None:
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(img)
    font = _font(11)
    small = _font(10)
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 68, x1 - 14, y0 + 26, y1 - 42
    ax = _Axis(np.concatenate([xs_all, xs_f]), log)
    ay = _Axis(np.concatenate([ys_all, ys_f]), log)

    def px(x: float) -> float:
        return left + ax.t(x) * (right - left)

    def py(y: float) -> float:
        return bottom - ay.t(y) * (bottom - top)

    # grid and ticks
    for t, lab in ax.ticks():
        X = px(t)
        if left - 0.5 <= X <= right + 0.5:
            draw.line([(X, top), (X, bottom)], fill=_GRID)
            draw.line([(X, bottom), (X, bottom + 4)], fill=_AXIS)
            w, h = _text_size(draw, lab, small)
            draw.text((X - w / 2, bottom + 6), lab, fill=_TEXT, font=small)
    for t, lab in ay.ticks():
        Y = py(t)
        if top - 0.5 <= Y <= bottom + 0.5:
            draw.line([(left, Y), (right, Y)], fill=_GRID)
            draw.line([(left - 4, Y), (left, Y)], fill=_AXIS)
            w, h = _text_size(draw, lab, small)
            draw.text((left - 6 - w, Y - h / 2 - 1), lab, fill=_TEXT, font=small)
    draw.rectangle([left, top, right, bottom], outline=_AXIS)

    # titles
    w, h = _text_size(draw, title, font)
    draw.text(((left + right) / 2 - w / 2, y0 + 6), title, fill=_TEXT, font=font)
    xl = xlabel + (" (log)" if ax.log else "")
    w, h = _text_size(draw, xl, font)
    draw.text(((left + right) / 2 - w / 2, y1 - 20), xl, fill=_TEXT, font=font)
    yl = ylabel + (" (log)" if ay.log else "")
    w, h = _text_size(draw, yl, font)
    tmp = Image.new("RGB", (w + 4, h + 6), _BG)
    ImageDraw.Draw(tmp).text((2, 1), yl, fill=_TEXT, font=font)
    tmp = tmp.rotate(90, expand=True)
    img.paste(tmp, (x0 + 4, int((top + bottom) / 2 - tmp.size[1] / 2)))

    def inside(X: float, Y: float) -> bool:
        return left <= X <= right and top <= Y <= bottom

    # all evaluated points (infeasible first, then feasible), then the front
    for want, color in ((False, _BAD), (True, _ALL)):
        for x, y, f in zip(xs_all, ys_all, feas_all):
            if bool(f) != want or not (math.isfinite(x) and math.isfinite(y)):
                continue
            X, Y = px(x), py(y)
            if not inside(X, Y):
                continue
            if want:
                draw.ellipse([X - 2, Y - 2, X + 2, Y + 2], fill=color)
            else:
                draw.line([(X - 2, Y - 2), (X + 2, Y + 2)], fill=color)
                draw.line([(X - 2, Y + 2), (X + 2, Y - 2)], fill=color)
    pts = [(px(x), py(y)) for x, y in zip(xs_f, ys_f) if math.isfinite(x) and math.isfinite(y)]
    if connect and len(pts) > 1:
        order = sorted(range(len(pts)), key=lambda k: (pts[k][0], pts[k][1]))
        draw.line([pts[k] for k in order], fill=_FRONT, width=1)
    for X, Y in pts:
        if inside(X, Y):
            draw.ellipse([X - 4, Y - 4, X + 4, Y + 4], fill=_FRONT, outline=_FRONT_EDGE)


def plot_front(
    front: Sequence[Any],
    evaluated: Sequence[Any] | None,
    objectives: Iterable[Any],
    path: Any = None,
    *,
    title: str | None = None,
    panel_size: tuple[int, int] = (460, 340),
    log: Any = "auto",
) -> Any:
    """Scatter plot of the objectives; front points highlighted over all evaluated points.

    Two objectives give one scatter; three or more give a grid with one scatter
    per pair. Evaluated points that are infeasible (``feasible`` attribute false)
    are drawn as light-red crosses when they have the metrics. ``log`` is
    ``"auto"`` (log10 axis when all values are positive and span >= 1000x),
    ``True`` or ``False``. Writes a PNG when ``path`` is given; returns the
    ``PIL.Image.Image``. Raw metric values are plotted (not negated).
    """
    from PIL import Image, ImageDraw

    objs = normalize_objectives(objectives)
    front = list(front)
    evaluated = list(evaluated) if evaluated is not None else []

    def raw(points: Sequence[Any]) -> np.ndarray:
        A = np.full((len(points), len(objs)), math.nan)
        for i, p in enumerate(points):
            m = _metrics_of(p)
            for j, (n, _) in enumerate(objs):
                if n in m:
                    A[i, j] = _num(m[n])
        return A

    A = raw(evaluated)
    Fr = raw(front)
    feas = np.array([bool(getattr(p, "feasible", True)) for p in evaluated], dtype=bool)
    labels = [f"{n} ({s})" for n, s in objs]
    if len(objs) == 1:
        pairs = [(0, 0)]
    else:
        pairs = [(i, j) for i in range(len(objs)) for j in range(i + 1, len(objs))]
    cols = max(1, math.ceil(math.sqrt(len(pairs))))
    rows = math.ceil(len(pairs) / cols)
    pw, ph = panel_size
    header = 46
    img = Image.new("RGB", (cols * pw, rows * ph + header), _BG)
    draw = ImageDraw.Draw(img)
    font = _font(12)
    small = _font(10)
    head = title or "Pareto front"
    head += f"  ({len(front)} on the front, {len(evaluated)} evaluated)"
    draw.text((8, 6), head, fill=_TEXT, font=font)
    # legend
    lx, ly = 10, 28
    draw.ellipse([lx, ly + 2, lx + 8, ly + 10], fill=_FRONT, outline=_FRONT_EDGE)
    draw.text((lx + 12, ly), "front", fill=_TEXT, font=small)
    lx += 12 + _text_size(draw, "front", small)[0] + 16
    draw.ellipse([lx + 2, ly + 4, lx + 6, ly + 8], fill=_ALL)
    draw.text((lx + 12, ly), "evaluated", fill=_TEXT, font=small)
    lx += 12 + _text_size(draw, "evaluated", small)[0] + 16
    draw.line([(lx + 1, ly + 3), (lx + 7, ly + 9)], fill=_BAD)
    draw.line([(lx + 1, ly + 9), (lx + 7, ly + 3)], fill=_BAD)
    draw.text((lx + 12, ly), "infeasible", fill=_TEXT, font=small)
    for k, (i, j) in enumerate(pairs):
        r, c = divmod(k, cols)
        box = (c * pw, header + r * ph, (c + 1) * pw, header + (r + 1) * ph)
        if i == j:  # single objective: value against evaluation order
            xs_all = np.arange(len(evaluated), dtype=float)
            idx = {id(p): n for n, p in enumerate(evaluated)}
            xs_f = np.array([float(idx.get(id(p), 0)) for p in front])
            _draw_panel(
                img,
                box,
                xs_all,
                A[:, i],
                feas,
                xs_f,
                Fr[:, i],
                "evaluation",
                labels[i],
                labels[i],
                False,
                False,
            )
        else:
            _draw_panel(
                img,
                box,
                A[:, i],
                A[:, j],
                feas,
                Fr[:, i],
                Fr[:, j],
                labels[i],
                labels[j],
                f"{objs[j][0]} vs {objs[i][0]}",
                log,
                len(objs) == 2,
            )
    if path is not None:
        img.save(path, format="PNG")
    return img
