"""evo.cost: an analytic cost model for the three-level hardware tiers of evo.

A standalone library (it imports nothing else from evo).  The compiler turns each
IR op into a workload and calls :func:`cost_op` (or :func:`cost_network` for a
whole network with fusion); see docs/cost-model.md for the equations.

    from evo.cost import PRESETS, conv2d, cost_op
    c = cost_op(conv2d(1, 64, 56, 56, 64, 3, padding=1), PRESETS["Eyeriss"])
    c.latency_s, c.energy_j, c.bound, c.mapping.describe()

Reports: :mod:`evo.cost.report` (text table, JSON, CSV, re-exported here) and
:mod:`evo.cost.plot` (roofline / per-level bars with matplotlib: PNG, SVG or PDF).
"""

from evo.cost.calibrate import PowerFit, fit_power
from evo.cost.hardware import PRESETS, Hardware, HardwareError, Level, as_hardware, hardware_from_dict
from evo.cost.mapping import OBJECTIVES, ConstraintError, LevelMapping, Mapping, MappingConstraints
from evo.cost.model import (
    BOUNDS,
    Energy,
    NetworkCost,
    NetworkOp,
    OpCost,
    Traffic,
    clear_cache,
    cost_network,
    cost_op,
)
from evo.cost.report import format_op, format_table, op_to_dict, to_csv, to_dict, to_json
from evo.cost.workload import (
    ConvWorkload,
    CopyWorkload,
    EltwiseWorkload,
    MatmulWorkload,
    PoolWorkload,
    ReduceWorkload,
    TensorUse,
    Workload,
    WorkloadError,
    adaptive_pool,
    conv2d,
    linear,
    output_elements,
    with_word,
)

__all__ = [  # noqa: RUF022  (grouped by topic)
    # hardware
    "Hardware", "Level", "HardwareError", "hardware_from_dict", "as_hardware", "PRESETS",
    # workloads
    "ConvWorkload", "MatmulWorkload", "EltwiseWorkload", "PoolWorkload", "CopyWorkload", "ReduceWorkload",
    "TensorUse", "Workload", "WorkloadError", "conv2d", "linear", "adaptive_pool", "output_elements", "with_word",
    # costing
    "cost_op", "cost_network", "clear_cache", "OpCost", "NetworkCost", "NetworkOp", "Traffic", "Energy",
    "Mapping", "LevelMapping", "MappingConstraints", "ConstraintError", "OBJECTIVES", "BOUNDS",
    # calibration
    "fit_power", "PowerFit",
    # reports
    "format_table", "format_op", "op_to_dict", "to_dict", "to_json", "to_csv",
]
