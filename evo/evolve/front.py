"""Pareto fronts: exact filtering, hypervolume, text/JSON formatting and plots.

Points are duck-typed: anything with a ``metrics`` mapping (and, for formatting,
``values`` and ``genome``), such as :class:`evo.evolve.nsga2.Point`, or a plain
mapping of metric name to number. Objectives are ``(name, "min" | "max")`` pairs
(a bare name means ``"min"``; ``"minimize"``/``"maximize"`` are accepted too).

Everything here is deterministic: the same input gives the same text, JSON and
bytes of a plot (matplotlib, see :func:`front_figure`).
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
    "front_figure",
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
# plot (matplotlib, through evo.cost.plot's deterministic writer)

_ALL = "#aaaaaa"
_BAD = "#eb9696"
_FRONT = "#1f64c8"
_FRONT_EDGE = "#0a286e"


def _axis_label(name: str, sense: str | None, units: Mapping[str, str]) -> str:
    unit = units.get(name)
    label = f"{name} ({unit})" if unit else name
    return f"{label}, {sense}" if sense else label


def _use_log(values: np.ndarray, log: Any) -> bool:
    v = values[np.isfinite(values)]
    return bool(v.size and np.all(v > 0) and (log is True or (log == "auto" and v.max() / v.min() >= 1e3)))


def _tick_formatter(unit: str | None):
    from matplotlib.ticker import FuncFormatter

    from evo.cost.si import format_si

    if unit not in ("s", "J", "B", "count"):
        return None
    smallest = "" if unit in ("B", "count") else "f"
    shown = "" if unit == "count" else unit
    return FuncFormatter(lambda v, _pos: "0" if v == 0 else format_si(v, shown, digits=3, smallest=smallest,
                                                                      trim=True, sep=" " if shown else ""))


def _draw_panel(ax, xs_all, ys_all, feas_all, xs_f, ys_f, xlabel, ylabel, title, log, connect,
                xunit, yunit) -> None:
    finite = np.isfinite(xs_all) & np.isfinite(ys_all)
    bad = finite & ~feas_all
    good = finite & feas_all
    if bad.any():
        ax.scatter(xs_all[bad], ys_all[bad], marker="x", s=16, color=_BAD, linewidths=1, zorder=1)
    if good.any():
        ax.scatter(xs_all[good], ys_all[good], marker="o", s=10, color=_ALL, linewidths=0, zorder=2)
    ff = np.isfinite(xs_f) & np.isfinite(ys_f)
    fx, fy = xs_f[ff], ys_f[ff]
    if connect and fx.size > 1:
        order = np.lexsort((fy, fx))
        ax.plot(fx[order], fy[order], color=_FRONT, linewidth=1, zorder=3)
    if fx.size:
        ax.scatter(fx, fy, marker="o", s=40, color=_FRONT, edgecolors=_FRONT_EDGE, linewidths=1, zorder=4)
    for values, setter in ((np.concatenate([xs_all, xs_f]), ax.set_xscale),
                           (np.concatenate([ys_all, ys_f]), ax.set_yscale)):
        if _use_log(values, log):
            setter("log")
    for unit, axis in ((xunit, ax.xaxis), (yunit, ax.yaxis)):
        fmt = _tick_formatter(unit)
        if fmt is not None:
            axis.set_major_formatter(fmt)
    ax.tick_params(labelsize=7)
    ax.grid(True, color="#e8e8e8")
    ax.set_axisbelow(True)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)


def front_figure(
    front: Sequence[Any],
    evaluated: Sequence[Any] | None,
    objectives: Iterable[Any],
    *,
    title: str | None = None,
    panel_size: tuple[int, int] = (460, 340),
    log: Any = "auto",
    units: Mapping[str, str] | None = None,
):
    """A matplotlib figure of the objectives: the front over every evaluated point.

    Two objectives give one scatter; three or more give a grid with one scatter per
    pair; one objective is plotted against the evaluation order.  Evaluated points
    that are infeasible (``feasible`` attribute false) are light-red crosses when they
    have the metrics.  ``log`` is ``"auto"`` (log10 axis when all values are positive
    and span >= 1000x), ``True`` or ``False``.  ``units`` maps a metric to its unit
    (``"s"``, ``"J"``, ``"B"``, ``"count"``...): the axis is labelled with it and its
    ticks are SI-prefixed (`evo.cost.si.format_si`).  Raw metric values are plotted
    (not negated).  The figure is ``panel_size`` pixels per panel plus a 46-pixel
    header, at 100 dpi.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    objs = normalize_objectives(objectives)
    units = dict(units or {})
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
    if len(objs) == 1:
        pairs = [(0, 0)]
    else:
        pairs = [(i, j) for i in range(len(objs)) for j in range(i + 1, len(objs))]
    cols = max(1, math.ceil(math.sqrt(len(pairs))))
    rows = math.ceil(len(pairs) / cols)
    pw, ph = panel_size
    header = 46
    W, H = cols * pw, rows * ph + header
    fig = Figure(figsize=(W / 100, H / 100), dpi=100, facecolor="white")
    head = (title or "Pareto front") + f"  ({len(front)} on the front, {len(evaluated)} evaluated)"
    fig.text(8 / W, 1 - 6 / H, head, fontsize=10, va="top", ha="left")
    handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=_FRONT, markeredgecolor=_FRONT_EDGE),
               Line2D([], [], linestyle="", marker="o", markersize=3, color=_ALL),
               Line2D([], [], linestyle="", marker="x", markersize=4, color=_BAD)]
    fig.legend(handles, ["front", "evaluated", "infeasible"], loc="upper left", ncol=3, fontsize=7,
               frameon=False, bbox_to_anchor=(4 / W, 1 - 22 / H), borderaxespad=0, handletextpad=0.3)
    gs = fig.add_gridspec(rows, cols, left=0.0, right=1.0, bottom=0.0, top=1 - header / H)
    for k, (i, j) in enumerate(pairs):
        r, c = divmod(k, cols)
        ax = fig.add_subplot(gs[r, c])
        ni, si = objs[i]
        if i == j:  # single objective: value against evaluation order
            xs_all = np.arange(len(evaluated), dtype=float)
            idx = {id(p): n for n, p in enumerate(evaluated)}
            xs_f = np.array([float(idx.get(id(p), 0)) for p in front])
            _draw_panel(ax, xs_all, A[:, i], feas, xs_f, Fr[:, i], "evaluation (index)",
                        _axis_label(ni, si, units), _axis_label(ni, si, units), False, False,
                        None, units.get(ni))
        else:
            nj, sj = objs[j]
            _draw_panel(ax, A[:, i], A[:, j], feas, Fr[:, i], Fr[:, j], _axis_label(ni, si, units),
                        _axis_label(nj, sj, units), f"{nj} vs {ni}", log, len(objs) == 2,
                        units.get(ni), units.get(nj))
        # each panel keeps its margins inside its own cell
        box = gs[r, c].get_position(fig)
        ax.set_position([box.x0 + 68 / W, box.y0 + 42 / H, box.width - 82 / W, box.height - 68 / H])
    return fig


def plot_front(
    front: Sequence[Any],
    evaluated: Sequence[Any] | None,
    objectives: Iterable[Any],
    path: Any = None,
    *,
    format: str | None = None,
    title: str | None = None,
    panel_size: tuple[int, int] = (460, 340),
    log: Any = "auto",
    units: Mapping[str, str] | None = None,
) -> Any:
    """Draw :func:`front_figure` and save it to ``path`` (a file name, or a binary file
    object) as PNG, SVG or PDF, chosen by the suffix (or ``format``; a file object
    defaults to PNG); deterministic bytes.  Returns the ``PIL.Image.Image`` of the PNG
    (without ``path``: only that), or ``path`` for SVG and PDF."""
    import io

    from PIL import Image

    from evo.cost.plot import plot_format, render

    fmt = "png" if path is None and format is None else (
        plot_format("", format or "png") if hasattr(path, "write") or path is None else plot_format(path, format))
    fig = front_figure(front, evaluated, objectives, title=title, panel_size=panel_size, log=log, units=units)
    data = render(fig, fmt)
    if path is not None:
        if hasattr(path, "write"):
            path.write(data)
        else:
            from evo.fileio import write_atomic

            write_atomic(path, data)
    if fmt != "png":
        return path
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")
