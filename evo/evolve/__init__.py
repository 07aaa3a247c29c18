"""Evolution: the search engine behind ``evoc evolve`` and its driver.

The engine (`genes`, `nsga2`, `front`) is standalone: it imports nothing of the
compiler and draws nothing on a terminal (progress goes to a ``progress`` callback;
`evoc` renders it).  The driver (`evo.evolve.driver`) builds a :class:`Space` from an
``evolve`` block's genes, wraps the checker and the cost model as
``evaluate(values) -> {metric: float}`` (raising :class:`Infeasible` for candidates
that cannot be built) and calls :func:`search`; `evo.evolve.writeback` turns a front
point back into a program; `evo.evolve.parallel` evaluates candidates elsewhere.
"""

from .front import (
    format_table,
    front_dict,
    front_json,
    hypervolume,
    normalize_objectives,
    objective_matrix,
    pareto_front,
    pareto_mask,
    plot_front,
)
from .genes import Choice, FloatRange, Gene, IntRange, Space
from .nsga2 import (
    Infeasible,
    Point,
    SearchResult,
    constraint_violation,
    crowding_distance,
    exhaustive,
    fast_non_dominated_sort,
    normalize_constraints,
    search,
)

__all__ = [
    "Choice",
    "FloatRange",
    "Gene",
    "Infeasible",
    "IntRange",
    "Point",
    "SearchResult",
    "Space",
    "constraint_violation",
    "crowding_distance",
    "exhaustive",
    "fast_non_dominated_sort",
    "format_table",
    "front_dict",
    "front_json",
    "hypervolume",
    "normalize_constraints",
    "normalize_objectives",
    "objective_matrix",
    "pareto_front",
    "pareto_mask",
    "plot_front",
    "search",
]
