"""Safe YAML reading for user configs: size, alias-expansion and nesting limits are checked on the
event stream *before* anything is built, and only plain YAML tags are allowed, so a billion-laughs
bomb, a `!!python/object` tag or a 10 MB file is an InputError, never a hang or code execution."""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import InputError, UnsafeInput

MAX_CONFIG_CHARS = 256_000       # training configs are a few KB; 256 KB is generous and bounds parse time (< 2 s)
MAX_EXPANDED_NODES = 20_000      # nodes after expanding aliases (real configs: < 1,000; a billion-laughs file: 10^9)
MAX_DEPTH = 64                   # real configs nest 2-4 levels
# a user's mark of a cut paste: "[...]", "...", "…", "[snip]", "[20 lines omitted]" (the config readers skip it)
GAP_MARK = r"\[\s*(?:\.{3}|…|snip|omitted|truncated)[^\]\n]{0,80}\]|\.{3}|…"

# Tags a config may carry: the YAML core schema. Anything else (!!python/object, custom !Tags) is refused.
_ALLOWED_TAGS = {
    None, "!", "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:timestamp",
}


def check_size(text: str, name: str) -> None:
    """Refuse configs over the size limit before parsing them at all."""
    if len(text) > MAX_CONFIG_CHARS:
        raise UnsafeInput(
            f"{name}: config is {len(text) / 1e3:,.0f} KB, over the {MAX_CONFIG_CHARS // 1000} KB limit; "
            "pass the training config itself, not data"
        )


def _yaml() -> YAML:
    y = YAML(typ="rt", pure=True)
    y.allow_duplicate_keys = False
    return y


def check_yaml_events(text: str, name: str) -> None:
    """Walk the event stream once: count nodes with aliases expanded, track depth, check tags."""
    weights: dict[str, int] = {}           # anchor → expanded size of the anchored node
    stack: list[list[Any]] = []            # open collections: [anchor, size]
    total = 0
    aliases = 0
    try:
        for event in _yaml().parse(text):
            if isinstance(event, NodeEvent) and not isinstance(event, AliasEvent):
                tag_value = tag_of(event)
                if tag_value not in _ALLOWED_TAGS:
                    raise UnsafeInput(
                        f"{name}: YAML tag {tag_value!r} is not allowed (only plain YAML is read; "
                        "remove the tag)"
                    )
            if isinstance(event, AliasEvent):
                aliases += 1
                size = weights.get(event.anchor, 1)
            elif isinstance(event, ScalarEvent):
                size = 1
                if event.anchor:
                    weights[event.anchor] = 1
            elif isinstance(event, CollectionStartEvent):
                stack.append([event.anchor, 1])
                if len(stack) > MAX_DEPTH:
                    raise UnsafeInput(f"{name}: YAML nests deeper than {MAX_DEPTH} levels; not a training config")
                continue
            elif isinstance(event, CollectionEndEvent):
                anchor, size = stack.pop()
                if anchor:
                    weights[anchor] = size
            else:
                continue
            total += size
            if stack:
                stack[-1][1] += size
            if total > MAX_EXPANDED_NODES:
                if aliases:
                    raise UnsafeInput(f"{name}: YAML aliases expand to more than {MAX_EXPANDED_NODES} nodes "
                                     "(an alias bomb?); refusing to load it")
                raise UnsafeInput(f"{name}: more than {MAX_EXPANDED_NODES} YAML entries; not a training config")
    except YAMLError as exc:
        raise InputError(f"{name}: not valid YAML: {_one_line(exc)}") from None


def compose_yaml(text: str, name: str = "config") -> Node | None:
    """The checked YAML's node tree (with exact character spans), or None for an empty document."""
    check_size(text, name)
    check_yaml_events(text, name)
    try:
        return _yaml().compose(text)
    except YAMLError as exc:
        raise InputError(f"{name}: not valid YAML: {_one_line(exc)}") from None


def node_to_python(node: Node | None) -> Any:
    """Plain Python values from a checked node tree (core-schema scalars only; aliases are shared)."""
    if node is None:
        return None
    if isinstance(node, ScalarNode):
        return _scalar(node)
    if isinstance(node, SequenceNode):
        return [node_to_python(n) for n in node.value]
    if isinstance(node, MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            if tag_of(k) == "tag:yaml.org,2002:merge":
                merged = node_to_python(v)
                for m in merged if isinstance(merged, list) else [merged]:
                    if isinstance(m, dict):
                        for mk, mv in m.items():
                            out.setdefault(mk, mv)
                continue
            out[node_to_python(k)] = node_to_python(v)
        return out
    return None


def tag_of(node_or_event: Any) -> str | None:
    """The resolved tag as a string (ruamel versions hand out either a Tag object or a str)."""
    tag = getattr(node_or_event, "tag", None)
    if tag is None:
        return None
    return getattr(tag, "value", tag)


def _scalar(node: ScalarNode) -> Any:
    tag = tag_of(node)
    value = node.value
    if node.style in ("'", '"', "|", ">") or tag == "tag:yaml.org,2002:str":
        return value
    return parse_plain_scalar(value)


def parse_plain_scalar(value: str) -> Any:
    """YAML 1.2 core-schema resolution of an unquoted scalar (what LLaMA-Factory's loader sees)."""
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "~", ""):
        return None
    digits = value.lstrip("+-").replace("_", "")
    try:
        return int(value.replace("_", "")) if digits.isascii() and digits.isdigit() else float(value)
    except ValueError:
        return value


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]
