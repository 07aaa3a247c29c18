"""Loading a program (imports) and its table of top-level definitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from evo import codes as C
from evo.diagnostics import Collector, EvoError, Note, SourceMap
from evo.frontend import ast as A
from evo.frontend import parse
from evo.frontend.source import UnreadableSource, read_path
from evo.frontend.parser import LANGUAGE_VERSIONS

# The language's built-in functions of numbers (`min(a, b, ...)`, `max(...)`): no block may take their names.
BUILTIN_FUNCS = frozenset({"min", "max"})

KINDS = {A.Block: "block", A.Network: "network", A.Hardware: "hardware", A.Cam: "cam",
         A.Target: "target", A.Evolve: "evolve"}


@dataclass
class Program:
    """All definitions of a program and the files they came from."""

    modules: list[A.Module] = field(default_factory=list)
    sources: SourceMap = field(default_factory=SourceMap)
    defs: dict[str, A.Node] = field(default_factory=dict)

    def of(self, kind: type) -> Mapping[str, A.Node]:
        """The definitions of one kind (read-only; cached: the checks look blocks up at
        every call, so rebuilding this per lookup made checking quadratic)."""
        cache = self.__dict__.setdefault("_of_cache", {})
        key = (kind, id(self.defs), len(self.defs))
        hit = cache.get(kind)
        if hit is None or hit[0] != key:
            hit = (key, MappingProxyType({k: v for k, v in self.defs.items() if isinstance(v, kind)}))
            cache[kind] = hit
        return hit[1]

    @property
    def blocks(self) -> Mapping[str, A.Block]:
        return self.of(A.Block)

    @property
    def networks(self) -> Mapping[str, A.Network]:
        return self.of(A.Network)

    @property
    def hardware(self) -> Mapping[str, A.Hardware]:
        return self.of(A.Hardware)

    @property
    def cams(self) -> Mapping[str, A.Cam]:
        return self.of(A.Cam)

    @property
    def targets(self) -> Mapping[str, A.Target]:
        return self.of(A.Target)

    @property
    def evolves(self) -> Mapping[str, A.Evolve]:
        return self.of(A.Evolve)


def load(text: str, filename: str = "<string>", base_dir: str | Path | None = None) -> Program:
    """Parse a program and everything it imports; build the definition table.

    Imports are relative to the importing file; the main program's are relative to
    `base_dir` (default: the current directory); absolute paths are taken as they are.
    Every imported file is read by the one source reader (regular files of a bounded
    size only).  A file outside the program's tree (the main program's directory) that
    does not parse as an evo program is reported at the `import`, without echoing its
    text: it may be any file of the machine."""
    prog = Program()
    prog.sources.add(filename, text)
    col = Collector(sources=prog.sources)
    seen: dict[str, A.Module] = {}
    root = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        root = root.resolve()
    except (OSError, RuntimeError, ValueError):
        pass

    def parse_module(text: str, filename: str) -> A.Module | None:
        try:
            return parse(text, filename)
        except EvoError as e:
            for d in e.diagnostics:
                col.diagnostics.append(d)
            return None

    def visit(module: A.Module, filename: str, base: Path, stack: list[str]) -> None:
        seen[filename] = module
        if module.header is not None and module.header.version not in LANGUAGE_VERSIONS:
            col.error(C.UNKNOWN_LANGUAGE_VERSION, f"this file is written for evo {module.header.version}, "
                      f"but this compiler knows {', '.join(LANGUAGE_VERSIONS)}", module.header.span,
                      "upgrade evo, or change the header to 'evo 0.1'")
        for item in module.items:
            if isinstance(item, A.Import):
                load_import(item, base, stack)
        prog.modules.append(module)

    def load_import(item: A.Import, base: Path, stack: list[str]) -> None:
        hint = f"paths are relative to the importing file ({base})"
        try:
            target = (base / item.path).resolve()
        except (OSError, RuntimeError, ValueError) as ex:
            why = "contains a NUL byte" if "\0" in item.path else \
                "cannot be read (too many levels of symbolic links)" if isinstance(ex, RuntimeError) else "cannot be read"
            col.error(C.UNREADABLE_FILE, f"imported file \"{_shown(item.path)}\" {why}", item.span, hint)
            return
        key = str(target)
        if key in stack:
            chain = " -> ".join(Path(s).name for s in stack[stack.index(key):] + [key])
            col.error(C.IMPORT_CYCLE, f"import cycle: {chain}", item.span, "move shared definitions into a third file")
            return
        if key in seen:
            return
        inside = target.is_relative_to(root)
        try:
            src = read_path(target, key)
        except UnreadableSource as ex:
            why = "not found" if ex.why == "no such file" else f"cannot be read ({ex.why})"
            col.error(C.UNREADABLE_FILE, f"imported file \"{_shown(item.path)}\" {why}", item.span, hint)
            return
        except EvoError as ex:  # not UTF-8
            if inside:
                col.diagnostics.extend(ex.diagnostics)
                prog.sources.texts.update(ex.sources.texts)
            else:
                col.error(C.UNREADABLE_FILE, f"imported file \"{_shown(item.path)}\" is not an evo program "
                          "(not UTF-8 text)", item.span, hint)
            return
        if inside:
            prog.sources.add(key, src.text)
            module = parse_module(src.text, key)
        else:
            try:
                module = parse(src.text, key)
            except EvoError as ex:
                d = ex.diagnostics[0]
                col.error(C.UNREADABLE_FILE, f"imported file \"{_shown(item.path)}\" is outside the program's "
                          f"directory and is not an evo program (line {d.span.line}, column {d.span.column}: "
                          f"{d.code})", item.span, "import only evo programs")
                return
            prog.sources.add(key, src.text)
        if module is not None:
            visit(module, key, target.parent, stack + [key])

    start_key = filename
    if base_dir is not None:
        start_key = str((Path(base_dir) / Path(filename).name).resolve()) if filename != "<string>" else filename
    module = parse_module(text, filename)
    if module is not None:
        visit(module, filename, Path(base_dir) if base_dir is not None else Path.cwd(), [start_key])
    col.raise_if_any()

    first: dict[str, A.Node] = {}
    for module in prog.modules:
        for item in module.items:
            kind = KINDS.get(type(item))
            if kind is None:
                continue
            if isinstance(item, A.Block) and item.name in BUILTIN_FUNCS:
                # a call `min(...)` always means the built-in: such a block could never be called
                col.error(C.DUPLICATE_DEFINITION, f"block '{item.name}' would be hidden by the built-in function "
                          f"{item.name}(): a call '{item.name}(...)' always means the built-in", item.name_span,
                          f"rename the block, e.g. '{item.name}_block'")
                continue
            prev = first.get(item.name)
            if prev is not None:
                col.error(C.DUPLICATE_DEFINITION, f"'{item.name}' is defined twice (as a {KINDS[type(prev)]} and as a {kind})"
                          if KINDS[type(prev)] != kind else f"{kind} '{item.name}' is defined twice",
                          item.name_span, "rename one of them",
                          [Note("first defined here", prev.name_span)])
                continue
            first[item.name] = item
    prog.defs = first
    col.raise_if_any()
    return prog



def _shown(path: str) -> str:
    """An import path as diagnostics show it (control characters escaped)."""
    return path.encode("unicode_escape").decode("ascii") if not path.isprintable() else path
