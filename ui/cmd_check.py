"""`ask-oom check`: a launch gate. The calculator's verdict on a config (and, with --dataset, on its worst batch) as an
exit code, so `ask-oom check train.yaml && llamafactory-cli train train.yaml` starts only a run that fits within the
calculator's error band."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from .errors import EXIT_BORDERLINE, EXIT_DOES_NOT_FIT, EXIT_OK, UserError

HELP = "gate a launch: exit 0 only when the run fits the GPU within the calculator's error band"
EPILOG = """examples:
  ask-oom check train.yaml --gpu A100-80GB --gpus 8 && llamafactory-cli train train.yaml
  ask-oom check --config train.yaml --dataset data/ --gpu 4090 --json   (the worst batch of the data too)

The config may be given as the first argument or with --config; every option of `ask-oom estimate` applies.

exit codes: 0 fits (the upper edge of the error band fits the budget), 2 bad input (or no GPU to judge against),
            5 does not fit (even the band's lower edge is over the budget, or the host RAM is short),
            7 borderline (the budget lies inside the error band: measure it with the probe command printed)
"""

EXIT_FOR_VERDICT = {"fits": EXIT_OK, "borderline": EXIT_BORDERLINE, "does_not_fit": EXIT_DOES_NOT_FIT}
SEVERITY = ("fits", "borderline", "does_not_fit")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .cmd_estimate import add_arguments as add_estimate_arguments

    p.add_argument("config_files", nargs="*", metavar="CONFIG",
                   help="training configs, each checked on its own (the exit code is the worst verdict); one CONFIG is "
                        "the same as --config CONFIG, and a pre-commit hook passes the staged ones")
    add_estimate_arguments(p)


@dataclass(frozen=True)
class Gate:
    """The gate's answer: the verdict it exits on, and each check that went into it (GPU, host RAM, dataset)."""

    verdict: str
    reasons: list[str] = field(default_factory=list)
    probe_command: str | None = None


def gate(d) -> Gate:
    """The worst verdict of the checks a Diagnosis allows: the GPU (the estimate's band against the budget), the host
    RAM when offloading, and the dataset's worst batch when one was profiled."""
    from ..tools.units import format_bytes

    est = d.estimate
    if est is None or est.verdict is None:
        raise UserError("check needs a GPU to judge against: pass --gpu NAME (or --gpu-memory GiB), or a log that "
                        "names the GPU")
    gpu_line = (f"GPU: predicted peak {format_bytes(est.peak_bytes)} (band {format_bytes(est.band_lower_bytes)} - "
                f"{format_bytes(est.band_upper_bytes)}) against a budget of {format_bytes(est.budget_bytes)} on "
                f"{est.gpu_name}")
    v = d.dataset.verdict if d.dataset is not None else None
    checks = []
    if v is not None and v.verdict is not None:
        # The data's worst batch is the step that will run (batches pad to their longest sample, or pack to
        # cutoff_len): it replaces the estimate at the configured length, which every sample reaching the cutoff gives.
        over = (f"; {v.over_budget} sample(s) over budget ({100 * v.over_budget_fraction:.3f}%)" if v.over_budget else "")
        checks.append((v.verdict, f"dataset: worst batch {v.micro_batch} x {v.worst_length} tokens, predicted peak "
                                  f"{format_bytes(v.worst_peak_bytes)} (band upper {format_bytes(v.worst_upper_bytes)}) "
                                  f"against {format_bytes(v.budget_bytes)}: {v.verdict.replace('_', ' ')}{over}"))
        checks.append(("fits", f"{gpu_line} at the configured {d.setup.seq_len} tokens for every sample: "
                               f"{est.verdict.replace('_', ' ')} (the dataset's worst batch decides)"))
    else:
        checks.append((est.verdict, f"{gpu_line}: {est.verdict.replace('_', ' ')}"))
    if est.host_fits is not None:
        checks.append(("fits" if est.host_fits else "does_not_fit",
                       f"host RAM: {format_bytes(est.host_bytes)} per node: "
                       f"{'fits' if est.host_fits else 'does not fit'}"))
    worst = max((v for v, _ in checks), key=SEVERITY.index)
    return Gate(verdict=worst, reasons=[r for _, r in checks],
                probe_command=est.probe_command if worst == "borderline" else None)


def run(args: argparse.Namespace) -> int:
    from .output import print_json, print_markdown

    if args.deepspeed_estimate:
        raise UserError("check gates a launch on the full step; run `ask-oom estimate --deepspeed-estimate` for "
                        "DeepSpeed's model-state table")
    files = list(args.config_files or [])
    runs = [[f, *args.config] for f in files] if files else [list(args.config)]
    results = []
    for configs in runs:
        args.config = configs
        results.append(_check_one(args))
    worst = max((g.verdict for g, _ in results), key=SEVERITY.index)
    code = EXIT_FOR_VERDICT[worst]
    if args.json:
        objects = [_json(g, d) for g, d in results]
        print_json(objects[0] if len(objects) == 1 else {"verdict": worst, "exit_code": code, "checks": objects})
        return code
    print_markdown("\n\n".join(_markdown(g, configs[0] if len(runs) > 1 and configs else None, fix_command(configs, args))
                                for (g, _), configs in zip(results, runs)))
    return code


def _check_one(args: argparse.Namespace):
    from .cmd_estimate import build_setup

    d = build_setup(args)
    return gate(d), d


def _json(g: Gate, d) -> dict:
    from .cmd_estimate import estimate_json

    return {"verdict": g.verdict, "exit_code": EXIT_FOR_VERDICT[g.verdict], "reasons": g.reasons,
            "probe_command": g.probe_command, "config": d.config.name if d.config else None,
            "estimate": estimate_json(d)}


# check's options that `ask-oom fix` takes too, in the order the fix command lists them (flag, attribute)
FIX_OPTIONS = (("--gpu", "gpu"), ("--gpu-memory", "gpu_memory"), ("--gpus", "gpus"), ("--host-ram", "host_ram"),
               ("--dataset", "dataset"), ("--tokenizer", "tokenizer"), ("--log", "log"))


def fix_command(configs: list[str], args: argparse.Namespace) -> str | None:
    """The `ask-oom fix` command for the same config and hardware (the options `fix` shares with `check`)."""
    import shlex

    if not configs:
        return None
    parts = ["ask-oom", "fix"] + [x for c in configs for x in ("--config", c)]
    for flag, attr in FIX_OPTIONS:
        value = getattr(args, attr, None)
        if value is not None:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if getattr(args, "allow_symlinks", False):
        parts.append("--allow-symlinks")
    return " ".join(shlex.quote(p) for p in parts)


def _markdown(g: Gate, name: str | None, fix: str | None = None) -> str:
    head = {"fits": "fits: safe to launch", "borderline": "borderline: measure before launching",
            "does_not_fit": "does NOT fit: do not launch"}[g.verdict]
    lines = [f"ask-oom check{' ' + name if name else ''}: **{head}**", ""] + [f"- {r}" for r in g.reasons]
    if g.probe_command:
        lines += ["", f"Settle it on the GPU: `{g.probe_command}`"]
    if g.verdict != "fits":
        lines += ["", f"For the smallest change that fits: `{fix or 'ask-oom fix --config CONFIG'}`"]
    return "\n".join(lines)
