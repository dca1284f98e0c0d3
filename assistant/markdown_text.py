"""Markdown escaping for text that comes from the user's input or the log (or any free text) when a reply places
it outside a code span: `b*heads*s*s` must read as written, not in italics; a stray `[`, `<` or backtick must not
open a link, a tag or a code span."""

from __future__ import annotations

import re

# the characters that start emphasis, code, links, HTML, strike-through or a table cell; a backslash first
_SPECIAL = re.compile(r"([\\`*~\[\]<>|])")
# `_` emphasises only at a word's edge (CommonMark): snake_case keys stay readable
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_LINE_START = re.compile(r"^(\s*)([#>+\-=]|\d+\.)(?=\s|$)", re.M)


def md_escape(text: str) -> str:
    """`text` escaped so that Markdown shows it literally, outside a code span (inside one, use it as it is)."""
    text = _SPECIAL.sub(r"\\\1", str(text))
    text = _EDGE_UNDERSCORE.sub(r"\\_", text)
    return _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def md_escape_outside_code(text: str) -> str:
    """`text` escaped outside its own `code spans`, which stay as written (a label such as `eager_attention`)."""
    pieces = re.split(r"(`[^`\n]+`)", str(text))
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1 else md_escape(p) for p in pieces)
