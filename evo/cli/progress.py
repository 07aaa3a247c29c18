"""Progress bars for long commands, drawn by tqdm on stderr.

A bar is shown only when stderr is a terminal (or when `force` is set, e.g. by a
command's ``--progress``), never when ``--quiet`` is given, so pipes, logs and tests
stay clean.  The engines (`evo.evolve.search`, the explainer loop) only call back;
this module is the one place that draws.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager


def _stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


@contextmanager
def progress_bar(total: int, desc: str, *, unit: str = "it", enabled: bool = True, force: bool = False):
    """A tqdm bar over `total` steps (``bar.update(n)``); a silent stand-in when not shown."""
    from tqdm import tqdm

    show = enabled and (force or _stderr_is_tty())
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not show, leave=True,
               dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


class PassProgress:
    """The ``progress(done, total)`` callback of a generated explainer (one call per
    pass of a many-pass method: scorecam, sscam, iscam, ablationcam, reciprocam,
    smoothgradcampp), drawn as a second tqdm bar under the images bar; it restarts
    with every batch (``done`` starts again at 1)."""

    def __init__(self, desc: str = "passes", *, enabled: bool = True, force: bool = False, file=None):
        from tqdm import tqdm

        file = sys.stderr if file is None else file
        try:
            tty = bool(file.isatty())
        except (AttributeError, ValueError):
            tty = False
        self.bar = tqdm(total=0, desc=desc, unit="pass", file=file, disable=not (enabled and (force or tty)),
                        leave=False, dynamic_ncols=True, position=1, mininterval=0.2)
        self.calls = 0

    def __call__(self, done: int, total: int) -> None:
        self.calls += 1
        if done <= self.bar.n:  # a new batch
            self.bar.reset(total=total)
        if total != self.bar.total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> PassProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EvolveProgress:
    """The ``progress(generation, generations, evaluations, front_size)`` callback of
    `evo.evolve.search`, drawn as a tqdm bar over generations."""

    def __init__(self, total: int, desc: str = "evolve", *, enabled: bool = True, force: bool = False,
                 file=None):
        from tqdm import tqdm

        file = sys.stderr if file is None else file
        try:
            tty = bool(file.isatty())
        except (AttributeError, ValueError):
            tty = False
        show = enabled and (force or tty)
        self.bar = tqdm(total=max(1, int(total)), desc=desc, unit="gen", file=file, disable=not show,
                        leave=True, dynamic_ncols=True, mininterval=0.2,
                        bar_format="{desc}: gen {n_fmt}/{total_fmt}{postfix} |{bar:20}| [{elapsed}]")
        self.done = 0

    def __call__(self, generation: int, generations: int, evaluations: int, front_size: int) -> None:
        if generations and generations != self.bar.total:
            self.bar.total = generations
        step = generation - self.done
        self.done = generation
        self.bar.set_postfix_str(f"{evaluations} evals, front {front_size}", refresh=False)
        if step > 0:
            self.bar.update(step)
        if generation >= (generations or self.bar.total):
            self.bar.refresh()  # the last state is always shown, however fast it came

    def close(self) -> None:
        """End the bar, showing the last state (also when the search stopped early)."""
        if not self.bar.disable:
            self.bar.refresh()
        self.bar.close()

    def __enter__(self) -> EvolveProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
