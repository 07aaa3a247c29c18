"""Front end: Lark grammar -> typed AST."""
from evo.frontend.transformer import parse

__all__ = ["parse"]
