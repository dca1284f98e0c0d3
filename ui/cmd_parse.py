"""`ask-oom parse`: the parsed OOM report only (what the log says, with the line of each fact), no diagnosis."""

from __future__ import annotations

import argparse

from .errors import EXIT_NO_OOM, EXIT_OK
from .inputs import read_log_bytes
from .request import add_symlink_argument

HELP = "parse an OOM log into a typed report (kind, sizes, phase, operation, framework, GPUs, versions, arguments)"
EPILOG = """examples:
  ask-oom parse train.log
  ask-oom parse --json < train.log | jq .requested_bytes

exit codes: 0 a memory error was found, 3 none was found, 2 unusable input (empty, binary, missing file)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("log", nargs="?", help="log file (default: stdin)")
    p.add_argument("--json", action="store_true", help="print the OOMReport as one JSON object")
    add_symlink_argument(p)


def render_report_markdown(report) -> str:
    """A short Markdown summary of an OOMReport (numbers formatted, each with the line it came from)."""
    from ..tools.units import format_bytes

    lines_of: dict[str, int] = {}
    for e in report.evidence:
        lines_of.setdefault(e.fact, e.line)

    def at(fact: str) -> str:
        return f" (line {lines_of[fact]})" if fact in lines_of else ""

    title = {"not_oom": "No memory error found", "related_error": "No OOM, but a related error"}.get(
        report.kind, f"Memory error: `{report.kind}`")
    out = [f"## {title}", ""]
    if report.message:
        out += ["```", report.message[:600], "```", ""]
    rows = []
    for name, label in (("requested_bytes", "requested"), ("gpu_total_bytes", "GPU total"),
                        ("gpu_free_bytes", "GPU free"), ("process_used_bytes", "used by this process"),
                        ("torch_allocated_bytes", "allocated by PyTorch"), ("torch_reserved_bytes", "reserved by PyTorch"),
                        ("torch_reserved_unallocated_bytes", "reserved but unallocated")):
        value = getattr(report, name)
        if value is not None:
            rows.append(f"| {label} | {format_bytes(value)} | {value:,} B{at(name)} |")
    if rows:
        out += ["| what | size | bytes |", "|---|---|---|", *rows, ""]
    facts = []
    if report.gpu_index is not None:
        facts.append(f"- GPU index: {report.gpu_index}")
    for p in report.other_processes:
        facts.append(f"- other process {p.pid}: {format_bytes(p.bytes)}")
    if report.ranks:
        facts.append(f"- ranks reporting it: {', '.join(map(str, report.ranks))}")
    if report.exit_signal:
        facts.append(f"- exit signal: {report.exit_signal}{at('exit_signal')}")
    facts.append(f"- phase: {report.phase}{at('phase')}")
    if report.operation:
        facts.append(f"- operation: {report.operation}{at('operation')}")
    for name in ("framework", "launcher", "deepspeed_stage", "model", "gpu_count", "attn_implementation"):
        value = getattr(report, name)
        if value is not None:
            facts.append(f"- {name.replace('_', ' ')}: {value}{at(name)}")
    if report.host_ram_used_bytes is not None:
        total = f" of {format_bytes(report.host_ram_total_bytes)}" if report.host_ram_total_bytes else ""
        facts.append(f"- host RAM in use: {format_bytes(report.host_ram_used_bytes)}{total}{at('host_ram_used_bytes')}")
    for g in report.gpus:
        desc = " ".join(x for x in (f"GPU {g.index}" if g.index is not None else "GPU", g.name or "",
                                    format_bytes(g.memory_bytes) if g.memory_bytes else "") if x)
        facts.append(f"- {desc}")
    if report.versions:
        facts.append("- versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()))
    out += facts
    if report.training_args:
        out += ["", "| training argument | value | line |", "|---|---|---|"]
        out += [f"| {k} | {a.value} | {a.line} |" for k, a in report.training_args.items()]
    if report.related_errors:
        out += ["", "Related errors:"]
        out += [f"- `{e.kind}` (line {e.line}): {e.message[:200]}" for e in report.related_errors]
    out += ["", f"_{report.lines} lines read{' (input was cut to its last part)' if report.truncated else ''}_"]
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    data, truncated = read_log_bytes(args.log, allow_symlinks=args.allow_symlinks)

    from ..tools.log_parser import parse_log
    from .output import print_json, print_markdown

    report = parse_log(data)
    report.truncated = truncated
    if args.json:
        print_json(report)
    else:
        print_markdown(render_report_markdown(report))
    return EXIT_OK if report.is_memory_error else EXIT_NO_OOM
