"""Plots of a network's cost, drawn with matplotlib (Agg, no pyplot state).

* :func:`roofline_figure`: achieved throughput (MAC/s) against off-chip arithmetic
  intensity (MAC/B), log-log, with the compute roof and the off-chip bandwidth slope;
  one dot per op, coloured by its bounding resource.
* :func:`levels_figure`: one stacked bar per op, energy (J, SI-prefixed) or bytes moved
  (B, SI-prefixed) per memory level.
* :func:`network_figure`: both panels side by side in one figure.

Every axis carries its unit.  :func:`render` gives a figure's bytes as PNG, SVG or PDF,
deterministically: the same figure gives the same bytes (no date, no software version, a
fixed SVG hash salt).  The ``plot_*`` functions draw and render in one call and return the
bytes (and write them to a binary stream when given one).  This library writes no file:
the caller does, through `evo.fileio.write_atomic` (`CostReport.plot(path)`, `evoc cost
--plot`), with :func:`plot_format` choosing the format by the file's suffix.
"""

from __future__ import annotations

import io
import os
from typing import IO

from evo.cost.model import NetworkCost
from evo.cost.si import si_prefix

__all__ = [
    "PLOT_FORMATS",
    "levels_figure",
    "network_figure",
    "plot_format",
    "plot_levels",
    "plot_network",
    "plot_roofline",
    "render",
    "roofline_figure",
]

PLOT_FORMATS = ("png", "svg", "pdf")
DPI = 100

BOUND_COLOURS = {"compute": "#d62728", "offchip": "#1f77b4", "global": "#2ca02c", "pe": "#ff7f0e"}
LEVEL_COLOURS = {"offchip": "#1f77b4", "global": "#2ca02c", "pe": "#ff7f0e", "mac": "#9467bd"}

# metadata that would make two renderings of one figure differ (dates, versions)
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}
_RC = {"svg.hashsalt": "evo", "svg.fonttype": "path", "pdf.compression": 6, "path.simplify": True}


def plot_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The output format: `format` when given, else the file's suffix; ValueError for
    anything but png, svg or pdf."""
    fmt = format if format is not None else os.path.splitext(os.fspath(path))[1].lstrip(".")
    fmt = fmt.lower()
    if fmt not in PLOT_FORMATS:
        shown = f"'.{fmt}'" if fmt else "no suffix"
        raise ValueError(f"a plot is written as .png, .svg or .pdf (chosen by the file's suffix); "
                         f"{os.fspath(path) if format is None else 'format'} has {shown}")
    return fmt


def render(fig, format: str = "png") -> bytes:
    """The bytes of `fig` saved as `format` (png, svg or pdf), byte for byte the same for the same
    figure."""
    import matplotlib

    fmt = plot_format("", format or "png")
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=_METADATA[fmt], facecolor="white")
    return buf.getvalue()


def _out(draw, format: str, stream: IO[bytes] | None) -> bytes:
    """The bytes of the figure `draw()` makes, also written to `stream` when given."""
    if stream is not None and not hasattr(stream, "write"):
        raise TypeError("the plot functions return the bytes and write them to a binary stream only; "
                        "write a file with CostReport.plot(path) or evo.fileio.write_atomic(path, data)")
    data = render(draw(), format)
    if stream is not None:
        stream.write(data)
    return data


def _figure(width_px: int, height_px: int):
    from matplotlib.figure import Figure  # a bare Figure draws with Agg and keeps no pyplot state

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")


def _si_scale(top: float, base: str) -> tuple[str, float]:
    """The SI-prefixed unit (and its scale) for axis values up to `top` of unit `base`."""
    prefix, scale = si_prefix(top, smallest="f" if base == "J" else "")
    return prefix + base, scale


def _draw_roofline(ax, net: NetworkCost) -> None:
    hw = net.hardware
    peak = hw.peak_macs_per_s
    bw = hw.offchip.bandwidth_bps
    pts = []
    for o in net.ops:
        c = o.cost
        if c.macs <= 0 or c.latency_s <= 0:
            continue
        ai = c.macs / c.offchip_bytes if c.offchip_bytes > 0 else None
        pts.append((o.name, ai, c.macs / c.latency_s, c.bound))
    ridge = peak / bw
    ais = [p[1] for p in pts if p[1]] + [ridge]
    xlo, xhi = min(ais) / 4, max(ais) * 4
    # ops with no off-chip traffic sit at the right edge
    pts = [(n, a if a else xhi, p, b) for n, a, p, b in pts]
    perfs = [p[2] for p in pts] + [peak]
    ylo = min(perfs) / 4
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.plot([xlo, ridge, xhi], [max(xlo * bw, ylo), peak, peak], color="#141414", linewidth=2, label="roofline")
    order = list(BOUND_COLOURS) + sorted({b for *_, b in pts} - set(BOUND_COLOURS))
    for bound in order:
        sel = [(a, p) for _, a, p, b in pts if b == bound]
        if sel:
            ax.scatter([a for a, _ in sel], [p for _, p in sel], s=30, color=BOUND_COLOURS.get(bound, "#141414"),
                       edgecolors="#141414", linewidths=0.6, label=f"{bound}-bound", zorder=3)
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, peak * 4)
    ax.grid(True, which="major", color="#e1e1e1")
    ax.set_xlabel("arithmetic intensity (MAC/B off-chip)")
    ax.set_ylabel("achieved throughput (MAC/s)")
    ax.set_title(f"Roofline: {hw.name} (peak {peak:.3g} MAC/s, off-chip {bw:.3g} B/s)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)


def _draw_levels(ax, net: NetworkCost, metric: str) -> None:
    if metric not in ("energy", "bytes"):
        raise ValueError("metric must be 'energy' or 'bytes'")
    levels = ["offchip", "global", "pe", "mac"] if metric == "energy" else ["offchip", "global", "pe"]
    vals = []
    for o in net.ops:
        c = o.cost
        if metric == "energy":
            e = c.energy
            vals.append((o.name, {"offchip": e.offchip, "global": e.glb, "pe": e.pe, "mac": e.mac}))
        else:
            vals.append((o.name, dict(c.level_bytes)))
    top = max([sum(v.values()) for _, v in vals] + [0.0])
    unit, scale = _si_scale(top, "J" if metric == "energy" else "B")
    names = {"offchip": net.hardware.offchip.name + " (off-chip)", "global": net.hardware.glb.name + " (global)",
             "pe": net.hardware.pe.name + " (PE)", "mac": "MAC"}
    xs = list(range(len(vals)))
    bottom = [0.0] * len(vals)
    for lv in levels:
        h = [v.get(lv, 0.0) / scale for _, v in vals]
        ax.bar(xs, h, bottom=bottom, width=0.8, color=LEVEL_COLOURS[lv], label=names[lv])
        bottom = [b + x for b, x in zip(bottom, h)]
    every = max(1, -(-len(vals) // 60))
    ax.set_xticks(xs[::every], [n for n, _ in vals][::every], rotation=90, fontsize=6)
    ax.set_xlim(-0.6, max(len(vals), 1) - 0.4)
    ax.grid(True, axis="y", color="#e1e1e1")
    ax.set_axisbelow(True)
    what = "energy" if metric == "energy" else "bytes moved"
    ax.set_xlabel("op (in execution order)")
    ax.set_ylabel(f"{what} ({unit})")
    ax.set_title(f"{what.capitalize()} per level and op: {net.hardware.name}", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)


def roofline_figure(net: NetworkCost, size: tuple[int, int] = (800, 600)):
    fig = _figure(*size)
    _draw_roofline(fig.add_subplot(), net)
    fig.tight_layout()
    return fig


def levels_figure(net: NetworkCost, metric: str = "energy", size: tuple[int, int] = (1000, 600)):
    fig = _figure(*size)
    _draw_levels(fig.add_subplot(), net, metric)
    fig.tight_layout()
    return fig


def network_figure(net: NetworkCost, metric: str = "energy", size: tuple[int, int] = (1800, 600)):
    """Roofline and per-level bars side by side."""
    fig = _figure(*size)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 5]})
    _draw_roofline(left, net)
    _draw_levels(right, net, metric)
    fig.tight_layout()
    return fig


def plot_roofline(net: NetworkCost, stream: IO[bytes] | None = None, size: tuple[int, int] = (800, 600), *,
                  format: str = "png") -> bytes:
    """The roofline as `format` (png, svg or pdf): the bytes, also written to `stream` when given."""
    return _out(lambda: roofline_figure(net, size), format, stream)


def plot_levels(net: NetworkCost, stream: IO[bytes] | None = None, metric: str = "energy",
                size: tuple[int, int] = (1000, 600), *, format: str = "png") -> bytes:
    """Energy (or bytes) per level and op as `format`: the bytes, also written to `stream` when given."""
    return _out(lambda: levels_figure(net, metric, size), format, stream)


def plot_network(net: NetworkCost, stream: IO[bytes] | None = None, metric: str = "energy", *,
                 format: str = "png") -> bytes:
    """Roofline and per-level bars side by side as `format`: the bytes, also written to `stream`
    when given."""
    return _out(lambda: network_figure(net, metric), format, stream)
