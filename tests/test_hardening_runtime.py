"""Runtime inputs: images, weights, importer targets and command-line values that used to
fail late, take gigabytes, reach the terminal raw or end evoc with an internal error."""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import evoc_batch
from evo import limits
from evo.cli import main
from evo.runtime.images import ImageError, load_image, load_images, preprocess

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "examples" / "quickstart.evo"
IMAGES = sorted((ROOT / "examples" / "images").glob("*.png"))


def run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    text = out.getvalue() + err.getvalue()
    assert "Traceback" not in text and "internal error" not in text, text
    return code, text


def test_alpha_is_checked_before_any_work(tmp_path):
    for alpha in ("1.5", "-0.1", "nan", "inf"):
        out = tmp_path / f"out{alpha}"
        code, text = run(["run", str(QUICK), "--images", str(IMAGES[0]), "--out", str(out), "--alpha", alpha,
                          "--quiet"])
        assert code == 2 and "--alpha" in text
        assert not out.exists()


def test_repeated_images_accumulate(tmp_path):
    out = tmp_path / "out"
    code, text = run(["run", str(QUICK), "--images", str(IMAGES[0]), "--images", str(IMAGES[1]), str(IMAGES[2]),
                      "--out", str(out), "--quiet"])
    assert code == 0, text
    assert text.startswith("explained 3 images")
    assert len(list(out.glob("*.png"))) == 3


def test_terminal_escapes_are_not_printed_raw(tmp_path):
    src = QUICK.read_text(encoding="utf-8").replace('"circle"', '"\\u001b[2Jcircle\\u0007"')
    if src == QUICK.read_text(encoding="utf-8"):
        pytest.skip("labels changed in the example")
    prog = tmp_path / "q.evo"
    prog.write_text(src, encoding="utf-8")
    evil = tmp_path / "a\x1b]0;pwned\x07\u202eb.png"
    evil.write_bytes(IMAGES[0].read_bytes())
    weights = ROOT / "evo" / "data" / "quickstart.pt"
    code, text = run(["run", str(prog), "--weights", str(weights), "--images", str(evil), "--out",
                      str(tmp_path / "out"), "--quiet"])
    assert code in (0, 1), text
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b" in text  # shown escaped
    code, text = run(["run", str(prog), "--images", str(tmp_path / "missing\x1b[31m.png"), "--out",
                      str(tmp_path / "o2")])
    assert code == 2 and "\x1b" not in text


def test_grey_network_is_fed_grey_images(tmp_path):
    src = QUICK.read_text(encoding="utf-8").replace("Tensor[N, 3, 64, 64]", "Tensor[N, 1, 64, 64]")
    src = src.replace("mean = [0.5, 0.5, 0.5]", "mean = [0.5]").replace("std = [0.25, 0.25, 0.25]", "std = [0.25]")
    prog = tmp_path / "grey.evo"
    prog.write_text(src, encoding="utf-8")
    code, text = run(["run", str(prog), "--images", str(IMAGES[0]), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0, text
    # the tensor is the grey conversion of the image, normalised (a hand-written reference)
    x, originals = load_images([IMAGES[0]], (64, 64), mean=(0.5,), std=(0.25,))
    with Image.open(IMAGES[0]) as im:
        want = np.asarray(im.convert("L").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    assert x.shape == (1, 1, 64, 64)
    torch.testing.assert_close(x[0, 0], (torch.from_numpy(want) - 0.5) / 0.25)
    # three statistics for a grey network: a program error at the value, before any work
    bad = tmp_path / "bad.evo"
    bad.write_text(src.replace("mean = [0.5]", "mean = [0.5, 0.5, 0.5]"), encoding="utf-8")
    code, text = run(["run", str(bad), "--images", str(IMAGES[0]), "--out", str(tmp_path / "o3")])
    assert code == 1 and "'mean' must be a list of 1 number, one per input channel" in text
    assert not (tmp_path / "o3").exists()
    with pytest.raises(ValueError):
        preprocess(np.zeros((4, 4, 3), np.uint8), 4, channels=2)


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (its data is absent)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_from_the_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(ImageError, match="EVO_LIMIT_IMAGE_PIXELS"):
        load_image(bomb)
    code, text = run(["run", str(QUICK), "--images", str(bomb), "--out", str(tmp_path / "out")])
    assert code == 2 and "too many pixels" in text
    for bad in (tmp_path, tmp_path / "nope.png"):
        with pytest.raises(ImageError):
            load_image(bad)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(junk)


def test_a_large_image_is_kept_small(tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.full((600, 3000, 3), 200, np.uint8)).save(big)
    a = load_image(big, max_side=1000)
    assert a.shape == (200, 1000, 3) and int(a[100, 500, 0]) == 200
    x, originals = load_images([big], (8, 8), None, None)
    assert x.shape == (1, 3, 8, 8) and max(originals[0].shape[:2]) <= 3000


def test_a_malicious_weights_file_is_refused_without_advice(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    w = tmp_path / "evil.pt"
    torch.save({"features.0.weight": Evil()}, w)
    code, text = run(["run", str(QUICK), "--weights", str(w), "--images", str(IMAGES[0]), "--out",
                      str(tmp_path / "out")])
    assert code == 2 and "refused" in text
    assert "weights_only" not in text and "weights_only=False" not in text
    assert not marker.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    code, text = run(["run", str(QUICK), "--weights", str(garbage), "--images", str(IMAGES[0]), "--out",
                      str(tmp_path / "o2")])
    assert code == 2 and "not a PyTorch weights file" in text


def test_importer_target_calling_sys_exit_is_a_clean_error(tmp_path):
    # each target in its own file; the three imports in one fresh interpreter (a sys.exit
    # that escaped would end it with that status: conftest.evoc_batch reports it as such)
    cases = []
    for k, body in enumerate(("import sys\nsys.exit(0)\n", "import sys\nsys.exit('bye')\n",
                              "import sys\nfrom torch import nn\ndef Net():\n    sys.exit(3)\n")):
        f = tmp_path / f"m{k}.py"
        f.write_text(body, encoding="utf-8")
        cases.append({"argv": ["import", f"{f}:Net", "--input-shape", "N,3,8,8"], "cwd": ROOT})
    for body, proc in zip((c["argv"][1] for c in cases), evoc_batch(cases, timeout=300)):
        assert proc.returncode in (1, 2), (body, proc.returncode, proc.stderr)
        assert "sys.exit" in proc.stderr and "Traceback" not in proc.stderr


def test_batch_and_image_count_limits(tmp_path, monkeypatch):
    code, text = run(["run", str(QUICK), "--batch", str(limits.value("batch") + 1), "--out", str(tmp_path / "o")])
    assert code == 2 and "EVO_LIMIT_BATCH" in text
    monkeypatch.setitem(limits._values, "images", 2)
    code, text = run(["run", str(QUICK), "--images", *map(str, IMAGES[:3]), "--out", str(tmp_path / "o")])
    assert code == 2 and "EVO_LIMIT_IMAGES" in text and not (tmp_path / "o").exists()


def test_weights_and_images_that_are_not_regular_files_are_refused_without_blocking(tmp_path):
    """A FIFO as weights, a device or a symlink loop as an image: exit 2 with the reason, never a hang."""
    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.png"
    os.symlink(tmp_path / "loop2.png", loop)
    os.symlink(loop, tmp_path / "loop2.png")
    prog = str(Path(__file__).resolve().parents[1] / "examples" / "quickstart.evo")
    cases = [(["--weights", str(fifo)], "FIFO"), (["--images", "/dev/zero"], "device"),
             (["--images", str(loop)], "symbolic links")]
    # one fresh interpreter for the three, under one limit: a case that blocked would time it out
    results = evoc_batch([["run", prog, *extra, "--out", str(tmp_path / "o")] for extra, _ in cases], timeout=90)
    for (extra, why), r in zip(cases, results):
        assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_eval_feeds_a_grey_network_grey_images(tmp_path):
    """evoc eval prepares images as evoc run does: a 1-channel network without mean/std got
    3-channel images and ended in an internal error (exit 3)."""
    src = QUICK.read_text(encoding="utf-8").replace("Tensor[N, 3, 64, 64]", "Tensor[N, 1, 64, 64]")
    src = "\n".join(line for line in src.splitlines() if not line.strip().startswith(("mean =", "std =")))
    prog = tmp_path / "grey.evo"
    prog.write_text(src, encoding="utf-8")
    out = tmp_path / "ev"
    code, text = run(["eval", str(prog), "--images", *map(str, IMAGES[:2]), "--methods", "gradcam", "--steps", "2",
                      "--out", str(out), "--quiet"])
    assert code == 0, text
    assert (out / "leaderboard.json").is_file() and "gradcam" in (out / "leaderboard.csv").read_text()
    # a file given as --out is refused before the work (it was an internal error)
    code, text = run(["eval", str(prog), "--images", str(IMAGES[0]), "--methods", "gradcam", "--out",
                      str(prog), "--quiet"])
    assert code == 2 and "not a directory" in text
