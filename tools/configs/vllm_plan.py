"""Fix plan for a vLLM server command (`vllm serve` / `python -m vllm.entrypoints...`): weights split over
tensor-parallel GPUs plus a KV cache for at least one max_model_len sequence must fit in
gpu_memory_utilization of each GPU. Changes, least invasive first: spread the model over the visible GPUs
(--tensor-parallel-size), let vLLM use more of each GPU (--gpu-memory-utilization), then cap the context
(--max-model-len, which limits the requests the server accepts)."""

from __future__ import annotations

from typing import Any

from ..config_values import count, truthy
from ..memory.schema import ServingSize
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .schema import ConfigChange, ConfigDocument, Constraints, FixPlan

_MAX_UTILIZATION = 0.95         # above this the CUDA graphs / sampler of vLLM itself run out
_MIN_CONTEXT = 2048
# vLLM --dtype values: float32 keeps 4-byte weights; auto (the checkpoint's 16-bit dtype), bfloat16, float16 keep 2.
_FP32_DTYPES = ("float32", "float")


def _get(settings: dict[str, Any], *names: str) -> tuple[str | None, Any]:
    """A flag by any of its spellings (--max-model-len / --max_model_len / -tp): the key as written and its value."""
    for key, value in settings.items():
        if key.replace("-", "_") in names:
            return key, value
    return None, None


def serving_setup(doc: ConfigDocument, setup: TrainingSetup) -> TrainingSetup:
    """`setup` with the engine's flags (`vllm serve` / `python -m vllm.entrypoints...` flags, or LLM(...) keywords) as
    facts from the config: what tools/memory/serve.py sizes. What the command leaves out stays None (vLLM's default,
    resolved there for the GPU and entry point); the entry point is a default fact (the LLM class and the API server
    have different defaults)."""
    s = doc.settings or {}

    def fact(field: str, value: Any, key: str) -> None:
        nonlocal setup
        setup = setup.with_fact(field, value, "config", f"{doc.name}: {key}")

    entry = "llm" if doc.format == "python" else "server"
    setup = setup.with_fact("serve_entry", entry, "default", "the LLM class" if entry == "llm" else "vLLM's OpenAI API server")
    for field, names, parse in (
            ("tensor_parallel_size", ("tensor_parallel_size", "tp"), count),
            ("max_model_len", ("max_model_len",), count),
            ("max_num_seqs", ("max_num_seqs",), count),
            ("max_num_batched_tokens", ("max_num_batched_tokens",), count),
            ("gpu_memory_utilization", ("gpu_memory_utilization",), _fraction)):
        key, value = _get(s, *names)
        parsed = parse(value) if key is not None else None
        if parsed:
            fact(field, parsed, key)
    key, value = _get(s, "kv_cache_dtype")
    if key is not None and str(value).strip("'\"").lower() not in ("", "none"):
        fact("kv_cache_dtype", str(value).strip("'\"").lower(), key)
    key, value = _get(s, "enforce_eager")
    if key is not None and truthy(value if value is not None else True):
        fact("enforce_eager", True, key)
    key, value = _get(s, "dtype")
    dtype = str(value or "auto").strip("'\"").lower()
    if key is not None:
        fact("precision", "fp32" if dtype in _FP32_DTYPES else "pure_bf16", key)
    else:
        setup = setup.with_fact("precision", "pure_bf16", "default", "vLLM --dtype auto: the checkpoint's 16-bit dtype")
    key, value = _get(s, "quantization", "q")
    from ..memory.serve import QUANTIZATION_BITS

    bits = QUANTIZATION_BITS.get(str(value or "").strip("'\"").lower()) if key is not None else None
    if bits:
        fact("quantization_bit", bits, key)
    return setup


def _fraction(value: Any) -> float | None:
    try:
        v = float(str(value).strip("'\""))
    except (TypeError, ValueError):
        return None
    return v if 0 < v <= 1 else None


def serving_size(setup: TrainingSetup, tp: int, utilization: float, max_len: int, dtype_bytes: int | None = None) -> ServingSize:
    """Weights, profiling peak and KV-cache pool per GPU for one configuration (tools/memory/serve.py does the arithmetic)."""
    from ..memory.serve import serving_size as size

    return size(setup, tensor_parallel=tp, utilization=utilization, max_model_len=max_len, dtype_bytes=dtype_bytes)


def plan_vllm(setup: TrainingSetup, doc: ConfigDocument, constraints: Constraints) -> FixPlan:
    """The least invasive tensor-parallel / utilization / context change that lets vLLM fit its weights and cache."""
    if setup.model is None or setup.gpu is None:
        missing = "the model" if setup.model is None else "the GPU"
        return FixPlan(notes=[f"vLLM sizing needs {missing}: give it (--gpu / the model's config.json) to size the server"])
    from ..memory.serve import resolved

    s = doc.settings
    setup = serving_setup(doc, setup)
    tp_key, _ = _get(s, "tensor_parallel_size", "tp")
    util_key, _ = _get(s, "gpu_memory_utilization")
    len_key, _ = _get(s, "max_model_len")
    tp = setup.tensor_parallel_size
    util, max_len, _, _ = resolved(setup)
    dtype_bytes = None   # the setup's dtype (serving_setup read --dtype)
    visible = constraints.num_gpus or (doc.launcher or {}).get("num_gpus") or setup.num_gpus or 1
    dash = any("-" in k for k in s) or not any("_" in k for k in s)
    spell = (lambda name: name.replace("_", "-")) if dash else (lambda name: name)

    before = serving_size(setup, tp, util, max_len, dtype_bytes)
    notes = [_describe("now", before)]
    if before.fits:
        return FixPlan(fits=True, notes=notes)
    heads = setup.model.num_heads
    tps = [t for t in (1, 2, 4, 8, 16) if tp <= t <= visible and heads % t == 0]   # vLLM: heads divisible by TP
    utils = sorted({util, max(util, _MAX_UTILIZATION)})
    # more GPUs before a higher utilization: a fuller GPU leaves vLLM's own runtime no slack
    chosen = next((serving_size(setup, t, u, max_len, dtype_bytes) for u in utils for t in tps
                   if serving_size(setup, t, u, max_len, dtype_bytes).fits), None)
    if chosen is None and not constraints.keep_seq_len:
        best = serving_size(setup, tps[-1] if tps else tp, utils[-1], max_len, dtype_bytes)
        fitting_len = best.kv_available // best.kv_bytes_per_token if best.kv_bytes_per_token else 0
        fitting_len = fitting_len // 1024 * 1024
        if fitting_len >= _MIN_CONTEXT:
            chosen = serving_size(setup, best.tensor_parallel, best.utilization, min(fitting_len, max_len), dtype_bytes)
    if chosen is None:
        top = serving_size(setup, tps[-1] if tps else tp, utils[-1], _MIN_CONTEXT, dtype_bytes)
        notes.append(f"nothing fits on {visible} x {setup.gpu.name}: even with tensor parallel {top.tensor_parallel} the weights "
                     f"take {format_bytes(top.weights_per_gpu)} per GPU; use more or larger GPUs, or a quantized checkpoint (AWQ/GPTQ)")
        return FixPlan(fits=False, notes=notes)
    changes = []
    if chosen.tensor_parallel != tp:
        changes.append(ConfigChange(
            key=tp_key or spell("tensor_parallel_size"), from_value=tp if tp_key else None, to_value=chosen.tensor_parallel, tier=4,
            bytes_saved=before.weights_per_gpu - chosen.weights_per_gpu,
            rationale=f"split the weights over {chosen.tensor_parallel} of the {visible} visible GPUs "
                      f"({format_bytes(before.weights_per_gpu)} → {format_bytes(chosen.weights_per_gpu)} per GPU)"))
    if chosen.utilization != util:
        changes.append(ConfigChange(
            key=util_key or spell("gpu_memory_utilization"), from_value=util if util_key else None, to_value=chosen.utilization, tier=1,
            bytes_saved=int(setup.gpu.memory_bytes * (chosen.utilization - util)),
            rationale="let vLLM use more of each GPU for the KV cache (nothing else should run on these GPUs)"))
    if chosen.max_model_len != max_len:
        changes.append(ConfigChange(
            key=len_key or spell("max_model_len"), from_value=max_len if len_key else None, to_value=chosen.max_model_len, tier=5,
            changes_results=True, bytes_saved=(max_len - chosen.max_model_len) * chosen.kv_bytes_per_token,
            rationale=f"a KV cache for one {max_len}-token sequence does not fit; requests longer than "
                      f"{chosen.max_model_len} tokens will be rejected"))
    notes.append(_describe("after", chosen))
    return FixPlan(changes=changes, fits=True, notes=notes)


def _describe(when: str, size: ServingSize) -> str:
    return (f"vLLM {when}: tensor parallel {size.tensor_parallel}, weights {format_bytes(size.weights_per_gpu)} per GPU, "
            f"KV cache for one {size.max_model_len}-token sequence {format_bytes(size.kv_needed)}, "
            f"room for it {format_bytes(size.kv_available)} at gpu_memory_utilization {size.utilization:g}")
