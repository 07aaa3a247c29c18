"""Lark LALR parser for evo, with a post-lexer for newlines and error translation."""

from __future__ import annotations

import functools
import re
import threading
from importlib import resources
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from evo.diagnostics import Diagnostic, EvoError, SourceMap, Span

LANGUAGE_VERSIONS = ("0.1",)

KEYWORDS = frozenset(
    "network block hardware cam target evolve import if else for in repeat return seq gene "
    "minimize maximize require true false and or not".split()
)

# Token names as a user would say them.
TOKEN_WORDS = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "NUMBER": "a quantity",
    "STRING": "a string", "VERSION": "a version number", "_NL": "a newline",
    "COMPOP": "a comparison", "MULOP": "an operator", "PLUS": "'+'", "MINUS": "'-'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'",
    "RBRACE": "'}'", "COMMA": "','", "EQUAL": "'='", "COLON": "':'", "SEMICOLON": "';'",
    "DOT": "'.'", "__ANON_0": "'..'", "$END": "end of file",
}


def _grammar_text() -> str:
    try:
        return resources.files("evo").joinpath("grammar/evo.lark").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError, ModuleNotFoundError):
        pass
    here = Path(__file__).resolve().parents[2] / "grammar" / "evo.lark"
    return here.read_text(encoding="utf-8")


class _PostLex:
    """Drops newlines inside ( ) and [ ], and a newline right before `else`;
    folds consecutive newlines into one.

    It never holds a token back (the contextual lexer lexes each token in the
    parser state left by the previous one), so it peeks at the source text to
    see whether an `else` follows a newline.
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.text = ""

    def _else_follows(self, pos: int) -> bool:
        m = _NEXT_WORD.match(self.text, pos)
        return bool(m) and m.group(1) == "else"

    def process(self, stream):
        depth: list[str] = []
        last = None
        for tok in stream:
            t = tok.type
            if t == "_NL":
                if (depth and depth[-1] in "([") or last == "_NL" or last is None:
                    continue
                if self._else_follows(tok.end_pos or 0):
                    continue
            elif t in ("LPAR", "LSQB", "LBRACE"):
                depth.append({"LPAR": "(", "LSQB": "[", "LBRACE": "{"}[t])
            elif t in ("RPAR", "RSQB", "RBRACE") and depth:
                depth.pop()
            last = t
            yield tok


_NEXT_WORD = re.compile(r"(?:\s|#[^\n]*)*([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1)
def get_parser() -> Lark:
    return Lark(
        _grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        postlex=_PostLex(),
        maybe_placeholders=True,
        strict=True,
        start="start",
        cache=False,
    )


def _span_of_token(filename: str, tok: Token | None, text: str) -> Span:
    if tok is None or getattr(tok, "line", None) is None:
        lines = text.splitlines() or [""]
        return Span(filename, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2,
                    len(text), len(text))
    end_line = tok.end_line or tok.line
    end_col = tok.end_column or (tok.column + len(str(tok)))
    if tok.type == "_NL":  # point at the end of the line, not the next line
        return Span(filename, tok.line, tok.column, tok.line, tok.column + 1,
                    tok.start_pos or 0, (tok.start_pos or 0) + 1)
    return Span(filename, tok.line, tok.column, end_line, end_col, tok.start_pos or 0, tok.end_pos or 0)


def _describe_token(tok: Token) -> str:
    if tok.type == "_NL":
        return "end of line"
    if tok.type == "$END":
        return "end of file"
    v = str(tok)
    if tok.type in ("NAME",) and v not in KEYWORDS:
        return f"name '{v}'"
    if v.lower() in KEYWORDS:
        return f"keyword '{v}'"
    return f"'{v}'"


def _expected_words(expected) -> str:
    words = []
    for name in sorted(expected):
        w = TOKEN_WORDS.get(name)
        if w is None:
            if name.isupper() and not name.startswith("__"):
                w = f"'{name.lower()}'"
            else:
                continue
        if w not in words:
            words.append(w)
    if not words:
        return ""
    if len(words) > 6:
        return ""
    return ", ".join(words)


_NAME_LIKE_KEYWORDS = KEYWORDS - {"true", "false", "not", "and", "or", "else", "in", "return"}


def _keyword_before(text: str, pos: int):
    """The keyword right before `pos`, if one is there (used where a name was meant)."""
    m = re.search(r"([A-Za-z_]\w*)[ \t]*$", text[:pos])
    if m and m.group(1) in _NAME_LIKE_KEYWORDS:
        return m.group(1), m.start(1)
    return None


def translate_error(e: UnexpectedInput, filename: str, text: str) -> Diagnostic:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        span = Span(filename, e.line, e.column, e.line, e.column + 1, e.pos_in_stream, e.pos_in_stream + 1)
        if ch == '"':
            return Diagnostic("E0001", "unterminated string", span,
                              "strings are written \"...\" on one line")
        hint = None
        if ch in "@$`?!&|^~'":
            hint = "evo has no such operator; see docs/language.md for the expression syntax"
        if ch == "'":
            hint = "strings use double quotes"
        shown = repr(ch)[1:-1] if ch.isprintable() else f"\\x{ord(ch):02x}" if len(ch) == 1 else ch
        return Diagnostic("E0001", f"unexpected character '{shown}'", span, hint)
    if isinstance(e, UnexpectedEOF):
        span = _span_of_token(filename, None, text)
        exp = _expected_words(e.expected)
        return Diagnostic("E0003", "unexpected end of file" + (f"; expected {exp}" if exp else ""), span,
                          "a '{' or '(' may be missing its closing partner")
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    if tok.type == "$END":
        span = _span_of_token(filename, None, text)
        exp = _expected_words(e.expected)
        return Diagnostic("E0003", "unexpected end of file" + (f"; expected {exp}" if exp else ""), span,
                          "a '{' or '(' may be missing its closing partner")
    span = _span_of_token(filename, tok, text)
    kw = _keyword_before(text, tok.start_pos or 0)
    if kw is not None and tok.type in ("_NL", "EQUAL", "RPAR", "COMMA", "RSQB", "SEMICOLON", "DOT", "PLUS",
                                       "MINUS", "MULOP", "COMPOP"):
        word, pos = kw
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return Diagnostic("E0005", f"'{word}' is a reserved keyword and cannot be used as a name",
                          Span(filename, line, col, line, col + len(word), pos, pos + len(word)),
                          f"choose another name, e.g. '{word}_'")
    exp = _expected_words(e.expected)
    msg = f"unexpected {_describe_token(tok)}" + (f"; expected {exp}" if exp else "")
    hint = None
    v = str(tok)
    if v in KEYWORDS and "NAME" in e.expected:
        return Diagnostic("E0005", f"'{v}' is a reserved keyword and cannot be used as a name", span,
                          f"choose another name, e.g. '{v}_'")
    if tok.type == "_NL" and ("RPAR" in e.expected or "RSQB" in e.expected):
        hint = "a bracket may be missing"
    elif tok.type == "_NL":
        hint = "an expression continues on the next line only inside ( ) or [ ]"
    elif tok.type == "EQUAL" and "COMPOP" in e.expected:
        hint = "use '==' to compare"
    elif tok.type in ("NAME", "INT", "FLOAT", "NUMBER") and "_NL" in e.expected:
        hint = "separate statements with a newline or ';'"
    return Diagnostic("E0002", msg, span, hint)


def parse_tree(text: str, filename: str):
    """Parse `text`; returns (lark tree, comments) or raises EvoError."""
    comments: list[Token] = []
    parser = get_parser()
    if not text.endswith("\n"):
        text = text + "\n"
    try:
        with _LOCK:
            parser.options.postlex.text = text
            tree = _parse_collecting(parser, text, comments)
    except UnexpectedInput as e:
        raise EvoError(translate_error(e, filename, text), SourceMap({filename: text})) from None
    except RecursionError:
        span = Span(filename, 1, 1, 1, 2, 0, 1)
        raise EvoError(Diagnostic("E0002", "program is nested too deeply", span,
                                  "split deeply nested expressions into named steps"),
                       SourceMap({filename: text})) from None
    return tree, comments


_LOCK = threading.Lock()


def _parse_collecting(parser: Lark, text: str, comments: list) -> object:
    # Comments are ignored by the grammar; collect them for the formatter.
    for m in re.finditer(r"#[^\n]*", text):
        # Only real comments: skip '#' inside strings.
        line_start = text.rfind("\n", 0, m.start()) + 1
        before = text[line_start:m.start()]
        if before.count('"') % 2 == 1:
            continue
        line = text.count("\n", 0, m.start()) + 1
        col = m.start() - line_start + 1
        comments.append((line, col, m.start(), m.group(0).rstrip()))
    return parser.parse(text)
