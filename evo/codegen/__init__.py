"""Code generation: IR -> standalone PyTorch (Jinja2 templates, StrictUndefined)."""

from __future__ import annotations

from evo.codegen.python import generate


def emit_program(comp) -> str:
    """The whole program: every network at its default arguments, and its explainers."""
    graphs = list(comp.ir.values())
    try:
        from evo.codegen.explain import explainer_sources
    except ImportError:  # pragma: no cover - during bootstrap
        return generate(graphs, comp.filename)
    exps, index = explainer_sources(comp)
    return generate(graphs, comp.filename, exps, index)


__all__ = ["generate", "emit_program"]
