"""`ask-oom estimate`: the memory calculator on a training config and/or flags (per-GPU peak, breakdown, verdict)."""

from __future__ import annotations

import argparse
from typing import get_args

from ..tools.frameworks import FRAMEWORKS
from ..tools.training_setup import Method, Optimizer, Precision, Stage
from .errors import EXIT_DOES_NOT_FIT, EXIT_OK, UserError
from .request import add_dataset_arguments, add_setup_arguments, build_request

HELP = ("predict the peak GPU memory of a training step (or of a vLLM server: weights, profiling run, CUDA graphs, "
        "KV-cache pool): breakdown, peak phase, fits/headroom, max batch and seq len")
EPILOG = """examples:
  ask-oom estimate --config train.yaml --gpu H100-80GB
  ask-oom estimate --model Qwen/Qwen2.5-7B-Instruct --method lora --micro-batch 4 --seq-len 4096 --gpu 4090 --json
  ask-oom estimate --model-config ./my-model/config.json --method full --zero 3 --gpus 8 --gpu A100-80GB
  ask-oom estimate --model Qwen2.5-32B-Instruct --deepspeed-estimate --zero 3 --offload optimizer
  ask-oom estimate --config serve.sh --gpu H100      (a `vllm serve` command or a Python file calling LLM(...))

--json keys: peak_bytes (PyTorch-allocated peak on the busiest GPU, CUDA context excluded), peak_phase,
breakdown (component -> bytes, summing to peak_bytes), breakdown_formulas, n_params, n_trainable,
host_bytes + host_breakdown, cuda_context_bytes, and with a GPU: gpu_bytes, budget_bytes, fits,
headroom_bytes, max_micro_batch, max_seq_len; notes; setup (every fact with its provenance). workload says what was
sized (train, eval, predict, generate, serve); a vLLM server adds serving (the KV-cache pool arithmetic).

exit codes: 0 estimated (and fits, when a GPU is given), 2 bad input, 5 does not fit the given GPU
"""

# The choices are the setup's own vocabularies (tools/training_setup.py, tools/frameworks.py): one home each.
_METHODS, _STAGES, _PRECISIONS, _OPTIMIZERS = (get_args(t) for t in (Method, Stage, Precision, Optimizer))
FRAMEWORK_CHOICES = tuple(f for f in FRAMEWORKS if f != "vllm")   # vLLM serves; `estimate` sizes a training step


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_setup_arguments(p, model_config=False)
    add_dataset_arguments(p)
    p.add_argument("--model-config", metavar="FILE", help="the model's config.json, or a model directory holding one")
    p.add_argument("--model", metavar="NAME", help="model from the built-in registry (HF id, local path or name like qwen2.5-7b)")
    p.add_argument("--log", metavar="FILE", help="a log of the run: the facts it prints (GPU, arguments, ranks) are used too")
    p.add_argument("--nodes", type=int, metavar="N", help="number of nodes (host RAM is per node)")
    p.add_argument("--framework", choices=FRAMEWORK_CHOICES,
                   help="training framework (defaults differ; 'other' = a plain PyTorch loop that keeps the model output; "
                        "unset, the step is sized as that loop and an HF Trainer run is the error band's lower edge)")
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
    p.add_argument("--mode", choices=("auto", "train", "eval"), default="auto",
                   help="the step to size: train, eval, or auto (what the log shows; train without one)")
    from ..tools.configs.schema import Constraints

    margin = Constraints().margin
    p.add_argument("--margin", type=float, default=margin, help=f"usable fraction of GPU memory (default {margin})")
    p.add_argument("--deepspeed-estimate", action="store_true",
                   help="print DeepSpeed's own model-state estimator (ZeRO-2/3 table), exactly as DeepSpeed computes it")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _positive(name: str, v: int | float | None, upper: float) -> None:
    if v is not None and not (0 < v <= upper):
        raise UserError(f"{name} must be between 1 and {upper:g}")


# flag → (TrainingSetup field, upper bound for counts or None)
_FLAG_FACTS = {
    "framework": ("framework", None), "method": ("method", None), "lora_rank": ("lora_rank", 65536),
    "quantization_bit": ("quantization_bit", None), "precision": ("precision", None), "optimizer": ("optimizer", None),
    "zero": ("zero_stage", None), "nodes": ("num_nodes", 10000), "micro_batch": ("micro_batch", 1 << 20),
    "eval_batch": ("eval_batch", 1 << 20), "seq_len": ("seq_len", 1 << 24), "gc": ("gradient_checkpointing", None),
    "attn": ("attn_implementation", None), "liger": ("liger_kernel", None), "images": ("images_per_sample", 4096),
    "image_max_pixels": ("image_max_pixels", 1 << 30), "stage": ("stage", None), "reference_model": ("reference_model", None),
}


def stated_facts(args: argparse.Namespace) -> list[dict]:
    """The setup flags the user gave, as stated facts (they win over the config and the log)."""
    facts = []
    for flag, (field, upper) in _FLAG_FACTS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        name = "--" + flag.replace("_", "-")
        if upper is not None:
            _positive(name, value, upper)
        said = name if isinstance(value, bool) else f"{name} {value}"
        facts.append({"field": field, "value": value, "said": said})
    if args.train_vision:
        facts.append({"field": "freeze_vision_tower", "value": False, "said": "--train-vision"})
    if args.offload is not None:
        facts.append({"field": "offload_optimizer", "value": args.offload in ("optimizer", "all"), "said": f"--offload {args.offload}"})
        facts.append({"field": "offload_param", "value": args.offload == "all", "said": f"--offload {args.offload}"})
    if args.method == "qlora" and args.quantization_bit is None:
        facts.append({"field": "quantization_bit", "value": 4, "said": "--method qlora (4-bit NF4)"})
    return facts


def build_setup(args: argparse.Namespace):
    """The pipeline's setup for these flags: config files, log facts and flags (flags win, origin 'user')."""
    from ..assistant.agent import diagnose

    d = diagnose(estimate_request(args))
    if d.setup.model is None and args.model:   # the pipeline's one resolver found nothing for the name given
        raise UserError(f"unknown model {args.model!r}: not in the built-in registry; pass its config.json with --model-config")
    if d.setup.model is None:
        raise UserError("no model: pass --model NAME, --model-config config.json, or a --config naming a known model")
    return d


def estimate_request(args: argparse.Namespace):
    """The pipeline request of `ask-oom estimate`: no retrieval, no plan; --model-config may name a model directory."""
    from pathlib import Path

    model_config = args.model_config
    if model_config and Path(model_config).is_dir():
        model_config = str(Path(model_config) / "config.json")
    return build_request(args, log_path=getattr(args, "log", None), facts=stated_facts(args), model_name=args.model,
                         model_config_path=model_config, mode=args.mode, retrieve=False, plan=False)


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


def _serving_lines(est, setup) -> list[str]:
    """The head and the verdict of a vLLM serving estimate (tools/memory/serve.py): vLLM's own arithmetic, not a step."""
    from ..tools.units import format_bytes

    z = est.serving
    head = [f"vLLM serving, tensor parallel {setup.tensor_parallel_size}, weights {setup.precision.replace('pure_', '')}"
            + (f" {setup.quantization_bit}-bit" if setup.quantization_bit else "") + ", KV cache "
            + (setup.kv_cache_dtype if setup.kv_cache_dtype != "auto" else "in the model dtype")
            + (", --enforce-eager (no CUDA graphs)" if setup.enforce_eager else "")
            + (f": gpu_memory_utilization {z.utilization:g}, max_model_len {z.max_model_len}, max_num_seqs {z.max_num_seqs}, "
               f"max_num_batched_tokens {z.max_num_batched_tokens}" if z is not None else ""), "",
            f"vLLM takes **{format_bytes(est.peak_bytes)}** per GPU at start-up ({est.peak_phase.replace('_', ' ')}); "
            f"{est.n_params / 1e9:.2f}B parameters.", ""]
    tail = []
    if z is not None:
        verdict = _verdict(est, "starts", "the pool", "does NOT start")
        tail.append(f"On {est.gpu_name} ({format_bytes(est.gpu_bytes)}), vLLM may use {format_bytes(z.requested)}; the KV-cache "
                    f"pool of {format_bytes(max(z.kv_available, 0))} against {format_bytes(z.kv_needed)} for one "
                    f"{z.max_model_len}-token sequence: **{verdict}**. Largest max_model_len: {z.max_len_that_fits}; "
                    f"concurrency at {z.max_model_len} tokens: {z.concurrency:.2f}x.")
    return head, tail


def render_markdown(est, setup) -> str:
    from ..tools.units import format_bytes

    from ..tools.memory.estimator import effective_attention

    arch = setup.model
    runs = effective_attention(setup) if arch is not None else setup.attn_implementation
    attn = setup.attn_implementation if runs == setup.attn_implementation else f"{setup.attn_implementation} (runs {runs})"
    serving = est.workload == "serve"
    head, tail = _serving_lines(est, setup) if serving else ([], [])
    lines = [f"## Memory estimate: {setup.model_name or (arch.name if arch else 'model')}", ""] + head if serving else [
             f"## Memory estimate: {setup.model_name or (arch.name if arch else 'model')}", "",
             (f"{setup.stage.upper()}{' + reference model' if setup.reference_model else ''}, " if setup.stage != "sft" else "")
             + f"{setup.method}, {setup.precision}, {setup.optimizer}, ZeRO-{setup.zero_stage} on {setup.num_gpus} GPU(s), "
             f"micro-batch {setup.micro_batch} x {setup.seq_len} tokens, gradient checkpointing "
             f"{'on' if setup.gradient_checkpointing else 'off'}, attention {attn}", "",
             f"Peak (PyTorch allocated, busiest GPU): **{format_bytes(est.peak_bytes)}** at **{est.peak_phase}**; "
             f"{est.n_params / 1e9:.2f}B parameters, {est.n_trainable / 1e6:.1f}M trainable."
             + (f" Error band: {format_bytes(est.band_lower_bytes)} - {format_bytes(est.band_upper_bytes)}."
                if est.band_upper_bytes else ""), ""]
    lines += ["| component | bytes | share |", "|---|---:|---:|"]
    for c in sorted(est.breakdown.components, key=lambda c: -c.bytes):
        lines.append(f"| {c.name} | {format_bytes(c.bytes)} | {100 * c.bytes / max(est.peak_bytes, 1):.1f}% |")
    lines.append("")
    if est.host_bytes:
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in est.host_breakdown.items() if v)
        verdict = "" if est.host_fits is None else (" (fits the host)" if est.host_fits else " (**does NOT fit the host**)")
        lines.append(f"Host RAM per node: {format_bytes(est.host_bytes)} ({parts}){verdict}.")
    lines += tail
    if est.fits is not None and not serving:
        verdict = _verdict(est, "fits", "the budget", "does NOT fit")
        lines.append(f"On {est.gpu_name} ({format_bytes(est.gpu_bytes)}, {format_bytes(est.budget_bytes)} usable after "
                     f"margin and CUDA context): **{verdict}**, headroom {format_bytes(est.headroom_bytes)}. "
                     f"Largest micro-batch at this length: {est.max_micro_batch}; largest sequence length at this "
                     f"micro-batch: {est.max_seq_len}.")
    if est.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in est.notes]
    if est.band_notes:
        lines += ["", "Error band: " + "; ".join(est.band_notes)]
    assumed = setup.assumptions()
    if serving:   # a server has no training step: only the facts the serving arithmetic uses
        assumed = [a for a in assumed if a in ("precision", "serve_entry", "model")]
    if assumed:
        lines += ["", "Assumed (framework defaults): " + ", ".join(assumed)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    d = build_setup(args)
    setup, est = d.setup, d.estimate
    if args.deepspeed_estimate:
        return _deepspeed(args, setup)
    if est is None:
        raise UserError("; ".join(n for n in d.notes if n.startswith("memory estimate unavailable")) or
                        "the calculator could not size this setup")
    from .output import print_json, print_markdown

    if args.json:
        print_json(estimate_json(d))
    else:
        from ..assistant.render import evidence_sections

        print_markdown("\n".join([render_markdown(est, setup), "", *evidence_sections(d)]))
    return EXIT_DOES_NOT_FIT if est.fits is False else EXIT_OK


def estimate_json(d) -> dict:
    """estimate's --json object: the estimate's fields, its breakdown and formulas, the setup and the step sized."""
    est, setup = d.estimate, d.setup
    data = est.model_dump(mode="json")
    data["breakdown"] = est.breakdown.as_dict()
    data["breakdown_formulas"] = {c.name: c.formula for c in est.breakdown.components}
    data["setup"] = setup.model_dump(mode="json", exclude={"model"})
    data["model"] = setup.model_name or (setup.model.name if setup.model else None)
    data["sized"] = d.sized
    data["dataset"] = d.dataset.model_dump(mode="json") if d.dataset is not None else None
    return data


def _verdict(est, fits: str, inside: str, short: str) -> str:
    """The band's three-way verdict in the words of what was sized: it fits, `inside` lies in the error band, or not."""
    return {"fits": fits, "borderline": f"borderline ({inside} is inside the error band)"}.get(est.verdict or "", short)
