"""`ask-oom estimate`: the memory calculator on a training config and/or flags (per-GPU peak, breakdown, verdict)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import EXIT_DOES_NOT_FIT, EXIT_OK, UserError

HELP = "predict the peak GPU memory of a training step: breakdown, peak phase, fits/headroom, max batch and seq len"
EPILOG = """examples:
  ask-oom estimate --config train.yaml --gpu H100-80GB
  ask-oom estimate --model Qwen/Qwen2.5-7B-Instruct --method lora --micro-batch 4 --seq-len 4096 --gpu 4090 --json
  ask-oom estimate --model-config ./my-model/config.json --method full --zero 3 --gpus 8 --gpu A100-80GB
  ask-oom estimate --model Qwen2.5-32B-Instruct --deepspeed-estimate --zero 3 --offload optimizer

--json keys: peak_bytes (PyTorch-allocated peak on the busiest GPU, CUDA context excluded), peak_phase,
breakdown (component -> bytes, summing to peak_bytes), breakdown_formulas, n_params, n_trainable,
host_bytes + host_breakdown, cuda_context_bytes, and with a GPU: gpu_bytes, budget_bytes, fits,
headroom_bytes, max_micro_batch, max_seq_len; notes; setup (every fact with its provenance).

exit codes: 0 estimated (and fits, when a GPU is given), 2 bad input, 5 does not fit the given GPU
"""

_METHODS = ("full", "freeze", "lora", "qlora")
_FRAMEWORKS = ("llamafactory", "hf_trainer", "trl", "deepspeed_script", "axolotl", "unsloth", "torchtune", "swift", "mlx", "other")
_STAGES = ("sft", "pt", "dpo", "kto", "orpo", "simpo", "rm", "ppo", "grpo")
_PRECISIONS = ("bf16_mixed", "fp16_mixed", "pure_bf16", "fp32")
_OPTIMIZERS = ("adamw", "adamw_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor", "sgd", "lion")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="training config (LLaMA-Factory YAML, HF TrainingArguments JSON, shell script); repeat for a DeepSpeed JSON")
    p.add_argument("--model-config", metavar="FILE", help="the model's config.json, or a model directory holding one")
    p.add_argument("--model", metavar="NAME", help="model from the built-in registry (HF id, local path or name like qwen2.5-7b)")
    p.add_argument("--gpu", metavar="NAME", help="GPU type, e.g. H100-80GB, A100-40GB, 4090")
    p.add_argument("--gpu-memory", type=float, metavar="GiB", help="GPU memory in GiB (overrides the catalogue)")
    p.add_argument("--gpus", type=int, metavar="N", help="data-parallel GPUs in all (ZeRO shards over them)")
    p.add_argument("--nodes", type=int, metavar="N", help="number of nodes (host RAM is per node)")
    p.add_argument("--host-ram", type=float, metavar="GiB", help="host RAM per node in GiB (host verdict for offload)")
    p.add_argument("--framework", choices=_FRAMEWORKS,
                   help="training framework (defaults differ; 'other' = a plain PyTorch loop that keeps the model output)")
    p.add_argument("--method", choices=_METHODS, help="fine-tuning method")
    p.add_argument("--stage", choices=_STAGES, help="objective: dpo/orpo/simpo/rm run chosen + rejected per sample")
    p.add_argument("--reference-model", action="store_true", default=None,
                   help="a frozen reference copy of the weights is on the GPU (full-parameter DPO/KTO/PPO)")
    p.add_argument("--lora-rank", type=int, metavar="R", help="LoRA rank")
    p.add_argument("--quantization-bit", type=int, choices=(4, 8), help="QLoRA bits")
    p.add_argument("--precision", choices=_PRECISIONS, help="bf16_mixed = fp32 master + bf16 autocast; pure_bf16 = all bf16")
    p.add_argument("--optimizer", choices=_OPTIMIZERS)
    p.add_argument("--zero", type=int, choices=(0, 1, 2, 3), help="DeepSpeed ZeRO stage")
    p.add_argument("--offload", choices=("none", "optimizer", "all"), help="DeepSpeed CPU offload")
    p.add_argument("--micro-batch", type=int, metavar="N", help="per-device train batch size")
    p.add_argument("--eval-batch", type=int, metavar="N", help="per-device eval batch size (with --mode eval)")
    p.add_argument("--seq-len", type=int, metavar="N", help="padded tokens per sample (cutoff_len)")
    gc = p.add_mutually_exclusive_group()
    gc.add_argument("--gradient-checkpointing", dest="gc", action="store_true", default=None)
    gc.add_argument("--no-gradient-checkpointing", dest="gc", action="store_false")
    p.add_argument("--attn", choices=("eager", "sdpa", "flash_attention_2"), help="attention implementation")
    p.add_argument("--liger", action="store_true", default=None, help="Liger fused linear cross-entropy")
    p.add_argument("--images", type=int, metavar="N", help="images per sample (multimodal models)")
    p.add_argument("--image-max-pixels", type=int, metavar="PX", help="pixels per image after resizing")
    p.add_argument("--train-vision", action="store_true", default=None, help="the vision tower trains (not frozen)")
    p.add_argument("--mode", choices=("train", "eval"), default="train")
    p.add_argument("--margin", type=float, default=0.9, help="usable fraction of GPU memory (default 0.9)")
    p.add_argument("--deepspeed-estimate", action="store_true",
                   help="print DeepSpeed's own model-state estimator (ZeRO-2/3 table), exactly as DeepSpeed computes it")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _positive(name: str, v: int | float | None, upper: float) -> None:
    if v is not None and not (0 < v <= upper):
        raise UserError(f"{name} must be between 1 and {upper:g}")


def build_setup(args: argparse.Namespace):
    """The TrainingSetup from the config files, then the flags (flags win, origin 'user')."""
    from ..tools.gpus import lookup_gpu
    from ..tools.memory import load_model_arch, resolve_model
    from ..tools.training_setup import TrainingSetup
    from .inputs import read_config_text

    for name, v, upper in (("--gpus", args.gpus, 100000), ("--nodes", args.nodes, 10000),
                           ("--micro-batch", args.micro_batch, 1 << 20), ("--eval-batch", args.eval_batch, 1 << 20),
                           ("--seq-len", args.seq_len, 1 << 24), ("--lora-rank", args.lora_rank, 65536),
                           ("--gpu-memory", args.gpu_memory, 4096), ("--images", args.images, 4096),
                           ("--image-max-pixels", args.image_max_pixels, 1 << 30),
                           ("--host-ram", args.host_ram, 1 << 20)):
        _positive(name, v, upper)
    if not (0 < args.margin <= 1):
        raise UserError("--margin must be in (0, 1]")
    setup = TrainingSetup()
    if args.config:
        from ..tools.configs import apply_config_to_setup, load_config

        texts = [(Path(c).name, read_config_text(c)) for c in args.config]
        main = next(((n, t) for n, t in texts if not (n.endswith(".json") and "zero_optimization" in t)), texts[0])
        extra = {n: t for n, t in texts if n != main[0]}
        doc = load_config(main[1], name=main[0], extra_files=extra or None)
        setup = apply_config_to_setup(doc, setup)
    user = lambda s, field, value, detail: s.with_fact(field, value, "user", detail)  # noqa: E731
    if args.model_config:
        setup = user(setup, "model", load_model_arch(args.model_config), f"--model-config {args.model_config}")
    elif args.model:
        arch = resolve_model(args.model)
        if arch is None:
            raise UserError(f"unknown model {args.model!r}: not in the built-in registry; pass its config.json with --model-config")
        setup = user(setup, "model", arch, f"--model {args.model}")
        setup = user(setup, "model_name", args.model, "--model")
    flags = {
        "framework": args.framework, "method": args.method, "lora_rank": args.lora_rank, "quantization_bit": args.quantization_bit,
        "precision": args.precision, "optimizer": args.optimizer, "zero_stage": args.zero,
        "num_gpus": args.gpus, "num_nodes": args.nodes, "micro_batch": args.micro_batch,
        "eval_batch": args.eval_batch, "seq_len": args.seq_len, "gradient_checkpointing": args.gc,
        "attn_implementation": args.attn, "liger_kernel": args.liger, "images_per_sample": args.images,
        "image_max_pixels": args.image_max_pixels, "stage": args.stage, "reference_model": args.reference_model,
    }
    for field, value in flags.items():
        if value is not None:
            setup = user(setup, field, value, "--" + field.replace("_", "-"))
    if args.host_ram:
        setup = user(setup, "host_ram_bytes", int(args.host_ram * 2**30), "--host-ram")
    if args.train_vision:
        setup = user(setup, "freeze_vision_tower", False, "--train-vision")
    if args.offload is not None:
        setup = user(setup, "offload_optimizer", args.offload in ("optimizer", "all"), "--offload")
        setup = user(setup, "offload_param", args.offload == "all", "--offload")
    if setup.method == "qlora" and setup.quantization_bit is None:
        setup = setup.with_fact("quantization_bit", 4, "default", "QLoRA default 4-bit NF4")
    if args.gpu or args.gpu_memory:
        gpu = lookup_gpu(args.gpu or "GPU", args.gpu_memory)
        if gpu is None:
            raise UserError(f"unknown GPU {args.gpu!r}: give its memory with --gpu-memory GiB")
        setup = user(setup, "gpu", gpu, "--gpu/--gpu-memory")
    if setup.model is None:
        raise UserError("no model: pass --model NAME, --model-config config.json, or a --config naming a known model")
    return setup


def _deepspeed(args: argparse.Namespace, setup) -> int:
    from ..tools.memory import deepspeed_estimate
    from .output import print_json, print_markdown

    stage = 2 if setup.zero_stage in (1, 2) else 3
    nodes = max(1, setup.num_nodes)
    est = deepspeed_estimate(setup.model, stage=stage, num_gpus_per_node=max(1, setup.num_gpus // nodes), num_nodes=nodes,
                             offload_optimizer=setup.offload_optimizer, offload_param=setup.offload_param)
    if args.json:
        data = est.model_dump(mode="json")
        data["table"] = est.table()
        print_json(data)
    else:
        print_markdown(f"DeepSpeed ZeRO-{stage} model-state estimate ({est.total_params / 1e6:.0f}M params without lm_head, "
                       f"largest layer {est.largest_layer_params / 1e6:.0f}M), as DeepSpeed prints it:\n\n```\n{est.table()}\n```\n"
                       "Model states only: activations, logits and buffers come on top (run without --deepspeed-estimate).")
    return EXIT_OK


def render_markdown(est, setup) -> str:
    from ..tools.units import format_bytes

    from ..tools.memory.estimator import effective_attention

    arch = setup.model
    runs = effective_attention(setup) if arch is not None else setup.attn_implementation
    attn = setup.attn_implementation if runs == setup.attn_implementation else f"{setup.attn_implementation} (runs {runs})"
    lines = [f"## Memory estimate: {setup.model_name or (arch.name if arch else 'model')}", "",
             (f"{setup.stage.upper()}{' + reference model' if setup.reference_model else ''}, " if setup.stage != "sft" else "")
             + f"{setup.method}, {setup.precision}, {setup.optimizer}, ZeRO-{setup.zero_stage} on {setup.num_gpus} GPU(s), "
             f"micro-batch {setup.micro_batch} x {setup.seq_len} tokens, gradient checkpointing "
             f"{'on' if setup.gradient_checkpointing else 'off'}, attention {attn}", "",
             f"Peak (PyTorch allocated, busiest GPU): **{format_bytes(est.peak_bytes)}** at **{est.peak_phase}**; "
             f"{est.n_params / 1e9:.2f}B parameters, {est.n_trainable / 1e6:.1f}M trainable.", "",
             "| component | bytes | share |", "|---|---:|---:|"]
    for c in sorted(est.breakdown.components, key=lambda c: -c.bytes):
        lines.append(f"| {c.name} | {format_bytes(c.bytes)} | {100 * c.bytes / max(est.peak_bytes, 1):.1f}% |")
    lines.append("")
    if est.host_bytes:
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in est.host_breakdown.items() if v)
        verdict = "" if est.host_fits is None else (" (fits the host)" if est.host_fits else " (**does NOT fit the host**)")
        lines.append(f"Host RAM per node: {format_bytes(est.host_bytes)} ({parts}){verdict}.")
    if est.fits is not None:
        verdict = "fits" if est.fits else "does NOT fit"
        lines.append(f"On {est.gpu_name} ({format_bytes(est.gpu_bytes)}, {format_bytes(est.budget_bytes)} usable after "
                     f"margin and CUDA context): **{verdict}**, headroom {format_bytes(est.headroom_bytes)}. "
                     f"Largest micro-batch at this length: {est.max_micro_batch}; largest sequence length at this "
                     f"micro-batch: {est.max_seq_len}.")
    if est.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in est.notes]
    assumed = setup.assumptions()
    if assumed:
        lines += ["", "Assumed (framework defaults): " + ", ".join(assumed)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    setup = build_setup(args)
    if args.deepspeed_estimate:
        return _deepspeed(args, setup)
    from ..tools.memory import estimate_memory
    from .output import print_json, print_markdown

    est = estimate_memory(setup, mode=args.mode, margin=args.margin)
    if args.json:
        data = est.model_dump(mode="json")
        data["breakdown"] = est.breakdown.as_dict()
        data["breakdown_formulas"] = {c.name: c.formula for c in est.breakdown.components}
        data["setup"] = setup.model_dump(mode="json", exclude={"model"})
        data["model"] = setup.model_name or (setup.model.name if setup.model else None)
        print_json(data)
    else:
        print_markdown(render_markdown(est, setup))
    return EXIT_DOES_NOT_FIT if est.fits is False else EXIT_OK
