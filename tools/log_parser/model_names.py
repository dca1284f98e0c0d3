"""Is a string from a log a model? Only model-like ids count: an HF id or bare name with a model family or a
size token ("meta-llama/Llama-2-7b-hf", "qwen2.5-7b", "facebook/opt-1.3b"), a hub-cache path, or a checkpoint
directory whose name (or a parent's) carries a family or size token or that lies under a models/weights folder.
Script folders, package paths ("lib/python3.7/site-packages/..."), files and Python expressions never do: the
calculator would otherwise be handed a path that names no architecture."""

from __future__ import annotations

import re

# Model families as they appear in checkpoint names (lower case; a trailing version like "qwen2", "phi3",
# "chatglm3", "internvl2" is allowed after the family word).
FAMILIES = frozenset("""
llama llama2 llama3 codellama tinyllama vicuna alpaca mistral mixtral ministral codestral pixtral qwen qwq qwenvl
gemma paligemma codegemma phi falcon bloom bloomz opt gpt gpt2 gptj neox pythia t5 mt5 flan ul2 bert roberta deberta
electra bart xlm baichuan chatglm glm cogvlm cogagent internlm internvl internlm2 yi deepseek llava llavaqwen moellava
starcoder santacoder wizardlm wizardcoder mpt olmo minicpm stablelm zephyr openchat orca solar command aya jamba mamba
rwkv granite smollm nemotron minitron ernie skywork aquila xverse telechat hunyuan kimi idefics florence blip
instructblip minigpt whisper clip siglip vit dinov2 dbrx grok arctic exaone cohere persimmon fuyu bakllava yuan moss
belle ziya chinese dolly redpajama cerebras stablecode qwen1 qwen2 qwen3 olmoe qwenmoe phimoe
""".split())
_FAMILY_TOKEN = re.compile(r"([a-z]{1,20})(?:v?\d[\w.]{0,10})?")
# "7b", "1.3b", "8x7b", "160m", "70B", "7b1" (BLOOM), "0.5B": a parameter count
_SIZE = re.compile(r"(?<![a-z.])(?:\d{1,3}x)?\d{1,4}(?:\.\d{1,2})?[bm](?![a-z])")
# folders that hold models: a checkpoint directly inside one is a model whatever its name
_MODEL_FOLDERS = frozenset({"models", "model", "weights", "checkpoints", "ckpt", "ckpts", "pretrained",
                            "pretrained_models", "base_models", "llm", "llms", "hub", "hf_models", "model_zoo"})
_NOT_MODEL_PARTS = ("site-packages", "dist-packages", "/lib/python", "\\lib\\python", "/bin/", "/usr/lib/", "/tmp/pip")
_FILE_SUFFIX = re.compile(r"\.(?:py|pyc|sh|txt|log|yaml|yml|json|toml|cfg|ini|csv|jsonl|parquet|md|ipynb|out|err)$",
                          re.IGNORECASE)
_ALLOWED = re.compile(r"[\w.~:@+\-/\\ ]{2,400}")
_SPLIT = re.compile(r"[-_. ]+")


def _has_family_or_size(name: str) -> bool:
    low = name.lower()
    if _SIZE.search(low):
        return True
    for token in _SPLIT.split(low):
        m = _FAMILY_TOKEN.fullmatch(token)
        if m and (m.group(1) in FAMILIES or token in FAMILIES):
            return True
    return False


def looks_like_model(value: str | None) -> bool:
    """True for model-like ids and checkpoint paths; False for script folders, package paths, files, code."""
    if not value or len(value) > 400 or not _ALLOWED.fullmatch(value):
        return False
    low = value.lower()
    if any(p in low for p in _NOT_MODEL_PARTS) or _FILE_SUFFIX.search(low) or low.startswith(("self.", "args.")):
        return False
    if "models--" in low:
        return True  # a Hugging Face hub cache entry
    parts = [p for p in re.split(r"[/\\]", value) if p and p not in (".", "..", "~")]
    if not parts:
        return False
    if len(parts) <= 2 and not value.startswith(("/", ".", "~", "\\")) and ":" not in value:
        # "org/name" or a bare name: the name (or the org, "meta-llama/...") must look like a model
        return any(_has_family_or_size(p) for p in parts)
    tail = parts[-3:]
    if any(_has_family_or_size(p) for p in tail):
        return True
    # "/data/models/my-sft", "~/.cache/modelscope/hub/ORG/NAME": a directory inside a models folder
    return any(p.lower() in _MODEL_FOLDERS for p in parts[-3:-1])
