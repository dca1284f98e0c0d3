"""What-ifs ("what if cutoff_len is 2048?", "use QLoRA"): written into the user's config when it can carry
them, so the agent re-plans from it; otherwise evaluated by the calculator on the diagnosed setup."""

from __future__ import annotations

from typing import Any


from ..tools.configs.keys import FIELD_KEYS
from ..tools.configs.schema import ConfigChange
from ..tools.errors import InputError
from ..tools.training_setup import ADAPTER_METHODS
from ..tools.units import format_bytes
from .diagnosis import DiagnoseRequest, Diagnosis, StatedFact
from .intent_what_if import setup_field
from .message_parts import is_deepspeed_config
from .session import SessionState
from .texts import tr


def what_if_values(state: SessionState) -> list[str]:
    """The session's what-ifs as `key=value` words, the method switch included."""
    return [f"{k}={v}" for k, v in state.overrides.items()] + ([f"method={state.method}"] if state.method else [])


def agent_request(state: SessionState) -> tuple[DiagnoseRequest, list[str]]:
    """The agent's input from the state: the main config with what-ifs and the method applied.
    Sets `state.unapplied`: the what-ifs the config could not carry (the calculator answers those)."""
    req = state.request.model_copy(deep=True)
    notes: list[str] = []
    main = state.main_config if state.main_config in state.configs else None
    extras = {n: t for n, t in state.configs.items() if n != main}
    text = state.configs.get(main) if main else None
    state.unapplied = list(state.overrides) + (["method"] if state.method else [])
    if text is not None and (state.overrides or state.method):
        text, extras, notes, state.unapplied = _apply_overrides(state, main, text, extras)
    req.config_text = text
    req.config_name = main
    req.extra_configs = extras
    return req, notes


def _apply_overrides(state: SessionState, name: str, text: str, extras: dict[str, str]):
    """Edit the user's config with the what-if values and method (so the agent re-plans from them)."""
    from ..tools.configs import apply_changes, load_config

    doc = load_config(text, name, extra_files=extras or None)
    changes: list[ConfigChange] = []
    notes: list[str] = []
    unapplied: list[str] = []
    for key, value in state.overrides.items():
        change = _offload_changes(doc, value) if setup_field(key) == "offload" else _override_change(doc, key, value)
        if change is None:
            if setup_field(key) is None:
                notes.append(f"`{key}` is not in your config and the calculator does not model it: it does not change the estimate")
            else:
                notes.append(f"`{key}` is not a setting your config can carry; the what-if is estimated with the calculator only")
            unapplied.append(key)
            continue
        changes.extend(change if isinstance(change, list) else [change])
    if state.method:
        method_changes = _method_changes(doc.format, doc.settings, state.method)
        if method_changes is None:
            notes.append(f"your config format ({doc.format}) has no method key; {state.method} is estimated with the calculator only")
            unapplied.append("method")
        else:
            changes.extend(method_changes)
    if not changes:
        return text, extras, notes, unapplied
    new_text, new_ds = apply_changes(doc, changes)
    if new_ds is not None:
        ds_name = next((n for n, t in extras.items() if is_deepspeed_config(n, t)), None)
        if ds_name:
            extras = {**extras, ds_name: new_ds}
    return new_text, extras, notes, unapplied


def calculator_what_if(state: SessionState, margin: float) -> dict[str, Any] | None:
    """What-ifs the config could not carry (no config, unknown key, no method key) go straight to the
    calculator on the diagnosed setup: peak and fit with the new values."""
    d = state.diagnosis
    if d is None or d.setup.model is None or not (state.overrides or state.method):
        return None
    setup = d.setup
    values: dict[str, Any] = {}
    for key, value in state.overrides.items():
        field = setup_field(key)
        if key in state.unapplied and field == "offload" and value in OFFLOAD_FIELDS:
            values.update(offload_fields(value, setup.zero_stage))
            continue
        if key not in state.unapplied or field is None or field not in type(setup).model_fields:
            continue
        values[field] = _setup_value(field, value)
    if state.method and "method" in state.unapplied and setup.method != state.method:
        values["method"] = state.method
        values["quantization_bit"] = 4 if state.method == "qlora" else None
    if not values:
        return None
    from .agent import diagnose

    request, _ = agent_request(state)
    facts = [StatedFact(field=f, value=v, said="what-if in the conversation") for f, v in values.items()]
    try:
        est = diagnose(request.model_copy(update={"facts": [*request.facts, *facts], "margin": margin, "retrieve": False,
                                                  "plan": False})).estimate
    except InputError as exc:
        return {"error": f"cannot evaluate {values}: {exc}"}
    if est is None:
        return {"error": f"cannot evaluate {values}: the calculator could not size the setup"}
    return {"values": values, "estimate": est.model_dump(), "before_peak_bytes": d.estimate.peak_bytes if d.estimate else None}


def _config_key(settings: dict[str, Any], key: str) -> str | None:
    """The key the user's config uses for what the user called `key` (cutoff_len ↔ max_seq_length)."""
    if key in settings:
        return key
    field = setup_field(key)
    for candidate in FIELD_KEYS.get(field or "", ()):
        if candidate in settings:
            return candidate
    return None


# Keys a format takes for a setup field when the user's file does not have them yet (LLaMA-Factory and HF names).
_FORMAT_KEYS: dict[str, dict[str, str]] = {
    "llamafactory_yaml": {"seq_len": "cutoff_len", "micro_batch": "per_device_train_batch_size",
                          "eval_batch": "per_device_eval_batch_size", "grad_accum": "gradient_accumulation_steps",
                          "lora_rank": "lora_rank", "quantization_bit": "quantization_bit", "image_max_pixels": "image_max_pixels",
                          "video_frames": "video_maxlen", "optimizer": "optim", "attn_implementation": "flash_attn"},
    "hf_json": {"micro_batch": "per_device_train_batch_size", "eval_batch": "per_device_eval_batch_size",
                "grad_accum": "gradient_accumulation_steps", "gradient_checkpointing": "gradient_checkpointing", "optimizer": "optim"},
    "shell": {"micro_batch": "per_device_train_batch_size", "eval_batch": "per_device_eval_batch_size",
              "grad_accum": "gradient_accumulation_steps", "gradient_checkpointing": "gradient_checkpointing"},
}


def _override_change(doc, key: str, value: Any) -> ConfigChange | None:
    """The config edit for one what-if: the key the file uses, else the format's own key for that setting
    (LLaMA-Factory turns checkpointing off with `disable_gradient_checkpointing`); ZeRO stage goes to the DeepSpeed JSON."""
    why = "what-if asked in the conversation"
    real = _config_key(doc.settings, key)
    field = setup_field(key)
    if real is None and field == "gradient_checkpointing" and doc.format == "llamafactory_yaml" and isinstance(value, bool):
        return ConfigChange(key="disable_gradient_checkpointing", from_value=doc.settings.get("disable_gradient_checkpointing"),
                            to_value=not value, rationale=why)
    if real is None and field == "zero_stage":
        if doc.deepspeed is None or not isinstance(value, int) or not 0 <= value <= 3:
            return None
        stage = (doc.deepspeed.get("zero_optimization") or {}).get("stage")
        return ConfigChange(key="zero_optimization.stage", from_value=stage, to_value=value, rationale=why, target="deepspeed")
    if real is None and field is not None:
        real = _FORMAT_KEYS.get(doc.format, {}).get(field)
    if real is None:
        return None
    return ConfigChange(key=real, from_value=doc.settings.get(real), to_value=value, rationale=why)


# The offload what-if's values ("optimizer", "all", "none") → the setup's offload facts (DeepSpeed ZeRO-Offload).
OFFLOAD_FIELDS = {"none": (False, False), "optimizer": (True, False), "all": (True, True)}


def offload_fields(value: str, zero_stage: int) -> dict[str, Any]:
    """The setup facts of an offload what-if: optimizer offload needs ZeRO-2 or 3, parameter offload ZeRO-3
    (DeepSpeed's ZeRO-Offload / ZeRO-Infinity), so the stage rises to what the offload needs."""
    opt, param = OFFLOAD_FIELDS[value]
    out: dict[str, Any] = {"offload_optimizer": opt, "offload_param": param}
    need = 3 if param else 2 if opt else 0
    if zero_stage < need:
        out["zero_stage"] = need
    return out


def _offload_changes(doc, value: Any) -> list[ConfigChange] | None:
    """The DeepSpeed JSON edits of an offload what-if: the devices of offload_optimizer / offload_param, and the ZeRO
    stage the offload needs (None without a DeepSpeed config to edit: the calculator answers alone)."""
    if doc.deepspeed is None or value not in OFFLOAD_FIELDS:
        return None
    zero = doc.deepspeed.get("zero_optimization") or {}
    stage = zero.get("stage") if isinstance(zero.get("stage"), int) else 0
    facts = offload_fields(value, stage)
    why = "what-if asked in the conversation"
    changes = []
    for name, on in (("offload_optimizer", facts["offload_optimizer"]), ("offload_param", facts["offload_param"])):
        current = (zero.get(name) or {}).get("device") if isinstance(zero.get(name), dict) else None
        wanted = "cpu" if on else "none"
        if current != wanted and (on or current not in (None, "none")):
            changes.append(ConfigChange(key=f"zero_optimization.{name}.device", from_value=current, to_value=wanted,
                                        rationale=why, target="deepspeed"))
    if "zero_stage" in facts:
        changes.append(ConfigChange(key="zero_optimization.stage", from_value=zero.get("stage"), to_value=facts["zero_stage"],
                                    rationale=why, target="deepspeed"))
    return changes


def _method_changes(fmt: str, settings: dict[str, Any], method: str) -> list[ConfigChange] | None:
    """Config edits that switch the fine-tuning method, in the framework's own keys (LLaMA-Factory here)."""
    if "finetuning_type" not in settings and fmt != "llamafactory_yaml":
        return None
    why = f"switch to {method} as asked in the conversation"
    ft = "lora" if method in ADAPTER_METHODS else method
    changes = [ConfigChange(key="finetuning_type", from_value=settings.get("finetuning_type"), to_value=ft,
                            rationale=why, tier=6, changes_results=True)]
    if method == "qlora" and settings.get("quantization_bit") != 4:
        changes.append(ConfigChange(key="quantization_bit", from_value=settings.get("quantization_bit"), to_value=4,
                                    rationale=why, tier=6, changes_results=True))
    elif method != "qlora" and settings.get("quantization_bit") is not None:
        changes.append(ConfigChange(key="quantization_bit", from_value=settings.get("quantization_bit"), to_value=None,
                                    rationale=why, tier=6, changes_results=True))
    return changes


def _setup_value(field: str, value: Any) -> Any:
    if field == "attn_implementation" and isinstance(value, (bool, str)):
        v = str(value).lower()
        return "flash_attention_2" if v in ("fa2", "true", "flash_attention_2", "flash", "auto") else "eager" if v in ("false", "disabled", "eager") else "sdpa"
    if field == "quantization_bit" and value is True:
        return 4
    return value


def what_if_markdown(what_if: dict, language: str = "en") -> str:
    """A calculator what-if (from `calculator_what_if`) in one or two lines: peak, fit, largest batch / sequence,
    in the conversation's `language`."""
    if "error" in what_if:
        return tr(language, "wi_not_evaluated", error=what_if["error"])
    est = what_if["estimate"]
    vals = ", ".join(f"{k}={v}" for k, v in what_if["values"].items())
    line = tr(language, "wi_head", values=vals, peak=format_bytes(est["peak_bytes"]))
    if what_if.get("before_peak_bytes"):
        line += tr(language, "delta_was", peak=format_bytes(what_if["before_peak_bytes"]))
    if est.get("budget_bytes"):
        line += tr(language, "wi_against", budget=format_bytes(est["budget_bytes"]), gpu=est.get("gpu_name") or tr(language, "the_gpu"))
        line += " — " + verdict_text(language, est.get("fits"), est.get("verdict")) + tr(language, "end")
    else:
        line += tr(language, "wi_gpu_unknown")
    extra = []
    if est.get("max_micro_batch"):
        extra.append(tr(language, "wi_max_batch", n=est["max_micro_batch"]))
    if est.get("max_seq_len"):
        extra.append(tr(language, "wi_max_seq", n=est["max_seq_len"]))
    return line + ("\n" + "; ".join(extra) + tr(language, "end") if extra else "")


def verdict_text(language: str, fits: bool | None, verdict: str | None) -> str:
    """'fits' / 'borderline' / 'does not fit' (bold), in `language`."""
    return tr(language, "fits" if fits else "borderline" if verdict == "borderline" else "does_not_fit")


def what_if_from_config(state: SessionState, d: Diagnosis) -> str:
    """The what-if was written into the config and re-planned: its numbers are the new diagnosis' 'before'."""
    lang = state.language
    vals = ", ".join(what_if_values(state))
    est = d.estimate
    line = tr(lang, "wi_head", values=vals, peak=format_bytes(est.peak_bytes))
    if est.budget_bytes:
        line += (tr(lang, "wi_against_config", budget=format_bytes(est.budget_bytes)) + " — "
                 + verdict_text(lang, est.fits, est.verdict) + tr(lang, "wi_as_is") + tr(lang, "end"))
    if d.fixes and not est.fits:
        line += tr(lang, "wi_plan_fits") if d.fits_after else tr(lang, "wi_plan_closest")
    return line
