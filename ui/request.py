"""The one place command-line arguments become a pipeline request: every command that reads a setup (diagnose, fix,
estimate, probe) shares these arguments, their checks and this builder, so the same flags mean the same setup."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import UserError
from .inputs import ConfigFiles, read_config_text, read_configs, read_log_bytes, read_snapshots

KEEP_CHOICES = ("full", "seq", "batch", "no-deepspeed")
MAX_PASTE_CHARS = 4 * 1024 * 1024   # a log this size may be a paste holding its config too; a larger one is a file


def add_setup_arguments(p: argparse.ArgumentParser, *, config_required: bool = False, model_config: bool = True) -> None:
    """--config, --model-config, --gpu, --gpu-memory, --gpus, --host-ram: what the setup is and where it runs."""
    p.add_argument("--config", action="append", default=[], metavar="FILE", required=config_required,
                   help="training config: LLaMA-Factory YAML, HF TrainingArguments JSON, shell script, accelerate YAML; "
                        "repeat for the DeepSpeed JSON it names (read from beside it when not given)")
    if model_config:
        p.add_argument("--model-config", metavar="FILE", help="the model's config.json (when the model is not in the registry)")
    p.add_argument("--gpu", metavar="NAME", help="GPU type, e.g. A100-40GB, H100, 4090")
    p.add_argument("--gpu-memory", type=float, metavar="GiB", help="GPU memory in GiB (overrides the GPU's catalogue size)")
    p.add_argument("--gpus", type=int, metavar="N", help="number of GPUs (data-parallel world size; ZeRO shards over them)")
    p.add_argument("--host-ram", type=float, metavar="GiB", help="host RAM per node in GiB (checks CPU offload)")
    add_symlink_argument(p)


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """--dataset and its companions: the data whose worst batch to size (diagnose, estimate, fix, check)."""
    p.add_argument("--dataset", metavar="PATH",
                   help="training data: a JSON, JSONL or Parquet file, or a LLaMA-Factory data directory with its "
                        "dataset_info.json; its longest samples are sized as the worst batch")
    p.add_argument("--dataset-name", action="append", default=[], metavar="NAME",
                   help="dataset_info.json entry to read (repeatable; default: the config's `dataset`, else all)")
    p.add_argument("--tokenizer", metavar="DIR",
                   help="a local model directory with tokenizer.json to count tokens exactly (default: the config's "
                        "model path when it is a local directory; otherwise tokens are estimated and said so)")
    p.add_argument("--steps", type=int, metavar="N", help="the run's length in optimizer steps (the chance that a "
                                                           "shuffled run meets a sample over budget within N steps)")


def add_symlink_argument(p: argparse.ArgumentParser) -> None:
    """--allow-symlinks: read a log or config given as a symbolic link (refused by default: a link to /etc/shadow must
    not end up printed or written into a fixed config)."""
    p.add_argument("--allow-symlinks", action="store_true",
                   help="read input files that are symbolic links (refused by default; special files always are)")


def add_force_argument(p: argparse.ArgumentParser) -> None:
    """--force: let the fixed config replace an existing file, the input included."""
    p.add_argument("--force", action="store_true",
                   help="replace an existing file with the fixed config (by default nothing is ever overwritten)")


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    """--keep and --margin: the constraints on a fix."""
    p.add_argument("--keep", action="append", default=[], choices=KEEP_CHOICES,
                   help="what must not change: full (method), seq (cutoff_len), batch (micro-batch), no-deepspeed (repeatable)")
    from ..tools.configs.schema import Constraints

    default = Constraints().margin
    p.add_argument("--margin", type=float, default=default, metavar="F",
                   help=f"fraction of GPU memory the run may use (default {default:.2f})")


def build_request(args: argparse.Namespace, *, log_path: str | None = None, read_log: bool = False,
                  facts: list[Any] | None = None, model_name: str | None = None, model_config_path: str | None = None,
                  mode: str = "auto", retrieve: bool = True, plan: bool = True):
    """The DiagnoseRequest for these arguments. `read_log` reads the log from `log_path` or stdin (diagnose);
    otherwise a log is read only when `log_path` is given (fix --log). Sets `args.config_paths_read`."""
    from ..assistant.diagnosis import DiagnoseRequest

    gpus, gpu_memory = getattr(args, "gpus", None), getattr(args, "gpu_memory", None)
    if gpus is not None and gpus < 1:
        raise UserError("--gpus must be at least 1")
    if gpu_memory is not None and not (0 < gpu_memory <= 4096):
        raise UserError("--gpu-memory must be a size in GiB between 0 and 4096")
    host_ram = getattr(args, "host_ram", None)
    if host_ram is not None and not (0 < host_ram <= 1 << 20):
        raise UserError("--host-ram must be a size in GiB between 0 and 1048576")
    margin = getattr(args, "margin", None)
    if margin is not None and not (0.1 <= margin <= 1.0):
        raise UserError("--margin must be between 0.1 and 1.0")
    gpu = getattr(args, "gpu", None)
    if gpu:
        from ..tools.gpus import lookup_gpu

        if lookup_gpu(gpu, gpu_memory) is None:
            raise UserError(f"unknown GPU {gpu!r}: give its memory with --gpu-memory GiB")
    allow = bool(getattr(args, "allow_symlinks", False))
    log_text, truncated = "", False
    if read_log or log_path:
        data, truncated = read_log_bytes(log_path, allow_symlinks=allow)
        log_text = data.decode("utf-8", errors="replace")
    files = read_configs(list(getattr(args, "config", None) or []), allow_symlinks=allow)
    if files.main_text is None and log_text and len(log_text) <= MAX_PASTE_CHARS:
        log_text, files = pasted_configs(log_text, files)
    args.config_paths_read = files.paths_read
    args.config_main_path = files.main_path
    snapshots = read_snapshots(list(getattr(args, "snapshot", None) or []), allow_symlinks=allow)
    model_config_path = model_config_path or getattr(args, "model_config", None)
    if model_config_path and not Path(model_config_path).is_file():
        raise UserError(f"model config not found: {model_config_path} (pass the model's config.json)")
    return DiagnoseRequest(
        log_text=log_text, log_truncated=truncated, config_text=files.main_text, config_name=files.main_name,
        extra_configs=files.extra,
        model_config_json=read_config_text(model_config_path, allow_symlinks=allow) if model_config_path else None,
        model_name=model_name, gpu=getattr(args, "gpu", None), gpu_memory_gib=gpu_memory, num_gpus=gpus,
        host_ram_gib=host_ram, facts=list(facts or []), keep=list(getattr(args, "keep", None) or []), margin=margin,
        mode=mode, retrieve=retrieve, plan=plan, snapshots=snapshots, dataset=_dataset_source(args),
    )


def _dataset_source(args: argparse.Namespace):
    """--dataset and its companions as the request's DatasetSource (None without --dataset)."""
    from ..assistant.diagnosis import DatasetSource

    path = getattr(args, "dataset", None)
    if not path:
        return None
    if not Path(path).exists():
        raise UserError(f"cannot read dataset: no such file or directory: {path}")
    steps = getattr(args, "steps", None)
    if steps is not None and steps < 1:
        raise UserError("--steps must be at least 1")
    tokenizer = getattr(args, "tokenizer", None)
    if tokenizer and not (Path(tokenizer) / "tokenizer.json").is_file():
        raise UserError(f"--tokenizer {tokenizer}: no tokenizer.json in that directory")
    return DatasetSource(path=path, names=list(getattr(args, "dataset_name", None) or []), tokenizer_dir=tokenizer,
                         steps=steps)


def pasted_configs(text: str, files: ConfigFiles) -> tuple[str, ConfigFiles]:
    """A paste of log and config in one text (`ask-oom < paste.txt`, a GitHub issue saved to a file): the configs it
    holds become the configs, as if given with --config, and the rest stays the log; the same split the web UI and
    the Slack bot make of a message. Text without a config is returned as it is."""
    from ..assistant.message_parts import config_name_for, is_deepspeed_config, referenced_deepspeed, split_message

    parts = split_message(text)
    configs = [p.text for p in parts if p.kind == "config"]
    if not configs:
        return text, files
    main = next((c for c in configs if not is_deepspeed_config(config_name_for(c), c)), configs[0])
    extra = {}
    for c in configs:
        if c is not main:
            name = config_name_for(c)
            extra[(referenced_deepspeed(main) if is_deepspeed_config(name, c) else None) or name] = c
    log = "\n".join(p.text for p in parts if p.kind in ("log", "chat"))
    return log, ConfigFiles(config_name_for(main), main, extra, files.paths_read)
