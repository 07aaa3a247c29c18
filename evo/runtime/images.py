"""Image input/output for CAM explainers: loading, overlays, PNG and JSON output.

Not pasted into generated code (it may use numpy and Pillow). Conventions:
images are RGB; ``original`` arrays are uint8 ``[H, W, 3]`` at the file's own
resolution; maps are float ``[h, w]`` with values in [0, 1] (numpy arrays or torch
tensors); pixel coordinates are ``(x, y)`` = (column, row), origin top-left.
Everything is deterministic: the same inputs give byte-identical PNG and JSON files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evo.runtime.colormap import DEFAULT_COLORMAP, apply_colormap

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

# ImageNet statistics, the usual choice for torchvision-style networks.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_BILINEAR = Image.Resampling.BILINEAR


def _hw(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in tuple(size)[-2:])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {size!r}")
    return h, w


def _as_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def list_images(directory) -> list[str]:
    """The image files directly inside ``directory`` (not recursive) whose extension
    is .png, .jpg, .jpeg or .bmp (any case), sorted by file name; full paths."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"not a directory: {directory}")
    names = sorted(p.name for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return [str(d / n) for n in names]


# The copy of an image kept for its overlay is at most this many pixels on its longer
# side (the network's copy is at the network's input size).
OVERLAY_MAX_SIDE = 2048


class ImageError(ValueError):
    """An image file that cannot be used (unreadable, too large, not an image)."""


def load_image(path, mode: str = "RGB", max_side: int | None = None) -> np.ndarray:
    """One image file as uint8 [H, W, 3] (mode "RGB") or [H, W] (mode "L"); grey,
    palette and alpha are converted.  Only a regular file of at most
    EVO_LIMIT_IMAGE_BYTES is read, and an image of more than EVO_LIMIT_IMAGE_PIXELS
    pixels (read from its header) is refused before it is decoded (a decompression
    bomb).  max_side: the copy returned is reduced to at most this many pixels on
    its longer side (JPEGs are decoded at the reduced size)."""
    import io

    from evo import limits
    from evo.frontend.source import UnreadableSource, read_bytes

    try:
        data = read_bytes(path, limits.value("image_bytes"), "EVO_LIMIT_IMAGE_BYTES")
    except UnreadableSource as e:
        raise ImageError(str(e)) from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > limits.value("image_pixels"):
                raise ImageError(f"{path}: {limits.exceeded('image_pixels', w * h, f'a {w}x{h} image has too many pixels')}"
                                 f"; {limits.LIMITS['image_pixels'].how()}")
            if max_side is not None and max(w, h) > max_side:
                im.draft(mode, (max(1, w * max_side // max(w, h)), max(1, h * max_side // max(w, h))))
                im = im.convert(mode)
                im.thumbnail((max_side, max_side), resample=_BILINEAR)
            else:
                im = im.convert(mode)
            return np.array(im, dtype=np.uint8)
    except ImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own bound, past ours
        raise ImageError(f"{path}: the image has too many pixels (more than the limit of "
                         f"{limits.value('image_pixels'):,}); {limits.LIMITS['image_pixels'].how()}") from None
    except Exception as e:  # noqa: BLE001 - Pillow's many ways of saying "not an image"
        raise ImageError(f"{path}: not a readable image ({type(e).__name__})") from None


def preprocess(original: np.ndarray, size, mean=None, std=None, channels: int = 3) -> torch.Tensor:
    """uint8 [H0, W0, 3] (or [H0, W0]) -> float32 [C, H, W] with C = channels (3: RGB,
    1: grey): Pillow bilinear resize to size (H, W) (an int means square), scale to
    [0, 1], then (x - mean) / std per channel when mean / std are given (each a
    sequence of C numbers on the [0, 1] scale)."""
    if channels not in (1, 3):
        raise ValueError(f"images have 1 (grey) or 3 (RGB) channels, not {channels}")
    mode = "RGB" if channels == 3 else "L"
    h, w = _hw(size)
    im = Image.fromarray(np.ascontiguousarray(original, dtype=np.uint8))
    if im.mode != mode:
        im = im.convert(mode)
    if im.size != (w, h):
        im = im.resize((w, h), resample=_BILINEAR)
    a = np.array(im, dtype=np.float32) / np.float32(255.0)
    x = torch.from_numpy(a[:, :, None] if a.ndim == 2 else a).permute(2, 0, 1).contiguous()
    for stats, op in ((mean, torch.Tensor.sub), (std, torch.Tensor.div)):
        if stats is not None:
            vals = [float(v) for v in stats]
            if len(vals) != channels:
                raise ValueError(f"mean/std have {len(vals)} values for {channels}-channel images")
            x = op(x, torch.tensor(vals, dtype=torch.float32).view(channels, 1, 1))
    return x


def load_images(paths: Iterable, size, mean=IMAGENET_MEAN, std=IMAGENET_STD, channels: int = 3):
    """Load image files for a network whose input is [B, 3, H, W].

    paths: image file paths (e.g. from list_images); size: (H, W) or an int (square)
    or the network's input shape (its last two entries are used); mean / std:
    per-channel normalisation on the [0, 1] scale (ImageNet's by default; None to
    skip). Each image is converted to RGB and resized with Pillow's bilinear
    filter. Returns (tensor float32 [B, 3, H, W], originals: list of uint8
    [H0, W0, 3] arrays at the files' own sizes, for overlays).
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("load_images: no image paths given")
    if mean is not None and len(mean) == 1:
        channels = 1  # grey statistics: a grey network
    mode = "RGB" if channels == 3 else "L"
    originals = [load_image(p, mode, OVERLAY_MAX_SIDE) for p in paths]
    batch = torch.stack([preprocess(o, size, mean, std, channels) for o in originals], dim=0)
    return batch, originals


def resize_map(map01, size) -> np.ndarray:
    """A float map [h, w] resized to size (H, W) with Pillow's bilinear filter,
    as float32 (values stay within the input's range)."""
    h, w = _hw(size)
    m = np.ascontiguousarray(_as_numpy(map01), dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    if m.shape == (h, w):
        return m.copy()
    im = Image.fromarray(m).resize((w, h), resample=_BILINEAR)
    return np.array(im, dtype=np.float32)


def overlay(original, map01, alpha: float = 0.5, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Blend a CAM over an image: the map [h, w] (values in [0, 1]) is resized to
    the image's size (bilinear), coloured with ``colormap`` and blended as
    round((1 - alpha) * image + alpha * colour). Returns uint8 [H0, W0, 3]."""
    img = np.asarray(original)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"overlay: expected an RGB image [H, W, 3], got shape {img.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}")
    img = img.astype(np.float64)
    color = apply_colormap(resize_map(map01, img.shape[:2]), colormap).astype(np.float64)
    out = np.rint((1.0 - alpha) * img + alpha * color)
    return np.clip(out, 0, 255).astype(np.uint8)


def png_bytes(arr) -> bytes:
    """An image as PNG bytes. arr: uint8 [H, W, 3] or [H, W]; a float array is taken as
    [0, 1] and quantised to round(v * 255)."""
    import io

    a = _as_numpy(arr)
    if a.dtype != np.uint8:
        a = np.rint(np.clip(np.nan_to_num(a.astype(np.float64), nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"save_png: expected [H, W], [H, W, 3] or [H, W, 4], got shape {a.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(arr, path) -> str:
    """Write an image as PNG (parent directories are created); see `png_bytes`.
    Returns the path as a string."""
    from evo.fileio import write_atomic

    return str(write_atomic(path, png_bytes(arr)))


def _r(v: float, nd: int = 6) -> float:
    v = float(v)
    if not math.isfinite(v):
        return v
    r = round(v, nd)
    return 0.0 if r == 0 else r  # no "-0.0"


def _to_original(i: float, n_map: int, n_orig: int) -> float:
    # centre of map cell i, in original-image pixel coordinates (half-pixel convention)
    return (i + 0.5) * n_orig / n_map - 0.5


def summary(map01, class_index, class_name=None, score=None, original_size=None) -> dict:
    """A JSON-ready description of one CAM.

    map01: [h, w] map; class_index: int; class_name: str or None; score: the
    class logit (float) or None; original_size: (H0, W0) of the original image,
    to express locations in its pixels (default: the map's own pixels).
    Keys: class, class_name, score, peak {x, y} (the first maximum in row-major
    order, mapped to the original's pixel grid, rounded and clamped), centroid
    {x, y} (map-weighted mean position, same coordinates, 2 decimals; the image
    centre for an all-zero map), and stats {min, max, mean, std, area_50}
    (area_50: fraction of pixels >= 0.5). Floats are rounded to 6 decimals.
    """
    m = np.nan_to_num(np.asarray(_as_numpy(map01), dtype=np.float64), nan=0.0)
    if m.ndim != 2:
        raise ValueError(f"summary: expected a 2-D map, got shape {m.shape}")
    h, w = m.shape
    oh, ow = _hw(original_size) if original_size is not None else (h, w)
    flat = int(np.argmax(m))
    py, px = divmod(flat, w)
    peak_x = min(max(math.floor(_to_original(px, w, ow) + 0.5), 0), ow - 1)
    peak_y = min(max(math.floor(_to_original(py, h, oh) + 0.5), 0), oh - 1)
    total = float(m.sum())
    if total > 0:
        ys, xs = np.mgrid[0:h, 0:w]
        cx = _to_original(float((m * xs).sum()) / total, w, ow)
        cy = _to_original(float((m * ys).sum()) / total, h, oh)
    else:
        cx, cy = (ow - 1) / 2.0, (oh - 1) / 2.0
    return {
        "class": int(class_index),
        "class_name": None if class_name is None else str(class_name),
        "score": None if score is None else _r(score),
        "peak": {"x": peak_x, "y": peak_y},
        "centroid": {"x": round(cx, 2) + 0.0, "y": round(cy, 2) + 0.0},
        "stats": {
            "min": _r(m.min()),
            "max": _r(m.max()),
            "mean": _r(m.mean()),
            "std": _r(m.std()),
            "area_50": _r(float((m >= 0.5).mean())),
        },
    }


def to_jsonable(obj):
    """Recursively convert numpy / torch scalars and arrays, tuples and paths to
    plain JSON types (non-finite floats become None)."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()] if obj.ndim else to_jsonable(obj.item())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"to_jsonable: cannot convert {type(obj).__name__}")


def dumps_json(obj) -> str:
    """Deterministic JSON text: sorted keys, 2-space indent, ASCII, trailing newline."""
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"


def write_json(obj, path) -> str:
    """Write dumps_json(obj) to path (parent directories are created, UTF-8, '\\n'
    line ends). Returns the path as a string."""
    from evo.fileio import write_atomic

    return str(write_atomic(path, dumps_json(obj)))


def save_overlays(
    originals: Sequence,
    maps,
    directory,
    stems: Sequence[str],
    alpha: float = 0.5,
    colormap: str = DEFAULT_COLORMAP,
) -> list[str]:
    """Convenience: for each image i write ``<directory>/<stems[i]>.png`` with
    overlay(originals[i], maps[i]); maps: [B, h, w]. Returns the written paths."""
    out = []
    for i, orig in enumerate(originals):
        out.append(save_png(overlay(orig, maps[i], alpha, colormap), Path(directory) / f"{stems[i]}.png"))
    return out
