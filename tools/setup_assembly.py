"""Assemble the training setup from every source, keeping where each fact came from.

Order of authority (later wins): framework defaults < the log (what actually ran, as the framework printed it)
< the user's config file < what the user said (--gpu, --gpus, --gpu-memory, a model config.json).
The model architecture comes from the user's config.json or the built-in registry; nothing is guessed
silently: facts that stay at their defaults are recorded with origin "default" and shown as assumptions.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from .configs.keys import MODEL_NAME_KEYS, QUANTIZED_LOAD_FLAGS
from .configs.schema import ConfigDocument
from .described_oom import model_named
from .errors import InputError
from .frameworks import GGUF_DEFAULT_BITS, GGUF_ENGINES, canonical_framework
from .gpus import GPUSpec, gpu_from_memory, lookup_gpu
from .labels import RootCause
from .log_cues import LogCues, serving_engine
from .memory.registry import nearest_model, stated_params
from .model_resolver import apply_resolved_model, checkpoint_quantization, resolve_model_name
from .report import OOMReport
from .root_causes.weights import QUOTE_SHORT
from .training_setup import Provenance, TrainingSetup

# Fields worth telling the user about when they were assumed (the calculator is sensitive to them).
KEY_FIELDS = ("method", "micro_batch", "seq_len", "grad_accum", "num_gpus", "precision", "zero_stage",
              "gradient_checkpointing", "attn_implementation", "optimizer")


class AssemblyRequest(BaseModel):
    """What the user said beside the log and the config (a subset of assistant.diagnosis.DiagnoseRequest)."""

    gpu: str | None = None
    gpu_memory_gib: float | None = None
    num_gpus: int | None = None
    model_config_json: str | None = None
    model_name: str | None = None          # a model the user named: resolved like one the config names
    host_ram_gib: float | None = None
    facts: list[Any] = []                  # StatedFact-like objects (field, value, said): the user's settings, applied last


def assemble_setup(report: OOMReport, doc: ConfigDocument | None = None, request: Any = None) -> TrainingSetup:
    """One TrainingSetup from the parsed log, the user's config and the user's statements, with provenance.

    `request` is any object with the attributes of AssemblyRequest (a DiagnoseRequest works). Raises
    InputError only for an unreadable model config.json the user gave explicitly.
    """
    req = AssemblyRequest.model_validate(request, from_attributes=True) if request is not None else AssemblyRequest()
    setup = TrainingSetup()
    setup = _merge(setup, _from_log(report))
    if doc is not None and doc.readable:   # a config of which nothing could be read adds no framework defaults
        from .configs import apply_config_to_setup

        applied = apply_config_to_setup(doc, TrainingSetup())
        if doc.framework == "vllm":   # an inference engine: its flags size the server (tools/memory/serve.py)
            from .configs.vllm_plan import serving_setup

            applied = serving_setup(doc, applied)
        setup = _merge(setup, applied)
        if setup.model_name is None:
            name = _first_setting(doc.settings, MODEL_NAME_KEYS)
            if name:
                setup = setup.with_fact("model_name", name, "config", _key_of(doc.settings, MODEL_NAME_KEYS))
    setup = _apply_user(setup, req)
    setup = _resolve_gpu(setup, report, req)
    setup = _resolve_model(setup, req, doc.settings if doc is not None else None)
    if setup.model is None and report.model and report.model != setup.model_name:
        setup = _model_named(setup, report.model, "named in the log")
    in_text = model_named(doc.text) if setup.model is None and doc is not None else None
    if in_text and in_text != setup.model_name:
        setup = _model_named(setup, in_text, f"named in {doc.name}")
    if setup.model is None:
        setup = _size_printed(setup, report)
    if setup.model is None and setup.stated_params is None:
        setup = _size_stated(setup, (setup.model_name, report.model, in_text))
    return _mark_defaults(_images_of_a_vision_model(setup))


def _size_printed(setup: TrainingSetup, report: OOMReport) -> TrainingSetup:
    """No model name resolves, but the log prints the model's parameter count (PEFT's "all params", a trainer's
    "Total parameters"): a model of that size stands in (the registry's Llama-architecture model within its size
    tolerance), else the count sizes the weights alone, as a size a name states does."""
    arg = report.training_args.get("all_params")
    total = _coerce(arg.value) if arg is not None else None
    if not isinstance(total, int) or total <= 0:
        return setup
    where = _evidence_line(report, "training_args.all_params") or "the log"
    size = f"{total / 10**9:.3g}B"
    near = nearest_model(size)
    if near is not None:
        return setup.with_fact("model", near[0], "derived", f"the log prints {total:,} parameters ({where}); "
                                                               f"assumed {near[1]}")
    return setup.with_fact("stated_params", total, "log", f"the log prints {total:,} parameters ({where})")


def _size_stated(setup: TrainingSetup, names: tuple[str | None, ...]) -> TrainingSetup:
    """No architecture for the model, but its name states its size ("InternVL2-Llama3-76B", "Qwen3-VL-30B-A3B"):
    the parameter count sizes the weights alone (root_causes.budget), and the checkpoint's name its bytes a weight."""
    for name in names:
        params = stated_params(name)
        if params:
            setup = setup.with_fact("stated_params", params, "derived", f"{name} states {params / 10**9:g}B parameters")
            bits, evidence = checkpoint_quantization(name)
            if bits is not None and "quantization_bit" not in setup.provenance:
                setup = setup.with_fact("quantization_bit", bits, "derived", f"the checkpoint's name: {evidence}")
            return setup
    return setup


# a base model loaded in 4 or 8 bits, as configs and users write it (load_in_8bit, the scripts' load_8bit and
# --load-8bit: keys.QUANTIZED_LOAD_FLAGS) (not an 8-bit optimizer: "8-bit Adam")
_LOAD_FLAG_WORDS = "|".join(re.escape(flag).replace("_", "[_-]") for flag in QUANTIZED_LOAD_FLAGS)
_QUANTIZED_BASE = re.compile(_LOAD_FLAG_WORDS + r"|(?<![\w.])(?:4|8)[- ]?bit(?![\w])(?! ?(?:adam|optim|paged))|\bnf4\b|\bint8\b"
                             r"|\bqlora\b", re.IGNORECASE)
# ...and, for a run that only runs the model, its checkpoint's width said in words ("72B int4"). In a training paste
# these words often name another run or the goal, so training reads only the pattern above. A GPTQ or AWQ checkpoint
# says so in its name (model_resolver.checkpoint_quantization); the bare word is as often the quantizing job's own
# module ("[auto_gptq.quantization.gptq]"), whose model is loaded at 16 bits.
MAX_QUANT_SCAN = 1 << 20   # the width is said near the model's name, in the paste's first MiB
_QUANTIZED_RUN = re.compile(_QUANTIZED_BASE.pattern + r"|\bint4\b", re.IGNORECASE)


def _quantized_bits(match: re.Match[str]) -> int:
    return 8 if "8" in match.group(0) else 4


def adapter_method_named(setup: TrainingSetup, cues: LogCues | None) -> TrainingSetup:
    """The method an adapter named in the log implies (a finetuning_lora.py script, QLoRA, peft frames, LLaMA-Adapter's
    adapter_v2.py), or a base loaded in 4 or 8 bits (load_in_8bit, "8-bit"), when neither the config nor the user said
    one: frozen base weights, so no full fine-tuning states. QLoRA also means 4-bit base weights. Full fine-tuning
    stated in words ("full-parameter", "without any PEFT") is the method too, stated rather than assumed."""
    said = setup.provenance.get("method")
    if cues is None or (said is not None and said.origin != "default"):
        return setup
    if cues.method_contrast is not None:
        # the user's own experiment: adapters worked where full fine-tuning ran out, so the failing run is the full one
        return setup.with_fact("method", "full", "log", f"log line {cues.method_contrast.line}: "
                                                        f"{cues.method_contrast.text[:QUOTE_SHORT]} (adapters worked)")
    if cues.adapters is None and cues.full_tuning is not None:
        return setup.with_fact("method", "full", "log", f"log line {cues.full_tuning.line}: "
                                                        f"{cues.full_tuning.text[:QUOTE_SHORT]}")
    if cues.adapters is None:
        # a base loaded in 4 or 8 bits cannot be trained in full: a quantized training run is an adapter run
        m = _QUANTIZED_BASE.search(cues.quantization.text) if cues.quantization is not None else None
        if m is None:
            return setup
        where = f"log line {cues.quantization.line}: {cues.quantization.text[:QUOTE_SHORT]}"
        bits = _quantized_bits(m)
        setup = setup.with_fact("method", "qlora", "log", f"{where} (a quantized base trains adapters)")
        if setup.quantization_bit is None:
            setup = setup.with_fact("quantization_bit", bits, "log", where)
        return setup
    where = f"log line {cues.adapters.line}: {cues.adapters.text[:QUOTE_SHORT]}"
    if re.search(r"(?<![A-Za-z])qlora(?![A-Za-z])", cues.adapters.text, re.IGNORECASE):
        setup = setup.with_fact("method", "qlora", "log", where)
        if setup.quantization_bit is None:
            setup = setup.with_fact("quantization_bit", 4, "log", f"{where} (QLoRA: 4-bit base weights)")
        return setup
    return setup.with_fact("method", "lora", "log", where)


def quantized_weights(setup: TrainingSetup, text: str) -> TrainingSetup:
    """A run that only runs the model (eval, generation, serving) and loads it in 4 or 8 bits as the paste says
    ("load_in_8bit=True", "72B int4", "4-bit"), with no width stated elsewhere: its weights take that width. (A training
    run's quantized base is read with its method: adapter_method_named.)"""
    said = setup.provenance.get("quantization_bit")
    if setup.workload == "train" or (said is not None and said.origin != "default"):
        return setup
    m = _QUANTIZED_RUN.search(text[:MAX_QUANT_SCAN])
    if m is None:
        return setup
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    line = text[start:end if end >= 0 else len(text)].strip()
    return setup.with_fact("quantization_bit", _quantized_bits(m), "log",
                           f"log line {text.count(chr(10), 0, m.start()) + 1}: {line[:QUOTE_SHORT]}")


def gguf_weights(setup: TrainingSetup, cues: LogCues | None) -> TrainingSetup:
    """A model served by a GGUF engine (ollama, llama.cpp and its apps) with no width stated: its weights are the
    file's quantization, 4-bit by default (frameworks.GGUF_DEFAULT_BITS), not the 16-bit of a Hugging Face load."""
    engine = serving_engine(cues)
    said = setup.provenance.get("quantization_bit")
    if engine not in GGUF_ENGINES or (said is not None and said.origin != "default"):
        return setup
    return setup.with_fact("quantization_bit", GGUF_DEFAULT_BITS, "default",
                           f"{engine} runs GGUF weights, {GGUF_DEFAULT_BITS}-bit (Q4_K_M) unless the file says otherwise")


def workload_named(setup: TrainingSetup, cues: LogCues | None) -> TrainingSetup:
    """A paste with no sign of training anywhere (no train/fine-tune/LoRA/optimizer/epoch words in the log or config,
    no method or workload stated) runs a model: its step is sized as inference (the weights and one forward pass), shown as
    an assumption. Training leaves words in every log (train.py, trainer frames, loss and epoch lines). A method only
    derived (a quantized checkpoint's name read as adapters to train) is not a sign of training: GPTQ/AWQ checkpoints
    are mostly served."""
    if cues is None or cues.training is not None:
        return setup
    for field, inferred in (("workload", ("default",)), ("method", ("default", "derived"))):
        said = setup.provenance.get(field)
        if said is not None and said.origin not in inferred:
            return setup
    return setup.with_fact("workload", "eval", "default", "nothing in the paste speaks of training: sized as inference")


def _images_of_a_vision_model(setup: TrainingSetup) -> TrainingSetup:
    """A vision-language model trains on images: with no count stated, one per sample (shown as an assumption), so
    the vision tower and its visual tokens are sized rather than left out."""
    if setup.model is None or setup.model.vision is None or setup.images_per_sample or setup.video_frames \
            or "images_per_sample" in setup.provenance:
        return setup
    return setup.with_fact("images_per_sample", 1, "default", "one image per sample assumed (a vision-language model)")


def _model_named(setup: TrainingSetup, name: str, where: str) -> TrainingSetup:
    """The config's model is a placeholder or a local folder ("xxx", $MODEL_PATH), or no key the readers know holds
    it, while the log, the user's words or the config's own text name one ("7b bloom", "swift infer --model_type
    qwen2-vl-7b-instruct"): size the named one, saying where it was named."""
    named = resolve_model_name(name)
    if named is None:
        return setup
    was = setup.model_name
    return apply_resolved_model(setup, named, f"{name}, {where}"
                                + (f"; the config's {was!r} is not a model name I know" if was else ""))


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
    fw = canonical_framework(report.framework)
    if fw:
        setup = setup.with_fact("framework", fw, "log", f"framework detected in the log ({report.framework})")
    if report.model and not report.model.lower().endswith((".json", ".bin", ".safetensors")):
        setup = setup.with_fact("model_name", report.model, "log", _evidence_line(report, "model") or "model named in the log")
    if report.versions.get("peft"):
        # the PEFT release decides which MoE modules LoRA's all-linear wraps (memory.params.PEFT_MOE_RETARGETING)
        setup = setup.with_fact("peft_version", report.versions["peft"], "log", "PEFT version printed in the log")
    if report.deepspeed_stage is not None and 0 <= report.deepspeed_stage <= 3:
        setup = setup.with_fact("zero_stage", report.deepspeed_stage, "log", _evidence_line(report, "deepspeed_stage") or "DeepSpeed stage in the log")
    if report.optimizer_offloaded and not setup.offload_optimizer:
        setup = setup.with_fact("offload_optimizer", True, "log", (_evidence_line(report, "optimizer_offloaded") or "log")
                                + ": DeepSpeed's CPU Adam runs the optimizer in host RAM")
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


def _trainable_share(report: OOMReport) -> float | None:
    """Trainable / all parameters, when the log prints both ("trainable params: X || all params: Y", PEFT;
    "Trainable parameters = X of Y", Unsloth)."""
    trainable, total = (_coerce(report.training_args[k].value) if k in report.training_args else None
                        for k in ("trainable_params", "all_params"))
    if not isinstance(trainable, int) or not isinstance(total, int):
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
    """What the user stated outside their files wins over the log and the config."""
    if req.num_gpus is not None:
        if req.num_gpus < 1:
            raise InputError("the number of GPUs must be at least 1")
        setup = setup.with_fact("num_gpus", req.num_gpus, "user", f"--gpus {req.num_gpus}")
    if req.model_name and req.model_name != setup.model_name:
        # the named model replaces whatever the config resolved: the resolver sizes it below
        setup = setup.with_fact("model_name", req.model_name, "user", f"--model {req.model_name}").model_copy(update={"model": None})
        # what the replaced model's name implied (a 4-bit checkpoint, so QLoRA) goes with it
        derived = [f for f in ("quantization_bit", "method") if (p := setup.provenance.get(f)) is not None and p.origin == "derived"]
        if derived:
            setup = setup.model_copy(update={**{f: TrainingSetup.model_fields[f].default for f in derived},
                                             "provenance": {k: v for k, v in setup.provenance.items() if k not in derived}})
    if req.host_ram_gib is not None:
        setup = setup.with_fact("host_ram_bytes", int(req.host_ram_gib * 2**30), "user", f"--host-ram {req.host_ram_gib:g}")
    for fact in req.facts:
        field, value, said = (fact.get(k) for k in ("field", "value", "said")) if isinstance(fact, dict) else \
            (fact.field, fact.value, fact.said)
        if field not in TrainingSetup.model_fields or field in ("model", "provenance"):
            raise InputError(f"{field!r} is not a setting of a training setup")
        try:
            info = TrainingSetup.model_fields[field]
            value = TypeAdapter(Annotated[info.annotation, info]).validate_python(value)
        except ValidationError as exc:
            raise InputError(f"{said or field}: {value!r} is not a valid {field} ({exc.errors()[0]['msg']})") from None
        setup = setup.with_fact(field, value, "user", said or field)
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
    from .memory import load_model_arch

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
    resolved = resolve_model_name(setup.model_name, settings)
    return apply_resolved_model(setup, resolved) if resolved is not None else setup


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
