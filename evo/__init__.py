"""evo: networks, their class-activation maps and the hardware they run on.

    prog  = evo.compile_file("net.evo")
    model = prog.build("ResNet18")
    src   = prog.emit_python()
    rep   = prog.cost("ResNet18", hardware="Eyeriss", batch=1)
    exp   = prog.explainer("Explain", model)
"""

from evo.api import Program, compile, compile_file  # noqa: A004
from evo.diagnostics import Diagnostic, EvoError
from evo.version import __version__

__all__ = ["compile", "compile_file", "Program", "EvoError", "Diagnostic", "from_torch", "__version__"]


def __getattr__(name):  # lazy: importing the importer pulls in torch.fx
    if name == "from_torch":
        from evo import importer

        return importer.from_torch
    raise AttributeError(f"module 'evo' has no attribute {name!r}")
