"""apply_config_to_setup: framework keys → TrainingSetup fields, each with provenance ("config" and
the key for what the file says, "default" and the framework's rule for what it leaves out).

Framework defaults are the ones the code applies, not the docs' examples: LLaMA-Factory 0.9.x
(hparams/*.py) and HF transformers' TrainingArguments."""

from __future__ import annotations

import re
from typing import Any

from ..config_values import count, int_any, truthy
from ..frameworks import FRAMEWORKS
from ..model_resolver import apply_checkpoint_quantization, resolve_model_name
from ..training_setup import ADAPTER_METHODS, TrainingSetup
from .keys import FIELD_KEYS, LORA_RANK_KEYS, MODEL_NAME_KEYS, QUANTIZED_LOAD_FLAGS, SEQ_LEN_KEYS
from .schema import ConfigDocument

# HF TrainingArguments.optim → the calculator's optimizer families (state bytes differ per family).
_OPTIM = {
    "adamw_torch": "adamw", "adamw_hf": "adamw", "adamw_torch_xla": "adamw", "adamw_apex_fused": "adamw_fused",
    "adamw_torch_fused": "adamw_fused", "adamw_bnb_8bit": "adamw_8bit", "adamw_8bit": "adamw_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit", "paged_adamw_32bit": "paged_adamw_32bit", "adafactor": "adafactor",
    "sgd": "sgd", "lion_32bit": "lion", "lion_8bit": "lion", "paged_lion_8bit": "lion", "paged_lion_32bit": "lion",
}
# a sample's input and output lengths, capped apart (seq2seq scripts, ChatGLM's ptuning/finetune_demo, qlora.py,
# DeepSpeed-Chat's RLHF step, OpenRLHF's PPO, TRL's GRPO, verl): the sequence the model runs over is their sum
_INPUT_OUTPUT_LENGTHS = (("max_source_length", "max_target_length"), ("max_input_length", "max_output_length"),
                         ("source_max_len", "target_max_len"), ("max_prompt_seq_len", "max_answer_seq_len"),
                         ("prompt_max_len", "generate_max_len"), ("max_prompt_length", "max_completion_length"),
                         ("max_prompt_length", "max_response_length"))
_LF_DEFAULT_IMAGE_MAX_PIXELS = 768 * 768   # llamafactory ProcessorArguments.image_max_pixels
_LF_DEFAULT_CUTOFF = 2048                   # llamafactory DataArguments.cutoff_len
_HF_DEFAULT_BATCH = 8                       # TrainingArguments.per_device_{train,eval}_batch_size
# from_pretrained(torch_dtype=...) values that load 16-bit weights ("auto" is left out: the checkpoint decides)
_HALF_DTYPES = frozenset({"float16", "bfloat16", "half", "bf16", "fp16"})
# Lightning's precision flag (litgpt, NeMo's trainer.precision): "-true" keeps the parameters in that dtype, "-mixed"
# keeps them in fp32 and autocasts the compute (lightning.fabric.connector's accepted values, and the bare "bf16" of
# older releases; their bare 16 and 32 are left out: a model's config.json says "precision": 16 of its weights)
_LIGHTNING_PRECISION = {"32-true": "fp32", "64-true": "fp32", "16-mixed": "fp16_mixed", "bf16-mixed": "bf16_mixed",
                        "bf16": "bf16_mixed", "bf16-true": "pure_bf16", "16-true": "pure_bf16"}


class _Builder:
    """Collects facts for one setup: `config(...)` for what the file says, `default(...)` for rules."""

    def __init__(self, setup: TrainingSetup, name: str, sections: dict[str, str] | None = None):
        self.setup = setup
        self.name = name
        self.sections = sections or {}   # a key read from a training section is named with it

    def config(self, field: str, value: Any, key: str) -> None:
        where = f"{self.sections[key]}.{key}" if key in self.sections else key
        self.setup = self.setup.with_fact(field, value, "config", f"{self.name}: {where}")

    def default(self, field: str, value: Any, why: str) -> None:
        self.setup = self.setup.with_fact(field, value, "default", why)


def deepspeed_facts(ds: dict[str, Any] | None) -> dict[str, Any]:
    """ZeRO stage and offload devices from a DeepSpeed config dict."""
    if not isinstance(ds, dict):
        return {}
    zero = ds.get("zero_optimization") or {}
    if not isinstance(zero, dict):
        return {}
    out: dict[str, Any] = {}
    stage = int_any(zero.get("stage"))
    if stage is not None and 0 <= stage <= 3:
        out["zero_stage"] = stage
    for part in ("offload_optimizer", "offload_param"):
        dev = zero.get(part)
        device = dev.get("device") if isinstance(dev, dict) else dev if isinstance(dev, str) else None
        out[part] = device in ("cpu", "nvme")
    # the deprecated boolean form ("cpu_offload": true) still appears in old scripts
    if truthy(zero.get("cpu_offload", False)):
        out["offload_optimizer"] = True
    return out


def apply_config_to_setup(doc: ConfigDocument, setup: TrainingSetup) -> TrainingSetup:
    """`setup` with every fact the config states (origin "config", detail "file: key") and the
    framework's defaults for what it leaves out (origin "default")."""
    s = doc.settings or {}
    b = _Builder(setup, doc.name, doc.sections)
    framework = doc.framework or ("llamafactory" if doc.format == "llamafactory_yaml" else "hf_trainer")
    is_lf = framework == "llamafactory"
    is_swift = framework == "swift"
    if doc.format in ("deepspeed_json", "accelerate_yaml"):
        _apply_deepspeed(b, doc)
        if doc.format == "accelerate_yaml":
            _apply_accelerate(b, s)
        return b.setup
    b.config("framework", framework if framework in FRAMEWORKS else "other", "file format")

    # model
    model_key = next((k for k in MODEL_NAME_KEYS if isinstance(s.get(k), str) and s[k].strip()), None) or _model_like_key(s)
    resolved = None
    if model_key:
        b.config("model_name", str(s[model_key]), model_key)
        resolved = resolve_model_name(str(s[model_key]), s)
        if resolved is not None:
            b.setup = b.setup.with_fact("model", resolved.arch, resolved.origin, resolved.detail)

    if framework == "mlx":
        _apply_mlx(b, s)
        return apply_checkpoint_quantization(b.setup, resolved)

    # method (a pre-quantized checkpoint's bits after it: what the file states wins), and the objective (a preference
    # stage doubles the sequences and may add a reference model)
    _apply_method(b, s, is_lf)
    b.setup = apply_checkpoint_quantization(b.setup, resolved)
    _apply_stage(b, s, doc, is_lf)

    # precision
    loaded = str(s.get("torch_dtype") or "").lower().removeprefix("torch.")   # from_pretrained(torch_dtype=...)
    lightning = _LIGHTNING_PRECISION.get(str(s.get("precision") or "").strip().lower())
    if lightning is not None:
        b.config("precision", lightning, "precision")
    elif is_lf and truthy(s.get("pure_bf16", False)):
        b.config("precision", "pure_bf16", "pure_bf16")
    elif not is_lf and loaded in _HALF_DTYPES:
        # weights loaded in 16-bit stay 16-bit under the HF Trainer (autocast never upcasts parameters), and so do
        # their gradients and Adam's moments: 16-bit weights and states (DeepSpeed still keeps its fp32 master copy)
        b.config("precision", "pure_bf16", "torch_dtype")
    elif not is_lf and loaded in ("float32", "float"):
        b.config("precision", "fp32", "torch_dtype")
    elif truthy(s.get("bf16", False)):
        b.config("precision", "bf16_mixed", "bf16")
    elif truthy(s.get("fp16", False)):
        b.config("precision", "fp16_mixed", "fp16")
    elif is_lf:
        b.default("precision", "bf16_mixed", "LLaMA-Factory loads weights in bf16 and upcasts trainable params to fp32 (no pure_bf16)")
    else:
        b.default("precision", "fp32", "HF Trainer without bf16/fp16 trains in fp32")

    # optimizer
    if "optim" in s:
        b.config("optimizer", _OPTIM.get(str(s["optim"]).lower(), "adamw"), "optim")
    else:
        b.default("optimizer", "adamw", "TrainingArguments.optim default adamw_torch")

    # batch and schedule
    mb_key = next((k for k in FIELD_KEYS["micro_batch"] if count(s.get(k))), None)
    if mb_key:
        b.config("micro_batch", count(s[mb_key]), mb_key)
    elif is_swift:
        b.default("micro_batch", 1, "ms-swift per_device_train_batch_size default 1")
    else:
        b.default("micro_batch", _HF_DEFAULT_BATCH, "TrainingArguments.per_device_train_batch_size default 8")
    ga = count(s.get("gradient_accumulation_steps"))
    if ga:
        b.config("grad_accum", ga, "gradient_accumulation_steps")
    else:
        b.default("grad_accum", 1, "TrainingArguments.gradient_accumulation_steps default 1")
    if _evaluates(s):
        _eval_batch(b, s)
    eas = count(s.get("eval_accumulation_steps"))
    if eas:
        b.config("eval_accumulation_steps", eas, "eval_accumulation_steps")
    _apply_workload(b, s, is_lf)

    # sequence length
    seq_key = next((k for k in SEQ_LEN_KEYS if count(s.get(k))), None)
    if seq_key:
        b.config("seq_len", count(s[seq_key]), seq_key)
    elif (pair := next(((a, t) for a, t in _INPUT_OUTPUT_LENGTHS if count(s.get(a)) and count(s.get(t))), None)):
        b.config("seq_len", count(s[pair[0]]) + count(s[pair[1]]), f"{pair[0]} + {pair[1]}")
    elif is_lf:
        b.default("seq_len", _LF_DEFAULT_CUTOFF, "LLaMA-Factory cutoff_len default 2048")
    elif is_swift:
        b.default("seq_len", 2048, "ms-swift max_length assumed 2048 (2.x default; 3.x uses the model's maximum)")
    if "packing" in s and s["packing"] is not None:
        b.config("packing", truthy(s["packing"]), "packing")
    elif is_lf:
        b.default("packing", str(s.get("stage", "sft")) == "pt", "LLaMA-Factory packs only for stage pt by default")

    # gradient checkpointing
    if is_lf:
        if "disable_gradient_checkpointing" in s:
            b.config("gradient_checkpointing", not truthy(s["disable_gradient_checkpointing"]), "disable_gradient_checkpointing")
        else:
            b.default("gradient_checkpointing", True, "LLaMA-Factory enables gradient checkpointing unless disable_gradient_checkpointing")
    elif "gradient_checkpointing" in s:
        b.config("gradient_checkpointing", truthy(s["gradient_checkpointing"]), "gradient_checkpointing")
    elif "use_gradient_checkpointing" in s:   # unsloth from_pretrained / get_peft_model: True or "unsloth"
        b.config("gradient_checkpointing", str(s["use_gradient_checkpointing"]).lower() not in ("false", "0", "none", ""),
                 "use_gradient_checkpointing")
    elif is_swift:
        b.default("gradient_checkpointing", True, "ms-swift gradient_checkpointing default True")
    else:
        b.default("gradient_checkpointing", False, "TrainingArguments.gradient_checkpointing default False")

    # attention
    _apply_attention(b, s, is_lf, doc)
    if truthy(s.get("enable_liger_kernel", False)) or truthy(s.get("use_liger_kernel", False)) or truthy(s.get("use_liger", False)):
        key = next(k for k in ("enable_liger_kernel", "use_liger_kernel", "use_liger") if truthy(s.get(k, False)))
        b.config("liger_kernel", True, key)

    # multimodal
    _apply_multimodal(b, s, is_lf)

    # distribution
    _apply_deepspeed(b, doc)
    n = doc.launcher.get("num_gpus") if doc.launcher else None
    if n:
        nodes = doc.launcher.get("num_nodes") or 1
        b.config("num_gpus", int(n) * int(nodes), doc.launcher.get("num_gpus_from") or "launcher")
        if nodes > 1:
            b.config("num_nodes", int(nodes), "launcher --num_nodes")
    env = (doc.launcher.get("env") or {}) if doc.launcher else {}
    if is_swift and count(str(env.get("MAX_PIXELS", "")).strip("'\"")):
        b.config("image_max_pixels", count(str(env["MAX_PIXELS"]).strip("'\"")), "MAX_PIXELS (ms-swift)")
    alloc = env.get("PYTORCH_CUDA_ALLOC_CONF", "")
    if "expandable_segments:true" in alloc.replace(" ", "").lower():
        b.config("expandable_segments", True, "PYTORCH_CUDA_ALLOC_CONF")
    return b.setup


def _apply_mlx(b: _Builder, s: dict[str, Any]) -> None:
    """mlx_lm.lora's YAML, with its defaults (mlx_lm/lora.py CONFIG_DEFAULTS): LoRA on the last num_layers
    layers, batch 4, max_seq_length 2048, grad_checkpoint off, Adam."""
    ft = str(s.get("fine_tune_type", "lora")).lower()
    method = "full" if ft == "full" else "lora"
    if "fine_tune_type" in s:
        b.config("method", method, "fine_tune_type")
    else:
        b.default("method", method, "mlx_lm fine_tune_type default lora")
    lp = s.get("lora_parameters") if isinstance(s.get("lora_parameters"), dict) else {}
    if method == "lora":
        if count(lp.get("rank")):
            b.config("lora_rank", count(lp["rank"]), "lora_parameters.rank")
        else:
            b.default("lora_rank", 8, "mlx_lm lora_parameters.rank default 8")
        if isinstance(lp.get("keys"), list) and lp["keys"]:
            b.config("lora_targets", [str(k).rsplit(".", 1)[-1] for k in lp["keys"]], "lora_parameters.keys")
        else:
            b.default("lora_targets", ["q_proj", "v_proj"], "mlx_lm LoRA default keys: the attention q/v projections")
    b.default("precision", "bf16_mixed", "MLX trains in the weights' dtype (bf16) with fp32 adapters")
    b.default("optimizer", "adamw", "mlx_lm optimizer default adam (two fp32 states per trainable parameter)")
    if count(s.get("batch_size")):
        b.config("micro_batch", count(s["batch_size"]), "batch_size")
    else:
        b.default("micro_batch", 4, "mlx_lm batch_size default 4")
    if count(s.get("grad_accumulation_steps")):
        b.config("grad_accum", count(s["grad_accumulation_steps"]), "grad_accumulation_steps")
    else:
        b.default("grad_accum", 1, "mlx_lm grad_accumulation_steps default 1")
    if count(s.get("max_seq_length")):
        b.config("seq_len", count(s["max_seq_length"]), "max_seq_length")
    else:
        b.default("seq_len", 2048, "mlx_lm max_seq_length default 2048")
    if "grad_checkpoint" in s:
        b.config("gradient_checkpointing", truthy(s["grad_checkpoint"]), "grad_checkpoint")
    else:
        b.default("gradient_checkpointing", False, "mlx_lm grad_checkpoint default false")


# Trainers name the model flag their own way (OpenRLHF --pretrain, --model_path_to_load, --base_model_dir): a key
# that says model/pretrain/checkpoint whose value looks like a model id or checkpoint path is the model.
_MODEL_LIKE_KEY = re.compile(r"model|pretrain|ckpt|checkpoint|base", re.IGNORECASE)
_NOT_MODEL_KEY = re.compile(r"output|save|log|data|cache|adapter|lora|tokenizer|reward|critic|ref_|teacher|draft",
                            re.IGNORECASE)


def _model_like_key(s: dict[str, Any]) -> str | None:
    from ..log_parser.model_names import looks_like_model

    for key, value in s.items():
        if (isinstance(value, str) and _MODEL_LIKE_KEY.search(key) and not _NOT_MODEL_KEY.search(key)
                and looks_like_model(value.strip().strip("'\""))):
            return key
    return None


_OPENRLHF_STAGES = {"train_dpo": "dpo", "train_kto": "kto", "train_rm": "rm", "train_ppo": "ppo", "train_ppo_ray": "ppo",
                    "train_sft": "sft", "train_prm": "rm"}
_STAGES = {"sft", "pt", "dpo", "kto", "orpo", "simpo", "rm", "ppo", "grpo"}


def _apply_stage(b: _Builder, s: dict[str, Any], doc: ConfigDocument, is_lf: bool) -> None:
    """The objective: LLaMA-Factory `stage` (+ pref_loss), ms-swift `rlhf_type`, OpenRLHF's cli module. DPO-style
    stages run chosen and rejected together; DPO/KTO/PPO keep a frozen reference copy unless the reference is the
    LoRA base with adapters off (LLaMA-Factory, TRL with peft), offloaded, or the loss needs none (ORPO, SimPO)."""
    script = str((doc.launcher or {}).get("script") or "")
    stage, key = None, ""
    for k in ("stage", "rlhf_type"):
        if str(s.get(k, "")).lower() in _STAGES:
            stage, key = str(s[k]).lower(), k
            break
    if stage is None:
        m = re.search(r"openrlhf\.cli\.(\w+)", script)
        if m and m.group(1) in _OPENRLHF_STAGES:
            stage, key = _OPENRLHF_STAGES[m.group(1)], f"openrlhf.cli.{m.group(1)}"
    if stage is None:
        return
    loss = str(s.get("pref_loss", s.get("loss_type", ""))).lower()
    if stage == "dpo" and loss in ("orpo", "simpo"):
        stage = loss
    b.config("stage", stage, key)
    openrlhf = script.startswith("openrlhf")
    if stage not in ("dpo", "kto", "ppo"):
        return
    if openrlhf and truthy(s.get("ref_offload", False)):
        return   # the reference actor lives on the CPU
    if not openrlhf and b.setup.method in ADAPTER_METHODS:
        return   # the reference is the base model with the adapters disabled: no second copy
    if truthy(s.get("use_ref_model", True)) is False:
        return
    b.config("reference_model", True, f"{key}: frozen reference model for the KL term")


def _apply_workload(b: _Builder, s: dict[str, Any], is_lf: bool) -> None:
    """What the run does: training unless the config asks only for evaluation or prediction.

    HF TrainingArguments (and LLaMA-Factory, which runs on them) default do_train/do_eval/do_predict to False and the
    workflows run each phase the flags ask for: do_eval or do_predict without do_train sizes an inference step
    (no gradients, no optimizer states) at per_device_eval_batch_size; predict_with_generate (Seq2SeqTrainingArguments,
    LLaMA-Factory) makes it generation. A config with none of the flags is a training script's (trainer.train())."""
    train, ev, pred = (truthy(s.get(k, False)) for k in ("do_train", "do_eval", "do_predict"))
    strategy = str(s.get("eval_strategy", s.get("evaluation_strategy", "no"))).lower()
    if train or not (ev or pred) or strategy not in ("no", "none", "") or s.get("val_size"):
        return   # training (an evaluation strategy or a validation split means evaluation between training steps)
    generate = truthy(s.get("predict_with_generate", False))
    key = ("do_predict" if pred else "do_eval") + (" + predict_with_generate" if generate else "") + " without do_train"
    b.config("workload", "generate" if generate else "predict" if pred else "eval", key)
    if "eval_batch" not in b.setup.provenance:
        _eval_batch(b, s)
    samples = count(s.get("max_samples"))
    if samples:
        b.config("eval_samples", samples, "max_samples")
    if not generate:
        return
    new_key = next((k for k in ("max_new_tokens", "generation_max_new_tokens") if count(s.get(k))), None)
    if new_key:
        b.config("max_new_tokens", count(s[new_key]), new_key)
    elif is_lf:
        b.default("max_new_tokens", 1024, "LLaMA-Factory GeneratingArguments.max_new_tokens default 1024")
    beams_key = next((k for k in ("num_beams", "generation_num_beams") if count(s.get(k))), None)
    if beams_key:
        b.config("num_beams", count(s[beams_key]), beams_key)


def _evaluates(s: dict[str, Any]) -> bool:
    strategy = str(s.get("eval_strategy", s.get("evaluation_strategy", "no"))).lower()
    return truthy(s.get("do_eval", False)) or strategy not in ("no", "none", "") or bool(s.get("val_size"))


def _apply_method(b: _Builder, s: dict[str, Any], is_lf: bool) -> None:
    ft_key = next((k for k in ("finetuning_type", "train_type", "sft_type") if s.get(k)), "finetuning_type")
    ft = str(s.get(ft_key, "")).lower()
    rank_key = next((k for k in LORA_RANK_KEYS if count(s.get(k))), None)
    lora_flag = next((k for k in ("lora_enable", "use_peft", "use_lora") if truthy(s.get(k, False))), None)
    qkey = next((k for k in ("quantization_bit", "quant_bits", "bits") if count(s.get(k))), "bits")
    qbits = count(s.get(qkey))
    load_key = next((k for k in QUANTIZED_LOAD_FLAGS if truthy(s.get(k, False))), None)
    if load_key is not None:
        qbits, qkey = QUANTIZED_LOAD_FLAGS[load_key], load_key
    if qbits is not None and qbits >= 16:
        qbits = None   # LLaVA/QLoRA scripts use bits=16 for "not quantized"
    if ft in ("lora", "oft", "longlora", "adalora", "vera", "boft", "dora"):
        method, key = "lora", ft_key
    elif ft in ("qlora",):
        method, key = "qlora", ft_key
        qbits = qbits or 4
    elif ft in ("freeze", "llamapro"):
        method, key = "freeze", ft_key
    elif ft == "full":
        method, key = "full", ft_key
    elif lora_flag:
        method, key = "lora", lora_flag
    elif rank_key and not is_lf:
        method, key = "lora", rank_key   # a LoRA rank on the command line means the script trains LoRA
    else:
        method, key = ("lora" if is_lf else "full"), ""
    if qbits and method == "lora":
        method = "qlora"
    if key:
        b.config("method", method, key if not qbits else f"{key} + {qkey}")
    elif load_key is not None and qbits:
        # a base loaded quantized cannot be fine-tuned in full: a training run trains adapters on it, and a run
        # that only runs it holds its weights at that width either way
        method = "qlora"
        b.default("method", method, f"{load_key}: a base loaded in {qbits} bits trains adapters, not all its weights")
    else:
        b.default("method", method, "LLaMA-Factory finetuning_type default lora" if is_lf else "no LoRA settings: full fine-tuning")
    if qbits:
        b.config("quantization_bit", qbits, qkey)
        if not is_lf and qbits == 4 and "bnb_4bit_quant_storage" not in s and not s.get("quantization_method") == "gptq":
            # LLaMA-Factory sets the quant storage dtype under ZeRO-3 itself; elsewhere it must be asked for
            b.default("quant_storage_sharded", False, "no bnb_4bit_quant_storage: ZeRO-3 cannot partition 4-bit weights")
    if method in ADAPTER_METHODS:
        if rank_key:
            b.config("lora_rank", count(s[rank_key]), rank_key)
        else:
            b.default("lora_rank", 8, "LLaMA-Factory lora_rank default 8" if is_lf else "peft LoraConfig r default 8")
        target = s.get("lora_target", s.get("lora_target_modules", s.get("target_modules")))
        if target:
            targets = [str(t).strip() for t in (target if isinstance(target, list) else str(target).split(",")) if str(t).strip()]
            b.config("lora_targets", targets, "lora_target")
        else:
            b.default("lora_targets", ["all"], "LLaMA-Factory lora_target default all" if is_lf else "all linear layers assumed")
        dropout = _fraction(s.get("lora_dropout"))
        if dropout is not None:
            b.config("lora_dropout", dropout, "lora_dropout")
        elif b.setup.framework == "swift":
            b.default("lora_dropout", 0.05, "ms-swift lora_dropout default 0.05")


def _fraction(v: Any) -> float | None:
    """A probability in [0, 1) from a config value ('0.05', 0.1), or None."""
    try:
        f = float(str(v).strip().strip("'\""))
    except (TypeError, ValueError):
        return None
    return f if 0.0 <= f < 1.0 else None


def _apply_attention(b: _Builder, s: dict[str, Any], is_lf: bool, doc: ConfigDocument) -> None:
    if is_lf:
        fa = str(s.get("flash_attn", "auto")).lower()
        mapping = {"disabled": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2", "fa3": "flash_attention_2"}
        if "flash_attn" in s and fa in mapping:
            b.config("attn_implementation", mapping[fa], "flash_attn")
        else:
            b.default("attn_implementation", "sdpa", "LLaMA-Factory flash_attn auto: transformers picks sdpa")
        return
    if str((doc.launcher or {}).get("script") or "").startswith("openrlhf"):
        if truthy(s.get("flash_attn", False)):
            b.config("attn_implementation", "flash_attention_2", "flash_attn")
        else:
            b.default("attn_implementation", "eager", "OpenRLHF loads the model with attn_implementation='eager' unless --flash_attn")
        return
    impl = str(s.get("attn_implementation", "")).lower()
    if impl in ("eager", "sdpa", "flash_attention_2"):
        b.config("attn_implementation", impl, "attn_implementation")
    elif impl in ("flash_attention_3", "fa3", "fa2", "flash_attn"):
        b.config("attn_implementation", "flash_attention_2", "attn_implementation")
    elif truthy(s.get("use_flash_attn", False)) or truthy(s.get("flash_attention", False)):
        b.config("attn_implementation", "flash_attention_2", "use_flash_attn")
    elif str((doc.launcher or {}).get("script") or "").endswith("train_mem.py"):
        # LLaVA-family train_mem.py patches the model to FlashAttention-2 before training
        b.config("attn_implementation", "flash_attention_2", "script train_mem.py (flash-attn patched)")
    else:
        b.default("attn_implementation", "sdpa", "transformers >= 4.36 default attention: sdpa")


def _apply_multimodal(b: _Builder, s: dict[str, Any], is_lf: bool) -> None:
    if is_lf:
        for field, key in (("freeze_vision_tower", "freeze_vision_tower"), ("freeze_projector", "freeze_multi_modal_projector")):
            if key in s:
                b.config(field, truthy(s[key]), key)
            else:
                b.default(field, True, f"LLaMA-Factory {key} default true")
        if truthy(s.get("train_mm_proj_only", False)):
            b.config("train_mm_proj_only", True, "train_mm_proj_only")
        model = b.setup.model
        if model is not None and model.vision is not None:
            if count(s.get("image_max_pixels")):
                b.config("image_max_pixels", count(s["image_max_pixels"]), "image_max_pixels")
            else:
                b.default("image_max_pixels", _LF_DEFAULT_IMAGE_MAX_PIXELS, "LLaMA-Factory image_max_pixels default 768*768")
        elif count(s.get("image_max_pixels")):
            b.config("image_max_pixels", count(s["image_max_pixels"]), "image_max_pixels")
        return
    if count(s.get("image_max_pixels")) or count(s.get("max_pixels")):   # the processor's cap (Qwen-VL max_pixels=)
        key = "image_max_pixels" if count(s.get("image_max_pixels")) else "max_pixels"
        b.config("image_max_pixels", count(s[key]), key)
    # LLaVA-family flags
    if "finetune_vision_layers" in s:   # unsloth FastVisionModel.get_peft_model
        b.config("freeze_vision_tower", not truthy(s["finetune_vision_layers"]), "finetune_vision_layers")
    if "unfreeze_mm_vision_tower" in s:
        b.config("freeze_vision_tower", not truthy(s["unfreeze_mm_vision_tower"]), "unfreeze_mm_vision_tower")
    if "freeze_mm_mlp_adapter" in s:
        b.config("freeze_projector", truthy(s["freeze_mm_mlp_adapter"]), "freeze_mm_mlp_adapter")
    if truthy(s.get("tune_mm_mlp_adapter", False)):
        b.config("train_mm_proj_only", True, "tune_mm_mlp_adapter")
    tower = next((k for k in ("image_tower", "vision_tower") if s.get(k)), None)
    if tower:
        b.config("images_per_sample", 1, f"{tower} (one image per sample assumed)")


def _apply_deepspeed(b: _Builder, doc: ConfigDocument) -> None:
    facts = deepspeed_facts(doc.deepspeed)
    where = doc.deepspeed_name or ("deepspeed (inline)" if doc.deepspeed_inline else doc.name)
    inferred = any("inferred from its name" in n for n in doc.notes)
    for field in ("zero_stage", "offload_optimizer", "offload_param"):
        if field in facts:
            detail = f"{where}: zero_optimization.{'stage' if field == 'zero_stage' else field}"
            if doc.deepspeed_assumed:   # a well-known file nobody gave: its published content is an assumption
                b.default(field, facts[field], f"{detail} of the published file ({doc.deepspeed_assumed})")
            elif inferred:
                b.setup = b.setup.with_fact(field, facts[field], "derived", f"{where}: from the file name")
            else:
                b.setup = b.setup.with_fact(field, facts[field], "config", detail)
    if doc.launcher and "zero_stage" in doc.launcher:
        b.config("zero_stage", doc.launcher["zero_stage"], "accelerate --zero_stage")
    elif "zero_stage" not in b.setup.provenance and int_any(doc.settings.get("zero_stage")) in (0, 1, 2, 3):
        b.config("zero_stage", int_any(doc.settings["zero_stage"]), "zero_stage")   # OpenRLHF builds its DeepSpeed config
        if truthy(doc.settings.get("adam_offload", False)):
            b.config("offload_optimizer", True, "adam_offload")


def _apply_accelerate(b: _Builder, s: dict[str, Any]) -> None:
    n = count(s.get("num_processes"))
    if n:
        b.config("num_gpus", n, "num_processes")
    nodes = count(s.get("num_machines"))
    if nodes and nodes > 1:
        b.config("num_nodes", nodes, "num_machines")
    mp = str(s.get("mixed_precision", "")).lower()
    if mp == "bf16":
        b.config("precision", "bf16_mixed", "mixed_precision")
    elif mp == "fp16":
        b.config("precision", "fp16_mixed", "mixed_precision")
    dsc = s.get("deepspeed_config")
    if isinstance(dsc, dict):
        st = int_any(dsc.get("zero_stage"))
        if st is not None and 0 <= st <= 3:
            b.config("zero_stage", st, "deepspeed_config.zero_stage")
        for part, key in (("offload_optimizer", "offload_optimizer_device"), ("offload_param", "offload_param_device")):
            if key in dsc:
                b.config(part, str(dsc[key]).lower() in ("cpu", "nvme"), f"deepspeed_config.{key}")
    if str(s.get("distributed_type", "")).upper() == "FSDP":
        b.config("fsdp", True, "distributed_type")


def _eval_batch(b: _Builder, s: dict[str, Any]) -> None:
    """The evaluation micro-batch: the config's key, else TrainingArguments' default of 8."""
    eb_key = next((k for k in ("per_device_eval_batch_size", "eval_batch_size") if count(s.get(k))), None)
    if eb_key:
        b.config("eval_batch", count(s[eb_key]), eb_key)
    else:
        b.default("eval_batch", _HF_DEFAULT_BATCH, "TrainingArguments.per_device_eval_batch_size default 8")
