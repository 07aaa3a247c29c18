"""Bring existing PyTorch models into evo: `evo.from_torch` and `evoc import`.

    src = from_torch(model, torch.randn(1, 3, 224, 224))   # readable evo source
    prog = evo.compile(src)
    net = prog.build(type(model).__name__)
    net.load_state_dict(model.state_dict(), strict=True)

The model is traced with `torch.fx` (falling back to `torch.export` where
symbolic tracing fails), mapped layer by layer onto evo's built-in ops, and
written back with `seq` for `nn.Sequential`, one `block` per module class and
module paths as names.  Anything that cannot be expressed is collected and
raised at once as a :class:`ConversionError`.  See docs/import.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConversionError", "from_torch"]


def __getattr__(name: str) -> Any:  # torch is imported on first use, not by `evoc --help`
    if name in ("ConversionError", "from_torch"):
        from evo.importer import api

        return getattr(api, name)
    raise AttributeError(f"module 'evo.importer' has no attribute '{name}'")
