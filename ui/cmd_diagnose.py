"""`ask-oom diagnose`: a log (and optionally a config) in, the diagnosis and the fixed config out."""

from __future__ import annotations

import argparse

from .errors import EXIT_NO_OOM, EXIT_OK, UserError
from .request import add_dataset_arguments, add_force_argument, add_plan_arguments, add_setup_arguments, build_request

HELP = "diagnose an OOM log (default command): what ran out of memory, why, similar cases, the fixed config"
EPILOG = """examples:
  ask-oom < train.log
  ask-oom diagnose train.log --config train.yaml --gpu A100-40GB --gpus 8 --json
  ask-oom diagnose train.log --config run.sh --write-fixed run.fixed.sh
  ask-oom diagnose train.log --config run.sh --write-fixed run.fixed.sh --force    (replace an earlier run.fixed.sh)
  ask-oom diagnose train.log --config train.yaml --snapshot rank0.pickle --snapshot rank1.pickle
  ask-oom diagnose train.log --config train.yaml --dataset data/ --steps 3000
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", nargs="?", help="log file (default: stdin)")
    add_setup_arguments(p)
    add_plan_arguments(p)
    p.add_argument("--snapshot", action="append", default=[], metavar="FILE",
                   help="a memory snapshot saved with torch.cuda.memory._dump_snapshot (one per rank, repeatable; the "
                        "rank is read from the name, e.g. rank3.pickle): held memory is compared with the calculator's. "
                        "Read as plain data only: a pickle that asks to build any object is refused")
    add_dataset_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (schema in README)")
    p.add_argument("--write-fixed", metavar="PATH", help="write the fixed config to PATH (a new DeepSpeed file goes beside it; "
                                                      "never over an input or an existing file without --force)")
    add_force_argument(p)


def run(args: argparse.Namespace) -> int:
    request = build_request(args, log_path=args.log, read_log=True)  # input errors first: before the pipeline's imports

    from ..assistant.agent import diagnose
    from ..assistant.render import render_json, render_markdown
    from .output import print_json, print_markdown, write_fixed

    diagnosis = diagnose(request)
    failed: UserError | None = None   # a refused or failed write: the diagnosis is printed first, then the one-line error
    if args.write_fixed:
        try:
            write_fixed(diagnosis, args.write_fixed, args.config_paths_read, force=args.force, source=args.config_main_path)
        except UserError as exc:
            failed = exc
    if args.json:
        print_json(render_json(diagnosis))
    else:
        print_markdown(render_markdown(diagnosis))
    if failed is not None:
        raise failed
    return EXIT_NO_OOM if diagnosis.status == "no_memory_error" else EXIT_OK
