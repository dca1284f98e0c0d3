"""Readings of the inputs that several evidence families share: whether a setup fact was observed, the
phases that handle model states, and whether the model is a mixture of experts or has a vision tower."""

from __future__ import annotations

import re

from ..log_cues import LogCues
from ..report import OOMReport
from ..training_setup import TrainingSetup
from .weights import QUOTE_SHORT

# Phases that place, save or step the model states: a large allocation there is a weight or a state, not an activation.
STATE_PHASES = ("optimizer_step", "model_loading", "checkpoint_save", "lora_merge")


def observed(setup: TrainingSetup, field_name: str) -> bool:
    """True when a fact came from the log, the config or the user (not an assumed default)."""
    prov = setup.provenance.get(field_name)
    return prov is not None and prov.origin in ("log", "config", "user", "registry", "derived")


def read_from_run(setup: TrainingSetup, field_name: str) -> bool:
    """True when the config or the log states the fact: the setting the run used. Words name settings as plans and
    alternatives too ("LoRA is supported in SFT, but not in reward model training")."""
    prov = setup.provenance.get(field_name)
    return prov is not None and prov.origin in ("config", "log")


# Model names of vision-language families (HF / vLLM / llama.cpp naming): "-VL", "Vision", LLaVA, InternVL, ...
_VL_NAME = re.compile(r"(?<![a-z])vl(?![a-z])|vision|llava|internvl|minicpm-?v|pixtral|idefics|paligemma|cogvlm|mllama|"
                      r"glm-?4v|molmo|blip|kosmos|fuyu|(?<![a-z])ovis|deepseek-vl|janus|gemma-?3-(?:4|12|27)b", re.IGNORECASE)


# Mixture-of-experts families by name (Mixtral, Qwen-MoE / -A3B, DeepSeek-V2/V3, gpt-oss, DBRX, Jamba, OLMoE, ...).
_MOE_NAME = re.compile(r"(?<![a-z])moe(?![a-z])|mixtral|-a\d{1,2}(?:\.\d)?b(?![a-z])|deepseek-v[23]|gpt-oss|dbrx|jamba|"
                       r"olmoe|arctic|grok-?1|switch-", re.IGNORECASE)


def launched_distributed(report: OOMReport) -> bool:
    """The log shows ranks or a multi-process launcher (torchrun, deepspeed, accelerate)."""
    return bool(report.ranks) or report.launcher in ("torchrun", "deepspeed", "accelerate")


def stand_in_model(setup: TrainingSetup | None) -> bool:
    """The sized model is the registry's stand-in for one it does not list: its shapes are not the user's."""
    prov = setup.provenance.get("model") if setup is not None else None
    return prov is not None and prov.origin == "derived"


def stated_micro_batch(setup: TrainingSetup | None) -> int | None:
    """The micro-batch when the log, config or user stated it: an assumed one is no evidence."""
    return setup.micro_batch if setup is not None and observed(setup, "micro_batch") else None


def moe_reason(report: OOMReport, setup: TrainingSetup | None) -> str | None:
    """Why this run is a mixture-of-experts model (architecture or name), or None."""
    if setup is not None and setup.model is not None:
        return f"{setup.model.num_experts} experts per MoE layer" if setup.model.is_moe else None
    for name in (setup.model_name if setup is not None else None, report.model):
        if name and _MOE_NAME.search(name):
            return f"{name} is a mixture-of-experts model"
    return None


def multimodal_reason(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None) -> str | None:
    """Why this run has a vision encoder in the step (architecture, model name, or the log's inputs), or None."""
    if _has_vision_tower(setup):
        return f"the {setup.model.model_type} model has a vision tower"
    for name in (setup.model_name if setup is not None else None, report.model):
        if name and _VL_NAME.search(name):
            return f"{name} is a vision-language model"
    if cues is not None and cues.vision is not None:
        return f"the run feeds images (line {cues.vision.line}: {cues.vision.text[:QUOTE_SHORT]})"
    return None


def _has_vision_tower(setup: TrainingSetup | None) -> bool:
    """The sized architecture has a vision encoder."""
    return bool(setup is not None and setup.model is not None and setup.model.vision is not None)
