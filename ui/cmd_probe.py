"""`ask-oom probe`: run real training steps of a config on this machine's GPU and measure the peak."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .errors import EXIT_DOES_NOT_FIT, EXIT_OK, EXIT_UNAVAILABLE, UserError
from .request import add_symlink_argument

HELP = "run a real forward/backward/optimizer step of the config on the GPU (random weights) and measure it"
EPILOG = """examples:
  ask-oom probe --config train.yaml --model-config config.json
  ask-oom probe --config train.fixed.yaml --model /models/Qwen2.5-7B --steps 3 --json
  ask-oom probe --config train.yaml --model-config config.json --find-max batch
the probe runs in a child process; an OOM there is a result (exit 5), never a crash of ask-oom.
exit codes: 0 fits, 5 does not fit / OOM, 4 no CUDA device or GPU busy, 2 bad input
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", action="append",
                   help="training config (LLaMA-Factory YAML, HF JSON, shell script; repeat for a DeepSpeed JSON)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model-config", metavar="FILE", help="the model's config.json")
    src.add_argument("--model", metavar="DIR", help="a local model directory (its config.json; weights with --weights)")
    p.add_argument("--weights", action="store_true", help="load the real weights from --model DIR instead of random ones")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code (off by default)")
    p.add_argument("--steps", type=int, default=3, help="training steps per trial (default 3)")
    p.add_argument("--find-max", choices=["batch", "seq"], help="search the largest micro-batch or sequence length that fits")
    p.add_argument("--gpu-index", type=int, default=0, help="which GPU (default 0)")
    p.add_argument("--margin", type=float, default=0.9, help="fraction of GPU memory a fitting run may reserve (default 0.9)")
    p.add_argument("--trial-timeout", type=float, default=300, metavar="S", help="wall-clock limit per trial (default 300 s)")
    p.add_argument("--timeout", type=float, default=1200, metavar="S", help="overall wall-clock limit (default 1200 s)")
    p.add_argument("--force", action="store_true", help="probe even if other processes use the GPU")
    add_symlink_argument(p)
    p.add_argument("--record", metavar="JSONL", help="append each measurement here (default: the state dir)")
    p.add_argument("--device", default=None, help=argparse.SUPPRESS)  # tests: 'cpu' runs the whole path without CUDA
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _load_json_file(path: Path, allow_symlinks: bool = False) -> dict:
    from .inputs import read_config_text

    try:
        data = json.loads(read_config_text(str(path), allow_symlinks=allow_symlinks))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise UserError(f"{path} is not a model config.json (no model_type)")
    return data


def hf_config_for(args, setup) -> dict:
    """The model's config.json: from --model-config, from --model DIR, or from the built-in registry."""
    if args.model_config:
        return _load_json_file(Path(args.model_config), args.allow_symlinks)
    if args.model:
        return _load_json_file(Path(args.model) / "config.json", args.allow_symlinks)
    from ..tools import memory

    getter = getattr(memory, "registry_config", None)
    if getter is not None and setup.model_name:
        cfg = getter(setup.model_name)
        if cfg:
            return dict(cfg)
    raise UserError("the probe needs the model's config.json: pass --model-config FILE or --model DIR")


def build_spec(args, setup, hf_config: dict, device: str):
    from ..tools.probe.schema import ProbeSpec

    image_px = int(setup.image_max_pixels ** 0.5) if setup.image_max_pixels and setup.model and setup.model.vision else None
    return ProbeSpec(hf_config=hf_config, weights_path=args.model if args.weights else None,
                     trust_remote_code=args.trust_remote_code, device=device, method=setup.method,
                     precision=setup.precision, lora_rank=setup.lora_rank, lora_targets=setup.lora_targets,
                     optimizer=setup.optimizer, gradient_checkpointing=setup.gradient_checkpointing,
                     attn_implementation=setup.attn_implementation, freeze_vision_tower=setup.freeze_vision_tower,
                     freeze_projector=setup.freeze_projector, image_px=image_px, steps=args.steps)


def probe_setup(args: argparse.Namespace):
    """(setup, the model's config.json, the calculator's estimate or None): the pipeline's setup for the config (no
    retrieval, no plan), sized on the model config given (--model-config, --model DIR), else on the registry's."""
    from ..assistant.agent import diagnose
    from ..tools.memory import load_model_arch
    from .request import build_request

    model_config = args.model_config or (str(Path(args.model) / "config.json") if args.model else None)
    hf_config = _load_json_file(Path(model_config), args.allow_symlinks) if model_config else None
    d = diagnose(build_request(args, model_config_path=model_config, retrieve=False, plan=False))
    if hf_config is not None:
        return d.setup, hf_config, d.estimate
    hf_config = hf_config_for(args, d.setup)
    return d.setup.model_copy(update={"model": load_model_arch(hf_config, name=d.setup.model_name)}), hf_config, None


def run(args: argparse.Namespace) -> int:
    from ..assistant.settings import load_settings
    from ..tools.memory import estimate_memory
    from ..tools.probe.gpu_check import busy_reason
    from ..tools.probe.runner import run_probe
    from ..tools.probe.schema import Trial
    from ..tools.units import GiB
    from .output import print_json, print_markdown
    from .progress import status

    if args.weights and not args.model:
        raise UserError("--weights needs --model DIR (a local checkpoint)")
    if not 0.1 < args.margin <= 1.0:
        raise UserError("--margin must be in (0.1, 1.0]")
    setup, hf_config, estimate = probe_setup(args)

    device = args.device or f"cuda:{args.gpu_index}"
    if device.startswith("cuda"):
        from ..tools.cuda_available import cuda_available

        if not cuda_available():
            raise UserError("no CUDA device on this machine: run the probe on the GPU host you will train on", EXIT_UNAVAILABLE)
        reason = None if args.force else busy_reason(args.gpu_index, threshold_bytes=GiB)
        if reason:
            raise UserError(reason, EXIT_UNAVAILABLE)
    try:
        estimate = estimate or estimate_memory(setup, margin=args.margin)
        estimate_peak = estimate.peak_bytes
        guess = estimate.max_micro_batch if args.find_max == "batch" else estimate.max_seq_len if args.find_max == "seq" else None
    except Exception:  # noqa: BLE001 - the probe measures even where the calculator cannot estimate
        estimate_peak, guess = None, None
    record = Path(args.record) if args.record else load_settings().session_db.parent / "probe-measurements.jsonl"
    with status("probe: starting", enabled=not args.json) as on_event:
        result = run_probe(build_spec(args, setup, hf_config, device), Trial(micro_batch=setup.micro_batch, seq_len=setup.seq_len),
                       find_max=args.find_max, start_guess=guess, margin=args.margin, trial_timeout_s=args.trial_timeout,
                       total_timeout_s=args.timeout, estimate_peak_bytes=estimate_peak, record_path=record,
                       record_meta={"model": setup.model_name or hf_config.get("_name_or_path") or hf_config["model_type"]},
                       on_event=on_event)
    if args.json:
        print_json(result)
    else:
        print_markdown(render_probe(result))
    if result.error:
        raise UserError(f"probe failed: {result.error}", EXIT_UNAVAILABLE)
    main = result.main
    return EXIT_OK if main is not None and main.fits_margin else EXIT_DOES_NOT_FIT


def render_probe(result) -> str:
    from ..tools.units import format_bytes

    lines = [f"## Live probe on {result.device_name or 'unknown device'}", ""]
    if result.error:
        return "\n".join(lines + [f"Probe failed: {result.error}"])
    lines.append(f"Model built in {result.build_seconds or 0:.1f} s: {result.n_params or 0:,} parameters, "
                 f"{result.n_trainable or 0:,} trainable; {format_bytes(result.after_load_bytes)} after load.")
    lines += ["", "| micro-batch | seq len | result | peak allocated | peak reserved | step s | tokens/s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for t in result.trials:
        step = sorted(t.step_seconds)[len(t.step_seconds) // 2] if t.step_seconds else None
        verdict = "fits" if t.fits_margin else t.result if t.result != "ok" else "over margin"
        lines.append(f"| {t.micro_batch} | {t.seq_len} | {verdict} | {format_bytes(t.peak_allocated_bytes)} | "
                     f"{format_bytes(t.peak_reserved_bytes)} | {f'{step:.3f}' if step else '-'} | "
                     f"{f'{t.tokens_per_s:,.0f}' if t.tokens_per_s else '-'} |")
    if result.estimate_peak_bytes:
        err = f" ({result.estimate_error:+.1%} vs measured)" if result.estimate_error is not None else ""
        lines += ["", f"Calculator's estimate: {format_bytes(result.estimate_peak_bytes)}{err}."]
    if result.headroom_bytes is not None:
        lines.append(f"Headroom within the margin: {format_bytes(result.headroom_bytes)}.")
    if result.find_max:
        lines.append(f"Largest {'micro-batch' if result.find_max == 'batch' else 'sequence length'} that fits: "
                     f"**{result.max_fitting if result.max_fitting is not None else 'none'}** "
                     f"({len(result.trials)} trials).")
    oom = next((t for t in result.trials if t.oom_report is not None), None)
    if oom and oom.oom_report.requested_bytes:
        lines.append(f"First OOM: tried to allocate {format_bytes(oom.oom_report.requested_bytes)} at micro-batch "
                     f"{oom.micro_batch}, seq {oom.seq_len}.")
    return "\n".join(lines)
