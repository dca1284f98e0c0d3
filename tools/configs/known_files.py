"""DeepSpeed config files that trainers publish under well-known names (LLaMA-Factory's examples/deepspeed/
ds_z{0,2,3}[_offload]_config.json, LLaVA's scripts/zero{2,3}[_offload].json, Qwen's finetune/ds_config_zero{2,3}.json).

A config that names one of them without passing it is read with the published content (package data in tools/data/,
copied verbatim at the commits listed in tools/data/deepspeed_files.json), stated as an assumption; a fix that switches
ZeRO stage points at the same family's file for the new stage and gives its content.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

_DATA_PACKAGE = (__package__ or "ask_oom.tools.configs").rsplit(".", 1)[0]   # ask_oom.tools: its data/ folder
_INDEX = "deepspeed_files.json"


@dataclass(frozen=True)
class KnownFile:
    """One published DeepSpeed file: where it comes from and what it sets."""

    family: str     # LLaMA-Factory, LLaVA, Qwen
    name: str       # its base name, e.g. ds_z3_config.json
    path: str       # its path in the source repository
    repo: str
    commit: str
    file: str       # the package data file holding its text

    @property
    def source(self) -> str:
        """A permanent link to the published file."""
        return f"{self.repo}/blob/{self.commit}/{self.path}"

    def text(self) -> str:
        """The published text, verbatim."""
        return _data(self.file)

    def config(self) -> dict[str, Any]:
        return json.loads(self.text())

    def zero(self) -> tuple[int, bool, bool]:
        """(ZeRO stage, optimizer offloaded, parameters offloaded) as the file sets them."""
        zero = self.config().get("zero_optimization") or {}
        offloaded = lambda part: str((zero.get(part) or {}).get("device", "none")).lower() in ("cpu", "nvme")  # noqa: E731
        return int(zero.get("stage", 0)), offloaded("offload_optimizer"), offloaded("offload_param")

    def describe(self) -> str:
        stage, opt, param = self.zero()
        offload = " with optimizer and parameters on the CPU" if opt and param else " with the optimizer on the CPU" if opt else ""
        return f"{self.family}'s published {self.path} (ZeRO-{stage}{offload}; {self.source})"


def _data(name: str) -> str:
    return resources.files(_DATA_PACKAGE).joinpath("data", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def catalogue() -> tuple[KnownFile, ...]:
    """Every published file ask-oom knows, from the index in tools/data/."""
    entries = json.loads(_data(_INDEX))["files"]
    return tuple(KnownFile(**{k: e[k] for k in ("family", "name", "path", "repo", "commit", "file")}) for e in entries)


def known_file(ref: str) -> KnownFile | None:
    """The published file a config's reference names ("examples/deepspeed/ds_z3_config.json", "./scripts/zero2.json"),
    by its base name; None for any other name."""
    base = posixpath.basename(ref.strip().strip("'\"").replace("\\", "/")).lower()
    return next((f for f in catalogue() if f.name.lower() == base), None)


def sibling(like: KnownFile, stage: int, offload_optimizer: bool, offload_param: bool) -> KnownFile | None:
    """The file of the same family that sets this stage and offload (None when the family publishes none)."""
    return next((f for f in catalogue() if f.family == like.family and f.zero() == (stage, offload_optimizer, offload_param)),
                None)
