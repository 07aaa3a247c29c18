"""Evaluating evolve candidates in parallel: worker processes or a dask.distributed cluster.

The search itself stays in one process and is unchanged: each generation's new
candidates are handed to ``evaluate_many`` (see :func:`evo.evolve.search`), which
evaluates them elsewhere and returns the results in order, so a parallel run makes
the same points, in the same order, and the same front as a serial one.

A worker needs the program, not the parent's objects: it receives a
:class:`ProgramRef` (source text, file name, base directory for imports, evolve
block) and the driver's factory, compiles it once and keeps the evaluator (with its graph / tier / cost
caches) for later batches.  On a remote dask cluster the workers must have evo
installed, and any file the program imports must exist at the same path there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .nsga2 import Infeasible


@dataclass(frozen=True)
class ProgramRef:
    """What a worker needs to rebuild an evolve block's evaluator."""

    source: str
    filename: str
    base_dir: str | None
    name: str

    @staticmethod
    def of(prog, name: str) -> ProgramRef:
        c = prog.compilation
        return ProgramRef(c.source, c.filename, None if c.base_dir is None else str(c.base_dir), name)


_EVALUATORS: dict[ProgramRef, Any] = {}


def evaluate_batch(factory: Callable[[ProgramRef], Callable], ref: ProgramRef,
                   values: Sequence[dict]) -> list[tuple[str, Any]]:
    """Evaluate candidates in this process: ("ok", metrics) or ("infeasible", reason) each.
    `factory(ref)` builds the evaluator once per process (a module-level function, so
    that it pickles by name: the compiler's lives in its evolve driver)."""
    ev = _EVALUATORS.get(ref)
    if ev is None:
        ev = _EVALUATORS[ref] = factory(ref)
    out: list[tuple[str, Any]] = []
    for v in values:
        try:
            out.append(("ok", ev(dict(v))))
        except Infeasible as e:
            out.append(("infeasible", e.reason))
    return out


def _decode(outcomes) -> list:
    return [m if kind == "ok" else Infeasible(m) for kind, m in outcomes]


def _chunks(values: Sequence, parts: int) -> list[list]:
    n = len(values)
    parts = max(1, min(parts, n))
    return [list(values[i * n // parts:(i + 1) * n // parts]) for i in range(parts)]


class ProcessEvaluator:
    """``evaluate_many`` on `workers` local processes (spawned: safe with torch's threads)."""

    def __init__(self, factory: Callable, ref: ProgramRef, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.factory, self.ref = factory, ref
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def __call__(self, values: Sequence[dict]) -> list:
        # a few chunks per worker: little pickling per candidate, and some load balance
        futures = [self.pool.submit(evaluate_batch, self.factory, self.ref, c) for c in _chunks(values, 4 * self.workers)]
        out: list = []
        for f in futures:
            out.extend(_decode(f.result()))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DaskEvaluator:
    """``evaluate_many`` on a dask.distributed cluster (a scheduler address, a Cluster
    object such as ``LocalCluster``, or an existing ``Client``)."""

    def __init__(self, factory: Callable, ref: ProgramRef, cluster):
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - the [distributed] extra is part of [test]
            raise RuntimeError("--cluster needs dask.distributed: pip install 'evo-lang[distributed]'") from None
        self.factory, self.ref = factory, ref
        if isinstance(cluster, str):  # a malformed address: an OSError like an unreachable one
            from distributed.comm.addressing import parse_address, parse_host_port

            try:
                parse_host_port(parse_address(cluster)[1])
            except ValueError as e:
                raise ConnectionError(f"{e} (expected a scheduler address such as tcp://host:8786)") from None
        self.own = not isinstance(cluster, Client)
        self.client = Client(cluster, set_as_default=False) if self.own else cluster
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def __call__(self, values: Sequence[dict]) -> list:
        chunks = _chunks(values, 4 * self.workers)
        futures = [self.client.submit(evaluate_batch, self.factory, self.ref, c, pure=False) for c in chunks]
        out: list = []
        for res in self.client.gather(futures):
            out.extend(_decode(res))
        return out

    def close(self) -> None:
        if self.own:
            self.client.close()


def evaluate_many_for(factory: Callable, ref: ProgramRef, workers: int = 1, cluster=None):
    """The ``evaluate_many`` for a run (None: serial, in this process)."""
    if cluster is not None:
        return DaskEvaluator(factory, ref, cluster)
    if workers > 1:
        return ProcessEvaluator(factory, ref, workers)
    return None
