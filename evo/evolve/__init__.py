"""The search engine behind ``evoc evolve``: gene spaces, NSGA-II and Pareto fronts.

Standalone: nothing here imports the rest of the compiler. The compiler builds a
:class:`Space` from an ``evolve`` block's genes, wraps its cost model as
``evaluate(values) -> {metric: float}`` (raising :class:`Infeasible` for
candidates that cannot be built) and calls :func:`search`.
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
    ProgressBar,
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
    "ProgressBar",
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
