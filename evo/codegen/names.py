"""One allocator for every identifier the code generator writes.

Program names are `[A-Za-z_][A-Za-z0-9_]*` (or any quoted text), but they may
still be Python keywords (`class`, `def`), builtins, our own names (`torch`,
`self`), the generated code's own locals and helpers (`h`, `select_classes`),
module dunders (`__builtins__`), names that Python mangles inside a class body
(`__Net`) or `nn.Module` attributes (`train`, `forward`): those are never used
raw.  Every namespace of a generated file allocates from a `Namer` that knows
what that namespace reserves: `module_namer()` for module-level classes,
`explainer_namer()` for explainer method locals, `Namer()` for network locals.
"""

from __future__ import annotations

import builtins
import keyword
import re

import torch.nn as _nn

RESERVED = (set(keyword.kwlist) | set(getattr(keyword, "softkwlist", [])) | set(dir(builtins))
            | {"torch", "nn", "F", "self", "math", "Tensor", "Optional", "List", "Tuple"}
            | {"l", "O", "I"})  # ambiguous names (a lint error as variables or classes)
MODULE_ATTRS = set(dir(_nn.Module)) | set(dir(_nn.Module())) | set(dir(_nn.Sequential))

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def legal(base: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", base)
    if not s or s[0].isdigit():
        s = "_" + s
    return s


# Locals that the explainer template writes itself (`h = self._h`, `cls`, `k`, ...):
# a program's layer of one of these names would shadow them.
EXPLAINER_LOCALS = frozenset({"self", "model", "m", "h", "b", "basis", "j", "spec", "cls", "cls2", "k", "gseed",
                              "gidx", "dt", "coef"})


class Namer:
    """Allocates legal, unique identifiers within one namespace.

    Never hands out a reserved name, a dunder (`__builtins__`) or a name that a
    class body would mangle (`__x`): those lose their leading underscores."""

    def __init__(self, reserved: set[str] | frozenset[str] | None = None):
        self.reserved = set(RESERVED if reserved is None else reserved)
        self.used: set[str] = set(self.reserved)

    def fresh(self, base: str) -> str:
        s = legal(base)
        if s in self.reserved:
            s = s + "_"
        if s.startswith("__"):
            s = "_" + s.lstrip("_") if s.strip("_") else "_u"
            if s in self.reserved:
                s = s + "_"
        cand, k = s, 1
        while cand in self.used:
            k += 1
            cand = f"{s}_{k}" if s[-1].isdigit() else f"{s}{k}"
        self.used.add(cand)
        return cand


def module_namer(extra=()) -> Namer:
    """The module-level namespace: classes of networks, blocks and explainers."""
    from evo.codegen.python import runtime_names

    return Namer(RESERVED | {"NETWORKS", "EXPLAINERS"} | runtime_names() | set(extra))


def explainer_namer() -> Namer:
    """Locals of one explainer method: never the template's own locals or a runtime helper."""
    from evo.codegen.python import runtime_names

    return Namer(RESERVED | EXPLAINER_LOCALS | runtime_names())


def safe_attr(name: str) -> bool:
    """Can `name` be used as `self.<name>` for a submodule?"""
    return (bool(_IDENT.match(name)) and not keyword.iskeyword(name) and name not in MODULE_ATTRS
            and not name.startswith("_") and name not in getattr(keyword, "softkwlist", ()))


def module_ref(owner: str, name: str) -> str:
    """Source for child `name` of module expression `owner`."""
    if safe_attr(name):
        return f"{owner}.{name}"
    return f"{owner}._modules[{name!r}]"
