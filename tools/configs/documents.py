"""load_config: detect a config's format, read its settings safely, and attach the DeepSpeed config
it names (inline dict, or a referenced file passed in `extra_files`)."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from ..errors import InputError, UnsafeInput
from .json_doc import parse_json
from .keys import lift_sections
from .known_files import known_file
from .python_doc import CALL_PATTERN, python_settings
from .safe_yaml import GAP_MARK, check_size
from .schema import ConfigDocument, format_from_filename
from .shell import (
    ascii_digits,
    is_llama_cpp_program,
    flag_settings,
    main_command,
    num_gpus_from_command,
    num_nodes_from_command,
    script_variables,
    tokenize,
    training_commands,
)
from .validation import check_config
from .yaml_doc import read_yaml

# Keys only a LLaMA-Factory config has (checked against llamafactory 0.9.5 hparams/*.py).
LLAMAFACTORY_KEYS = {
    "finetuning_type", "cutoff_len", "template", "lora_target", "lora_rank", "quantization_bit", "flash_attn",
    "pure_bf16", "freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model", "train_mm_proj_only",
    "image_max_pixels", "video_max_pixels", "enable_liger_kernel", "use_unsloth_gc", "use_unsloth",
    "disable_gradient_checkpointing", "stage", "dataset", "dataset_dir", "val_size", "buffer_size",
}
ACCELERATE_KEYS = {"compute_environment", "distributed_type", "num_processes", "num_machines", "deepspeed_config",
                   "fsdp_config", "mixed_precision", "machine_rank", "main_training_function"}
DEEPSPEED_KEYS = {"zero_optimization", "train_micro_batch_size_per_gpu", "train_batch_size", "zero_allow_untested_optimizer",
                  "gradient_clipping", "steps_per_print", "wall_clock_breakdown"}
HF_TRAINER_KEYS = {"per_device_train_batch_size", "gradient_accumulation_steps", "output_dir", "learning_rate",
                   "num_train_epochs", "per_device_eval_batch_size", "gradient_checkpointing", "model_name_or_path"}
# mlx_lm.lora's YAML (Apple MLX): keys no other trainer uses
MLX_LM_KEYS = {"lora_layers", "grad_checkpoint", "lora_parameters", "fine_tune_type", "steps_per_report", "steps_per_eval",
               "resume_adapter_file"}

# LLaMA-Factory's and many repos' example DeepSpeed files say their stage/offload in the name.
_DS_NAME = re.compile(r"(?:zero|z)[_-]?([0-3])(?:[_-]?(offload|cpu))?", re.IGNORECASE)


# Python code: an import, or a name bound to a call (`args = dict(`, `model = AutoModel.from_pretrained(`); a shell
# assignment has no spaces around `=` and is never followed by a call, a YAML value never has `=`
_PYTHON = re.compile(r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import[ \t]|import[ \t]+\w|[A-Za-z_]\w*[ \t]*=[ \t]*[A-Za-z_][\w.]*\()",
                     re.M)
MAX_SNIFF = 100_000   # characters read to tell the format of a config without a telling name


def looks_like_python(text: str) -> bool:
    """Does a config without a telling file name read as a Python snippet (an import, `args = dict(...)`)?"""
    return bool(_PYTHON.search(text[:MAX_SNIFF]))


def detect_format(text: str, name: str) -> str:
    """The config's format from its file name, then its content."""
    by_name = format_from_filename(name)
    stripped = text.lstrip()
    if by_name == "shell" or stripped.startswith("#!"):
        return "shell"
    if by_name == "json" or stripped.startswith("{"):
        return "json"
    if by_name is not None:
        return by_name
    # no telling extension: a training command means a script, Python code a snippet, else YAML
    try:
        if training_commands(text):
            return "shell"
    except InputError:
        pass
    return "python" if looks_like_python(text) else "yaml"


def load_config(text: str, name: str = "config", extra_files: dict[str, str] | None = None) -> ConfigDocument:
    """Read a user's config (LLaMA-Factory YAML, HF TrainingArguments JSON, a shell script with the
    training command, DeepSpeed JSON, accelerate YAML) into a ConfigDocument.

    A DeepSpeed file the config names is looked up in `extra_files` (by path, then by file name); a well-known one
    that was not given (LLaMA-Factory's examples/deepspeed/ds_z3_config.json, LLaVA's scripts/zero2.json) is read with
    its published content, any other is a note and its stage is inferred from a telling file name. An impossible
    value (a negative batch, zero accumulation steps) raises ImpossibleValue, naming the key and its line.
    """
    if not isinstance(text, str):
        raise InputError(f"{name}: config must be text")
    check_size(text, name)
    if "\x00" in text:
        raise UnsafeInput(f"{name}: config contains NUL bytes; pass the text file, not a binary")
    kind = detect_format(text, name)
    if kind == "shell":
        doc = _load_shell(text, name)
    elif kind == "json":
        doc = _load_json(text, name)
    elif kind == "python":
        doc = _load_python(text, name)
    else:
        doc = _load_yaml_or_python(text, name)
    inner = _wrapped_config(doc, extra_files)
    if inner is not None:
        return inner
    _attach_accelerate_config(doc, extra_files)
    attach_deepspeed(doc, extra_files)
    check_config(doc)
    return doc


def _attach_accelerate_config(doc: ConfigDocument, extra_files: dict[str, str] | None) -> None:
    """`accelerate launch --config_file cfg.yaml`: the process count and ZeRO settings live in that YAML
    (read only: the fix edits the script; DeepSpeed changes are described, not written into it)."""
    ref = doc.launcher.get("config_file") if doc.format == "shell" and doc.launcher.get("program") == "accelerate" else None
    if not ref or not extra_files:
        return
    found = find_file(ref, extra_files)
    if found is None:
        return
    acc = load_config(found[1], posixpath.basename(found[0]))
    if acc.format != "accelerate_yaml":
        return
    s = acc.settings
    n = s.get("num_processes")
    if isinstance(n, int) and n > 0 and not doc.launcher.get("num_gpus"):
        nodes = s.get("num_machines") if isinstance(s.get("num_machines"), int) else 1
        doc.launcher.update({"num_gpus": n // max(nodes, 1) or n, "num_gpus_from": f"{posixpath.basename(found[0])}: num_processes",
                             "num_nodes": nodes})
    dsc = s.get("deepspeed_config")
    if isinstance(dsc, dict) and isinstance(dsc.get("zero_stage"), int) and doc.deepspeed is None:
        zero: dict[str, Any] = {"stage": dsc["zero_stage"]}
        for part, key in (("offload_optimizer", "offload_optimizer_device"), ("offload_param", "offload_param_device")):
            if str(dsc.get(key, "none")).lower() in ("cpu", "nvme"):
                zero[part] = {"device": str(dsc[key]).lower()}
        doc.deepspeed = {"zero_optimization": zero}
        doc.launcher["accelerate_config"] = found[0]
        doc.deepspeed_name = posixpath.basename(found[0])
        doc.notes.append(f"ZeRO settings read from {posixpath.basename(found[0])} (accelerate config)")


def _wrapped_config(doc: ConfigDocument, extra_files: dict[str, str] | None) -> ConfigDocument | None:
    """`llamafactory-cli train train.yaml` in a script: the YAML is the config to read and fix; the
    script still says how many GPUs run it."""
    ref = doc.launcher.get("config_file") if doc.format == "shell" and doc.launcher.get("program") == "llamafactory-cli" else None
    if not ref or not extra_files:
        return None
    found = find_file(ref, extra_files)
    if found is None:
        return None
    name, text = found
    inner = load_config(text, posixpath.basename(name), {k: v for k, v in extra_files.items() if k != name})
    if inner.format == "shell":
        return None
    inner.launcher = {k: v for k, v in doc.launcher.items() if k != "config_file"}
    inner.notes.append(f"{doc.name} runs {name}: the fix edits {posixpath.basename(name)}")
    return inner


# A line a user puts where they cut a paste short: "[...]", "...", "…", "[snip]".
_GAP_LINE = re.compile(rf"^([ \t]*)({GAP_MARK})[ \t]*$", re.MULTILINE)


def _load_yaml(text: str, name: str) -> ConfigDocument:
    try:
        data = read_yaml(text, name)
    except InputError:
        if not _GAP_LINE.search(text):
            raise
        # a shortened paste: the gap markers become comments, so the rest reads (and is rewritten) as YAML
        doc = _load_yaml(_GAP_LINE.sub(lambda m: f"{m.group(1)}# {m.group(2)}", text), name)
        doc.notes.append(f"{name}: lines marking a cut ([...]) were read as comments")
        return doc
    keys = set(data)
    if keys & ACCELERATE_KEYS and not keys & LLAMAFACTORY_KEYS:
        return ConfigDocument(name=name, format="accelerate_yaml", text=text, settings=data, framework="accelerate")
    data, sections = lift_sections(data)   # litgpt's train:, ChatGLM3's training_args: (keys.TRAINING_SECTIONS)
    doc = _yaml_document(text, name, data)
    if sections:
        doc.sections = sections
        doc.notes.append(f"{name}: the settings nested under {', '.join(sorted(set(sections.values())))} were read as "
                         "the run's own")
    return doc


def _yaml_document(text: str, name: str, data: dict[str, Any]) -> ConfigDocument:
    """A YAML mapping's settings, as the framework their keys belong to."""
    keys = set(data)
    if keys & LLAMAFACTORY_KEYS:
        return ConfigDocument(name=name, format="llamafactory_yaml", text=text, settings=data, framework="llamafactory")
    if keys & MLX_LM_KEYS and ("model" in keys or "lora_parameters" in keys):
        return ConfigDocument(name=name, format="yaml", text=text, settings=data, framework="mlx")
    framework = "hf_trainer" if keys & HF_TRAINER_KEYS else None
    return ConfigDocument(name=name, format="yaml", text=text, settings=data, framework=framework)


def _load_yaml_or_python(text: str, name: str) -> ConfigDocument:
    """YAML, or — when it is not a YAML mapping but configures training through Python calls — a Python snippet
    (users paste their script's TrainingArguments(...) / from_pretrained(...) whatever the file is called)."""
    try:
        return _load_yaml(text, name)
    except InputError:
        if not CALL_PATTERN.search(text):
            raise
        return _load_python(text, name)


def _load_python(text: str, name: str) -> ConfigDocument:
    settings, framework = python_settings(text)
    if framework == "hf_trainer" and set(settings) & LLAMAFACTORY_KEYS and re.search(r"(?<![\w.])dict\s*\(", text):
        framework = "llamafactory"   # LLaMA-Factory's arguments as a Python dict (its run_exp / Colab entry)
    return ConfigDocument(name=name, format="python", text=text, settings=settings, framework=framework,
                          notes=["Python code read without running it: literal keyword arguments only"])


def _load_json(text: str, name: str) -> ConfigDocument:
    index = parse_json(text, name)
    data = index.value
    keys = set(data)
    if keys & DEEPSPEED_KEYS or (isinstance(data.get("bf16"), dict) or isinstance(data.get("fp16"), dict)):
        doc = ConfigDocument(name=name, format="deepspeed_json", text=text, settings={}, framework=None)
        doc.deepspeed = data
        doc.deepspeed_text = text
        doc.deepspeed_name = name
    elif keys & LLAMAFACTORY_KEYS:
        doc = ConfigDocument(name=name, format="json", text=text, settings=data, framework="llamafactory")
    else:
        framework = "hf_trainer" if keys & HF_TRAINER_KEYS else None
        doc = ConfigDocument(name=name, format="hf_json", text=text, settings=data, framework=framework)
    if index.cuts:
        doc.notes.append(f"{name}: lines marking a cut ([...]) were skipped; the settings cut out are unknown")
    return doc


def _load_shell(text: str, name: str) -> ConfigDocument:
    cmd = main_command(text, name)
    variables = script_variables(tokenize(text))
    settings = flag_settings(cmd, variables)
    num_gpus, gpu_flag = num_gpus_from_command(cmd, variables)
    launcher: dict[str, Any] = {
        "program": cmd.program,
        "script": cmd.script,
        "num_gpus": num_gpus,
        "num_gpus_from": gpu_flag,
        "num_nodes": num_nodes_from_command(cmd, variables),
        "env": {**{k: v for k, v in variables.items() if k.isupper()}, **cmd.env},
    }
    if is_llama_cpp_program(cmd.program):
        framework = "llama.cpp"
        model = settings.get("m", settings.get("model"))
        if isinstance(model, str) and model.strip():
            # "Qwen2-VL-7B-Instruct-Q4_K_M.gguf": the model name, and its quantization in the file name
            base = posixpath.basename(model.replace("\\", "/")).removesuffix(".gguf")
            settings.setdefault("model", re.sub(r"[-.](?:Q\d(?:_\w{1,4})?|IQ\d\w{0,4}|F16|BF16|F32)$", "", base, flags=re.IGNORECASE))
            q = re.search(r"(?:^|[-.])(?:I?Q)(\d)", base, re.IGNORECASE)
            if q:
                settings.setdefault("quantization_bit", int(q.group(1)))
        launcher["task"] = "inference"
    elif is_vllm_command(cmd.program, cmd.script):
        framework = "vllm"
        if cmd.program == "vllm" and cmd.script:
            settings.setdefault("model", cmd.script)   # vllm serve MODEL
    elif cmd.program == "llamafactory-cli":
        framework = "llamafactory"
        if cmd.script and cmd.script.endswith((".yaml", ".yml", ".json")):
            launcher["config_file"] = cmd.script
    elif cmd.program == "swift":
        framework = "swift"
    elif _runs_llamafactory(cmd.script, settings):
        framework = "llamafactory"       # LLaMA-Factory's own entry script (src/train_bash.py, src/train.py)
    elif cmd.program == "deepspeed":
        framework = "deepspeed_script"   # an HF-Trainer-style script started by the deepspeed launcher
    else:
        framework = "hf_trainer"
        if cmd.program == "accelerate":
            launcher["config_file"] = cmd.launcher_flags.get("--config_file")
    if cmd.subcommand in ("export", "merge-lora"):
        launcher["task"] = "merge"   # merging an adapter into the base weights / exporting: no training states
    if cmd.program == "accelerate" and ascii_digits(cmd.launcher_flags.get("--zero_stage", "")):
        launcher["zero_stage"] = int(cmd.launcher_flags["--zero_stage"])
    return ConfigDocument(name=name, format="shell", text=text, settings=settings, framework=framework, launcher=launcher)


def is_vllm_command(program: str | None, script: str | None) -> bool:
    """`vllm serve MODEL` or `python -m vllm.entrypoints.openai.api_server` / `vllm.entrypoints.api_server`."""
    return program == "vllm" or (program in ("python", "python3") and (script or "").startswith("vllm.entrypoints"))


def _runs_llamafactory(script: str | None, settings: dict[str, Any]) -> bool:
    """LLaMA-Factory's entry scripts take its argument names (and its defaults apply)."""
    path = (script or "").replace("\\", "/").lower()
    if "llamafactory" in path or "llama_factory" in path or path.endswith("train_bash.py"):
        return True
    return path.endswith("src/train.py") and {"stage", "template", "finetuning_type"} <= set(settings)


def deepspeed_reference(doc: ConfigDocument) -> str | dict | None:
    """What the config says about DeepSpeed: a file name, an inline dict, or None."""
    if doc.format == "accelerate_yaml":
        ds = doc.settings.get("deepspeed_config")
        if isinstance(ds, dict):
            return ds.get("deepspeed_config_file") or None
        return None
    if doc.format == "shell" and doc.launcher.get("program") == "accelerate":
        ref = doc.settings.get("deepspeed") or doc.launcher.get("deepspeed_config_file")
        return ref if isinstance(ref, (str, dict)) else None
    ref = doc.settings.get("deepspeed")
    if isinstance(ref, (str, dict)) and ref:
        return ref
    return None


def find_file(ref: str, files: dict[str, str]) -> tuple[str, str] | None:
    norm = posixpath.normpath(ref.strip().strip("'\""))
    for key, text in files.items():
        if posixpath.normpath(key) == norm:
            return key, text
    base = posixpath.basename(norm)
    for key, text in files.items():
        if posixpath.basename(key.replace("\\", "/")) == base:
            return key, text
    return None


def attach_deepspeed(doc: ConfigDocument, extra_files: dict[str, str] | None) -> None:
    """The DeepSpeed config `doc` names: an inline dict, a file given in `extra_files`, a well-known file nobody gave
    (its published content, an assumption), or a note (with the stage a telling name says)."""
    if doc.format == "deepspeed_json":
        return
    ref = deepspeed_reference(doc)
    if ref is None:
        return
    if isinstance(ref, dict):
        doc.deepspeed = ref
        doc.deepspeed_inline = True
        return
    doc.deepspeed_name = ref
    found = find_file(ref, extra_files) if extra_files else None
    preset = not ref.strip().strip("'\"").lower().endswith(".json")
    known = known_file(ref) if found is None and not preset else None
    if known is not None:
        doc.deepspeed = known.config()
        doc.deepspeed_assumed = known.source
        doc.notes.append(f"DeepSpeed file {ref} not given: assumed {known.describe()}; pass your own file if it differs")
        return
    if found is None:
        m = _DS_NAME.search(posixpath.basename(ref))
        if m:
            stage = int(m.group(1))
            inferred: dict[str, Any] = {"zero_optimization": {"stage": stage}}
            if m.group(2):
                inferred["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
                if stage == 3 and "offload_optimizer" not in ref.lower():
                    inferred["zero_optimization"]["offload_param"] = {"device": "cpu"}
            doc.deepspeed = inferred
            what = "preset" if preset else "file"
            doc.notes.append(f"DeepSpeed {what} {ref}{'' if preset else ' not given'}: ZeRO stage {stage}"
                             f"{' with CPU offload' if m.group(2) else ''} inferred from its name")
        else:
            doc.notes.append(f"DeepSpeed file {ref} not given: its ZeRO stage is unknown; pass it too "
                             f"(e.g. --config {posixpath.basename(ref)})")
        return
    key, ds_text = found
    index = parse_json(ds_text, key)
    doc.deepspeed = index.value
    doc.deepspeed_text = ds_text
