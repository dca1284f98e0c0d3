"""YAML configs (LLaMA-Factory, accelerate) edited in place: a changed value replaces exactly the
characters of the old scalar; a new key is inserted as one line beside a related key. Comments,
order, quoting and unknown keys are never re-serialised, so they survive byte for byte."""

from __future__ import annotations

from typing import Any, Iterable

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode

from ..errors import InputError
from .safe_yaml import compose_yaml, node_to_python, parse_plain_scalar

Path = tuple[str, ...]


def read_yaml(text: str, name: str = "config") -> dict[str, Any]:
    """The checked YAML as plain Python; the top level must be a mapping (or empty)."""
    node = compose_yaml(text, name)
    if node is None:
        return {}
    if not isinstance(node, MappingNode):
        raise InputError(f"{name}: expected a mapping of settings (key: value) at the top level")
    return {("null" if k is None else str(k)): v for k, v in node_to_python(node).items()}


def _find_mapping(root: MappingNode, path: Path) -> MappingNode | None:
    node: Node = root
    for key in path:
        if not isinstance(node, MappingNode):
            return None
        nxt = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key), None)
        if nxt is None:
            return None
        node = nxt
    return node if isinstance(node, MappingNode) else None


def render_scalar(value: Any, like: ScalarNode | None = None) -> str:
    """A YAML scalar for `value`, in the style of the scalar it replaces (quotes, True/true)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        if like is not None and like.style is None and like.value[:1].isupper():
            text = text.capitalize()
        return text
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    quote = like.style if like is not None and like.style in ("'", '"') else None
    needs_quotes = (parse_plain_scalar(text) != text or text != text.strip() or not text
                    or any(c in text for c in ":#{}[],&*!|>'\"%@`") or "\n" in text)
    if quote == "'" and "'" not in text and "\n" not in text:
        return f"'{text}'"
    if quote or needs_quotes:
        import json

        return json.dumps(text, ensure_ascii=False)
    return text


def set_yaml_values(text: str, updates: dict[Path, Any], name: str = "config",
                    insert_after: dict[str, Iterable[str]] | None = None) -> str:
    """Set values at key paths in place. Missing keys go after the first existing key named in
    `insert_after[key]` (else after the mapping's last key), at that mapping's indentation."""
    insert_after = insert_after or {}
    for path, value in updates.items():
        root = compose_yaml(text, name)
        if root is None:
            text = text + ("" if not text or text.endswith("\n") else "\n") + f"{path[-1]}: {render_scalar(value)}\n"
            continue
        if not isinstance(root, MappingNode):
            raise InputError(f"{name}: expected a mapping of settings at the top level")
        parent_path, key = path[:-1], path[-1]
        parent = _find_mapping(root, parent_path)
        if parent is None:
            # create the missing parent mapping under its own parent, then set the key inside it
            text = _insert_block(text, root, parent_path, key, value, name)
            continue
        if parent.flow_style:
            raise InputError(f"{name}: cannot edit {'.'.join(path)} inside a flow mapping {{...}}; edit it by hand")
        existing = next(((k, v) for k, v in parent.value if isinstance(k, ScalarNode) and k.value == key), None)
        if existing is not None:
            _, vnode = existing
            if not isinstance(vnode, ScalarNode) or vnode.style in ("|", ">"):
                raise InputError(f"{name}: {'.'.join(path)} is not a single value; edit it by hand")
            start, end = vnode.start_mark.index, vnode.end_mark.index
            text = text[:start] + render_scalar(value, vnode) + text[end:]
        else:
            text = _insert_line(text, parent, key, render_scalar(value), insert_after.get(key, ()))
    return text


def _insert_line(text: str, parent: MappingNode, key: str, literal: str, after: Iterable[str]) -> str:
    """Insert `key: literal` (literal may carry nested lines) after a sibling, at the siblings' indent."""
    pairs = [(k, v) for k, v in parent.value if isinstance(k, ScalarNode)]
    if not pairs:
        raise InputError(f"cannot add {key}: its section is empty")
    by_name = {k.value: (k, v) for k, v in pairs}
    anchor = next((by_name[a] for a in after if a in by_name), pairs[-1])
    knode, vnode = anchor
    indent = " " * knode.start_mark.column
    pos = vnode.end_mark.index
    if vnode.end_mark.column != 0 or isinstance(vnode, ScalarNode):
        nl = text.find("\n", pos)
        pos = len(text) if nl < 0 else nl + 1
    nl = "\r\n" if "\r\n" in text else "\n"    # keep the file's line ends
    prefix = "" if pos == 0 or text[pos - 1] == "\n" else nl
    first, *rest = literal.split("\n")
    block = nl.join(indent + line for line in [f"{key}:" + (f" {first}" if first else ""), *rest])
    return text[:pos] + prefix + block + nl + text[pos:]


def _insert_block(text: str, root: MappingNode, parent_path: Path, key: str, value: Any, name: str) -> str:
    """Add the missing mappings of `parent_path` as a nested block that ends in `key: value`."""
    existing: Path = ()
    for i in range(len(parent_path), -1, -1):
        if _find_mapping(root, parent_path[:i]) is not None:
            existing = parent_path[:i]
            break
    holder = _find_mapping(root, existing)
    pairs = [(k, v) for k, v in holder.value if isinstance(k, ScalarNode)]
    if not pairs:
        raise InputError(f"{name}: cannot add {'.'.join(parent_path + (key,))}")
    missing = list(parent_path[len(existing):]) + [key]
    # first missing key on the insertion line; each further level two spaces deeper
    lines = [""]
    for depth, k in enumerate(missing[1:], start=1):
        is_leaf = depth == len(missing) - 1
        lines.append("  " * depth + f"{k}:" + (f" {render_scalar(value)}" if is_leaf else ""))
    return _insert_line(text, holder, missing[0], "\n".join(lines), ())
