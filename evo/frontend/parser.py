"""Lark LALR parser for evo, with a post-lexer for newlines and error translation."""

from __future__ import annotations

import functools
import os
import re
import stat
import sys
import threading
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from evo import codes as C
from evo import limits
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

    It also makes keywords context-free: the contextual lexer reads a reserved
    word as a NAME wherever the keyword itself cannot follow (`seq = relu(x)`
    at the start of a statement), so such a NAME is turned back into its keyword
    and the parser reports the misuse where it happens.  Conversely `evo` is a
    keyword only in the header on the first line; anywhere else it is a name.
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.text = ""
        self.keyword_types: dict[str, str] = {}

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
            elif t == "NAME":
                kw = self.keyword_types.get(tok.value)
                if kw is not None:
                    tok = Token.new_borrow_pos(kw, tok.value, tok)
                    t = kw
            elif t == "EVO" and last is not None:
                tok = Token.new_borrow_pos("NAME", tok.value, tok)
                t = "NAME"
            last = t
            yield tok


_NEXT_WORD = re.compile(r"(?:\s|#[^\n]*)*([A-Za-z_]\w*)")


def _private_dir(folder: str) -> bool:
    """Is `folder` a real directory (not a link) owned by this user that no one else may
    write to or read?  Made so (0700) when this user owns it."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return False
    if stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.chmod(folder, 0o700)
        except OSError:
            return False
        return stat.S_IMODE(os.lstat(folder).st_mode) & 0o077 == 0
    return True


def _cache_file() -> str | bool:
    """Where Lark keeps the analysed grammar between runs (building it takes about a
    second; loading it, milliseconds).  The cache is a pickle, so it is loaded only
    from a private per-user directory (a real directory owned by this user, mode 0700)
    and only if the file is a regular file owned by this user that no one else can
    write; anything else means no cache.  Lark checks the grammar's hash in the file
    and rebuilds (and rewrites) a stale or unreadable cache.  False: no cache."""
    if os.environ.get("EVO_NO_GRAMMAR_CACHE") or not hasattr(os, "getuid"):
        return False
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return False
    folder = os.path.join(base, "evo")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return False
    if not _private_dir(folder) or not os.access(folder, os.W_OK):
        return False
    path = os.path.join(folder, f"grammar-lark{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}.cache")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o022:
        return False
    return path


# Comments are ignored by the grammar; the lexer hands them here (for the formatter).
_COMMENTS: list[Token] = []


@functools.lru_cache(maxsize=1)
def get_parser() -> Lark:
    postlex = _PostLex()
    parser = Lark(
        _grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        postlex=postlex,
        maybe_placeholders=True,
        strict=True,
        start="start",
        cache=_cache_file(),
        lexer_callbacks={"COMMENT": _COMMENTS.append},
    )
    postlex.keyword_types = {t.pattern.value: t.name for t in parser.terminals
                             if t.pattern.type == "str" and t.pattern.value in KEYWORDS}
    return parser


def _span_of_token(filename: str, tok: Token | None, text: str) -> Span:
    if tok is None or getattr(tok, "line", None) is None:
        # The end of the last line (the text always ends with a newline here).
        # Lines are split at "\n" only, as the lexer counts them.
        lines = text.split("\n")
        if len(lines) > 1 and lines[-1] == "":
            lines.pop()
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


_NAME_LIKE_KEYWORDS = KEYWORDS - {"true", "false", "not", "and", "or", "else", "in"}


def _keyword_before(text: str, pos: int, tok_type: str):
    """The keyword right before `pos`, if one is there (used where a name was meant).

    A keyword that starts a statement and is followed by the end of the line
    (`minimize` with no metric) is an unfinished statement, not a misused name."""
    m = re.search(r"([A-Za-z_]\w*)[ \t]*$", text[:pos])
    if m and m.group(1) in _NAME_LIKE_KEYWORDS:
        if tok_type in ("_NL", "SEMICOLON"):
            line_start = text.rfind("\n", 0, m.start(1)) + 1
            before = text[line_start:m.start(1)].rstrip(" \t")
            if before == "" or before.endswith((";", "{")):
                return None
        return m.group(1), m.start(1)
    return None


def translate_error(e: UnexpectedInput, filename: str, text: str) -> Diagnostic:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        span = Span(filename, e.line, e.column, e.line, e.column + 1, e.pos_in_stream, e.pos_in_stream + 1)
        if ch == '"':
            return Diagnostic(C.UNEXPECTED_CHARACTER, "unterminated string", span,
                              "strings are written \"...\" on one line")
        if ch == "`":
            rest = text[e.pos_in_stream + 1:].split("\n", 1)[0]
            if "`" not in rest:
                return Diagnostic(C.INVALID_QUOTED_NAME, "unterminated quoted name", span,
                                  "a quoted name is written `...` on one line and cannot contain a line break")
            return Diagnostic(C.UNEXPECTED_TOKEN, "unexpected quoted name", span)
        hint = None
        if ch in "@$?!&|^~'":
            hint = "evo has no such operator; see docs/language.md for the expression syntax"
        if ch == "'":
            hint = "strings use double quotes"
        shown = ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
        return Diagnostic(C.UNEXPECTED_CHARACTER, f"unexpected character '{shown}'", span, hint)
    if isinstance(e, UnexpectedEOF):
        span = _span_of_token(filename, None, text)
        exp = _expected_words(e.expected)
        return Diagnostic(C.UNEXPECTED_END_OF_FILE, "unexpected end of file" + (f"; expected {exp}" if exp else ""), span,
                          "a '{' or '(' may be missing its closing partner")
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    if tok.type == "$END":
        span = _span_of_token(filename, None, text)
        exp = _expected_words(e.expected)
        return Diagnostic(C.UNEXPECTED_END_OF_FILE, "unexpected end of file" + (f"; expected {exp}" if exp else ""), span,
                          "a '{' or '(' may be missing its closing partner")
    span = _span_of_token(filename, tok, text)
    kw = _keyword_before(text, tok.start_pos or 0, tok.type)
    if kw is not None and tok.type in ("_NL", "EQUAL", "RPAR", "COMMA", "RSQB", "SEMICOLON", "DOT", "PLUS",
                                       "MINUS", "MULOP", "COMPOP"):
        word, pos = kw
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return Diagnostic(C.KEYWORD_AS_NAME, f"'{word}' is a reserved keyword and cannot be used as a name",
                          Span(filename, line, col, line, col + len(word), pos, pos + len(word)),
                          f"choose another name, e.g. '{word}_'")
    exp = _expected_words(e.expected)
    msg = f"unexpected {_describe_token(tok)}" + (f"; expected {exp}" if exp else "")
    hint = None
    v = str(tok)
    if v in KEYWORDS and "NAME" in e.expected:
        return Diagnostic(C.KEYWORD_AS_NAME, f"'{v}' is a reserved keyword and cannot be used as a name", span,
                          f"choose another name, e.g. '{v}_'")
    if tok.type == "_NL" and ("RPAR" in e.expected or "RSQB" in e.expected):
        hint = "a bracket may be missing"
    elif tok.type == "_NL":
        hint = "an expression continues on the next line only inside ( ) or [ ]"
    elif tok.type == "EQUAL" and "COMPOP" in e.expected:
        hint = "use '==' to compare"
    elif tok.type in ("NAME", "INT", "FLOAT", "NUMBER") and "_NL" in e.expected:
        hint = "separate statements with a newline or ';'"
    return Diagnostic(C.UNEXPECTED_TOKEN, msg, span, hint)


def parse_tree(text: str, filename: str):
    """Parse `text`; returns (lark tree, comments) or raises EvoError."""
    comments: list[Token] = []
    parser = get_parser()
    if not text.endswith("\n"):
        text = text + "\n"
    if text.startswith("\ufeff"):  # a UTF-8 byte-order mark: whitespace (positions unchanged)
        text = " " + text[1:]
    try:
        with _LOCK:
            parser.options.postlex.text = text
            tree = _parse_collecting(parser, text, comments)
    except UnexpectedInput as e:
        raise EvoError(translate_error(e, filename, text), SourceMap({filename: text})) from None
    deep = _too_deep(tree)
    if deep is not None:
        meta = deep.meta
        line, col = getattr(meta, "line", 1), getattr(meta, "column", 1)
        start = getattr(meta, "start_pos", 0)
        span = Span(filename, line, col, line, col + 1, start, start + 1)
        raise EvoError(Diagnostic(C.UNEXPECTED_TOKEN, f"the program is nested too deeply (more than {MAX_NESTING} levels)",
                                  span, "split deeply nested expressions into named steps, or "
                                  + limits.LIMITS["nesting"].how()),
                       SourceMap({filename: text}))
    return tree, comments


# The syntax tree may be this deep: a chain `a + b + ...` takes one level per
# operator, a nested call or `if` two.  Real programs use about 12; the limit
# keeps every recursive pass (transformer, checks, formatter) far from Python's
# recursion limit.
MAX_NESTING = limits.value("nesting")


def _too_deep(tree):
    """The first subtree below MAX_NESTING levels, or None (iterative: no recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, d = stack.pop()
        if d > MAX_NESTING:
            return node
        for c in node.children:
            if isinstance(c, Tree):
                stack.append((c, d + 1))
    return None


_LOCK = threading.Lock()


def _parse_collecting(parser: Lark, text: str, comments: list) -> object:
    # The lexer reports each comment token (never a '#' inside a string).
    _COMMENTS.clear()
    try:
        return parser.parse(text)
    finally:
        for tok in _COMMENTS:
            comments.append((tok.line, tok.column, tok.start_pos, str(tok).rstrip()))
        _COMMENTS.clear()
