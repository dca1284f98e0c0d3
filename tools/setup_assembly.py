"""Assemble the training setup from every source, keeping where each fact came from.

Order of authority (later wins): framework defaults < the log (what actually ran, as the framework printed it)
< the user's config file < what the user said (--gpu, --gpus, --gpu-memory, a model config.json).
The model architecture comes from the user's config.json or the built-in registry; nothing is guessed
silently: facts that stay at their defaults are recorded with origin "default" and shown as assumptions.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from .configs.schema import ConfigDocument
from .errors import InputError
from .gpus import GPUSpec, gpu_from_memory, lookup_gpu
from .labels import RootCause
from .report import OOMReport
from .training_setup import Provenance, TrainingSetup

# Fields worth telling the user about when they were assumed (the calculator is sensitive to them).
KEY_FIELDS = ("method", "micro_batch", "seq_len", "grad_accum", "num_gpus", "precision", "zero_stage",
              "gradient_checkpointing", "attn_implementation", "optimizer")

_FRAMEWORKS = {
    "llamafactory": "llamafactory", "llama_factory": "llamafactory", "llama-factory": "llamafactory",
    "hf_trainer": "hf_trainer", "transformers": "hf_trainer", "trl": "trl", "deepspeed": "deepspeed_script",
    "deepspeed_script": "deepspeed_script", "llava": "deepspeed_script", "moe-llava": "deepspeed_script",
    "axolotl": "axolotl", "unsloth": "unsloth", "torchtune": "torchtune", "swift": "swift", "ms-swift": "swift",
    "vllm": "vllm",
}

# Config / log keys that name the model, in the order frameworks use them.
_MODEL_KEYS = ("model_name_or_path", "model_id_or_path", "base_model", "model_path", "model_type", "model", "pretrained_model_name_or_path")


class AssemblyRequest(BaseModel):
    """What the user said beside the log and the config (a subset of assistant.diagnosis.DiagnoseRequest)."""

    gpu: str | None = None
    gpu_memory_gib: float | None = None
    num_gpus: int | None = None
    model_config_json: str | None = None


def assemble_setup(report: OOMReport, doc: ConfigDocument | None = None, request: Any = None) -> TrainingSetup:
    """One TrainingSetup from the parsed log, the user's config and the user's statements, with provenance.

    `request` is any object with the attributes of AssemblyRequest (a DiagnoseRequest works). Raises
    InputError only for an unreadable model config.json the user gave explicitly.
    """
    req = AssemblyRequest.model_validate(request, from_attributes=True) if request is not None else AssemblyRequest()
    setup = TrainingSetup()
    setup = _merge(setup, _from_log(report))
    if doc is not None:
        from .configs import apply_config_to_setup

        setup = _merge(setup, apply_config_to_setup(doc, TrainingSetup()))
        if setup.model_name is None:
            name = _first_setting(doc.settings, _MODEL_KEYS)
            if name:
                setup = setup.with_fact("model_name", name, "config", _key_of(doc.settings, _MODEL_KEYS))
    setup = _apply_user(setup, req)
    setup = _resolve_gpu(setup, report, req)
    setup = _resolve_model(setup, req, doc.settings if doc is not None else None)
    if setup.model is None and report.model and report.model != setup.model_name:
        setup = _model_the_log_names(setup, req, report)
    return _mark_defaults(_images_of_a_vision_model(setup))


def _images_of_a_vision_model(setup: TrainingSetup) -> TrainingSetup:
    """A vision-language model trains on images: with no count stated, one per sample (shown as an assumption), so
    the vision tower and its visual tokens are sized rather than left out."""
    if setup.model is None or setup.model.vision is None or setup.images_per_sample or setup.video_frames \
            or "images_per_sample" in setup.provenance:
        return setup
    return setup.with_fact("images_per_sample", 1, "default", "one image per sample assumed (a vision-language model)")


def _model_the_log_names(setup: TrainingSetup, req: AssemblyRequest, report: OOMReport) -> TrainingSetup:
    """The config's model is a placeholder or a local folder ("xxx", $MODEL_PATH) while the log or the user's words
    name one ("7b bloom"): size the named one, saying why."""
    named = _resolve_model(setup.model_copy(update={"model_name": report.model}), req)
    if named.model is None:
        return setup
    was = setup.model_name
    out = setup.with_fact("model", named.model, named.provenance["model"].origin,
                          f"{report.model}, named in the log" + (f"; the config's {was!r} is not a model name I know" if was else ""))
    return _quantized_checkpoint(out)


# ---------------------------------------------------------------------------------------------------
# The log


def eager_attention_from_ranking(setup: TrainingSetup, causes: list[RootCause]) -> TrainingSetup | None:
    """When the ranking found eager attention from the log's own evidence (a request equal to the score matrix,
    a flash-attn warning) but the setup only assumed sdpa, record eager as a derived fact so the calculator sizes it."""
    prov = setup.provenance.get("attn_implementation")
    if setup.attn_implementation == "eager" or (prov is not None and prov.origin not in ("default",)):
        return None
    top = [c for c in causes[:2] if c.label == "eager_attention"]
    if not top or top[0].score < 0.6:
        return None
    reason = "; ".join(top[0].why[:2])
    return setup.with_fact("attn_implementation", "eager", "derived", f"from the log: {reason}"[:300])


def _from_log(report: OOMReport) -> TrainingSetup:
    """Facts the log states: the framework's printed training arguments, model, DeepSpeed stage, ranks."""
    base = TrainingSetup()
    args = {k: _coerce(v.value) for k, v in report.training_args.items()}
    lines = {k: v.line for k, v in report.training_args.items()}
    setup = base
    if args:
        from .configs import apply_config_to_setup

        fmt = "llamafactory_yaml" if report.framework == "llamafactory" else "hf_json"
        pseudo = ConfigDocument(name="log", format=fmt, text="", settings=args)
        try:
            applied = apply_config_to_setup(pseudo, base)
        except InputError:
            applied = base
        prov = {}
        for field, p in applied.provenance.items():
            if p.origin == "config":
                key = p.detail.split(":")[-1].strip() if p.detail else ""
                where = f"log line {lines[key]}: {key}" if key in lines else f"log: {p.detail}"
                prov[field] = Provenance(origin="log", detail=where)
        # Framework defaults stay defaults; only the printed facts are log facts.
        setup = applied.model_copy(update={"provenance": {**{f: p for f, p in applied.provenance.items() if p.origin != "config"}, **prov}})
    fw = _FRAMEWORKS.get((report.framework or "").lower())
    if fw:
        setup = setup.with_fact("framework", fw, "log", f"framework detected in the log ({report.framework})")
    if report.model and not report.model.lower().endswith((".json", ".bin", ".safetensors")):
        setup = setup.with_fact("model_name", report.model, "log", _evidence_line(report, "model") or "model named in the log")
    if report.deepspeed_stage is not None and 0 <= report.deepspeed_stage <= 3:
        setup = setup.with_fact("zero_stage", report.deepspeed_stage, "log", _evidence_line(report, "deepspeed_stage") or "DeepSpeed stage in the log")
    share = _trainable_share(report)
    method_prov = setup.provenance.get("method")
    if share is not None and (method_prov is None or method_prov.origin == "default"):
        # PEFT's print_trainable_parameters: an adapter trains a few percent of the weights, full fine-tuning all of them.
        method = "lora" if share < 0.10 else "full"
        setup = setup.with_fact("method", method, "log", f"{share:.2%} of the parameters are trainable "
                                                         f"({_evidence_line(report, 'training_args.trainable_params') or 'log'})")
    attn = report.attn_implementation
    if attn in ("eager", "sdpa", "flash_attention_2"):
        # The kernel the run really used (a printed argument or a fallback warning) decides the score-matrix memory.
        setup = setup.with_fact("attn_implementation", attn, "log", _evidence_line(report, "attn_implementation") or "log")
    if report.host_ram_total_bytes:
        setup = setup.with_fact("host_ram_bytes", report.host_ram_total_bytes, "log",
                                _evidence_line(report, "host_ram_total_bytes") or "host RAM printed in the log")
    world = _world_size(report)
    stated = setup.provenance.get("num_gpus")
    if world and (stated is None or stated.origin == "default"):
        setup = setup.with_fact("num_gpus", world, "log", "ranks / world size printed in the log")
    return setup


_ALL_PARAMS = re.compile(r"all params:\s{0,3}([\d,]{1,20})")


def _trainable_share(report: OOMReport) -> float | None:
    """Trainable / all parameters from "trainable params: X || all params: Y" (PEFT), when the log prints both."""
    arg = report.training_args.get("trainable_params")
    ev = next((e for e in report.evidence if e.fact == "training_args.trainable_params"), None)
    if arg is None or ev is None:
        return None
    m = _ALL_PARAMS.search(ev.text)
    try:
        trainable, total = int(str(arg.value).replace(",", "")), int(m.group(1).replace(",", "")) if m else 0
    except ValueError:
        return None
    return trainable / total if total > 0 and 0 < trainable <= total else None


def _world_size(report: OOMReport) -> int | None:
    if report.gpu_count:
        return report.gpu_count
    for key in ("world_size", "num_processes", "nproc_per_node", "n_gpu"):
        if key in report.training_args:
            v = _coerce(report.training_args[key].value)
            if isinstance(v, int) and v > 1:
                return v
    if report.ranks and max(report.ranks) >= 1:
        return max(report.ranks) + 1
    return None


def _evidence_line(report: OOMReport, fact: str) -> str | None:
    for ev in report.evidence:
        if ev.fact == fact:
            return f"log line {ev.line}"
    return None


def _coerce(text: str) -> Any:
    """A printed argument as a Python value: 'True' → True, '8' → 8, '1e-05' → 1e-05, else the text."""
    t = text.strip().strip("'\"")
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


# ---------------------------------------------------------------------------------------------------
# Merging and the user's statements


def _merge(base: TrainingSetup, new: TrainingSetup) -> TrainingSetup:
    """Facts of `new` override `base`; `new`'s defaults only fill fields `base` has no fact for."""
    update: dict[str, Any] = {}
    prov = dict(base.provenance)
    for field, p in new.provenance.items():
        have = prov.get(field)
        if p.origin == "default" and have is not None and have.origin != "default":
            continue
        update[field] = getattr(new, field)
        prov[field] = p
    if new.model is not None and base.model is None:
        update["model"] = new.model
    update["provenance"] = prov
    return base.model_copy(update=update)


def _apply_user(setup: TrainingSetup, req: AssemblyRequest) -> TrainingSetup:
    if req.num_gpus is not None:
        if req.num_gpus < 1:
            raise InputError("the number of GPUs must be at least 1")
        setup = setup.with_fact("num_gpus", req.num_gpus, "user", f"--gpus {req.num_gpus}")
    return setup


def _resolve_gpu(setup: TrainingSetup, report: OOMReport, req: AssemblyRequest) -> TrainingSetup:
    """The GPU: what the user said wins, then the OOM message's capacity (with a name from the log), else unknown."""
    if req.gpu or req.gpu_memory_gib:
        spec = lookup_gpu(req.gpu or "GPU", req.gpu_memory_gib) if req.gpu else GPUSpec(
            name=f"GPU ({req.gpu_memory_gib:g} GiB)", memory_bytes=int(req.gpu_memory_gib * 2**30))
        if spec is not None:
            said = " ".join(x for x in (f"--gpu {req.gpu}" if req.gpu else "", f"--gpu-memory {req.gpu_memory_gib:g}" if req.gpu_memory_gib else "") if x)
            return setup.with_fact("gpu", spec, "user", said)
    name = _log_gpu_name(report)
    if report.gpu_total_bytes:
        spec = gpu_from_memory(report.gpu_total_bytes, name)
        return setup.with_fact("gpu", spec, "log", _evidence_line(report, "gpu_total_bytes") or "total capacity in the OOM message")
    if name:
        mem = next((g.memory_bytes for g in report.gpus if g.name == name and g.memory_bytes), None)
        spec = lookup_gpu(name)
        if spec is not None:
            return setup.with_fact("gpu", spec, "log", f"GPU named in the log: {name}")
        if mem:
            return setup.with_fact("gpu", gpu_from_memory(mem, name), "log", f"GPU in the log: {name}")
    return setup


def _log_gpu_name(report: OOMReport) -> str | None:
    idx = report.gpu_index
    named = [g for g in report.gpus if g.name]
    for g in named:
        if idx is not None and g.index == idx:
            return g.name
    return named[0].name if named else None


def _resolve_model(setup: TrainingSetup, req: AssemblyRequest, settings: dict[str, Any] | None = None) -> TrainingSetup:
    from .memory import load_model_arch, resolve_model

    settings = settings or {}

    if req.model_config_json:
        try:
            data = json.loads(req.model_config_json)
        except json.JSONDecodeError as exc:
            raise InputError(f"the model config is not valid JSON ({exc.msg} at line {exc.lineno}): pass the model's config.json") from None
        if not isinstance(data, dict):
            raise InputError("the model config must be a JSON object: pass the model's config.json")
        arch = load_model_arch(data)
        return setup.with_fact("model", arch, "user", "config.json given by the user")
    if setup.model is not None:
        return setup
    for name in _name_candidates(setup.model_name, settings):
        try:
            arch = resolve_model(name)
        except InputError:
            arch = None
        if arch is not None:
            via = "" if name == setup.model_name else f" (read as {name})"
            setup = setup.with_fact("model", arch, "registry", f"built-in registry entry for {setup.model_name}{via}")
            return _quantized_checkpoint(setup)
    if setup.model_name:
        # not listed: the nearest registry model of the family and size the name states, shown as an assumption
        from .memory.registry import nearest_model

        near = nearest_model(setup.model_name)   # reads the last part of a path itself
        if near is not None:
            setup = setup.with_fact("model", near[0], "derived", f"assumed {near[1]} (the registry does not list "
                                                                 f"{setup.model_name})")
            return _quantized_checkpoint(setup)
    return setup


# Pre-quantized checkpoints say so in their names (Qwen's -GPTQ-Int4/-Int8 and -AWQ, unsloth's -bnb-4bit, TheBloke's -GPTQ).
_QUANT_NAME = re.compile(r"[-_]?(?:gptq|awq)[-_]?int(4|8)|[-_](?:bnb[-_])?(4|8)[-_]?bit\b|int(4|8)\b|[-_](gptq|awq)\b", re.IGNORECASE)


def _quantized_checkpoint(setup: TrainingSetup) -> TrainingSetup:
    """A 4/8-bit checkpoint named as such: its weights take a quarter/half of 16-bit, and it trains only adapters."""
    m = _QUANT_NAME.search(setup.model_name or "")
    if m is None or "quantization_bit" in setup.provenance:
        return setup
    bits = int(next((g for g in m.groups()[:3] if g), "4"))
    setup = setup.with_fact("quantization_bit", bits, "derived", f"the checkpoint's name: {m.group(0).strip('-_')}")
    prov = setup.provenance.get("method")
    if prov is None or prov.origin == "default":
        setup = setup.with_fact("method", "qlora", "derived", "a quantized checkpoint trains only adapters (QLoRA-style)")
    return setup


def _name_candidates(name: str | None, settings: dict[str, Any]) -> list[str]:
    """Names to look up: as written, its last path part, and for LLaVA-style MoE scripts the MoE-LLaVA variant.

    MoE-LLaVA's own train.py picks the architecture by a substring of model_name_or_path ('phi' in the name →
    MoELLaVAPhiForCausalLM) when moe_enable is set, so a local checkpoint folder resolves the same way here.
    """
    if not name:
        return []
    out = [name]
    base = name.rstrip("/").rsplit("/", 1)[-1]
    if base and base != name:
        out.append(base)
    vision = any(settings.get(k) for k in ("image_tower", "vision_tower", "mm_vision_tower"))
    if vision and str(settings.get("moe_enable", "")).lower() == "true":
        low = base.lower()
        for family, alias in (("phi", "MoE-LLaVA-Phi2"), ("qwen", "MoE-LLaVA-Qwen"), ("stablelm", "MoE-LLaVA-StableLM"),
                              ("minicpm", "MoE-LLaVA-MiniCPM")):
            if family in low:
                out.append(alias)
                break
    return out


def _mark_defaults(setup: TrainingSetup) -> TrainingSetup:
    """Key facts nobody stated are assumptions: record them as defaults so they are shown as such."""
    prov = dict(setup.provenance)
    for field in KEY_FIELDS:
        if field not in prov:
            prov[field] = Provenance(origin="default", detail=f"assumed {getattr(setup, field)!s} ({setup.framework} default)")
    return setup.model_copy(update={"provenance": prov})


def _first_setting(settings: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    key = _key_of(settings, keys)
    value = settings.get(key) if key else None
    return str(value).strip("'\"") if value not in (None, "") else None


def _key_of(settings: dict[str, Any], keys: tuple[str, ...]) -> str:
    return next((k for k in keys if settings.get(k) not in (None, "")), "")
