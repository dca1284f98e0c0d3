"""`ask-oom diagnose`: a log (and optionally a config) in, the diagnosis and the fixed config out."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import EXIT_NO_OOM, EXIT_OK, UserError
from .inputs import read_config_text, read_log_bytes

HELP = "diagnose an OOM log (default command): what ran out of memory, why, similar cases, the fixed config"
EPILOG = """examples:
  ask-oom < train.log
  ask-oom diagnose train.log --config train.yaml --gpu A100-40GB --gpus 8 --json
  ask-oom diagnose train.log --config run.sh --write-fixed run.fixed.sh
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", nargs="?", help="log file (default: stdin)")
    p.add_argument("--config", action="append", default=[], metavar="FILE",
                   help="training config: LLaMA-Factory YAML, HF TrainingArguments JSON, shell script, DeepSpeed JSON "
                        "(repeat for a referenced DeepSpeed file)")
    p.add_argument("--model-config", metavar="FILE", help="the model's config.json (when the model is not in the registry)")
    p.add_argument("--gpu", metavar="NAME", help="GPU type, e.g. A100-40GB, H100, 4090")
    p.add_argument("--gpu-memory", type=float, metavar="GiB", help="GPU memory in GiB (overrides the GPU's catalogue size)")
    p.add_argument("--gpus", type=int, metavar="N", help="number of GPUs (data-parallel world size)")
    p.add_argument("--keep", action="append", default=[], choices=["full", "seq", "batch", "no-deepspeed"],
                   help="constraint the fix must respect (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object (schema in README)")
    p.add_argument("--write-fixed", metavar="PATH", help="write the fixed config to PATH")


def build_request(args: argparse.Namespace):
    from ..assistant.diagnosis import DiagnoseRequest

    data, truncated = read_log_bytes(args.log)
    configs = [(Path(c).name, read_config_text(c)) for c in args.config]
    main_cfg = next(((n, t) for n, t in configs if not _is_deepspeed_name(n, t)), configs[0] if configs else None)
    extra = {n: t for n, t in configs if main_cfg is None or n != main_cfg[0]}
    if args.gpus is not None and args.gpus < 1:
        raise UserError("--gpus must be at least 1")
    if args.gpu_memory is not None and not (0 < args.gpu_memory <= 4096):
        raise UserError("--gpu-memory must be a size in GiB between 0 and 4096")
    return DiagnoseRequest(
        log_text=data.decode("utf-8", errors="replace"),
        log_truncated=truncated,
        config_text=main_cfg[1] if main_cfg else None,
        config_name=main_cfg[0] if main_cfg else None,
        extra_configs=extra,
        model_config_json=read_config_text(args.model_config) if args.model_config else None,
        gpu=args.gpu,
        gpu_memory_gib=args.gpu_memory,
        num_gpus=args.gpus,
        keep=list(args.keep),
    )


def _is_deepspeed_name(name: str, text: str) -> bool:
    return name.endswith(".json") and "zero_optimization" in text


def run(args: argparse.Namespace) -> int:
    request = build_request(args)  # input errors first: they must not wait for the agent's imports

    from ..assistant.agent import diagnose
    from ..assistant.render import render_json, render_markdown
    from .output import print_json, print_markdown

    diagnosis = diagnose(request)
    if args.write_fixed:
        if not diagnosis.fixed_config:
            raise UserError("no fixed config to write: pass your training config with --config")
        Path(args.write_fixed).write_text(diagnosis.fixed_config, encoding="utf-8")
    if args.json:
        print_json(render_json(diagnosis))
    else:
        print_markdown(render_markdown(diagnosis))
    return EXIT_NO_OOM if diagnosis.status == "no_memory_error" else EXIT_OK
