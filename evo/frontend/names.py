"""Names as written in evo source: plain identifiers and backtick-quoted names.

A quoted name (`` `block` ``, `` `block1-0` ``) is a name whose text need not be an
identifier and may be a keyword, so that any PyTorch module name can be mirrored.
Its text is the name: `` `conv1` `` and `conv1` are the same name.  It may not be
empty, contain a backtick, a dot (paths are split at dots) or a line break, and
control characters are refused too (they cannot be shown in a diagnostic).

`show` and `show_path` write a name or a path back as source text, quoting only
where needed; the formatter, the importer and the diagnostics use them.
"""

from __future__ import annotations

import re
import unicodedata

from evo.frontend.parser import KEYWORDS

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEX = re.compile(r"0|[1-9][0-9]*")
# Words that are names on the left of a setting (`network = ResNet18`).
SETTING_WORDS = frozenset({"network", "hardware", "cam", "target"})


def is_plain(name: str) -> bool:
    """Can `name` be written without backticks where a name is expected?"""
    return bool(_IDENT.fullmatch(name)) and name not in KEYWORDS


def problem(text: str) -> tuple[str, str] | None:
    """Why `text` cannot be a quoted name's text: (message, hint), or None."""
    if text == "":
        return "a quoted name cannot be empty", "write a name between the backticks, e.g. `block`"
    if "`" in text:
        return ("a quoted name cannot contain a backtick",
                "a quoted name ends at the next backtick; PyTorch module names never contain one")
    if "." in text:
        return ("a quoted name cannot contain a dot",
                "a dot separates the components of a path: quote each one, e.g. `features`.`block1-0`")
    for ch in text:
        if ch in "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029":
            return "a quoted name cannot contain a line break", "write the name on one line"
        if unicodedata.category(ch) == "Cc":
            return (f"a quoted name cannot contain the control character U+{ord(ch):04X}",
                    "PyTorch module names are printable text")
    return None


def unquote(token: str) -> str:
    """The text of a NAME token (the backticks of a quoted name removed; unchecked)."""
    if token.startswith("`") and token.endswith("`") and len(token) >= 2:
        return token[1:-1]
    return token


def show(name: str) -> str:
    """`name` as written in source: plain where it can be, else quoted."""
    return name if is_plain(name) else f"`{name}`"


def show_path(path: str) -> str:
    """A dotted module path (`features.block1-0.0`) as written in source
    (`` features.`block1-0`.0 ``): integer components after the first stay plain."""
    parts = path.split(".")
    out = [show(parts[0])]
    for p in parts[1:]:
        out.append(p if _INDEX.fullmatch(p) else show(p))
    return ".".join(out)


def show_listed(name: str) -> str:
    """A name in listings that are not evo source (IR text, reports): quoted only
    where it is not an identifier (keywords stay plain there)."""
    return name if _IDENT.fullmatch(name) else f"`{name}`"


def show_module_path(path: str) -> str:
    """A module path in listings (IR text, reports): integer components plain
    (`0.conv1`), every other one as `show_listed` writes it."""
    return ".".join(p if _INDEX.fullmatch(p) else show_listed(p) for p in path.split("."))


def q(name: str) -> str:
    """A name in a diagnostic: `'conv1'`, or the quoted form (`` `block1-0` ``)."""
    return f"'{name}'" if is_plain(name) else f"`{name}`"


def show_setting(name: str) -> str:
    """A setting's name (the words `network`, `hardware`, `cam`, `target` are plain there)."""
    return name if name in SETTING_WORDS else show(name)


def split_path(text: str) -> list[str] | None:
    """The components of a layer path given as a string: `"trunk_output.block1-0"` or
    `` "trunk_output.`block1-0`" ``; a component may be quoted (then it may be anything
    a quoted name may be).  None where it is not a path."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == "`":
            j = text.find("`", i + 1)
            if j < 0:
                return None
            part = text[i + 1:j]
            i = j + 1
        else:
            j = text.find(".", i)
            j = n if j < 0 else j
            part = text[i:j]
            if "`" in part:
                return None
            i = j
        if problem(part) is not None:
            return None
        parts.append(part)
        if i == n:
            return parts
        if text[i] != ".":
            return None
        i += 1


def path_text(text: str) -> str | None:
    """A layer path given as a string, normalized to its dotted module path
    (`` "trunk_output.`block1-0`" `` -> `trunk_output.block1-0`), or None."""
    parts = split_path(text)
    return ".".join(parts) if parts is not None else None
