"""`ask-oom fix`: a training config in, the least invasive fixed config out (same format), with a
diff, each change's reason and bytes saved, and the calculator's before/after estimates."""

from __future__ import annotations

import argparse

from .errors import EXIT_DOES_NOT_FIT, EXIT_OK, UserError
from .output import write_fixed
from .request import add_dataset_arguments, add_force_argument, add_plan_arguments, add_setup_arguments, build_request

HELP = "fix a training config so it fits the GPU: the changed config, a diff, and before/after estimates"
EPILOG = """examples:
  ask-oom fix --config train.yaml --config ds_z3_config.json --gpu H20 --gpus 8
  ask-oom fix --config finetune_moe.sh --config zero2.json --log train.log --write fixed.sh
  ask-oom fix --config run.sh --gpu 4090 --gpus 3 --keep full --json

With --log, the same pipeline as `ask-oom diagnose` (the log's facts, the ranked causes, the observed OOM); without
one, the causes are what the calculator finds over the budget.

exit codes: 0 the fixed config fits (or no calculator check was possible: see the notes),
            2 bad input, or --write refused (the path exists: --force) or failed (the plan is still printed),
            5 nothing fits (the closest option is still printed)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_setup_arguments(p, config_required=True)
    p.add_argument("--log", metavar="FILE", help="the failing run's log: GPU facts, arguments and the ranked causes come from it")
    add_plan_arguments(p)
    add_dataset_arguments(p)
    p.add_argument("--write", metavar="PATH", help="write the fixed config to PATH (a new or changed DeepSpeed file goes beside "
                                               "it; never over an input or an existing file without --force)")
    add_force_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    request = build_request(args, log_path=args.log)

    from ..assistant.agent import diagnose
    from .output import print_json, print_markdown

    d = diagnose(request)
    written: list[str] = []
    failed: UserError | None = None   # a refused or failed write: the plan is printed first, then the one-line error
    if args.write:
        try:
            written = write_fixed(d, args.write, args.config_paths_read, force=args.force, source=args.config_main_path)
        except UserError as exc:
            failed = exc
    if args.json:
        print_json(fix_json(d, written))
    else:
        from ..tools.configs.report import render_plan

        from ..assistant.render import evidence_sections

        print_markdown("\n".join([render_plan(d, written), *evidence_sections(d)]))
    if failed is not None:
        raise failed
    return EXIT_DOES_NOT_FIT if d.estimate is not None and d.fits_after is False else EXIT_OK


def fix_json(d, written: list[str]) -> dict:
    """fix's --json object: the config read, the setup, the causes, the changes and both estimates."""
    return {
        "config": d.config.name if d.config else None, "format": d.config.format if d.config else None,
        "framework": d.config.framework if d.config else None,
        "setup": d.setup.model_dump(mode="json", exclude={"model"}),
        "model": d.setup.model.name if d.setup.model is not None else None,
        "root_causes": [c.model_dump(mode="json") for c in d.root_causes],
        "fits": d.fits_after, "verified": d.estimate is not None,
        "changes": [c.model_dump(mode="json") for c in d.fixes],
        "estimate_before": d.estimate.model_dump(mode="json") if d.estimate else None,
        "estimate_after": d.estimate_after.model_dump(mode="json") if d.estimate_after else None,
        "fixed_config": d.fixed_config, "fixed_deepspeed": d.fixed_deepspeed, "diff": d.diff,
        "notes": d.notes, "written": written,
        "dataset": d.dataset.model_dump(mode="json") if d.dataset is not None else None,
    }
