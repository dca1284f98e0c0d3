"""JSON configs (HF TrainingArguments, DeepSpeed) read with the exact character span of every value,
so edits replace only the changed values and the rest of the file (indent, key order, `1e9`,
"auto") stays byte for byte."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, UnsafeInput
from .safe_yaml import GAP_MARK, MAX_DEPTH, check_size

Path = tuple[str, ...]

_WS = re.compile(r"\s*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\.)*"')
# Where a member would start, a user's mark of a cut paste ("[...]", "...", "…", "[snip]"), with its comma if any:
# skipped in place, so every span still points into the text as pasted.
_GAP = re.compile(rf"(?:{GAP_MARK})\s*,?")


@dataclass
class JsonObject:
    """An object's members in order: key → value span, plus the object's own span."""

    start: int
    end: int
    members: dict[str, tuple[int, int]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


@dataclass
class JsonIndex:
    """Every object in a JSON text by its key path (the root is ())."""

    value: Any
    objects: dict[Path, JsonObject]
    cuts: int = 0   # cut marks ([...]) skipped between members


def parse_json(text: str, name: str = "config") -> JsonIndex:
    """Parse JSON with spans; InputError for anything that is not a JSON object within the limits."""
    check_size(text, name)
    objects: dict[Path, JsonObject] = {}
    start = 1 if text.startswith("\ufeff") else 0   # a byte-order mark from Windows editors
    cuts = [0]
    pos, value = _value(text, _skip(text, start), (), objects, 0, name, cuts)
    if _skip(text, pos) != len(text):
        raise InputError(f"{name}: not valid JSON: extra data at character {_skip(text, pos)}")
    if not isinstance(value, dict):
        raise InputError(f"{name}: expected a JSON object at the top level")
    return JsonIndex(value=value, objects=objects, cuts=cuts[0])


def _skip(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()


def _err(name: str, text: str, pos: int, what: str) -> InputError:
    line = text.count("\n", 0, pos) + 1
    return InputError(f"{name}: not valid JSON: {what} at line {line}")


def _skip_cuts(text: str, pos: int, cuts: list[int]) -> int:
    """Past any cut marks where a member would start (counted in `cuts`)."""
    while (m := _GAP.match(text, pos)) is not None:
        cuts[0] += 1
        pos = _skip(text, m.end())
    return pos


def _value(text: str, pos: int, path: Path, objects: dict, depth: int, name: str, cuts: list[int]) -> tuple[int, Any]:
    if depth > MAX_DEPTH:
        raise UnsafeInput(f"{name}: JSON nests deeper than {MAX_DEPTH} levels; not a training config")
    if pos >= len(text):
        raise _err(name, text, pos, "unexpected end")
    ch = text[pos]
    if ch == "{":
        obj = JsonObject(start=pos, end=pos)
        out: dict[str, Any] = {}
        pos = _skip_cuts(text, _skip(text, pos + 1), cuts)
        if text.startswith("}", pos):
            obj.end = pos + 1
            objects[path] = obj
            return pos + 1, out
        while True:
            m = _STRING.match(text, pos)
            if not m:
                raise _err(name, text, pos, "expected a quoted key")
            key = _string(m, name, text)
            pos = _skip(text, m.end())
            if not text.startswith(":", pos):
                raise _err(name, text, pos, "expected ':'")
            vstart = _skip(text, pos + 1)
            pos, val = _value(text, vstart, path + (key,), objects, depth + 1, name, cuts)
            if key in out:
                raise _err(name, text, vstart, f"duplicate key {key!r}")
            out[key] = val
            obj.members[key] = (vstart, pos)
            obj.order.append(key)
            pos = _skip(text, pos)
            comma = text.startswith(",", pos)
            if comma:
                pos = _skip(text, pos + 1)
            before = cuts[0]
            pos = _skip_cuts(text, pos, cuts)   # "value,\n  [...]\n  }" or "value\n  [...]\n  "key": ..."
            cut = cuts[0] > before
            if text.startswith("}", pos) and (cut or not comma):   # a trailing comma closes only before a cut
                obj.end = pos + 1
                objects[path] = obj
                return pos + 1, out
            if comma or cut:
                continue
            raise _err(name, text, pos, "expected ',' or '}'")
    if ch == "[":
        items: list[Any] = []
        pos = _skip(text, pos + 1)
        if text.startswith("]", pos):
            return pos + 1, items
        while True:
            pos, val = _value(text, pos, path + (str(len(items)),), objects, depth + 1, name, cuts)
            items.append(val)
            pos = _skip(text, pos)
            if text.startswith(",", pos):
                pos = _skip(text, pos + 1)
                continue
            if text.startswith("]", pos):
                return pos + 1, items
            raise _err(name, text, pos, "expected ',' or ']'")
    if ch == '"':
        m = _STRING.match(text, pos)
        if not m:
            raise _err(name, text, pos, "unterminated string")
        return m.end(), _string(m, name, text)
    for literal, val in (("true", True), ("false", False), ("null", None)):
        if text.startswith(literal, pos):
            return pos + len(literal), val
    m = _NUMBER.match(text, pos)
    if m and m.group(0):
        tok = m.group(0)
        return m.end(), float(tok) if any(c in tok for c in ".eE") else int(tok)
    raise _err(name, text, pos, "unexpected character")


def to_json_literal(value: Any) -> str:
    return json.dumps(value)


def set_json_values(text: str, updates: dict[Path, Any], name: str = "config") -> str:
    """Set values at key paths, editing spans in place; missing keys (and missing parent objects)
    are added at the end of their object with the indentation of its existing members."""
    for path, value in updates.items():
        index = parse_json(text, name)
        parent_path, key = path[:-1], path[-1]
        # parents that do not exist yet are created together with the value
        missing: list[str] = []
        while parent_path not in index.objects:
            missing.insert(0, parent_path[-1])
            parent_path = parent_path[:-1]
        if missing:
            for k in reversed(missing[1:] + [key]):
                value = {k: value}
            key = missing[0]
        obj = index.objects[parent_path]
        if key in obj.members:
            start, end = obj.members[key]
            literal = _render(value, text, start)
            text = text[:start] + literal + text[end:]
        else:
            text = _insert_member(text, obj, key, value)
    return text


def _line_indent(text: str, pos: int) -> str:
    line = text[text.rfind("\n", 0, pos) + 1:]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _render(value: Any, text: str, at: int) -> str:
    """A JSON literal; objects are laid out with the file's indent step, nested at `at`'s line."""
    if not isinstance(value, (dict, list)):
        return to_json_literal(value)
    step = _indent_step(text)
    base = _line_indent(text, at)
    dumped = json.dumps(value, indent=len(step) if step.strip() == "" else 2)
    return dumped.replace("\n", _newline(text) + base)


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _indent_step(text: str) -> str:
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped:
            return line[: len(line) - len(stripped)] or "  "
    return "  "


def _insert_member(text: str, obj: JsonObject, key: str, value: Any) -> str:
    if obj.order:
        last_start, last_end = obj.members[obj.order[-1]]
        # the member line starts at the key: find the indent of the last member's line
        key_line_indent = _line_indent(text, last_start)
        multiline = "\n" in text[obj.start:last_start]
        sep = "," + _newline(text) + key_line_indent if multiline else ", "
        member_text = f"{json.dumps(key)}: {_render(value, text, last_start)}"
        return text[:last_end] + sep + member_text + text[last_end:]
    # empty object: expand it
    base = _line_indent(text, obj.start)
    step = _indent_step(text)
    member_text = f"{json.dumps(key)}: {_render(value, text, obj.start)}"
    nl = _newline(text)
    member_text = member_text.replace(nl, nl + step)
    return text[:obj.start] + "{" + nl + base + step + member_text + nl + base + "}" + text[obj.end:]


def _string(m: re.Match, name: str, text: str) -> str:
    """A quoted JSON string as its value; an escape JSON does not know ("\\0", "\\x41") is the user's error, said in
    one line with its place, not a decoder traceback."""
    try:
        return json.loads(m.group(0))
    except json.JSONDecodeError as exc:
        raise _err(name, text, m.start() + exc.pos, f"invalid string escape ({exc.msg})") from None
