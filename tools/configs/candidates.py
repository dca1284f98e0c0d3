"""The fix catalogue: each candidate turns one memory mechanism into setup changes (what the
calculator scores) plus the matching edits in the user's own keys, at increasing strength.

Tiers follow the cost to the user's training: 1 free, 2 same optimisation with another schedule,
3 freeze what need not train, 4 sharding/offload, 5 shorter sequences (data change),
6 another method (result change)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..memory.estimator import effective_attention
from ..training_setup import ADAPTER_METHODS, TrainingSetup
from .keys import KeyStyle
from .rewrite import deepspeed_template
from .schema import ConfigChange, ConfigDocument, Constraints

# Model families Liger Kernel ships fused kernels for (liger_kernel.transformers.monkey_patch).
LIGER_FAMILIES = {"llama", "mistral", "mixtral", "qwen2", "qwen2_vl", "qwen2_5_vl", "qwen3", "qwen3_moe", "gemma", "gemma2",
                  "gemma3", "phi3", "mllama", "granite", "olmo2", "glm4"}


# A new dependency (DeepSpeed where the run has none: a package, a file, maybe a launcher; Liger: a package
# that patches the model). DeepSpeed then ranks after quantizing a LoRA run's frozen base but before
# leaving full fine-tuning for LoRA; Liger after a schedule change.
NEW_DEPENDENCY_COST = 1.75


_MAX_MICRO_BATCH = 4096   # no real micro-batch is larger; bounds the option search
# The image cap a native-resolution processor applies when the config sets none (Qwen2-VL / Qwen2.5-VL
# preprocessor_config.json max_pixels).
PROCESSOR_MAX_PIXELS = {"qwen2_vl": 12_845_056, "qwen2_5_vl": 12_845_056}


@dataclass
class Option:
    """One strength of a candidate: the setup after it and the edits that express it."""

    setup_update: dict[str, Any]
    changes: list[ConfigChange]
    label: str


@dataclass
class Candidate:
    """One fix mechanism: its cost tier, the causes it addresses, and its options for a given setup."""

    name: str
    tier: int
    addresses: tuple[str, ...]
    options: Callable[[TrainingSetup], list[Option]]
    extra_cost: float = 0.0
    confirmed_by: list[str] = field(default_factory=list)


def _ch(key: str, frm: Any, to: Any, why: str, tier: int, *, target: str = "config", results: bool = False) -> ConfigChange:
    return ConfigChange(key=key, from_value=frm, to_value=to, rationale=why, tier=tier, target=target, changes_results=results)


def _action(text: str, why: str, tier: int, target: str = "install") -> ConfigChange:
    return ConfigChange(action=text, rationale=why, tier=tier, target=target)


class Catalogue:
    """Candidates for one setup and config; `all()` lists those that apply.

    Every option's edits are stated against the *original* config (self.base), whatever was applied
    before it: the planner may later drop or relax other changes, and each kept option must still
    describe a complete edit on its own."""

    def __init__(self, setup: TrainingSetup, doc: ConfigDocument | None, constraints: Constraints):
        self.base = setup
        self.doc = doc
        self.constraints = constraints
        framework = (doc.framework if doc is not None and doc.framework else setup.framework)
        self.keys = KeyStyle(framework=framework, doc=doc)

    def _setting(self, key: str, fallback: Any) -> Any:
        return self.keys.settings.get(key, fallback)

    # ------------------------------------------------------------------ tier 1: free
    def attention(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if effective_attention(s) != "eager":   # what really runs: a model without sdpa falls back to eager
                return []
            lacks_sdpa = s.model is not None and s.model.attention_impls and "sdpa" not in s.model.attention_impls
            impl = "flash_attention_2" if (s.gpu is None or s.gpu.bf16 or lacks_sdpa) else "sdpa"
            kv = self.keys.attention(impl)
            why = ("eager attention materialises the batch x heads x seq x seq score matrix; "
                   f"{'FlashAttention-2' if impl == 'flash_attention_2' else 'SDPA'} computes it in tiles")
            changes = []
            if kv:
                changes.append(_ch(kv[0], self._setting(kv[0], None), kv[1], why, 1))
            else:
                changes.append(_action(f"load the model with attn_implementation=\"{impl}\"", why, 1, "config"))
            if impl == "flash_attention_2":
                changes.append(_action("pip install flash-attn --no-build-isolation",
                                       "the fa2 setting only takes effect when flash-attn is installed (else it falls back to eager)", 1))
            return [Option({"attn_implementation": impl}, changes, impl)]
        return Candidate("attention", 1, ("eager_attention", "seq_len_too_long"), opts)

    def gradient_checkpointing(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if s.gradient_checkpointing:
                return []
            kv = self.keys.gradient_checkpointing()
            why = "keeps only each layer's input and recomputes the rest in backward (~20-30% more compute, far fewer activations)"
            if kv is None:
                return []
            return [Option({"gradient_checkpointing": True}, [_ch(kv[0], self._setting(kv[0], None), kv[1], why, 1)], "on")]
        return Candidate("gradient_checkpointing", 1, ("no_gradient_checkpointing", "seq_len_too_long", "batch_too_large",
                                                       "vision_tokens", "memory_growth"), opts)

    def liger(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if s.liger_kernel or s.model is None or s.model.model_type not in LIGER_FAMILIES:
                return []
            kv = self.keys.liger()
            why = "Liger's fused linear + cross-entropy never materialises the full batch x seq x vocab logits in fp32"
            return [Option({"liger_kernel": True}, [_ch(kv[0], self._setting(kv[0], None), kv[1], why, 1),
                                                    _action("pip install liger-kernel", "needed by the Liger setting", 1)], "on")]
        # free in memory and math, but a new package with per-model patches: ranked after schedule changes
        return Candidate("liger", 1, ("logits_large_vocab", "seq_len_too_long"), opts, extra_cost=NEW_DEPENDENCY_COST)

    def bf16(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if s.precision != "fp32":
                return []
            if s.gpu is not None and not s.gpu.bf16:
                return [Option({"precision": "fp16_mixed"}, [_ch("fp16", self._setting("fp16", None), True,
                                "this GPU has no bf16; fp16 autocast halves activation memory", 1)], "fp16")]
            return [Option({"precision": "bf16_mixed"}, [_ch(self.keys.bf16(), self._setting("bf16", None), True,
                            "bf16 autocast halves activation memory versus fp32", 1)], "bf16")]
        return Candidate("bf16", 1, ("seq_len_too_long", "batch_too_large"), opts)

    def eval_memory(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            out: list[Option] = []
            if s.eval_batch is None:
                return out
            base_changes = []
            upd: dict[str, Any] = {}
            # accumulated predictions exist when logits are kept: prediction, or evaluation between training steps
            # (compute_metrics); an evaluation-only or generation run keeps only the loss / token ids
            if not s.eval_accumulation_steps and s.workload in ("train", "predict"):
                upd["eval_accumulation_steps"] = 1
                base_changes.append(_ch("eval_accumulation_steps", self._setting("eval_accumulation_steps", None), 1,
                                        "moves accumulated predictions/logits to the CPU after every eval step instead of keeping them on the GPU", 1))
            if upd:
                out.append(Option(dict(upd), list(base_changes), "eval_accumulation_steps=1"))
            b = s.eval_batch
            while b > 1:
                b //= 2
                out.append(Option({**upd, "eval_batch": b}, base_changes + [
                    _ch(self.keys.eval_batch_key(), s.eval_batch, b, "evaluation holds a batch of activations and logits; a smaller eval batch only slows eval", 1)],
                    f"eval batch {b}"))
            return out
        return Candidate("eval_memory", 1, ("eval_accumulation",), opts)

    def generation(self) -> Candidate:
        """Prediction by generation: each beam of each sequence keeps a KV cache of prompt + max_new_tokens."""
        def opts(s: TrainingSetup) -> list[Option]:
            out: list[Option] = []
            if s.workload != "generate":
                return out
            if s.num_beams > 1:
                key = "num_beams" if self.keys.has("num_beams") or not self.keys.has("generation_num_beams") else "generation_num_beams"
                out.append(Option({"num_beams": 1}, [_ch(key, s.num_beams, 1, "each beam keeps its own KV cache: greedy "
                                                    "or sampled decoding keeps one per sequence (outputs may differ)", 1,
                                                    results=True)], "one beam"))
            from ..memory.estimator import max_new_tokens

            n = max_new_tokens(s)
            key = "generation_max_new_tokens" if self.keys.has("generation_max_new_tokens") else "max_new_tokens"
            while n > 64:
                n //= 2
                out.append(Option({"max_new_tokens": n}, [_ch(key, self._setting(key, max_new_tokens(s)), n,
                                  f"the KV cache grows with every generated token: at most {n} new tokens per sample "
                                  "(longer answers are cut)", 5, results=True)], f"max_new_tokens {n}"))
            return out
        return Candidate("generation", 1, ("eval_accumulation", "seq_len_too_long", "batch_too_large"), opts)

    # ------------------------------------------------------------------ tier 2: schedule
    def micro_batch(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if self.constraints.keep_batch or s.micro_batch <= 1:
                return []
            per_gpu = s.micro_batch * s.grad_accum   # samples per GPU per optimizer step: must stay the same
            out = []
            for m in range(min(s.micro_batch - 1, _MAX_MICRO_BATCH), 0, -1):   # bounded: a nonsense batch must not hang us
                if per_gpu % m:
                    continue
                a = per_gpu // m
                why = (f"a micro-batch of {m} holds {m}/{s.micro_batch} of the activations; accumulation {s.grad_accum}->{a} keeps "
                       f"the effective batch {m} x {a} x {s.num_gpus} GPUs = {m * a * s.num_gpus}")
                out.append(Option({"micro_batch": m, "grad_accum": a}, [
                    _ch(self.keys.micro_batch_key(), s.micro_batch, m, why, 2),
                    _ch(self.keys.grad_accum_key(), s.grad_accum, a, "keeps the effective batch size unchanged", 2)], f"micro-batch {m}"))
            return out
        return Candidate("micro_batch", 2, ("batch_too_large", "seq_len_too_long", "logits_large_vocab", "memory_growth",
                                           "vision_tokens", "moe_memory"), opts)

    # ------------------------------------------------------------------ tier 3: freeze
    def freeze_vision(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if s.model is None or s.model.vision is None or s.method not in ("full", "freeze"):
                return []
            out = []
            upd: dict[str, Any] = {}
            changes: list[ConfigChange] = []
            if not s.freeze_vision_tower and (kv := self.keys.freeze_vision_tower()):
                upd["freeze_vision_tower"] = True
                changes.append(_ch(kv[0], self._setting(kv[0], None), kv[1],
                                   "the vision tower needs no gradients or optimizer states for most SFT; its activations stop being saved for backward", 3))
                out.append(Option(dict(upd), list(changes), "vision tower"))
            if not s.freeze_projector and (kv := self.keys.freeze_projector()):
                upd["freeze_projector"] = True
                changes.append(_ch(kv[0], self._setting(kv[0], None), kv[1], "the projector's gradients and optimizer states go too", 3))
                out.append(Option(dict(upd), list(changes), "vision tower + projector"))
            return out
        return Candidate("freeze_vision", 3, ("vision_tokens", "full_ft_model_states", "memory_growth"), opts)

    def image_pixels(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            key = self.keys.image_max_pixels()
            if key is None or s.model is None or s.model.vision is None:
                return []
            # unset, images reach the tower at up to the processor's own limit (Qwen-VL: 12,845,056 px)
            p = s.image_max_pixels or PROCESSOR_MAX_PIXELS.get(s.model.vision.kind)
            if not p:
                return []
            out = []
            unset = "" if s.image_max_pixels else f" (unset, the processor allows {p:,} px)"
            for target in (1024 * 1024, 768 * 768, 512 * 512, 384 * 384, 256 * 256):
                if target < p:
                    out.append(Option({"image_max_pixels": target}, [_ch(key, s.image_max_pixels, target,
                        f"visual tokens scale with pixels: {p} -> {target} px{unset} cuts image tokens ~{p / target:.1f}x "
                        "(lower image detail)", 3)], f"{target} px"))
            return out
        return Candidate("image_pixels", 3, ("vision_tokens",), opts)

    # ------------------------------------------------------------------ tier 4: shard / offload
    def _ds_changes(self, s: TrainingSetup, stage: int, off_opt: bool, off_param: bool, why: str) -> list[ConfigChange]:
        """Edits that set the DeepSpeed stage/offload, in the file the config uses (or a new one)."""
        doc = self.doc
        changes: list[ConfigChange] = []
        if doc is not None and doc.launcher.get("accelerate_config"):
            # the ZeRO settings live in the accelerate config the script names: say what to set there
            acc = doc.launcher["accelerate_config"]
            sets = []
            if stage != s.zero_stage:
                sets.append(f"deepspeed_config.zero_stage: {stage}")
            for part, on in (("offload_optimizer", off_opt), ("offload_param", off_param)):
                if on != getattr(s, part):
                    sets.append(f"deepspeed_config.{part}_device: {'cpu' if on else 'none'}")
            return [_action(f"in {acc} set " + ", ".join(sets), why, 4, "config")] if sets else []
        if doc is not None and doc.format == "accelerate_yaml":
            if stage != s.zero_stage:
                changes.append(_ch("deepspeed_config.zero_stage", s.zero_stage, stage, why, 4))
            if off_opt != s.offload_optimizer:
                changes.append(_ch("deepspeed_config.offload_optimizer_device", "none", "cpu" if off_opt else "none", why, 4))
            if off_param != s.offload_param:
                changes.append(_ch("deepspeed_config.offload_param_device", "none", "cpu" if off_param else "none", why, 4))
            return changes
        has_ds_text = doc is not None and (doc.deepspeed_text is not None or doc.deepspeed_inline or doc.format == "deepspeed_json")
        if doc is None and (s.zero_stage > 0 or self.base.zero_stage > 0):
            has_ds_text = True   # DeepSpeed is in use, its file unknown: describe the edits in DeepSpeed's own keys
        if has_ds_text:
            zero = (((doc.deepspeed if doc is not None else None) or {}).get("zero_optimization") or {})
            if stage != s.zero_stage:
                changes.append(_ch("zero_optimization.stage", s.zero_stage, stage, why, 4, target="deepspeed"))
            for part, on in (("offload_optimizer", off_opt), ("offload_param", off_param)):
                if on == getattr(s, part):
                    continue
                if isinstance(zero.get(part), dict):
                    changes.append(_ch(f"zero_optimization.{part}.device", zero[part].get("device"), "cpu" if on else "none", why, 4, target="deepspeed"))
                else:
                    changes.append(_ch(f"zero_optimization.{part}", zero.get(part), {"device": "cpu", "pin_memory": True} if on else {"device": "none"},
                                       why, 4, target="deepspeed"))
            return changes
        ds_key = self.keys.deepspeed_key()
        ref = doc.deepspeed_name if doc is not None else None
        if ref:
            # a referenced file we were not given: point at the file with the new stage (the same family's published
            # one when the reference is well known) and give its content, so the answer holds the file it names
            new_ref, content, source = _switched_ds_file(ref, stage, off_opt, off_param)
            changes.append(_ch(ds_key or "deepspeed", ref, new_ref, why, 4))
            if content is not None:
                changes.append(ConfigChange(key="__file__", to_value=content, target="deepspeed", tier=4,
                                            rationale=f"new {posixpath.basename(new_ref)}" + (f" ({source})" if source else "")))
            return changes
        # no DeepSpeed at all: a new file plus the flag that names it (a new dependency: costs more)
        name = _new_ds_name(stage, off_opt, off_param)
        if ds_key is None:
            return []
        changes.append(_ch(ds_key, None, name, why + " (new DeepSpeed file; run with the deepspeed launcher or torchrun)", 4))
        changes.append(ConfigChange(key="__file__", to_value=deepspeed_template(stage, off_opt, off_param), target="deepspeed", tier=4,
                                    rationale=f"new {name}"))
        changes.append(_action("pip install deepspeed", "the new DeepSpeed config needs the deepspeed package", 4))
        return changes

    def zero(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if self.constraints.no_deepspeed or s.num_gpus * s.num_nodes < 2 or s.zero_stage >= 3 or s.fsdp:
                return []
            out = []
            for stage in (2, 3):
                if stage <= s.zero_stage:
                    continue
                if stage == 2 and s.method in ADAPTER_METHODS:
                    continue   # with adapters the optimizer states are tiny: only sharding the weights (ZeRO-3) helps
                n = s.num_gpus
                why = (f"ZeRO-{stage} shards {'gradients and optimizer states' if stage == 2 else 'weights, gradients and optimizer states'} "
                       f"across the {n} GPUs instead of replicating them")
                changes = self._ds_changes(self.base, stage, s.offload_optimizer, s.offload_param, why)
                if changes:
                    out.append(Option({"zero_stage": stage}, changes, f"ZeRO-{stage}"))
            return out
        return Candidate("zero", 4, ("zero_stage_insufficient", "full_ft_model_states", "weights_exceed_gpu", "moe_memory"), opts,
                         extra_cost=NEW_DEPENDENCY_COST if self._introduces_deepspeed() else 0.0)

    def offload(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if self.constraints.no_deepspeed or s.method in ADAPTER_METHODS or s.fsdp:
                return []
            out = []
            opt_why = "ZeRO-Offload keeps the fp32 optimizer states (12 bytes/param) in host RAM; the step runs on the CPU (slower)"
            if not s.offload_optimizer:
                stage = max(s.zero_stage, 2)   # optimizer offload needs ZeRO-2 or 3 (it works on a single GPU too)
                changes = self._ds_changes(self.base, stage, True, s.offload_param, opt_why)
                out.append(Option({"offload_optimizer": True, "zero_stage": stage}, changes, f"ZeRO-{stage} + optimizer offload"))
            if not s.offload_param:
                why = ("ZeRO-3 parameter offload keeps the weights in host RAM too and streams each layer in "
                       "(much slower; works on a single GPU)")
                changes = self._ds_changes(self.base, 3, True, True, why)
                out.append(Option({"offload_optimizer": True, "offload_param": True, "zero_stage": 3}, changes,
                                  "ZeRO-3 + optimizer and parameter offload"))
            return out
        return Candidate("offload", 4, ("full_ft_model_states", "zero_stage_insufficient", "weights_exceed_gpu"), opts,
                         extra_cost=NEW_DEPENDENCY_COST if self._introduces_deepspeed() else 0.0)

    def reference_offload(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            script = str(((self.doc.launcher if self.doc is not None else None) or {}).get("script") or "")
            if not s.reference_model or not script.startswith("openrlhf"):
                return []
            why = ("OpenRLHF keeps the frozen reference model on the CPU and moves it in for its forward pass: its "
                   "weights leave the GPU (slower reference log-probs)")
            return [Option({"reference_model": False}, [_ch("ref_offload", self._setting("ref_offload", None), True, why, 4)],
                           "reference model on the CPU")]
        return Candidate("reference_offload", 4, ("weights_exceed_gpu", "full_ft_model_states", "zero_stage_insufficient",
                                                  "quantization_setup"), opts)

    def _introduces_deepspeed(self) -> bool:
        d = self.doc
        if d is None:
            return self.base.zero_stage == 0
        return d.deepspeed is None and not d.deepspeed_name and d.format not in ("deepspeed_json", "accelerate_yaml")

    # ------------------------------------------------------------------ tier 5: shorter sequences
    def seq_len(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if self.constraints.keep_seq_len or s.seq_len <= 512:
                return []
            prov = s.provenance.get("seq_len")
            key = self.keys.seq_len_key(prov.detail if prov else None)
            if key is None:
                return []
            out = []
            v = 1 << (s.seq_len - 1).bit_length()   # next power of two >= seq_len
            while v > 512:
                v //= 2
                if v >= s.seq_len:
                    continue
                why = (f"activations, attention and logits grow with tokens per sample: {s.seq_len} -> {v}. "
                       f"Samples longer than {v} tokens are truncated (the training data changes)")
                out.append(Option({"seq_len": v}, [_ch(key, s.seq_len, v, why, 5, results=True)], f"{key} {v}"))
            return out
        return Candidate("seq_len", 5, ("seq_len_too_long", "logits_large_vocab", "vision_tokens"), opts)

    # ------------------------------------------------------------------ tier 6: another method
    def lora(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if self.constraints.keep_method or s.method not in ("full", "freeze"):
                return []
            kvs = self.keys.lora()
            why = ("LoRA trains small adapters on frozen weights: no full gradients or optimizer states "
                   "(the trained result differs from full fine-tuning)")
            if kvs:
                changes = [_ch(k, self._setting(k, s.method if k == "finetuning_type" else None), v, why, 6, results=True) for k, v in kvs]
            else:
                changes = [_action("train LoRA adapters with peft (LoraConfig r=8 on all linear layers) instead of full fine-tuning", why, 6, "config")]
            # the user's own offload is no longer needed with LoRA (offload the plan added is dropped by the planner)
            drop_offload = (self.base.offload_optimizer or self.base.offload_param) and not self.constraints.no_deepspeed
            upd = {"method": "lora", "offload_optimizer": False, "offload_param": False} if drop_offload else {"method": "lora"}
            if drop_offload:
                changes += self._ds_changes(self.base, self.base.zero_stage, False, False,
                                            "with LoRA the small optimizer states fit on the GPU; offload only slows it down")
            return [Option(upd, changes, "LoRA")]
        return Candidate("lora", 6, ("full_ft_model_states", "offload_host_ram", "zero_stage_insufficient"), opts)

    def qlora(self) -> Candidate:
        def opts(s: TrainingSetup) -> list[Option]:
            if self.constraints.keep_method or s.method in ("qlora",) or (s.gpu is not None and s.gpu.vendor != "nvidia"):
                return []
            if s.method not in ("lora",) and not (s.method in ("full", "freeze") and self.keys.lora()):
                return []
            kv = self.keys.qlora()
            why = ("4-bit (NF4) base weights take ~0.5 byte/param instead of 2; LoRA adapters train on top "
                   "(QLoRA: results differ slightly from 16-bit LoRA)")
            changes: list[ConfigChange] = []
            if self.base.method in ("full", "freeze"):
                for k, v in self.keys.lora() or []:
                    changes.append(_ch(k, self._setting(k, self.base.method), v, "QLoRA trains LoRA adapters", 6, results=True))
            if kv:
                changes.append(_ch(kv[0], self._setting(kv[0], None), kv[1], why, 6, results=True))
            else:
                changes.append(_action("load the base model with BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4')", why, 6, "config"))
            changes.append(_action("pip install bitsandbytes", "4-bit loading needs bitsandbytes", 6))
            # outside LLaMA-Factory ZeRO-3 partitions 4-bit weights only with a quant storage dtype (mapping.py)
            sharded = self.keys.is_lf or self.keys.has("bnb_4bit_quant_storage")
            return [Option({"method": "qlora", "quantization_bit": 4, "quant_storage_sharded": sharded}, changes, "QLoRA 4-bit")]
        # quantizing the frozen base of a LoRA run changes results less than leaving full fine-tuning
        shift = -0.5 if self.base.method == "lora" else 0.5
        return Candidate("qlora", 6, ("weights_exceed_gpu", "full_ft_model_states"), opts, extra_cost=shift)

    def all(self) -> list[Candidate]:
        if self.base.workload != "train":
            # evaluation / prediction only: no training step runs, so only evaluation and generation keys are levers
            # (never per_device_train_batch_size or gradient_accumulation_steps)
            return [self.eval_memory(), self.generation()]
        if self.keys.is_mlx:
            # MLX (Apple silicon): no DeepSpeed, bitsandbytes, flash-attn or Liger; these are the levers its trainer has
            return [self.gradient_checkpointing(), self.micro_batch(), self.seq_len(), self.lora()]
        return [self.attention(), self.gradient_checkpointing(), self.liger(), self.bf16(), self.eval_memory(),
                self.micro_batch(), self.freeze_vision(), self.image_pixels(), self.zero(), self.offload(), self.reference_offload(),
                self.seq_len(), self.lora(), self.qlora()]


def _switched_ds_file(ref: str, stage: int, off_opt: bool, off_param: bool) -> tuple[str, str | None, str | None]:
    """(the reference to write, the new file's text, where that text comes from) for a switch of ZeRO stage/offload
    away from a DeepSpeed file nobody gave: the same family's published file when the reference is well known and
    that family publishes one for the new setting, else the renamed file with a template (None for ms-swift presets,
    which are names, not files)."""
    from .known_files import known_file, sibling

    known = known_file(ref)
    match = sibling(known, stage, off_opt, off_param and stage == 3) if known is not None else None
    if match is not None:
        folder = posixpath.dirname(ref.strip().strip("'\""))
        return posixpath.join(folder, match.name) if folder else match.name, match.text(), match.source
    new_ref = _renamed_ds_file(ref, stage, off_opt or off_param)
    if not new_ref.lower().endswith(".json"):
        return new_ref, None, None
    if known_file(new_ref) is not None:   # a published file's name with other settings: a name of its own instead
        new_ref = posixpath.join(posixpath.dirname(new_ref), _new_ds_name(stage, off_opt, off_param))
    return new_ref, deepspeed_template(stage, off_opt, off_param), None


def _new_ds_name(stage: int, off_opt: bool, off_param: bool) -> str:
    """A new DeepSpeed file's name in LLaMA-Factory's style: ds_z3_offload_config.json offloads both (ds_z2_offload the
    optimizer, the only one ZeRO-2 can); an optimizer-only offload at ZeRO-3 gets its own name."""
    suffix = "_offload" if off_param or (off_opt and stage == 2) else "_offload_optimizer" if off_opt else ""
    return f"ds_z{stage}{suffix}_config.json"


def _renamed_ds_file(ref: str, stage: int, offload: bool) -> str:
    """The file (or preset) with the wanted stage: LLaMA-Factory's examples/deepspeed naming
    ds_z{0,2,3}[_offload]_config.json in the same folder; ms-swift's presets default-zero{2,3} / zero{2,3}-offload."""
    if not ref.strip().lower().endswith(".json"):
        return f"zero{stage}-offload" if offload else f"default-zero{stage}"
    folder, base = posixpath.split(ref)
    new = f"ds_z{stage}{'_offload' if offload else ''}_config.json"
    if re.search(r"z[0-3]", base):
        new = re.sub(r"z[0-3](?:_offload)?", f"z{stage}{'_offload' if offload else ''}", base, count=1)
    return posixpath.join(folder, new) if folder else new
