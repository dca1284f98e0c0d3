"""Package versions as logs print them: `transformers-cli env` / `llamafactory-cli env` blocks
("- `transformers` version: 4.41.2", "- PyTorch version (GPU?): 2.1.0+cu121"), pip pins and `pip list` rows,
"DeepSpeed info: version=0.12.3", and prose ("torch 2.1.0")."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..frameworks import PACKAGES

# package name as printed → the key its version is kept under; the training frameworks' own come from tools/frameworks.py
KNOWN_PACKAGES = {
    "torch": "torch", "pytorch": "torch", "transformers": "transformers", "deepspeed": "deepspeed",
    "accelerate": "accelerate", "peft": "peft", "bitsandbytes": "bitsandbytes",
    "flash-attn": "flash_attn", "flash_attn": "flash_attn", "datasets": "datasets", "vllm": "vllm",
    "python": "python", "cuda": "cuda", "xformers": "xformers", "jax": "jax", "jaxlib": "jaxlib", "tensorflow": "tensorflow",
    "liger-kernel": "liger_kernel", "liger_kernel": "liger_kernel", "nvidia-cublas-cu12": "nvidia-cublas-cu12",
    "nccl": "nccl",
    **PACKAGES,
}
_VER = r"v?(\d{1,4}(?:\.\d{1,6}){0,3}(?:[\w.+-]{0,30}))"
_ENV_VERSION = re.compile(
    r"^[-*]?\s{0,4}`?([A-Za-z][\w.-]{0,30})`?\s{1,3}version(?:\s{0,2}\([^)]{0,30}\))?\s{0,2}:\s{0,4}" + _VER)
_PIN = re.compile(r"(?:^|[\s'\"(])([A-Za-z][\w.-]{1,30})\s{0,2}==\s{0,2}" + _VER)
_PIP_LIST = re.compile(r"^([A-Za-z][\w.-]{1,40})\s{2,40}" + _VER + r"\s*$")
_DS_INFO = re.compile(r"DeepSpeed info: version=([\w.+-]{1,40})")
_PROSE_VERSION = re.compile(
    r"\b(torch|pytorch|transformers|deepspeed|accelerate|peft|trl|bitsandbytes|flash[-_]attn|vllm|cuda|python)"
    r"\s{0,2}(?:version\s{0,2})?[:=]?\s{0,2}v?(\d{1,3}\.\d{1,4}(?:\.\d{1,6})?(?:[\w.+-]{0,20}))", re.IGNORECASE)
VERSION_WORDS = frozenset(w.encode() for w in (
    "version", "torch", "pytorch", "transformers", "deepspeed", "accelerate", "peft", "bitsandbytes", "flash",
    "flash_attn", "vllm", "cuda", "python", "python3", "jax", "jaxlib", "tensorflow",
    "liger", "liger_kernel", "nccl", "datasets", "xformers",
    *(max(name.split("-"), key=len) for name in PACKAGES)))   # a framework package's telling word: ms-swift → swift


def may_name_versions(low: str, tokens: set[bytes]) -> bool:
    """Could this line state a package version? (a dotted number beside a known package word, or a pin)"""
    return "." in low and ("==" in low or not VERSION_WORDS.isdisjoint(tokens))


def find_versions(line: str, low: str) -> Iterator[tuple[str, str]]:
    """(package, version) pairs one line states; package names normalised (pytorch → torch, flash-attn → flash_attn)."""
    for name, version in _candidates(line, low):
        key = KNOWN_PACKAGES.get(name.lower().strip("`"))
        version = version.rstrip(".,;)")
        if key and version[:1].isdigit():
            yield key, version


def _candidates(line: str, low: str) -> Iterator[tuple[str, str]]:
    if "deepspeed info" in low:
        m = _DS_INFO.search(line)
        if m:
            yield "deepspeed", m.group(1)
    if "version" in low:
        m = _ENV_VERSION.search(line)
        if m:
            yield m.group(1), m.group(2)
            return
    if "==" in line:
        pins = [(m.group(1), m.group(2)) for m in _PIN.finditer(line[:2000])]
        if pins:
            yield from pins
            return
    if "  " in line:
        m = _PIP_LIST.match(line)
        if m:
            yield m.group(1), m.group(2)
            return
    for m in _PROSE_VERSION.finditer(line[:2000]):
        yield m.group(1), m.group(2)
