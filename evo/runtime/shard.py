"""Explaining an image list past one process: shards, torchrun, resume.

The image list is cut into the batches a single-process run would use (`batch`
images each, in order); under `torchrun` every rank takes a contiguous block of
those batches, so each image is explained in exactly the batch, and therefore
with exactly the arithmetic, of a single-process run: its overlay and JSON are
byte-identical.  Every rank writes the outputs of its own images; rank 0 gathers
the per-image entries (gloo, CPU) and writes the merged summary.

Resume: a batch whose images all have their outputs (PNG and JSON) is skipped and
their entries are read back from the JSON files; a batch with a missing output is
explained again (the whole batch, to keep the arithmetic) and only the missing
files are written.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evo.fileio import write_atomic
from evo.runtime.colormap import DEFAULT_COLORMAP
from evo.runtime.images import dumps_json, load_images, overlay, save_png, summary


class ShardError(Exception):
    """A problem that stops the run (an unreadable image...): reported as a usage error."""


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world: int = 1
    initialised: bool = False

    @property
    def leader(self) -> bool:
        return self.rank == 0


def init_from_env() -> Dist:
    """Join the torchrun job described by RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT
    (the gloo backend, CPU); a plain process (no WORLD_SIZE, or 1) is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist(0, 1, False)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), True)


def finish(d: Dist) -> None:
    if d.initialised:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def batches(n: int, batch: int) -> list[tuple[int, int]]:
    """The [start, stop) ranges of a single-process run's batches."""
    return [(s, min(n, s + batch)) for s in range(0, n, batch)]


def shard(n: int, batch: int, rank: int, world: int) -> list[tuple[int, int]]:
    """Rank `rank`'s batches: a contiguous block, sizes differing by at most one batch."""
    b = batches(n, batch)
    lo, hi = rank * len(b) // world, (rank + 1) * len(b) // world
    return b[lo:hi]


def output_paths(out: Path, stem: str, cam: str) -> tuple[Path, Path]:
    """The overlay and the JSON of one image (`stem`: its output name, unique in the list)."""
    return out / f"{stem}_{cam}.png", out / f"{stem}_{cam}.json"


def maps_path(out: Path, stem: str, cam: str) -> Path:
    """Every explained class's map of one image (`evoc run --maps`): [K, H, W] float32 .npy."""
    return out / f"{stem}_{cam}_maps.npy"


def stream_maps(result, files) -> None:
    """Write the maps of `result` (a CamResult of B images) to `files` (one binary file
    per image) as .npy arrays [K, H, W] float32, CAM_CHUNK classes at a time
    (CamResult.map_chunks): at most B x CAM_CHUNK x H x W floats of maps exist at once."""
    import numpy as np
    import torch

    started = False
    for start, stop, m in result.map_chunks():
        if not started:
            k = result.classes.shape[1] if result.classes.dim() == 2 else 1
            for f in files:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "<f4", "fortran_order": False, "shape": (k, int(m.shape[-2]), int(m.shape[-1]))})
            started = True
        arr = m.detach().to("cpu", torch.float32).contiguous().numpy()
        for i, f in enumerate(files):
            f.write(arr[i].astype("<f4", copy=False).tobytes())


@dataclass
class ShardResult:
    entries: list[dict] = field(default_factory=list)   # this rank's images, in order
    explained: int = 0                    # images whose outputs were written now
    reused: int = 0                       # images whose outputs existed (resume)


def _save_png(path: Path, arr) -> None:
    save_png(arr, path)


def _save_text(path: Path, text: str) -> None:
    write_atomic(path, text)


def explain_shard(exp, paths: Sequence[str], stems: Sequence[str], out: Path, cam: str, method: str, *,
                  size, mean, std, labels, batch: int, alpha: float, rank: int = 0, world: int = 1,
                  colormap: str = DEFAULT_COLORMAP,
                  resume: bool = False, write_png: Callable = _save_png, write_text: Callable = _save_text,
                  progress: Callable[[int], None] | None = None,
                  passes: Callable[[int, int], None] | None = None,
                  write_maps: Callable | None = None) -> ShardResult:
    """Explain rank `rank`'s shard of `paths` (of `world`), `batch` images at a time;
    per image write `<stem>_<cam>.png` (write_png(path, uint8 array)) and `.json`
    (write_text(path, text)), the overlay coloured with `colormap`.  progress(n): n more images done; passes(done, total):
    the explainer's per-pass callback (many-pass methods); write_maps(path): a context
    manager giving a binary file, for `<stem>_<cam>_maps.npy` with every explained
    class's map (streamed, see stream_maps; None: no such file).  Returns this
    rank's entries, in order."""
    res = ShardResult()
    for start, stop in shard(len(paths), batch, rank, world):
        chunk = list(paths[start:stop])
        outs = [output_paths(out, stems[k], cam) for k in range(start, stop)]
        mpaths = [maps_path(out, stems[k], cam) for k in range(start, stop)]
        have = [resume and png.is_file() and js.is_file() and (write_maps is None or mp.is_file())
                for (png, js), mp in zip(outs, mpaths)]
        if all(have):
            for (_, js) in outs:
                try:
                    res.entries.append(json.loads(js.read_text(encoding="utf-8")))
                except (OSError, ValueError) as e:
                    raise ShardError(f"cannot read {js} to resume: {e}") from None
            res.reused += len(chunk)
        else:
            try:
                x, originals = load_images(chunk, size, mean, std)
            except Exception as e:  # noqa: BLE001 - an unreadable image
                raise ShardError(f"cannot read an image in {', '.join(chunk)}: {e}") from None
            r = exp(x) if passes is None else exp(x, progress=passes)
            if write_maps is not None:
                with contextlib.ExitStack() as stack:
                    stream_maps(r, [stack.enter_context(write_maps(mp)) for mp in mpaths])
            # the overlay shows the first explained class: only its maps are built
            maps = r.maps if r.classes.dim() == 1 else r.maps_range(0, 1)
            for i, path in enumerate(chunk):
                png, js = outs[i]
                m = maps[i] if maps.dim() == 3 else maps[i, 0]
                cls = int(r.classes[i] if r.classes.dim() == 1 else r.classes[i, 0])
                score = float(r.scores[i] if r.scores.dim() == 1 else r.scores[i, 0])
                cname = labels[cls] if labels and cls < len(labels) else None
                info = summary(m, cls, cname, score, original_size=originals[i].shape[:2])
                info.update({"image": str(path), "overlay": str(png), "cam": cam, "method": method,
                             "strategy": r.strategy})
                if write_maps is not None:
                    info["maps"] = str(mpaths[i])
                    info["map_classes"] = [int(c) for c in (r.classes[i].reshape(-1))]
                text = dumps_json(info)
                # as read back from the file: a resumed entry is then the same object
                info = json.loads(text)
                if have[i]:
                    res.reused += 1
                else:
                    write_png(png, overlay(originals[i], m, alpha, colormap))
                    write_text(js, text)
                    res.explained += 1
                res.entries.append(info)
        if progress is not None:
            progress(stop - start)
    return res


def gather(d: Dist, part: dict) -> list[dict] | None:
    """Every rank's `part`, in rank order, on every rank (None outside torchrun: [part])."""
    if not d.initialised:
        return [part]
    import torch.distributed as dist

    parts: list = [None] * d.world
    dist.all_gather_object(parts, part)
    return parts
