"""Fixes that are not a smaller memory budget: versions, the allocator, other processes, host RAM,
generation caches. Each diagnosed cause of that kind becomes an action with its reason."""

from __future__ import annotations

from ..labels import RootCause
from ..training_setup import TrainingSetup
from .schema import ConfigChange


# cause → (action, where it is done, why). Order is the order actions are listed in a plan.
_ACTIONS: dict[str, tuple[str, str, str]] = {
    "fragmentation": (
        "export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True", "env",
        "'reserved but unallocated' memory is fragmentation; expandable segments let the allocator grow blocks instead of splitting them"),
    "other_process": (
        "free the GPU: stop the other processes nvidia-smi lists on it, or pick idle GPUs with CUDA_VISIBLE_DEVICES", "env",
        "memory held by another process is not available to this run"),
    "quantization_setup": (
        "pass quantization only through quantization_config=BitsAndBytesConfig(...) (not load_in_4bit/load_in_8bit kwargs as well), with matching transformers/bitsandbytes/peft versions",
        "install",
        "transformers refuses load_in_4bit/8bit kwargs next to a quantization_config; the framework version and transformers must agree"),
    "offload_host_ram": (
        "on the host: load the model once (ZeRO-3 zero.Init / low_cpu_mem_usage), lower dataloader_num_workers and preprocessing_num_workers, and check free RAM (free -g) before training",
        "env", "the process was killed for host RAM: offloaded states, per-rank model copies and workers all live there"),
    "memory_growth": (
        "upgrade transformers/the framework (growth from a model implementation is often fixed upstream) and keep padded shapes fixed",
        "install", "memory that grows step after step is a leak or shape churn; a smaller peak only postpones it"),
    "generation_kv_cache": (
        "lower vLLM gpu_memory_utilization / max_model_len (or max_new_tokens and the generation batch)", "env",
        "the KV cache of generation grows with tokens x batch and is sized up front by vLLM"),
    "multi_gpu_imbalance": (
        "balance the ranks: device_map='balanced' or max_memory per GPU, and keep rank 0 free of extra copies (evaluation, logging, saving)",
        "env", "one GPU holds more than the others, so it runs out first"),
    "model_load_oom": (
        "load with low_cpu_mem_usage=True (and torch_dtype=bfloat16), merge/save adapters on CPU or one GPU", "env",
        "loading or merging holds a second copy of the weights"),
}
_BEFORE_DTYPE = ("fragmentation", "other_process", "quantization_setup")  # listed before the dtype fix, as before


def actions_for_causes(causes: list[RootCause], setup: TrainingSetup) -> list[ConfigChange]:
    """Causes whose fix is not a smaller memory budget: versions, allocator, other processes, host RAM."""
    labels = {c.label for c in causes}

    def table(names) -> list[ConfigChange]:
        return [ConfigChange(action=_ACTIONS[n][0], target=_ACTIONS[n][1], tier=1, rationale=_ACTIONS[n][2])
                for n in names if n in labels]

    out = table(_BEFORE_DTYPE)
    if "dtype_unsupported" in labels:
        out += _dtype_fix(setup)
    out += table(n for n in _ACTIONS if n not in _BEFORE_DTYPE)
    return out


def _dtype_fix(setup: TrainingSetup) -> list[ConfigChange]:
    """bf16 on a pre-Ampere GPU → fp16; otherwise the op lacks a bf16 kernel in this version combination."""
    if setup.gpu is not None and not setup.gpu.bf16:
        return [ConfigChange(key="bf16", from_value=True, to_value=False, tier=1,
                             rationale=f"{setup.gpu.name} has no bf16 support; train in fp16 instead"),
                ConfigChange(key="fp16", from_value=None, to_value=True, tier=1, rationale="fp16 mixed precision on a pre-Ampere GPU")]
    return [ConfigChange(action="align torch/transformers versions: the failing op has no BFloat16 kernel in this combination; upgrade torch or pin transformers to a release that works with it (see the cited case for the version that did)",
                         target="install", tier=1, rationale="an op not implemented for the dtype is a version problem, not a memory one")]


def as_action(h: ConfigChange) -> ConfigChange:
    """A knowledge-base action that fixed a similar case, filed as install/env by what it does."""
    text = h.action.strip()
    target = "install" if text.startswith(("pip", "conda", "uv ")) else "env" if text.startswith("export") else h.target
    return h.model_copy(update={"target": target, "tier": 1})
