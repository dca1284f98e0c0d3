"""One resolver for model names, whichever source names them (a log, a config, the user's words): the registry's
architecture, how the name was read, and the quantization a pre-quantized checkpoint's name implies.

The config mapping and the setup assembly both call `resolve_model_name` and `apply_resolved_model`, so one name
gives one architecture and one quantization wherever it was written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .config_values import count, truthy
from .memory.registry import nearest_model, resolve_model
from .model_arch import ModelArch
from .training_setup import TrainingSetup

ReadAs = Literal["exact", "path_basename", "ms_swift", "llava", "moe_llava", "stand_in", "base_hint"]

# Settings that name a LLaVA-family script's vision tower.
TOWER_KEYS = ("image_tower", "vision_tower", "mm_vision_tower")
# Vision towers LLaVA-family scripts name with --image_tower/--vision_tower → a registry model using the same tower.
_TOWER_DONORS = {
    "clip-vit-large-patch14-336": "llava-hf/llava-1.5-7b-hf",
}
# MoE-LLaVA's train.py picks its architecture by a substring of model_name_or_path when moe_enable is set.
_MOE_LLAVA = (("phi", "MoE-LLaVA-Phi2"), ("qwen", "MoE-LLaVA-Qwen"), ("stablelm", "MoE-LLaVA-StableLM"),
              ("minicpm", "MoE-LLaVA-MiniCPM"))
# Keys whose value names the base model when model_name_or_path is an opaque local name ("/models/OneKE"):
# an adapter or checkpoint directory is usually named after the model it was trained on.
_BASE_HINT_KEYS = ("checkpoint_dir", "adapter_name_or_path", "adapters", "peft_model_id", "lora_weights",
                   "resume_lora_training", "model_name")
# Pre-quantized checkpoints say so in their names (Qwen's -GPTQ-Int4/-Int8 and -AWQ, unsloth's -bnb-4bit, TheBloke's
# -GPTQ, the -FP8 releases of Qwen3, GLM-4.5 and DeepSeek: one byte a weight).
_QUANT_NAME = re.compile(r"[-_]?(?:gptq|awq)[-_]?int(4|8)|[-_](?:bnb[-_])?(4|8)[-_]?bit\b|int(4|8)\b|[-_](gptq|awq)\b"
                         r"|[-_]fp(8)\b", re.IGNORECASE)
# ...and in the other schemes' spellings, read to the nearer of the calculator's two widths: ExLlamaV2's bits per
# weight ("_4.65bpw", "-6.0bpw-h6-exl2"), llm-compressor's weight/activation bits ("-W4A16", "-w8a8"), GGUF's and
# Ollama's k-quants ("Q4_K_M", "-q5_1", "Q8_0"), MXFP4 (gpt-oss) and NF4.
_QUANT_SCHEME = re.compile(r"(?<![\d.])(\d(?:\.\d{1,2})?)[-_ ]?bpw|(?<![a-z])w(4|8)a(?:8|16)\b|(?<![a-z])i?q([2-8])_(?:k|[01]|xx?s|m)\w{0,3}"
                           r"|\b(?:mx)?fp(4)\b|(?<![a-z])nf(4)\b", re.IGNORECASE)
WIDEST_4BIT_SCHEME = 6   # up to 6 bits a weight reads as the 4-bit width (the nearer one), above as 8-bit


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved: the architecture to size, how the name was read, and the bits its checkpoint holds."""

    arch: ModelArch
    read_as: ReadAs
    detail: str                      # the provenance detail: what was looked up, and why
    quant_bits: int | None = None    # 4 or 8 when the checkpoint's name says it is pre-quantized
    quant_evidence: str = ""         # the part of the name that says so

    @property
    def origin(self) -> Literal["registry", "derived"]:
        """'derived' for a stand-in (shown as an assumption), 'registry' for a model the registry lists."""
        return "derived" if self.read_as in ("stand_in", "base_hint") else "registry"


def resolve_model_name(name: str | None, settings: Mapping[str, Any] | None = None) -> ResolvedModel | None:
    """The architecture a model name means, or None.

    Read in this order: the registry by the name (or a local path's last part), ms-swift's model_type spelling
    (qwen2_5-7b-instruct), a LLaVA checkpoint as its LM plus the tower `settings` name, MoE-LLaVA's family pick, then
    a stand-in of the family and size the name states, else the base model an adapter/checkpoint setting names.
    `settings` (the config's flat keys) supply the tower, MoE-LLaVA upcycling (moe_enable, num_experts) and hints.
    """
    name = (name or "").strip()
    if not name:
        return None
    s = settings or {}
    bits, evidence = checkpoint_quantization(name)
    listed = _listed(name, s)
    if listed is not None:
        arch, read_as, why = listed
        return ResolvedModel(_moe_upcycling(arch, s), read_as, f"built-in registry entry for {name}{why}", bits, evidence)
    near = nearest_model(name)
    if near is not None:
        return ResolvedModel(near[0], "stand_in", f"assumed {near[1]} (the registry does not list {name})", bits, evidence)
    if _is_local_path(name):
        # a run's output under a folder named for its base model: LLaMA-Factory saves to saves/<model>/<method>/<run>,
        # ms-swift to output/<model>/<version>/checkpoint-N; the nearest such folder names what was fine-tuned
        for part in reversed([p for p in re.split(r"[/\\]", name) if p][:-1]):
            hinted = _listed(part, s)
            if hinted is not None:
                arch = hinted[0]
                return ResolvedModel(arch, "base_hint", f"assumed {arch.name}, the base model the folder {part} of "
                                                        f"{name} names (the registry does not list the checkpoint)",
                                     bits, evidence)
    for key in _BASE_HINT_KEYS:
        value = s.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        for part in reversed([p for p in re.split(r"[/\\]", value) if p]):
            hinted = _listed(part, s)
            if hinted is not None:
                arch = hinted[0]
                return ResolvedModel(arch, "base_hint", f"assumed {arch.name}, the base model {key} names "
                                                        f"(the registry does not list {name})", bits, evidence)
    return None


def checkpoint_quantization(name: str | None) -> tuple[int | None, str]:
    """(4 or 8, the telling part) when a checkpoint's name says it is pre-quantized, else (None, '')."""
    m = _QUANT_NAME.search(name or "")
    if m is not None:
        return int(next((m.group(i) for i in (1, 2, 3, 5) if m.group(i)), "4")), m.group(0).strip("-_")
    m = _QUANT_SCHEME.search(name or "")
    if m is None:
        return None, ""
    bits = float(next(g for g in m.groups() if g))
    return (4 if bits <= WIDEST_4BIT_SCHEME else 8), m.group(0).strip("-_ ")


def apply_resolved_model(setup: TrainingSetup, resolved: ResolvedModel, detail: str | None = None) -> TrainingSetup:
    """`setup` with the resolved architecture (origin registry or derived) and its checkpoint's quantization."""
    return apply_checkpoint_quantization(setup.with_fact("model", resolved.arch, resolved.origin, detail or resolved.detail),
                                         resolved)


def apply_checkpoint_quantization(setup: TrainingSetup, resolved: ResolvedModel | None) -> TrainingSetup:
    """A 4/8-bit checkpoint named as such: its weights take a quarter/half of 16-bit, and it trains only adapters.
    Stated facts win: a quantization the config sets stays, and so does a method it states."""
    if resolved is None or resolved.quant_bits is None or "quantization_bit" in setup.provenance:
        return setup
    setup = setup.with_fact("quantization_bit", resolved.quant_bits, "derived", f"the checkpoint's name: {resolved.quant_evidence}")
    prov = setup.provenance.get("method")
    if prov is None or prov.origin == "default":
        setup = setup.with_fact("method", "qlora", "derived", "a quantized checkpoint trains only adapters (QLoRA-style)")
    return setup


def _lookup(name: str) -> ModelArch | None:
    try:
        return resolve_model(name)
    except Exception:  # noqa: BLE001 - an unknown or malformed name is simply unresolved
        return None


def _base(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def _is_local_path(name: str) -> bool:
    """A folder rather than a hub id ('org/name'): absolute, relative, home-based, deeper, or with a trailing slash."""
    bare = name.rstrip("/")
    return bare != name or bare.startswith(("/", ".", "~")) or bare.count("/") > 1


def _listed(name: str, s: Mapping[str, Any]) -> tuple[ModelArch, ReadAs, str] | None:
    """(architecture, how it was read, ' (read as …)') for a name the registry lists in one of its spellings."""
    arch = _lookup(name)
    if arch is not None:
        return (arch, "path_basename", f" (read as {_base(name)})") if _is_local_path(name) else (arch, "exact", "")
    if re.search(r"\d_\d", name):
        dotted = re.sub(r"(?<=\d)_(?=\d)", ".", name)   # ms-swift model_type spelling: qwen2_5-7b-instruct
        arch = _lookup(dotted)
        if arch is not None:
            return arch, "ms_swift", f" (read as {dotted}, ms-swift's spelling)"
    arch = _llava(name, s)
    if arch is not None:
        return arch, "llava", f" (read as {arch.name})"
    alias = _moe_llava_alias(name, s)
    arch = _lookup(alias) if alias else None
    if arch is not None:
        return arch, "moe_llava", f" (read as {alias}, as MoE-LLaVA's train.py picks it)"
    return None


def _llava(name: str, s: Mapping[str, Any]) -> ModelArch | None:
    """LLaVA-family checkpoints are named after their LM ("llavaphi-2.7b-finetune", "llava-v1.5-13b"): the LM is
    looked up without the llava prefix and the tower the settings name is attached."""
    base = _base(name).lower()
    if not base.startswith("llava"):
        return None
    lm_name = re.sub(r"^llava[-_]?(?:v?\d(?:\.\d)?[-_])?", "", base)
    lm_name = re.sub(r"phi[-_]?2(?:\.7b)?|phi[-_]2\.7b", "phi-2", lm_name)   # Phi-2 is the 2.7B Phi
    lm_name = re.sub(r"^(\d+(?:\.\d+)?b)", r"vicuna-\1", lm_name)          # llava-v1.5-7b: a Vicuna/Llama-2 LM
    arch = _lookup(lm_name) or _lookup(lm_name.replace("vicuna", "llama-2"))
    if arch is None:
        return None
    tower = next((str(s[k]) for k in TOWER_KEYS if s.get(k)), "")
    donor_id = next((d for t, d in _TOWER_DONORS.items() if t in tower), None)
    donor = _lookup(donor_id) if donor_id else None
    if donor is not None and donor.vision is not None and arch.vision is None:
        vision = donor.vision.model_copy(update={"projector_hidden": arch.hidden_size})
        arch = arch.model_copy(update={"vision": vision, "name": f"{arch.name or arch.model_type} + {tower.rsplit('/', 1)[-1]}"})
    return arch


def _moe_llava_alias(name: str, s: Mapping[str, Any]) -> str | None:
    """The MoE-LLaVA registry entry a vision script with moe_enable builds from a checkpoint folder ('phi' → Phi2)."""
    if not any(s.get(k) for k in TOWER_KEYS) or str(s.get("moe_enable", "")).lower() != "true":
        return None
    low = _base(name).lower()
    return next((alias for family, alias in _MOE_LLAVA if family in low), None)


def _moe_upcycling(arch: ModelArch, s: Mapping[str, Any]) -> ModelArch:
    """MoE-LLaVA-style scripts turn a dense LM's MLPs into experts (--moe_enable --num_experts N)."""
    if not truthy(s.get("moe_enable", False)) or arch.num_experts:
        return arch
    n = count(s.get("num_experts"))
    if isinstance(s.get("num_experts"), list):
        n = count(s["num_experts"][0])
    k = count(s.get("top_k_experts")) or 2
    if not n or n < 2 or n > 1024:   # beyond any real MoE: a typo, not a model to size
        return arch
    k = min(k, n)
    mode = str(s.get("moe_mode", "sparse")).lower()
    L = arch.num_layers
    # MoE-LLaVA moe_mode: sparse = every other layer from 0, dense = all, first_half / second_half
    layers = {"dense": list(range(L)), "first_half": list(range(L // 2)),
              "second_half": list(range(L // 2, L))}.get(mode, list(range(0, L, 2)))
    return arch.model_copy(update={
        "num_experts": n, "num_experts_per_tok": k, "moe_intermediate_size": arch.intermediate_size,
        "extra": {**arch.extra, "moe_layers_idx": layers},
        "name": f"{arch.name or arch.model_type} + MoE x{n} (top-{k}, {mode})",
    })
