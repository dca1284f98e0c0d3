"""Training frameworks: the one home of their names, the spellings that mean them and which of them run HF Trainer.

Three vocabularies meet here: the setup's (`Framework`, what the calculator and the planner branch on), the log
parser's (the most specific thing a log shows, `LOG_FRAMEWORKS`) and the knowledge base's (`CaseFramework`, what a
thread names). The detection patterns stay with their readers (log lines and prose need different ones); tests
check that every name they use is one of these.
"""

from __future__ import annotations

from typing import Literal, get_args

Framework = Literal["llamafactory", "hf_trainer", "trl", "deepspeed_script", "axolotl", "unsloth", "torchtune", "swift",
                    "vllm", "mlx", "other"]
FRAMEWORKS: tuple[Framework, ...] = get_args(Framework)

# Built on HF Trainer / accelerate: with bf16/fp16 they run the forward under torch.autocast, and the Trainer's loss
# frees the logits early (the calculator sizes both by this set).
HF_TRAINER_FRAMEWORKS: frozenset[Framework] = frozenset({"llamafactory", "hf_trainer", "trl", "axolotl", "swift"})

# Frameworks whose scripts cap no sequence length unless told (HF Trainer scripts, DeepSpeed launchers, plain loops):
# LLaMA-Factory (cutoff_len 2048 by default) and the other trainers truncate samples to a default length.
UNCAPPED_LENGTH_FRAMEWORKS: frozenset[Framework] = frozenset({"hf_trainer", "deepspeed_script", "other"})

# What the log parser reports (tools/log_parser/facts.py, most specific first) → the setup framework it means.
# A LLaVA-family train.py is an HF-Trainer-style script the deepspeed launcher starts; llama.cpp and accelerate
# alone say nothing about the trainer.
LOG_FRAMEWORKS: dict[str, Framework | None] = {
    "llamafactory": "llamafactory", "axolotl": "axolotl", "unsloth": "unsloth", "swift": "swift", "torchtune": "torchtune",
    "moe-llava": "deepspeed_script", "llava": "deepspeed_script", "trl": "trl", "vllm": "vllm", "llama.cpp": None,
    "hf_trainer": "hf_trainer", "accelerate": None, "deepspeed": "deepspeed_script",
}
# Log names of the trainers that may drive an inference engine in-process (TRL's GRPO / online DPO with vLLM): the
# engine's frames on the error's stack win over them.
ENGINE_HOSTS: frozenset[str] = frozenset({"trl", "hf_trainer", "accelerate", "deepspeed", "llamafactory", "swift",
                                          "axolotl", "unsloth", "torchtune"})

# Other spellings (users, commands, older package names) → the setup framework.
ALIASES: dict[str, Framework] = {
    "llama_factory": "llamafactory", "llama-factory": "llamafactory", "llmtuner": "llamafactory",
    "transformers": "hf_trainer", "ms-swift": "swift",
}
# pip distributions of the frameworks → the key their version is kept under (OOMReport.versions).
PACKAGES: dict[str, Framework] = {
    "llamafactory": "llamafactory", "llmtuner": "llamafactory", "unsloth": "unsloth", "axolotl": "axolotl",
    "ms-swift": "swift", "swift": "swift", "torchtune": "torchtune", "trl": "trl",
}

# The knowledge base's vocabulary (kb/schema.py Case.framework): what a thread names, so coarser or other than the
# setup's (deepspeed, accelerate, fsdp, peft, llava, qwen-vl).
CaseFramework = Literal["llamafactory", "hf_trainer", "trl", "deepspeed", "accelerate", "fsdp", "peft", "unsloth", "axolotl",
                        "torchtune", "llava", "qwen-vl", "swift", "vllm", "other"]
CASE_FRAMEWORKS: tuple[CaseFramework, ...] = get_args(CaseFramework)


def canonical_framework(name: str | None) -> Framework | None:
    """The setup framework a name means (canonical, a log's name, an alias); None when it names none."""
    low = (name or "").strip().lower()
    if low in FRAMEWORKS:
        return low  # type: ignore[return-value]
    if low in LOG_FRAMEWORKS:
        return LOG_FRAMEWORKS[low]
    return ALIASES.get(low)


def case_framework(framework: str) -> CaseFramework:
    """The knowledge-base name of a setup framework (a DeepSpeed-launched script is 'deepspeed')."""
    if framework == "deepspeed_script":
        return "deepspeed"
    return framework if framework in CASE_FRAMEWORKS else "other"  # type: ignore[return-value]


# Inference engines and servers as people name them (packages, commands, apps), each → the log parser's name for it
# where it has one. Named in a text that says nothing of training, they say the process serves a model: its memory
# is the weights plus the KV cache (and, for vLLM and LMDeploy, a cache pre-allocated to a share of the card).
SERVING_ENGINES: dict[str, str | None] = {
    "vllm": "vllm", "sglang": None, "lmdeploy": None, "turbomind": None, "tensorrt-llm": None, "trt-llm": None,
    "text-generation-inference": None, "ollama": None, "llama.cpp": "llama.cpp", "llama-server": "llama.cpp",
    "llama-cli": "llama.cpp", "llama_cpp": "llama.cpp", "koboldcpp": "llama.cpp", "exllama": None, "exllamav2": None,
    "text-generation-webui": None, "oobabooga": None, "mlc-llm": None, "mlc_llm": None, "xinference": None,
    "fastchat.serve": None, "model_worker": None, "localai": None, "lm studio": None,
}

# Engines that run GGUF files (llama.cpp and the apps built on it): their weights are as quantized as the file, and
# ollama's library tags default to 4-bit (q4_K_M, ollama.com/library), as most GGUF downloads are; a width the name or
# the user states wins.
GGUF_ENGINES: tuple[str, ...] = ("ollama", "llama.cpp", "llama-server", "llama-cli", "llama_cpp", "koboldcpp", "lm studio")
GGUF_DEFAULT_BITS = 4

# Engines that reserve their KV cache up front as a share of the card, with the setting that sizes the share: after
# start-up the card is full by design, so a failing request there says the pool was too large or too small, never that
# the weights alone filled it. vLLM: gpu_memory_utilization (0.9); LMDeploy's TurboMind: cache_max_entry_count (a share
# of the free memory, 0.8 by default since 0.2); SGLang: mem_fraction_static; TensorRT-LLM:
# kv_cache_free_gpu_mem_fraction (0.9); MLC-LLM: gpu_memory_utilization.
KV_POOL_ENGINES: dict[str, str] = {
    "vllm": "gpu_memory_utilization", "lmdeploy": "cache_max_entry_count", "turbomind": "cache_max_entry_count",
    "sglang": "mem_fraction_static", "tensorrt-llm": "kv_cache_free_gpu_mem_fraction",
    "trt-llm": "kv_cache_free_gpu_mem_fraction", "mlc-llm": "gpu_memory_utilization", "mlc_llm": "gpu_memory_utilization",
}

# Evaluation harnesses: they score batch by batch and keep no logits across batches (no Trainer evaluation loop), so
# an evaluation that runs out in one is a batch of inference too large or too long (auto batch sizes probe the largest).
EVAL_HARNESSES: tuple[str, ...] = ("lm-evaluation-harness", "lm_eval", "lm-eval", "lighteval", "opencompass", "vlmevalkit",
                                   "lmms-eval", "lmms_eval", "evalscope", "simple-evals", "bigcode-evaluation-harness")
