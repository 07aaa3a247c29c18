"""Loading a program (imports) and its table of top-level definitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from evo.diagnostics import Collector, EvoError, Note, SourceMap
from evo.frontend import ast as A
from evo.frontend import parse
from evo.frontend.parser import LANGUAGE_VERSIONS

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
    """Parse a program and everything it imports; build the definition table."""
    prog = Program()
    prog.sources.add(filename, text)
    col = Collector(sources=prog.sources)
    seen: dict[str, A.Module] = {}

    def visit(text: str, filename: str, base: Path | None, stack: list[str]) -> None:
        try:
            module = parse(text, filename)
        except EvoError as e:
            for d in e.diagnostics:
                col.diagnostics.append(d)
            return
        seen[filename] = module
        if module.header is not None and module.header.version not in LANGUAGE_VERSIONS:
            col.error("E0004", f"this file is written for evo {module.header.version}, but this compiler knows "
                      f"{', '.join(LANGUAGE_VERSIONS)}", module.header.span,
                      "upgrade evo, or change the header to 'evo 0.1'")
        for item in module.items:
            if not isinstance(item, A.Import):
                continue
            if base is None:
                col.error("E0109", f"cannot import \"{item.path}\" from a program that has no file",
                          item.span, "compile the program from a file, or inline the imported definitions")
                continue
            target = (base / item.path).resolve()
            key = str(target)
            if key in stack:
                chain = " -> ".join(Path(s).name for s in stack[stack.index(key):] + [key])
                col.error("E0110", f"import cycle: {chain}", item.span, "move shared definitions into a third file")
                continue
            if key in seen:
                continue
            try:
                sub = target.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as ex:
                why = "not found" if isinstance(ex, FileNotFoundError) else "cannot be read"
                col.error("E0109", f"imported file \"{item.path}\" {why}", item.span,
                          f"paths are relative to the importing file ({base})")
                continue
            prog.sources.add(key, sub)
            visit(sub, key, target.parent, stack + [key])
        prog.modules.append(module)

    start_key = filename
    if base_dir is not None:
        start_key = str((Path(base_dir) / Path(filename).name).resolve()) if filename != "<string>" else filename
    visit(text, filename, Path(base_dir) if base_dir is not None else None, [start_key])
    col.raise_if_any()

    first: dict[str, A.Node] = {}
    for module in prog.modules:
        for item in module.items:
            kind = KINDS.get(type(item))
            if kind is None:
                continue
            prev = first.get(item.name)
            if prev is not None:
                col.error("E0101", f"'{item.name}' is defined twice (as a {KINDS[type(prev)]} and as a {kind})"
                          if KINDS[type(prev)] != kind else f"{kind} '{item.name}' is defined twice",
                          item.name_span, "rename one of them",
                          [Note("first defined here", prev.name_span)])
                continue
            first[item.name] = item
    prog.defs = first
    col.raise_if_any()
    return prog

