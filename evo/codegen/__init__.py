"""Code generation: IR -> standalone PyTorch (Jinja2 templates, StrictUndefined).

Codegen renders what the compilation decided: it is given the graphs, and per
cam the chosen strategy and the compiled explain graphs; it never calls the cost
model."""

from __future__ import annotations

from evo.codegen.python import generate


def emit_program(graphs, filename: str, plans=()) -> str:
    """The whole program: every network at its default arguments, and its explainers
    (`plans`: see `evo.codegen.explain.explainer_sources`)."""
    from evo.codegen.explain import explainer_sources

    return generate(list(graphs), filename, lambda names: explainer_sources(plans, names))


__all__ = ["generate", "emit_program"]
