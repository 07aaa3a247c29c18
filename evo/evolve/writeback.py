"""Write-back: a point of an evolve block's Pareto front as a plain evo program.

The original file with the target network's parameter defaults set to the network
genes' values, an extending tier that sets the hardware genes (the target pointed at
it), the evolve blocks of the target dropped, a comment saying where it came from;
formatted canonically.  Edits are spans of the program's own syntax tree.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["WriteBackError", "write_back"]


class WriteBackError(ValueError):
    """A front point cannot be written back (the definitions to edit are imported)."""


def _attached_start(src: str, item, comments) -> int:
    """Where `item` begins including the own-line comments right above it (no blank line)."""
    start = item.span.start
    line = item.span.line
    for c in sorted(comments, key=lambda c: -c.span.start):
        if c.span.start >= start:
            continue
        line_start = src.rfind("\n", 0, c.span.start) + 1
        if c.span.line == line - 1 and src[line_start:c.span.start].strip() == "":
            start, line = line_start, c.span.line
        elif c.span.line < line - 1:
            break
    return min(start, src.rfind("\n", 0, item.span.start) + 1)


def _line_end(src: str, pos: int) -> int:
    j = src.find("\n", pos)
    return len(src) if j < 0 else j + 1


def _comment_lines(parts: list[str], width: int = 100) -> str:
    """`# a, b, c` comment lines of at most `width` columns, breaking between parts."""
    lines: list[str] = []
    cur = ""
    for k, part in enumerate(parts):
        piece = part + ("," if k < len(parts) - 1 else "")
        if cur and len(cur) + 1 + len(piece) > width:
            lines.append(cur)
            cur = ""
        cur = f"{cur} {piece}" if cur else f"# {piece}"
    if cur:
        lines.append(cur)
    return "".join(line + "\n" for line in lines)


def write_back(res, i: int, p, directory) -> str:
    """Front point `p` (index `i`) of `res` (an EvolveResult) as a plain evo program (see
    `EvolveResult.program`)."""
    from evo.evolve.driver import _value_literal, format_metric
    from evo.frontend import ast as A
    from evo.frontend.fmt import format_source, quote
    from evo.frontend.names import show

    ev = res.evaluator
    comp = ev.comp
    src = comp.source
    mod = comp.ast
    items = list(mod.items)
    mine = {id(x) for x in items}
    tgt_ast = ev.program.targets[res.target.name]
    if id(tgt_ast) not in mine:
        raise WriteBackError(f"target '{res.target.name}' is defined in an imported file; write-back edits "
                             f"the main file only")
    edits: list[tuple[int, int, str]] = []

    # network parameter defaults
    if ev.net_genes:
        net = ev.program.networks[res.target.network]
        if id(net) not in mine:
            raise WriteBackError(f"network '{net.name}' is defined in an imported file; write-back edits the "
                                 "main file only")
        for g in ev.net_genes:
            prm = next(x for x in net.params[1:] if x.name == g.path[0])
            lit = _value_literal(p.values[g.name])
            if prm.default is not None:
                d = prm.default
                same = (isinstance(d, A.Num) and d.unit is None and type(d.value) is type(p.values[g.name])
                        and d.value == p.values[g.name]) or \
                       (isinstance(d, A.Bool) and isinstance(p.values[g.name], bool) and d.value == p.values[g.name])
                if not same:
                    edits.append((d.span.start, d.span.end, lit))
            else:
                edits.append((prm.span.end, prm.span.end, f" = {lit}"))

    # hardware: an extending tier, and the target pointed at it
    if ev.hw_genes:
        new = res.tier_name(i)
        body = "\n".join(f"    {'.'.join(path)} = {num}{(' ' + unit) if unit else ''}"
                         for path, num, unit in ev.hardware_items(p.values))
        tier_text = f"hardware {show(new)} extends {show(res.target.hardware)} {{\n{body}\n}}\n"
        tier_ast = ev.program.hardware[res.target.hardware]
        if id(tier_ast) in mine:
            pos = _line_end(src, tier_ast.span.end)
            edits.append((pos, pos, "\n" + tier_text))
        else:
            pos = _attached_start(src, tgt_ast, mod.comments)
            edits.append((pos, pos, tier_text + "\n"))
        hw_setting = next(s for s in tgt_ast.settings if s.name == "hardware")
        edits.append((hw_setting.value.span.start, hw_setting.value.span.end, show(new)))

    # the evolve blocks of this target go (their hardware genes would name the old tier)
    for it in items:
        if isinstance(it, A.Evolve):
            tset = next((s for s in it.items if isinstance(s, A.Setting) and s.name == "target"), None)
            if tset is not None and isinstance(tset.value, A.Name) and tset.value.id == res.target.name:
                edits.append((_attached_start(src, it, mod.comments), _line_end(src, it.span.end), ""))

    # imports, relative to where the program will live
    if directory is not None and comp.base_dir is not None:
        dest = Path(directory).resolve()
        for it in items:
            if isinstance(it, A.Import):
                target = (Path(comp.base_dir) / it.path).resolve()
                rel = os.path.relpath(target, dest).replace(os.sep, "/")
                edits.append((it.span.start, it.span.end, f"import {quote(rel)}"))

    # where it came from
    vals = [f"{k} = {v}" for k, v in res.spelled(p).items()]
    mets = [f"{m} {format_metric(m, p.metrics[m])}" for m in res._shown_metrics() if m in p.metrics]
    note = (f"# Written by evoc evolve: evolve {res.name}, Pareto front point {i + 1} of "
            f"{len(res.search.front)}.\n" + _comment_lines(vals) + _comment_lines(mets) + "\n")
    if mod.header is not None:
        pos = _line_end(src, mod.header.span.end)
        edits.append((pos, pos, "\n" + note))
    else:
        edits.append((0, 0, note))

    text = src
    last = len(src) + 1
    for start, end, rep in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        if end > last:
            raise RuntimeError("write-back: overlapping edits")  # a bug, not a user error
        text = text[:start] + rep + text[end:]
        last = start
    return format_source(text, comp.filename)
