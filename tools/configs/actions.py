"""Fixes that are not a smaller memory budget: versions, the allocator, other processes, host RAM,
generation caches. Each diagnosed cause of that kind becomes an action with its reason."""

from __future__ import annotations

from ..labels import RootCause
from ..training_setup import TrainingSetup
from .schema import ConfigChange


def actions_for_causes(causes: list[RootCause], setup: TrainingSetup) -> list[ConfigChange]:
    """Causes whose fix is not a smaller memory budget: versions, allocator, other processes, host RAM."""
    out: list[ConfigChange] = []
    labels = [c.label for c in causes]
    if "fragmentation" in labels:
        out.append(ConfigChange(action="export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True", target="env", tier=1,
                                rationale="'reserved but unallocated' memory is fragmentation; expandable segments let the allocator grow blocks instead of splitting them"))
    if "other_process" in labels:
        out.append(ConfigChange(action="free the GPU: stop the other processes nvidia-smi lists on it, or pick idle GPUs with CUDA_VISIBLE_DEVICES",
                                target="env", tier=1, rationale="memory held by another process is not available to this run"))
    if "quantization_setup" in labels:
        out.append(ConfigChange(action="pass quantization only through quantization_config=BitsAndBytesConfig(...) (not load_in_4bit/load_in_8bit kwargs as well), with matching transformers/bitsandbytes/peft versions",
                                target="install", tier=1, rationale="transformers refuses load_in_4bit/8bit kwargs next to a quantization_config; the framework version and transformers must agree"))
    if "dtype_unsupported" in labels:
        if setup.gpu is not None and not setup.gpu.bf16:
            out.append(ConfigChange(key="bf16", from_value=True, to_value=False, tier=1,
                                    rationale=f"{setup.gpu.name} has no bf16 support; train in fp16 instead"))
            out.append(ConfigChange(key="fp16", from_value=None, to_value=True, tier=1, rationale="fp16 mixed precision on a pre-Ampere GPU"))
        else:
            out.append(ConfigChange(action="align torch/transformers versions: the failing op has no BFloat16 kernel in this combination; upgrade torch or pin transformers to a release that works with it (see the cited case for the version that did)",
                                    target="install", tier=1, rationale="an op not implemented for the dtype is a version problem, not a memory one"))
    if "offload_host_ram" in labels:
        out.append(ConfigChange(action="on the host: load the model once (ZeRO-3 zero.Init / low_cpu_mem_usage), lower dataloader_num_workers and preprocessing_num_workers, and check free RAM (free -g) before training",
                                target="env", tier=1, rationale="the process was killed for host RAM: offloaded states, per-rank model copies and workers all live there"))
    if "memory_growth" in labels:
        out.append(ConfigChange(action="upgrade transformers/the framework (growth from a model implementation is often fixed upstream) and keep padded shapes fixed",
                                target="install", tier=1, rationale="memory that grows step after step is a leak or shape churn; a smaller peak only postpones it"))
    if "generation_kv_cache" in labels:
        out.append(ConfigChange(action="lower vLLM gpu_memory_utilization / max_model_len (or max_new_tokens and the generation batch)",
                                target="env", tier=1, rationale="the KV cache of generation grows with tokens x batch and is sized up front by vLLM"))
    if "multi_gpu_imbalance" in labels:
        out.append(ConfigChange(action="balance the ranks: device_map='balanced' or max_memory per GPU, and keep rank 0 free of extra copies (evaluation, logging, saving)",
                                target="env", tier=1, rationale="one GPU holds more than the others, so it runs out first"))
    if "model_load_oom" in labels:
        out.append(ConfigChange(action="load with low_cpu_mem_usage=True (and torch_dtype=bfloat16), merge/save adapters on CPU or one GPU",
                                target="env", tier=1, rationale="loading or merging holds a second copy of the weights"))
    return out


def as_action(h: ConfigChange) -> ConfigChange:
    """A knowledge-base action that fixed a similar case, filed as install/env by what it does."""
    text = h.action.strip()
    target = "install" if text.startswith(("pip", "conda", "uv ")) else "env" if text.startswith("export") else h.target
    return h.model_copy(update={"target": target, "tier": 1})
