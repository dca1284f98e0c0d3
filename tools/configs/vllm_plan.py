"""Fix plan for a vLLM server command (`vllm serve` / `python -m vllm.entrypoints...`): weights split over
tensor-parallel GPUs plus a KV cache for at least one max_model_len sequence must fit in
gpu_memory_utilization of each GPU. Changes, least invasive first: spread the model over the visible GPUs
(--tensor-parallel-size), let vLLM use more of each GPU (--gpu-memory-utilization), then cap the context
(--max-model-len, which limits the requests the server accepts)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..gpus import CUDA_CONTEXT_BYTES
from ..training_setup import TrainingSetup
from ..units import GiB, format_bytes
from .schema import ConfigChange, ConfigDocument, Constraints, FixPlan

_DEFAULT_UTILIZATION = 0.9      # vLLM EngineArgs.gpu_memory_utilization default
_MAX_UTILIZATION = 0.95         # above this the CUDA graphs / sampler of vLLM itself run out
_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "auto": 2}
# vLLM's profiling run and CUDA graphs hold activations beside weights and cache (its docs: "leave a few GiB");
# 1 GiB per GPU is the lower end of what it reports for 7B-70B models.
_RUNTIME_OVERHEAD = 1 * GiB
_MIN_CONTEXT = 2048


class ServingSize(BaseModel):
    """Per-GPU memory of one vLLM configuration."""

    tensor_parallel: int
    utilization: float
    max_model_len: int
    weights_per_gpu: int
    kv_bytes_per_token: int
    kv_needed: int
    kv_available: int

    @property
    def fits(self) -> bool:
        return self.kv_available >= self.kv_needed


def _get(settings: dict[str, Any], *names: str) -> tuple[str | None, Any]:
    """A flag by any of its spellings (--max-model-len / --max_model_len / -tp): the key as written and its value."""
    for key, value in settings.items():
        if key.replace("-", "_") in names:
            return key, value
    return None, None


def serving_size(setup: TrainingSetup, tp: int, utilization: float, max_len: int, dtype_bytes: int) -> ServingSize:
    """Weights and KV cache per GPU for one configuration."""
    from ..memory import count_params

    arch = setup.model
    # weights: every parameter once, split evenly over the tensor-parallel ranks (Megatron-style sharding in vLLM)
    weights = count_params(arch).total * dtype_bytes // tp
    # KV cache per token: K and V for each layer and KV head (vLLM docs, "Memory" / PagedAttention paper §4.1);
    # KV heads are split over ranks (replicated when there are fewer heads than ranks)
    kv_heads = max(1, arch.num_kv_heads // tp) if arch.num_kv_heads >= tp else 1
    kv_per_token = 2 * arch.num_layers * kv_heads * arch.head_dim * dtype_bytes
    budget = int(setup.gpu.memory_bytes * utilization)
    available = budget - weights - CUDA_CONTEXT_BYTES - _RUNTIME_OVERHEAD
    return ServingSize(tensor_parallel=tp, utilization=utilization, max_model_len=max_len, weights_per_gpu=weights,
                       kv_bytes_per_token=kv_per_token, kv_needed=kv_per_token * max_len, kv_available=max(available, 0))


def plan_vllm(setup: TrainingSetup, doc: ConfigDocument, constraints: Constraints) -> FixPlan:
    """The least invasive tensor-parallel / utilization / context change that lets vLLM fit its weights and cache."""
    if setup.model is None or setup.gpu is None:
        missing = "the model" if setup.model is None else "the GPU"
        return FixPlan(notes=[f"vLLM sizing needs {missing}: give it (--gpu / the model's config.json) to size the server"])
    s = doc.settings
    tp_key, tp = _get(s, "tensor_parallel_size", "tp")
    util_key, util = _get(s, "gpu_memory_utilization")
    len_key, max_len = _get(s, "max_model_len")
    _, dtype = _get(s, "dtype")
    tp, util = int(tp or 1), float(util or _DEFAULT_UTILIZATION)
    max_len = int(max_len or setup.model.max_position_embeddings or setup.seq_len or 4096)
    dtype_bytes = _DTYPE_BYTES.get(str(dtype or "auto").lower(), 2)
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
