"""evo: networks, their class-activation maps and the hardware they run on.

    prog  = evo.compile_file("net.evo")
    model = prog.build("ResNet18")
    src   = prog.emit_python()
    rep   = prog.cost("ResNet18", hardware="Eyeriss", batch=1)
    exp   = prog.explainer("Explain", model)
"""

__version__ = "0.1.0"

from evo.api import Program, compile, compile_file  # noqa: E402,A004
from evo.diagnostics import Diagnostic, EvoError  # noqa: E402

__all__ = ["compile", "compile_file", "Program", "EvoError", "Diagnostic", "from_torch", "__version__"]


def __getattr__(name):  # lazy: importing the importer pulls in torch.fx
    if name == "from_torch":
        from evo import importer

        return importer.from_torch
    raise AttributeError(f"module 'evo' has no attribute {name!r}")
