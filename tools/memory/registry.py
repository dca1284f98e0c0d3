"""Built-in registry: config.json facts of popular models, so model names in logs resolve with no download.

The data lives in registry.json (package data); names match loosely: HF ids, local paths (their
basename), and shorthand such as "qwen2.5-7b", "Llama-2-13b-chat-hf" or "llama2-13b".
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources

from ..model_arch import ModelArch
from .arch_loader import arch_from_config

# Suffixes that name a fine-tuned variant of the same architecture (same config.json shape).
_VARIANT_WORDS = ("instruct", "chat", "hf", "base", "it", "pt", "thinking", "fp16", "bf16", "awq", "gptq", "int4",
                  "int8", "4bit", "8bit", "bnb", "v0.1", "0924", "2507", "preview")


def _norm(name: str) -> str:
    """Canonical form for matching: basename, lower case, no separators or variant suffixes."""
    s = name.strip().rstrip("/").lower()
    s = s.split("/")[-1] if "/" in s else s
    s = s.replace("meta-llama-", "llama-")
    tokens = [t for t in re.split(r"[-_ ]+", s) if t]
    while len(tokens) > 1 and tokens[-1] in _VARIANT_WORDS:
        tokens.pop()
    s = "".join(tokens)
    s = s.replace("llamav2", "llama2")
    return s


@lru_cache(maxsize=1)
def _registry() -> dict[str, dict]:
    text = resources.files(__package__).joinpath("registry.json").read_text(encoding="utf-8")
    return json.loads(text)["models"]


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    """normalized name → canonical registry key (the canonical HF id wins over aliases)."""
    idx: dict[str, str] = {}
    for key, entry in _registry().items():
        for alias in entry.get("aliases", []):
            idx.setdefault(_norm(alias), key)
    for key in _registry():
        idx[_norm(key)] = key
    return idx


def registry_names() -> list[str]:
    """Canonical ids of every model in the registry."""
    return list(_registry())


def registry_config(key: str) -> dict:
    """The stored config.json facts for a canonical registry id (KeyError if absent)."""
    return _registry()[key]["config"]


def lookup_key(name_or_path: str) -> str | None:
    """The canonical registry id a name refers to, or None."""
    if not name_or_path or len(name_or_path) > 512:
        return None
    idx = _index()
    n = _norm(name_or_path)
    if n in idx:
        return idx[n]
    # "qwen2.5-7b-instruct-sft-v2": drop trailing tokens until a known name remains (longest match first)
    tokens = [t for t in re.split(r"[-_ ]+", name_or_path.strip().rstrip("/").split("/")[-1].lower()) if t]
    for end in range(len(tokens) - 1, 0, -1):
        cand = _norm("-".join(tokens[:end]))
        if cand in idx:
            return idx[cand]
    return None


@lru_cache(maxsize=256)
def _resolve_cached(key: str) -> ModelArch:
    return arch_from_config(registry_config(key), name=key)


def resolve_model(name_or_path: str) -> ModelArch | None:
    """The ModelArch of a registry model by HF id, local path or loose name; None when unknown."""
    key = lookup_key(name_or_path)
    if key is None:
        return None
    return _resolve_cached(key).model_copy(deep=True)
