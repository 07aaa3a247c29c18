"""PNG plots of a network's cost with Pillow's ImageDraw only (no matplotlib).

* :func:`plot_roofline`: achieved MAC/s against off-chip arithmetic intensity
  (MAC per off-chip byte), log-log, with the compute roof and the off-chip
  bandwidth slope; one dot per op, coloured by its bounding resource.
* :func:`plot_levels`: one stacked bar per op, energy (or bytes) per level.
* :func:`plot_network`: both panels side by side in one image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from evo.cost.model import NetworkCost

__all__ = ["plot_levels", "plot_network", "plot_roofline", "render_levels", "render_roofline"]

BOUND_COLOURS = {"compute": (214, 39, 40), "offchip": (31, 119, 180), "global": (44, 160, 44),
                 "pe": (255, 127, 14)}
LEVEL_COLOURS = {"offchip": (31, 119, 180), "global": (44, 160, 44), "pe": (255, 127, 14), "mac": (148, 103, 189)}
_BG, _FG, _GRID = (255, 255, 255), (20, 20, 20), (225, 225, 225)


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


def _sci(v: float) -> str:
    e = round(math.log10(v))
    return f"1e{e}"


def _decades(lo: float, hi: float) -> tuple[int, int]:
    a = math.floor(math.log10(lo))
    b = math.ceil(math.log10(hi))
    if b <= a:
        b = a + 1
    return a, b


def _legend(draw, items: Sequence[tuple[str, tuple[int, int, int]]], x: int, y: int, font) -> None:
    w = max(_text_size(draw, t, font)[0] for t, _ in items) + 30
    h = 18 * len(items) + 8
    draw.rectangle([x - w, y, x, y + h], fill=(255, 255, 255), outline=(160, 160, 160))
    for i, (t, c) in enumerate(items):
        yy = y + 6 + 18 * i
        draw.rectangle([x - w + 6, yy + 2, x - w + 18, yy + 12], fill=c)
        draw.text((x - w + 24, yy), t, fill=_FG, font=font)


def render_roofline(net: NetworkCost, size: tuple[int, int] = (800, 600)) -> Image.Image:
    W, H = size
    img = Image.new("RGB", size, _BG)
    d = ImageDraw.Draw(img)
    font, small = _font(13), _font(11)
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
    xlo, xhi = _decades(min(ais) / 2, max(ais) * 2)
    perfs = [p[2] for p in pts] + [peak]
    ylo, yhi = _decades(min(perfs) / 2, peak * 2)
    L, R, T, B = 80, W - 20, 40, H - 60
    # ops with no off-chip traffic sit at the right edge
    pts = [(n, a if a else 10 ** xhi, p, b) for n, a, p, b in pts]

    def X(v):
        return L + (math.log10(v) - xlo) / (xhi - xlo) * (R - L)

    def Y(v):
        return B - (math.log10(v) - ylo) / (yhi - ylo) * (B - T)

    for e in range(xlo, xhi + 1):
        x = X(10 ** e)
        d.line([x, T, x, B], fill=_GRID)
        tw, _ = _text_size(d, _sci(10 ** e), small)
        d.text((x - tw / 2, B + 6), _sci(10 ** e), fill=_FG, font=small)
    for e in range(ylo, yhi + 1):
        y = Y(10 ** e)
        d.line([L, y, R, y], fill=_GRID)
        tw, th = _text_size(d, _sci(10 ** e), small)
        d.text((L - tw - 6, y - th / 2 - 2), _sci(10 ** e), fill=_FG, font=small)
    d.rectangle([L, T, R, B], outline=_FG)
    # roofs: min(peak, ai * bw)
    segs = []
    steps = 200
    for i in range(steps + 1):
        ai = 10 ** (xlo + (xhi - xlo) * i / steps)
        perf = min(peak, ai * bw)
        if perf >= 10 ** ylo:
            segs.append((X(ai), Y(perf)))
    if len(segs) > 1:
        d.line(segs, fill=_FG, width=2)
    for name, ai, perf, bound in pts:
        x, y = X(ai), Y(perf)
        col = BOUND_COLOURS.get(bound, _FG)
        d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=col, outline=_FG)
    title = f"Roofline: {hw.name} (peak {peak / 1e9:.3g} GMAC/s, off-chip {bw / 1e9:.3g} GB/s)"
    d.text((L, 12), title, fill=_FG, font=font)
    xl = "arithmetic intensity (MAC per off-chip byte)"
    tw, _ = _text_size(d, xl, font)
    d.text(((L + R) / 2 - tw / 2, H - 28), xl, fill=_FG, font=font)
    yl = "achieved MAC/s"
    tw, th = _text_size(d, yl, font)
    lab = Image.new("RGB", (tw + 4, th + 6), _BG)
    ImageDraw.Draw(lab).text((2, 0), yl, fill=_FG, font=font)
    lab = lab.rotate(90, expand=True)
    img.paste(lab, (8, int((T + B) / 2 - lab.size[1] / 2)))
    used = sorted({b for _, _, _, b in pts}, key=lambda b: list(BOUND_COLOURS).index(b) if b in BOUND_COLOURS else 9)
    items = [(f"{b}-bound", BOUND_COLOURS.get(b, _FG)) for b in used] + [("roofline", _FG)]
    _legend(d, items, R - 8, B - 18 * len(items) - 18, small)
    return img


def render_levels(net: NetworkCost, metric: str = "energy", size: tuple[int, int] = (1000, 600)) -> Image.Image:
    if metric not in ("energy", "bytes"):
        raise ValueError("metric must be 'energy' or 'bytes'")
    W, H = size
    img = Image.new("RGB", size, _BG)
    d = ImageDraw.Draw(img)
    font, small = _font(13), _font(10)
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
    unit, scale = ("uJ", 1e-6) if metric == "energy" else ("MB", 1e6)
    if metric == "energy" and top >= 1e-3:
        unit, scale = "mJ", 1e-3
    if metric == "energy" and top < 1e-6:
        unit, scale = "nJ", 1e-9
    if metric == "bytes" and top < 1e6:
        unit, scale = "KB", 1e3
    L, R, T, B = 80, W - 20, 40, H - 110
    n = max(1, len(vals))
    ymax = top / scale if top > 0 else 1.0
    # round the axis top to 1, 2 or 5 x 10^k
    e10 = 10 ** math.floor(math.log10(ymax))
    ytop = next(m * e10 for m in (1, 2, 5, 10) if m * e10 >= ymax)
    for i in range(6):
        v = ytop * i / 5
        y = B - (B - T) * i / 5
        d.line([L, y, R, y], fill=_GRID)
        lbl = f"{v:g}"
        tw, th = _text_size(d, lbl, small)
        d.text((L - tw - 6, y - th / 2 - 2), lbl, fill=_FG, font=small)
    slot = (R - L) / n
    bw = max(1.0, slot * 0.8)
    every = max(1, math.ceil(n / max(1, int((R - L) / 14))))
    for i, (name, v) in enumerate(vals):
        x0 = L + i * slot + (slot - bw) / 2
        y = B
        for lv in levels:
            h = (v.get(lv, 0.0) / scale) / ytop * (B - T)
            if h > 0:
                d.rectangle([x0, y - h, x0 + bw, y], fill=LEVEL_COLOURS[lv])
            y -= h
        if i % every == 0:
            tw, th = _text_size(d, name, small)
            lab = Image.new("RGB", (tw + 4, th + 6), _BG)
            ImageDraw.Draw(lab).text((2, 0), name, fill=_FG, font=small)
            lab = lab.rotate(90, expand=True)
            img.paste(lab, (int(x0 + bw / 2 - lab.size[0] / 2), B + 4))
    d.rectangle([L, T, R, B], outline=_FG)
    what = "energy" if metric == "energy" else "bytes moved"
    d.text((L, 12), f"{what.capitalize()} per level and op: {net.hardware.name}", fill=_FG, font=font)
    yl = f"{what} ({unit})"
    tw, th = _text_size(d, yl, font)
    lab = Image.new("RGB", (tw + 4, th + 6), _BG)
    ImageDraw.Draw(lab).text((2, 0), yl, fill=_FG, font=font)
    lab = lab.rotate(90, expand=True)
    img.paste(lab, (8, int((T + B) / 2 - lab.size[1] / 2)))
    names = {"offchip": net.hardware.offchip.name + " (off-chip)", "global": net.hardware.glb.name + " (global)",
             "pe": net.hardware.pe.name + " (PE)", "mac": "MAC"}
    _legend(d, [(names[lv], LEVEL_COLOURS[lv]) for lv in levels], R - 8, T + 8, small)
    return img


def plot_roofline(net: NetworkCost, path: str, size: tuple[int, int] = (800, 600)) -> str:
    render_roofline(net, size).save(path, format="PNG")
    return path


def plot_levels(net: NetworkCost, path: str, metric: str = "energy", size: tuple[int, int] = (1000, 600)) -> str:
    render_levels(net, metric, size).save(path, format="PNG")
    return path


def plot_network(net: NetworkCost, path: str, metric: str = "energy") -> str:
    """Roofline and per-level bars side by side, one PNG."""
    a = render_roofline(net, (800, 600))
    b = render_levels(net, metric, (1000, 600))
    img = Image.new("RGB", (a.size[0] + b.size[0], max(a.size[1], b.size[1])), _BG)
    img.paste(a, (0, 0))
    img.paste(b, (a.size[0], 0))
    img.save(path, format="PNG")
    return path
