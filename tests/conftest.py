"""Test-wide settings: small tensors run fastest (and deterministically) on one thread."""

import torch

torch.set_num_threads(1)


# ---------------------------------------------------------------------- goldens
# One golden fixture with one update switch for every golden-style test (the
# generated code of the examples, the first diagnostic of every bad program):
#
#     EVO_UPDATE_GOLDENS=1 python -m pytest tests/test_golden_emit.py tests/test_diagnostics_golden.py
#
# rewrites the goldens that differ (review the diff before committing).

import difflib  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

UPDATE_GOLDENS = os.environ.get("EVO_UPDATE_GOLDENS") == "1"


class Golden:
    """`check(path, text)`: the file at `path` must hold exactly `text` (or, under
    EVO_UPDATE_GOLDENS=1, is rewritten to it).  Returns True when it compared."""

    def __init__(self, update: bool):
        self.update = update

    def check(self, path: Path, text: str, what: str = "") -> bool:
        if self.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8", newline="\n")
            return False
        assert path.exists(), f"no golden {path}; run EVO_UPDATE_GOLDENS=1 python -m pytest"
        want = path.read_text(encoding="utf-8")
        if text != want:
            diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                                f"golden/{path.name}", "got", n=2))
            pytest.fail(f"{what or path.name} differs from its golden (EVO_UPDATE_GOLDENS=1 to accept):\n"
                        f"{diff[:6000]}")
        return True


@pytest.fixture(scope="session")
def golden() -> Golden:
    return Golden(UPDATE_GOLDENS)
