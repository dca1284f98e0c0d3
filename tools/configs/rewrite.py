"""apply_changes: write planned changes back into the user's own file (and its DeepSpeed JSON),
editing values in place; unified_diff: the before/after as a patch."""

from __future__ import annotations

import difflib
import json
from typing import Any

from ..errors import InputError
from .json_doc import set_json_values
from .keys import written_path
from .python_doc import set_python_values
from .schema import ConfigChange, ConfigDocument
from .shell import set_flags
from .yaml_doc import set_yaml_values

# Where a new LLaMA-Factory key goes: after the first of these keys present in the file (its section).
_LF_INSERT_AFTER: dict[str, tuple[str, ...]] = {
    "gradient_accumulation_steps": ("per_device_train_batch_size",),
    "per_device_train_batch_size": ("gradient_accumulation_steps",),
    "per_device_eval_batch_size": ("per_device_train_batch_size",),
    "eval_accumulation_steps": ("per_device_eval_batch_size", "gradient_accumulation_steps"),
    "freeze_vision_tower": ("finetuning_type",),
    "freeze_multi_modal_projector": ("freeze_vision_tower", "finetuning_type"),
    "flash_attn": ("video_max_pixels", "image_max_pixels", "trust_remote_code", "model_name_or_path"),
    "enable_liger_kernel": ("flash_attn", "video_max_pixels", "image_max_pixels", "trust_remote_code", "model_name_or_path"),
    "disable_gradient_checkpointing": ("flash_attn", "trust_remote_code", "model_name_or_path"),
    "image_max_pixels": ("trust_remote_code", "model_name_or_path"),
    "quantization_bit": ("lora_target", "lora_rank", "finetuning_type"),
    "quantization_method": ("quantization_bit",),
    "lora_rank": ("finetuning_type",),
    "lora_target": ("lora_rank", "finetuning_type"),
    "deepspeed": ("lora_target", "finetuning_type"),
    "pure_bf16": ("bf16",),
    "bf16": ("lr_scheduler_type", "learning_rate"),
    "gradient_checkpointing": ("gradient_accumulation_steps",),
    "cutoff_len": ("template", "dataset"),
}


def deepspeed_template(stage: int, offload_optimizer: bool = False, offload_param: bool = False) -> str:
    """A new DeepSpeed JSON in the shape LLaMA-Factory's examples/deepspeed files use ("auto" values
    let the HF Trainer fill batch sizes and precision from its own arguments)."""
    zero: dict[str, Any] = {"stage": stage}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload_param and stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    zero.update({"overlap_comm": False, "contiguous_gradients": True, "reduce_bucket_size": "auto"})
    if stage == 3:
        zero.update({"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                     "stage3_gather_16bit_weights_on_model_save": True})
    body = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "fp16": {"enabled": "auto"},
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
    }
    return json.dumps(body, indent=2) + "\n"


def _split_path(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


def apply_changes(doc: ConfigDocument, changes: list[ConfigChange]) -> tuple[str, str | None]:
    """The config text with the changes applied in place, and the new DeepSpeed text (None when
    the DeepSpeed file does not change). Actions (env, install) are not file edits and are skipped."""
    if doc.format == "partial":
        raise InputError(f"{doc.name} was read only in part, so the changes are listed, not written into it: "
                         "apply them to your config by hand (or paste it whole)")
    config_updates: dict[str, Any] = {}
    ds_updates: dict[tuple[str, ...], Any] = {}
    new_ds_text: str | None = None
    for ch in changes:
        if ch.key is None or ch.target in ("env", "install"):
            continue
        if ch.target == "deepspeed":
            if ch.key == "__file__":      # a whole new DeepSpeed file
                new_ds_text = str(ch.to_value)
                continue
            ds_updates[_split_path(ch.key)] = ch.to_value
        else:
            config_updates[written_path(doc, ch.key)] = ch.to_value   # in its section, if it has one

    text = doc.text
    if config_updates:
        text = _apply_to_config(doc, text, config_updates)

    if ds_updates:
        if doc.format == "deepspeed_json":
            text = set_json_values(text, ds_updates, doc.name)
        elif doc.deepspeed_inline:
            text = _apply_to_config(doc, text, {"deepspeed." + ".".join(p): v for p, v in ds_updates.items()})
        elif new_ds_text is not None:
            new_ds_text = set_json_values(new_ds_text, ds_updates, "deepspeed.json")
        elif doc.deepspeed_text is not None:
            new_ds_text = set_json_values(doc.deepspeed_text, ds_updates, doc.deepspeed_name or "deepspeed.json")
        else:
            raise InputError(
                f"{doc.name}: the DeepSpeed file {doc.deepspeed_name!r} was not given, so it cannot be edited; pass it with --config"
            )
    return text, new_ds_text


def _apply_to_config(doc: ConfigDocument, text: str, updates: dict[str, Any]) -> str:
    if doc.format == "shell":
        return set_flags(text, updates, doc.name)
    if doc.format == "python":
        return set_python_values(text, updates, doc.name)
    if doc.format in ("hf_json", "json", "deepspeed_json"):
        return set_json_values(text, {_split_path(k): v for k, v in updates.items()}, doc.name)
    insert_after = _LF_INSERT_AFTER if doc.format in ("llamafactory_yaml", "yaml") else {}
    return set_yaml_values(text, {_split_path(k): v for k, v in updates.items()}, doc.name, insert_after)


def unified_diff(old: str, new: str, name: str) -> str:
    """A unified diff of one file (a/name → b/name); empty when nothing changed."""
    if old == new:
        return ""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile=f"a/{name}", tofile=f"b/{name}"
    )
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
