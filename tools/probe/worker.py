"""The probe's child process: build the model once, then run the trials the parent sends.

Protocol (JSON lines): stdin line 1 is a ProbeSpec; each next line a Trial; an empty line ends.
Every answer is one stdout line starting with `@@probe ` (libraries may print other lines).
Runs in its own process so an OOM, a CUDA crash or a hang never reaches the CLI, web UI or Slack bot;
when it exits the driver frees all its GPU memory.
"""

from __future__ import annotations

import gc
import json
import sys
import time

from ..training_setup import ADAPTER_METHODS

PREFIX = "@@probe "


def emit(obj: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _dtype_policy(spec, torch):
    """(weight dtype, autocast dtype or None): mirrors HF Trainer / LLaMA-Factory precision handling."""
    if spec.precision == "fp32":
        return torch.float32, None
    half = torch.float16 if spec.precision == "fp16_mixed" else torch.bfloat16
    if spec.precision == "pure_bf16":
        return torch.bfloat16, None
    if spec.method in ADAPTER_METHODS:
        return half, None  # frozen base in half precision; adapters are upcast to fp32 below (LLaMA-Factory default)
    return torch.float32, half  # fp32 master weights + autocast (HF Trainer bf16=True on an fp32-loaded model)


def build(spec):
    import torch
    import transformers

    weight_dtype, autocast = _dtype_policy(spec, torch)
    device = torch.device(spec.device)
    cfg_dict = dict(spec.hf_config)
    model_type = cfg_dict.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **cfg_dict)
    config.use_cache = False
    kwargs = {"attn_implementation": spec.attn_implementation}
    auto = _auto_class(config, transformers)
    if spec.weights_path:
        model = auto.from_pretrained(spec.weights_path, dtype=weight_dtype, device_map={"": device},
                                     trust_remote_code=spec.trust_remote_code, **kwargs)
    else:
        with device:
            model = auto.from_config(config, dtype=weight_dtype, trust_remote_code=spec.trust_remote_code, **kwargs)
    if spec.method == "qlora":
        _quantize_4bit(model, device, torch)
    trainable = _apply_method(model, spec, torch)
    if spec.gradient_checkpointing and not spec.eval_only:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train(not spec.eval_only)
    optimizer = None if spec.eval_only else _optimizer(spec.optimizer, trainable, device, torch)
    return model, optimizer, autocast, config


def _auto_class(config, transformers):
    archs = getattr(config, "architectures", None) or []
    if getattr(config, "vision_config", None) is not None:
        for name in archs:
            cls = getattr(transformers, name, None)
            if cls is not None:
                return cls
        return transformers.AutoModelForImageTextToText
    return transformers.AutoModelForCausalLM


def _quantize_4bit(model, device, torch):
    """Replace every nn.Linear except lm_head by bitsandbytes Linear4bit (nf4, double quant) — the QLoRA paper's setup."""
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise RuntimeError("QLoRA probing needs bitsandbytes (pip install bitsandbytes) and a CUDA device") from exc
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and name != "lm_head":
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.to("cpu"), requires_grad=False, quant_type="nf4",
                                             compress_statistics=True)
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                setattr(parent, name, q.to(device))
                del child
    gc.collect()
    torch.cuda.empty_cache()


def _apply_method(model, spec, torch) -> list:
    """Freeze/LoRA as the framework would; returns the trainable parameters."""
    if spec.method in ADAPTER_METHODS:
        from peft import LoraConfig, get_peft_model

        targets = "all-linear" if spec.lora_targets in (["all"], ["all-linear"], []) else spec.lora_targets
        lora = LoraConfig(r=spec.lora_rank, lora_alpha=2 * spec.lora_rank, lora_dropout=0.0, target_modules=targets,
                          task_type="CAUSAL_LM")
        for p in model.parameters():
            p.requires_grad_(False)
        model_peft = get_peft_model(model, lora)
        model.__dict__["_probe_peft"] = model_peft
        for p in model_peft.parameters():
            if p.requires_grad:
                p.data = p.data.float()  # LLaMA-Factory upcasts trainable parameters to fp32 unless pure_bf16
    else:
        for name, p in model.named_parameters():
            frozen = (spec.freeze_vision_tower and _is_vision(name)) or (spec.freeze_projector and _is_projector(name))
            p.requires_grad_(not frozen)
    return [p for p in model.parameters() if p.requires_grad]


def _is_vision(name: str) -> bool:
    return any(k in name for k in ("visual.", "vision_tower", "vision_model", "vision_encoder")) and not _is_projector(name)


def _is_projector(name: str) -> bool:
    return any(k in name for k in ("merger", "multi_modal_projector", "mm_projector"))


def _optimizer(name: str, params: list, device, torch):
    if name in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"):
        import bitsandbytes as bnb

        cls = {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
               "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}[name]
        return cls(params, lr=1e-5)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=1e-5, relative_step=False, scale_parameter=False)
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-5)
    return torch.optim.AdamW(params, lr=1e-5, fused=(name == "adamw_fused" and device.type == "cuda") or None)


def _batch(spec, config, micro_batch: int, seq_len: int, device, torch) -> dict:
    """Synthetic batch of the configured shape: random token ids, labels = inputs (the model's own causal-LM loss)."""
    text_cfg = getattr(config, "text_config", None) or config
    vocab = text_cfg.vocab_size
    ids = torch.randint(0, max(2, vocab - 1000), (micro_batch, seq_len), device=device)
    batch = {"input_ids": ids, "labels": ids}
    vision = getattr(config, "vision_config", None)
    if vision is not None and spec.image_px:
        batch.update(_image_inputs(config, vision, ids, micro_batch, spec.image_px, device, torch))
    return batch


def _image_inputs(config, vision, ids, micro_batch: int, px: int, device, torch) -> dict:
    """One square image per sample: Qwen2-VL-style patches (14 px, 2x2 merge) or a fixed-size CLIP image."""
    image_token = getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)
    if hasattr(vision, "spatial_merge_size"):
        patch, merge, temporal = vision.patch_size, vision.spatial_merge_size, getattr(vision, "temporal_patch_size", 2)
        side = max(merge, px // patch // merge * merge)
        n_tokens = side * side // (merge * merge)
        pixel_values = torch.randn(micro_batch * side * side, 3 * temporal * patch * patch, device=device)
        grid = torch.tensor([[1, side, side]] * micro_batch, device=device)
        ids[:, 1:1 + n_tokens] = image_token
        return {"pixel_values": pixel_values, "image_grid_thw": grid}
    size = getattr(vision, "image_size", px)
    n_tokens = (size // vision.patch_size) ** 2
    ids[:, 1:1 + n_tokens] = image_token
    return {"pixel_values": torch.randn(micro_batch, 3, size, size, device=device)}


def run_trial(spec, model, optimizer, autocast, config, trial: dict, torch) -> dict:
    mb, seq = trial["micro_batch"], trial["seq_len"]
    device = torch.device(spec.device)
    cuda = device.type == "cuda"
    times: list[float] = []
    peaks: list[int] = []
    reserved: list[int] = []
    try:
        if spec.inject_oom_above_tokens is not None and mb * seq > spec.inject_oom_above_tokens:
            vocab = (getattr(config, "text_config", None) or config).vocab_size
            raise torch.OutOfMemoryError(  # sized like the fp32 logits of this batch, the usual culprit
                f"CUDA out of memory. Tried to allocate {mb * seq * vocab * 4 / 2**20:.2f} MiB. GPU 0 has a total capacity of "
                f"79.18 GiB of which 20.00 MiB is free. Of the allocated memory 70.00 GiB is allocated by PyTorch, and "
                f"1.00 GiB is reserved by PyTorch but unallocated. (injected by the probe test harness)")
        forward = model.__dict__.get("_probe_peft", model)
        for _ in range(spec.steps):
            batch = _batch(spec, config, mb, seq, device, torch)
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            ctx = torch.autocast(device.type, dtype=autocast) if autocast is not None else _null()
            if spec.eval_only:
                with torch.no_grad(), ctx:
                    forward(**batch).loss.item()
            else:
                with ctx:
                    loss = forward(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize(device)
                peaks.append(torch.cuda.max_memory_allocated(device))
                reserved.append(torch.cuda.max_memory_reserved(device))
            times.append(time.perf_counter() - t0)
            del batch
        steady = times[1:] or times
        return {"micro_batch": mb, "seq_len": seq, "result": "ok", "step_seconds": times,
                "peak_allocated_bytes": max(peaks) if peaks else None, "peak_reserved_bytes": max(reserved) if reserved else None,
                "tokens_per_s": mb * seq / (sum(steady) / len(steady))}
    except torch.OutOfMemoryError as exc:
        return {"micro_batch": mb, "seq_len": seq, "result": "oom", "error": str(exc), "step_seconds": times}
    finally:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def main() -> int:
    from .schema import ProbeSpec

    spec = ProbeSpec.model_validate_json(sys.stdin.readline())
    import torch

    device = torch.device(spec.device)
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    context = 0
    if cuda:
        torch.cuda.set_device(device)
        free0, total = torch.cuda.mem_get_info(device)
        torch.zeros(1, device=device)
        free1, _ = torch.cuda.mem_get_info(device)
        context = max(0, free0 - free1)
    try:
        model, optimizer, autocast, config = build(spec)
    except torch.OutOfMemoryError as exc:
        emit({"event": "build_failed", "result": "oom", "error": str(exc)})
        return 0
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import peft

        versions["peft"] = peft.__version__
    except ImportError:
        pass
    emit({"event": "ready", "n_params": n_params, "n_trainable": n_trainable, "build_seconds": time.perf_counter() - t0,
          "after_load_bytes": torch.cuda.memory_allocated(device) if cuda else None,
          "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
          "gpu_total_bytes": torch.cuda.get_device_properties(device).total_memory if cuda else None,
          "cuda_context_bytes": context if cuda else None, "versions": versions})
    for line in sys.stdin:
        if not line.strip():
            break
        emit({"event": "trial", **run_trial(spec, model, optimizer, autocast, config, json.loads(line), torch)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
