"""A worked example of a user-defined op: Mish (Misra, 2019), x * tanh(softplus(x)).

Register it from Python:

    import evo_mish; evo_mish.register()

or let evo find it: a package declares the entry point

    [project.entry-points."evo.ops"]
    mish = "evo_mish:register"

or set EVO_PLUGINS=evo_mish.  Then programs may use `mish(x)` like any built-in op
(see examples/plugins/mish.evo): it is checked, generated as PyTorch, costed, and
differentiated by the compiled CAM strategy.
"""

from __future__ import annotations

import math

from evo.cost.workload import EltwiseWorkload
from evo.extend import register_op


def _derivative(attrs, x, y):
    # d/dx [x tanh(sp(x))] = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2),  sp = softplus
    t = f"torch.tanh(F.softplus({x}))"
    return f"({t} + {x} * torch.sigmoid({x}) * (1 - {t} * {t}))"


def register() -> None:
    register_op(
        "mish",
        shape=lambda shapes, attrs: shapes[0],
        code=lambda attrs, xs: f"F.mish({xs[0]})",
        module=lambda attrs, shapes: "nn.Mish()",
        derivative=_derivative,
        cost=lambda attrs, in_shapes, out_shape: EltwiseWorkload(math.prod(out_shape), 1, 6),
        doc="Mish activation: x * tanh(softplus(x))",
        replace=True,
    )
