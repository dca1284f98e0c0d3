"""Markdown for a reconciliation and a rank table: numbers in GiB with two decimals."""

from __future__ import annotations

from ..units import GiB
from .ranks import RankTable
from .reconcile import RankComparison, Reconciliation


def _gib(n: int | None, signed: bool = False) -> str:
    if n is None:
        return "–"
    return f"{n / GiB:+.2f}" if signed else f"{n / GiB:.2f}"


def render_comparison(comp: RankComparison) -> list[str]:
    """One snapshot's component table (predicted, held, difference)."""
    who = f"rank {comp.rank}" if comp.rank is not None else comp.name
    when = "at the OOM" if comp.at == "oom" else "at the snapshot"
    lines = [f"#### {who} ({comp.name}) {when}", "",
             "| component | predicted (GiB) | held (GiB) | difference (GiB) |", "|---|---:|---:|---:|"]
    for r in comp.rows:
        if r.held_bytes == 0 and not r.predicted_bytes:
            continue
        lines.append(f"| {r.component} | {_gib(r.predicted_bytes)} | {_gib(r.held_bytes)} | "
                     f"{_gib(r.difference_bytes, signed=True)} |")
    diff = None if comp.predicted_total_bytes is None else comp.held_total_bytes - comp.predicted_total_bytes
    lines.append(f"| **total (reserved)** | {_gib(comp.predicted_total_bytes)} | {_gib(comp.held_total_bytes)} | "
                 f"{_gib(diff, signed=True)} |")
    return lines


def render_rank_table(table: RankTable) -> list[str]:
    """Ranks side by side, the verdict, and the likely sources of an imbalance."""
    lines = ["| rank | allocated (GiB) | reserved (GiB) | requested (GiB) | free (GiB) | top component |",
             "|---:|---:|---:|---:|---:|---|"]
    for r in table.rows:
        mark = " (busiest)" if r.rank == table.busiest_rank else ""
        lines.append(f"| {r.rank}{mark} | {_gib(r.allocated_bytes)} | {_gib(r.reserved_bytes)} | "
                     f"{_gib(r.requested_bytes)} | {_gib(r.free_bytes)} | {r.top_component or '–'} |")
    lines += ["", f"**Verdict:** {table.verdict}"]
    for s in table.likely_sources:
        lines.append(f"- {s.text} (fix: {s.fix})")
    return lines


def render_markdown(reconciliation: Reconciliation) -> str:
    """The finding, each snapshot's component table, the rank table and the notes, as Markdown."""
    lines: list[str] = []
    if reconciliation.finding:
        lines += [f"**Finding:** {reconciliation.finding}", ""]
    for comp in reconciliation.comparisons:
        lines += render_comparison(comp) + [""]
    if reconciliation.rank_table is not None:
        lines += ["#### Ranks", ""] + render_rank_table(reconciliation.rank_table) + [""]
    for note in reconciliation.notes:
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"
