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
                  "int8", "4bit", "8bit", "bnb", "fp8", "v0.1", "0924", "2507", "preview")


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
    # "qwen2.5-7b-instruct-sft-v2": drop trailing tokens until a known name remains (longest match first); a name that
    # states its size keeps it: "BLOOMZ-1.7B" is not the 176B "bloomz", whose own name states no size
    base = name_or_path.strip().rstrip("/").split("/")[-1].lower()
    stated = _stated_billions(base)
    tokens = [t for t in re.split(r"[-_ ]+", base) if t]
    for end in range(len(tokens) - 1, 0, -1):
        cand = _norm("-".join(tokens[:end]))
        if cand in idx and (stated is None or _same_size(stated, _entry_billions(idx[cand]))):
            return idx[cand]
    return None


def _stated_billions(base: str) -> float | None:
    """The size a name states, in billions: "7b" → 7, "774m" → 0.774 (millions only when no billions are stated)."""
    size = _size_b(base)
    if size is not None:
        return size
    m = _SIZE_MILLIONS.search(base.lower())
    return float(m.group(1)) / 1000 if m else None


@lru_cache(maxsize=256)
def _entry_billions(key: str) -> float:
    """A registry model's size in billions: the one its id states, else its parameter count ("gpt2-large": 0.77)."""
    from .params import count_params

    return _size_b(key.split("/")[-1]) or count_params(_resolve_cached(key)).total / 10**9


def _same_size(stated: float, size: float | None) -> bool:
    """A registry entry of `size` billions stands for a name that states `stated` (within the nearest-match tolerance)."""
    return size is not None and abs(size - stated) <= _SIZE_TOLERANCE * stated


@lru_cache(maxsize=256)
def _resolve_cached(key: str) -> ModelArch:
    return arch_from_config(registry_config(key), name=key)


def resolve_model(name_or_path: str) -> ModelArch | None:
    """The ModelArch of a registry model by HF id, local path or loose name; None when unknown."""
    key = lookup_key(name_or_path)
    if key is None:
        return None
    return _resolve_cached(key).model_copy(deep=True)


# ---------------------------------------------------------------------------------------------------
# Nearest match: a model the registry does not list, read from the family and size its name states

# the size in billions, also glued to the family word ("baichuan13b", "qwen7b"), not a version ("v1.5b") or an
# expert count ("8x7b")
_SIZE = re.compile(r"(?<![\dx.v])(\d+(?:\.\d+)?)b(?![a-z\d])")
_SIZE_MILLIONS = re.compile(r"(?<![\dx.v])(\d+(?:\.\d+)?)m(?![a-z\d])")   # "bloom-560m", "CosyVoice-300M"
_MOE_NAME = re.compile(r"\d+x\d+(?:\.\d+)?b|(?<![a-z])a\d+(?:\.\d+)?b|moe")
_MULTIMODAL_TYPES = ("vl", "llava", "gemma3", "kimi", "moe")   # model_type parts of entries that are not plain LMs
# Families released in one size, so their bare name states it: THUDM's ChatGLM-6B, ChatGLM2-6B and ChatGLM3-6B
# (6.2B parameters each, by their model cards; GLM-4 and later came in several sizes and are not listed)
ONE_SIZE_FAMILIES = {"chatglm": 6.2, "chatglm2": 6.2, "chatglm3": 6.2}
# Families whose checkpoints name a size word, not a count ("openai/whisper-medium", "roberta-large", "flan-t5-xxl"):
# billions of parameters by size word, from each family's paper or model card. They size the weights alone
# (stated_params) of encoders, encoder-decoders and speech models the calculator has no layer table for.
NAMED_SIZES: dict[str, dict[str, float]] = {
    "t5": {"small": 0.06, "base": 0.22, "large": 0.77},                      # Raffel et al. 2020, Table 14
    "flan-t5": {"small": 0.077, "base": 0.248, "large": 0.783, "xl": 2.85, "xxl": 11.3},   # T5 v1.1 model cards
    "mt5": {"small": 0.3, "base": 0.58, "large": 1.2, "xl": 3.7, "xxl": 13.0},             # Xue et al. 2021, Table 2
    "mt0": {"small": 0.3, "base": 0.58, "large": 1.2, "xl": 3.7, "xxl": 13.0},             # BLOOMZ's mT5 fine-tunes
    # Radford et al. 2022, Table 1 (large-v2 and -v3 are the same size); large-v3-turbo by its model card
    "whisper": {"tiny": 0.039, "base": 0.074, "small": 0.244, "medium": 0.769, "large": 1.55, "turbo": 0.809},
    "bert": {"base": 0.11, "large": 0.34},                                    # Devlin et al. 2019
    "roberta": {"base": 0.125, "large": 0.355},                               # Liu et al. 2019
    "xlm-roberta": {"base": 0.27, "large": 0.55},                             # Conneau et al. 2020
    "deberta-v3": {"xsmall": 0.07, "small": 0.141, "base": 0.184, "large": 0.435},   # model cards (backbone + embedding)
    "bart": {"base": 0.14, "large": 0.4},                                     # Lewis et al. 2020
    "electra": {"small": 0.014, "base": 0.11, "large": 0.335},                # Clark et al. 2020
    "wav2vec2": {"base": 0.095, "large": 0.317},                              # Baevski et al. 2020
    "hubert": {"base": 0.095, "large": 0.317, "xlarge": 0.964},               # Hsu et al. 2021
    "bge": {"small": 0.033, "base": 0.109, "large": 0.335, "m3": 0.568},      # BAAI model cards
}
# a size word that outranks the others in one name: Whisper's large-v3-turbo is the turbo model
_NAMED_SIZE_FIRST = ("turbo",)
_SIZE_TOLERANCE = 0.25   # a neighbour within ±25% of the stated size has a comparable memory footprint


def _size_b(text: str) -> float | None:
    m = _SIZE.search(text.lower())
    return float(m.group(1)) if m else None


def stated_params(name_or_path: str | None) -> int | None:
    """The parameter count a model's name states ("InternVL2-Llama3-76B" → 76e9, "Qwen3-VL-30B-A3B" → 30e9: the total,
    not the active count; "gpt2-large-774M" → 774e6 when no size in billions is stated), or None. A size is what sizes
    the weights of a model whose architecture no entry gives; an expert count ("8x7b") states no total and is not read."""
    if not name_or_path or len(name_or_path) > 512:
        return None
    base = name_or_path.strip().rstrip("/").split("/")[-1]
    size = _stated_billions(base) or named_size(base)
    return int(round(size * 10**9)) if size else None


def named_size(name: str) -> float | None:
    """The size in billions a family's size word states (NAMED_SIZES): "whisper-large-v3" → 1.55, "xlm-roberta-large"
    → 0.55, "chinese-roberta-wwm-ext-large" → 0.355; None when no listed family is followed by one of its size words."""
    tokens = [t for t in re.split(r"[-_ ]+", name.lower()) if t]
    for start in range(len(tokens)):
        for family in sorted(NAMED_SIZES, key=len, reverse=True):
            width = family.count("-") + 1
            if "-".join(tokens[start:start + width]) != family:
                continue
            sizes = NAMED_SIZES[family]
            rest = tokens[start + width:]
            for word in [*(w for w in _NAMED_SIZE_FIRST if w in rest), *rest]:
                if word in sizes:
                    return sizes[word]
            return None
    return None


def _family(key: str) -> str:
    """The leading word of a registry id's basename: 'Qwen/Qwen2.5-7B' → 'qwen', 'codellama/CodeLlama-7b-hf' → 'codellama'."""
    m = re.match(r"[a-z]+", key.split("/")[-1].lower())
    return m.group(0) if m else ""


def _dense_text_entries() -> list[tuple[str, str, float]]:
    """(key, family, size in billions) of the registry's dense text-only models."""
    out = []
    for key, entry in _registry().items():
        mt = str(entry["config"].get("model_type", ""))
        size = _size_b(key.split("/")[-1])
        if size is None or any(p in mt for p in _MULTIMODAL_TYPES) or _MOE_NAME.search(key.lower()):
            continue
        out.append((key, _family(key), size))
    return out


def nearest_model(name_or_path: str) -> tuple[ModelArch, str] | None:
    """A stand-in for a model the registry does not list, from the family and size its name states, with why.

    "openbuddy-mistral-7b-chat" → Mistral-7B; "Qwen1.5-32B-Chat" → the registry's Qwen 32B; a family the registry
    lacks at that size ("baichuan-7b") → the Llama-architecture model of that size (most dense decoders follow it).
    Exact names go through resolve_model first; MoE and multimodal names are not guessed (their memory differs).
    """
    if not name_or_path or len(name_or_path) > 512 or resolve_model(name_or_path) is not None:
        return None
    base = name_or_path.strip().rstrip("/").split("/")[-1].lower()
    stated = _size_b(base)
    size = stated or ONE_SIZE_FAMILIES.get(base)
    if size is None or _MOE_NAME.search(base) or re.search(r"vl|vision|llava", base):
        return None
    entries = _dense_text_entries()
    families = sorted({f for _, f, _ in entries if f and re.search(rf"(?<![a-z]){f}", base)}, key=len, reverse=True)

    def closest(pool: list[tuple[str, str, float]]) -> str | None:
        near = [e for e in pool if _same_size(size, e[2])]
        return min(near, key=lambda e: abs(e[2] - size))[0] if near else None

    if families:
        key = closest([e for e in entries if e[1] == families[0]])
        if key is not None:
            return _resolve_cached(key).model_copy(deep=True), f"{key}, the registry's nearest {families[0]} model to {size:g}B"
    key = closest([e for e in entries if registry_config(e[0]).get("model_type") == "llama"])
    if key is None:
        return None
    said = "" if stated else f", the one size {base} was released in"
    return _resolve_cached(key).model_copy(deep=True), f"{key}, a Llama-architecture model of the same size ({size:g}B{said})"
