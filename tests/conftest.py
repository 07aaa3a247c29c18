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


# ---------------------------------------------------------------------- evoc
# Two ways to run the command line without paying a fresh interpreter (and its torch
# import) per invocation, for tests whose point is evoc's answer, not process isolation:
#
#   evoc_inprocess(argv)   -> Result: `evo.cli.main` in this process (stdout and stderr
#                             captured, argparse's SystemExit turned into its status);
#   evoc_batch(cases)      -> [Result]: every case run by `evo.cli.main` in ONE fresh
#                             interpreter, under one wall-clock limit (for inputs that
#                             could block or that must not touch the test process).
#
# Either reports what a real `python -m evo.cli` process would: an exception escaping
# `main` is printed as a traceback on stderr with status 1, `sys.exit(x)` gives x's
# status (a non-integer printed on stderr, status 1).  At least one true end-to-end
# subprocess test per command stays elsewhere (tests/test_run.py, test_import.py, ...).

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from types import SimpleNamespace  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]

EVOC_DRIVER = r'''
import contextlib, io, json, os, sys, traceback

def status(code, err):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=err)
    return 1

def run(argv, stdin_text):
    from evo.cli import main
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin_text.encode("utf-8", "surrogateescape")), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = status(main(argv), err)
            except SystemExit as e:
                code = status(e.code, err)
            except BaseException:
                traceback.print_exc()
                code = 1
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()

if __name__ == "__main__":
    results = []
    home = os.getcwd()
    for case in json.loads(sys.argv[1]):
        os.chdir(case["cwd"] or home)
        code, out, err = run(case["argv"], case["stdin"])
        results.append({"returncode": code, "stdout": out, "stderr": err})
    os.chdir(home)
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f)
'''


def _driver_namespace() -> dict:
    ns: dict = {"__name__": "evoc_driver"}
    exec(compile(EVOC_DRIVER, "<evoc driver>", "exec"), ns)  # noqa: S102 - the driver above, not input
    return ns


def evoc_inprocess(argv, stdin: str = "", cwd=None) -> SimpleNamespace:
    """`evo.cli.main(argv)` here (in `cwd` if given), as a process would answer (see above)."""
    home = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        code, out, err = _driver_namespace()["run"]([str(a) for a in argv], stdin)
    finally:
        os.chdir(home)
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def evoc_batch(cases, timeout: float = 300, env: dict | None = None) -> list[SimpleNamespace]:
    """Each case (an argv list, or a dict with `argv` and optional `cwd` and `stdin`) run by
    `evo.cli.main` in one fresh interpreter, in order; one Result per case (the results
    travel in a file: nothing the cases print can garble them)."""
    import tempfile

    norm = []
    for c in cases:
        c = {"argv": c} if not isinstance(c, dict) else c
        norm.append({"argv": [str(a) for a in c["argv"]], "cwd": str(c["cwd"]) if c.get("cwd") else None,
                     "stdin": c.get("stdin", "")})
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), full_env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as d:
        results = Path(d) / "results.json"
        proc = subprocess.run([sys.executable, "-c", EVOC_DRIVER, json.dumps(norm), str(results)],
                              capture_output=True, text=True, timeout=timeout, env=full_env, cwd=_ROOT)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        got = [SimpleNamespace(**r) for r in json.loads(results.read_text(encoding="utf-8"))]
    assert len(got) == len(norm)
    return got
