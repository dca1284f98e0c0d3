"""`ask-oom fix`: a training config in, the least invasive fixed config out (same format), with a
diff, each change's reason and bytes saved, and the calculator's before/after estimates."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import EXIT_DOES_NOT_FIT, EXIT_OK, UserError
from .inputs import read_config_text

HELP = "fix a training config so it fits the GPU: the changed config, a diff, and before/after estimates"
EPILOG = """examples:
  ask-oom fix --config train.yaml --config ds_z3_config.json --gpu H20 --gpus 8
  ask-oom fix --config finetune_moe.sh --config zero2.json --log train.log --write fixed.sh
  ask-oom fix --config run.sh --gpu 4090 --gpus 3 --keep full --json

exit codes: 0 the fixed config fits (or no calculator check was possible: see the notes),
            2 bad input, 5 nothing fits (the closest option is still printed)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="FILE", required=True,
                   help="training config (LLaMA-Factory YAML, HF TrainingArguments JSON, shell script, accelerate YAML); "
                        "repeat for the DeepSpeed JSON it names")
    p.add_argument("--log", metavar="FILE", help="the failing run's log: GPU facts, arguments and the ranked causes come from it")
    p.add_argument("--gpu", metavar="NAME", help="GPU type, e.g. A100-40GB, H100, 4090")
    p.add_argument("--gpu-memory", type=float, metavar="GiB", help="GPU memory in GiB (overrides the catalogue size)")
    p.add_argument("--gpus", type=int, metavar="N", help="number of GPUs (data-parallel world size)")
    p.add_argument("--host-ram", type=float, metavar="GiB", help="host RAM in GiB (checks CPU offload)")
    p.add_argument("--model-config", metavar="FILE", help="the model's config.json (when the model is not in the registry)")
    p.add_argument("--keep", action="append", default=[], choices=["full", "seq", "batch", "no-deepspeed"],
                   help="what must not change: full (method), seq (cutoff_len), batch (micro-batch), no-deepspeed (repeatable)")
    p.add_argument("--margin", type=float, default=0.90, metavar="F", help="fraction of GPU memory the fixed run may use (default 0.90)")
    p.add_argument("--write", metavar="PATH", help="write the fixed config to PATH (a changed DeepSpeed file goes beside it)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _read_inputs(args: argparse.Namespace):
    """The config document: the first config that is not a DeepSpeed JSON is the main one; a YAML that a
    `llamafactory-cli train` script runs, and a DeepSpeed file the config names, are read from beside it
    when they were not passed (a named DeepSpeed file found nowhere is a one-line error). Every path read
    is kept in args.config_paths_read so --write never overwrites one."""
    from ..tools.configs.documents import find_file, deepspeed_reference, load_config

    configs = [(c, read_config_text(c)) for c in args.config]
    main = next(((p, t) for p, t in configs if not _is_deepspeed_file(p, t)), configs[0])
    extra = {p: t for p, t in configs if p != main[0]}
    read = [p for p, _ in configs]
    name = Path(main[0]).name
    lenient = load_config(main[1], name)            # no file lookups yet: only to see what it references
    base = main[0]
    wrapped = lenient.launcher.get("config_file") if lenient.format == "shell" else None
    if wrapped and str(wrapped).endswith((".yaml", ".yml", ".json")):
        found = find_file(wrapped, extra)
        path = None if found else _beside(wrapped, main[0])
        if path is not None:
            extra[wrapped] = read_config_text(str(path))
            read.append(str(path))
            found = (wrapped, extra[wrapped])
        if found:
            lenient = load_config(found[1], Path(found[0]).name)
            base = str(path) if path is not None else found[0]
    acc = lenient.launcher.get("config_file") if lenient.format == "shell" and lenient.launcher.get("program") == "accelerate" else None
    if acc and find_file(acc, extra) is None and (path := _beside(acc, main[0])) is not None:
        extra[acc] = read_config_text(str(path))
        read.append(str(path))
    ref = deepspeed_reference(lenient)
    if isinstance(ref, str) and find_file(ref, extra) is None:
        path = _beside(ref, base) or _beside(ref, main[0])
        if path is not None:
            extra[ref] = read_config_text(str(path))
            read.append(str(path))
    args.config_paths_read = read
    return load_config(main[1], name, extra)     # strict: a named DeepSpeed file must be among these


def _is_deepspeed_file(path: str, text: str) -> bool:
    from ..tools.configs.documents import detect_format, load_config

    if detect_format(text, path) != "json":
        return False
    return load_config(text, Path(path).name).format == "deepspeed_json"


def _beside(ref: str, main_path: str) -> Path | None:
    for base in (Path(main_path).parent, Path.cwd()):
        cand = base / ref
        if cand.is_file():
            return cand
    return None


def run(args: argparse.Namespace) -> int:
    if args.gpus is not None and args.gpus < 1:
        raise UserError("--gpus must be at least 1")
    if args.gpu_memory is not None and not (0 < args.gpu_memory <= 4096):
        raise UserError("--gpu-memory must be a size in GiB between 0 and 4096")
    if not (0.1 <= args.margin <= 1.0):
        raise UserError("--margin must be between 0.1 and 1.0")
    doc = _read_inputs(args)
    log_text = None
    if args.log:
        from .inputs import read_log_bytes

        data, _ = read_log_bytes(args.log)
        log_text = data.decode("utf-8", errors="replace")
    model_config = read_config_text(args.model_config) if args.model_config else None

    from ..tools.configs import Constraints, plan_fixes
    from ..tools.configs.causes import setup_and_causes
    from ..tools.report_refinement import observed_peak
    from .output import print_json, print_markdown

    setup, causes, report = setup_and_causes(doc, log_text, gpu=args.gpu, gpu_memory_gib=args.gpu_memory,
                                             num_gpus=args.gpus, model_config_json=model_config,
                                             host_ram_gib=args.host_ram, margin=args.margin)
    keep = set(args.keep)
    constraints = Constraints(keep_method="full" in keep, keep_seq_len="seq" in keep, keep_batch="batch" in keep,
                              no_deepspeed="no-deepspeed" in keep, num_gpus=args.gpus, margin=args.margin,
                              observed_peak_bytes=observed_peak(report) if report is not None else None,
                              observed_oom=bool(report is not None and report.is_memory_error))
    plan = plan_fixes(setup, doc, causes, constraints)
    written = _write(args, doc, plan) if args.write else []
    verified = plan.estimate_before is not None
    if args.json:
        print_json({
            "config": doc.name, "format": doc.format, "framework": doc.framework,
            "setup": setup.model_dump(mode="json", exclude={"model"}),
            "model": setup.model.name if setup.model is not None else None,
            "root_causes": [c.model_dump(mode="json") for c in causes],
            "fits": plan.fits, "verified": verified,
            "changes": [c.model_dump(mode="json") for c in plan.changes],
            "estimate_before": plan.estimate_before.model_dump(mode="json") if plan.estimate_before else None,
            "estimate_after": plan.estimate_after.model_dump(mode="json") if plan.estimate_after else None,
            "fixed_config": plan.fixed_config, "fixed_deepspeed": plan.fixed_deepspeed, "diff": plan.diff,
            "notes": plan.notes + doc.notes, "written": written,
        })
    else:
        from ..tools.configs.report import render_plan

        print_markdown(render_plan(doc, setup, causes, plan, written))
    if verified and not plan.fits:
        return EXIT_DOES_NOT_FIT
    return EXIT_OK


def _write(args: argparse.Namespace, doc, plan) -> list[str]:
    """Write the fixed config (and a changed DeepSpeed file beside it, never over an input file)."""
    if not plan.fixed_config:
        raise UserError("no fixed config to write: the planner could not rewrite this config (see the notes)")
    out = Path(args.write)
    inputs = {Path(c).resolve() for c in getattr(args, "config_paths_read", args.config)}
    if out.resolve() in inputs:
        raise UserError(f"--write {out} would overwrite an input file: write the fix to a new path")
    out.write_text(plan.fixed_config, encoding="utf-8")
    written = [str(out)]
    if plan.fixed_deepspeed:
        ds_name = Path(_ds_target_name(doc, plan)).name
        ds_path = out.parent / ds_name
        if ds_path.resolve() in inputs or ds_path.exists():
            ds_path = out.parent / (Path(ds_name).stem + ".fixed.json")
        ds_path.write_text(plan.fixed_deepspeed, encoding="utf-8")
        written.append(str(ds_path))
    return written


def _ds_target_name(doc, plan) -> str:
    for ch in plan.changes:
        if ch.key == "deepspeed" and isinstance(ch.to_value, str):
            return ch.to_value
    return doc.deepspeed_name or "ds_config.json"
