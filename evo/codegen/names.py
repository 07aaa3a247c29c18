"""One allocator for every identifier the code generator writes.

Program names are `[A-Za-z_][A-Za-z0-9_]*`, but they may still be Python
keywords (`class`, `def`), builtins, our own names (`torch`, `self`) or
`nn.Module` attributes (`train`, `forward`): those are never used raw.
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


class Namer:
    """Allocates legal, unique identifiers within one namespace."""

    def __init__(self, reserved: set[str] | None = None):
        self.reserved = set(RESERVED if reserved is None else reserved)
        self.used: set[str] = set(self.reserved)

    def fresh(self, base: str) -> str:
        s = legal(base)
        if s in self.reserved:
            s = s + "_"
        cand, k = s, 1
        while cand in self.used:
            k += 1
            cand = f"{s}_{k}" if s[-1].isdigit() else f"{s}{k}"
        self.used.add(cand)
        return cand


def safe_attr(name: str) -> bool:
    """Can `name` be used as `self.<name>` for a submodule?"""
    return (bool(_IDENT.match(name)) and not keyword.iskeyword(name) and name not in MODULE_ATTRS
            and not name.startswith("_") and name not in getattr(keyword, "softkwlist", ()))


def module_ref(owner: str, name: str) -> str:
    """Source for child `name` of module expression `owner`."""
    if safe_attr(name):
        return f"{owner}.{name}"
    return f"{owner}._modules[{name!r}]"
