"""Before/after memory chart as inline SVG: one stacked bar per estimate, a line at the GPU's capacity.

SVG (not a plotting library) keeps the web UI dependency-free, renders identically in every browser,
and lets tests assert on the components by their labels.
"""

from __future__ import annotations

from html import escape

from ..tools.memory.schema import MemoryEstimate
from ..tools.units import GiB

# One colour per breakdown component; unknown components fall back to grey.
COLOURS = {
    "weights": "#4e79a7", "gradients": "#f28e2b", "optimizer_states": "#e15759", "master_weights": "#76b7b2",
    "activations": "#59a14f", "attention_scores": "#edc948", "logits_and_loss": "#b07aa1",
    "vision_activations": "#ff9da7", "optimizer_temporaries": "#9c755f", "eval_accumulated": "#bab0ac",
    "allocator_reserve": "#d3d3d3",
}

_W, _H, _PAD_L, _PAD_B, _PAD_T, _BAR_W = 520, 300, 56, 36, 16, 90


def memory_chart_svg(before: MemoryEstimate | None, after: MemoryEstimate | None, capacity_bytes: int | None,
                     budget_bytes: int | None = None) -> str:
    """Stacked bars (GiB) of the estimate before and after the fix against the GPU's capacity
    (red) and the planner's budget (orange: capacity x margin - CUDA context)."""
    bars = [(label, est) for label, est in (("before", before), ("after", after)) if est is not None]
    if not bars:
        return '<div class="ask-oom-chart empty">No memory estimate yet: paste a config or name the model.</div>'
    top = max([est.peak_bytes for _, est in bars] + [capacity_bytes or 0]) * 1.08 or 1
    plot_h = _H - _PAD_B - _PAD_T

    def y(n_bytes: float) -> float:
        return _PAD_T + plot_h * (1 - n_bytes / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ask-oom-chart" viewBox="0 0 {_W} {_H}" '
             f'width="100%" role="img" aria-label="GPU memory before and after the fix">']
    for tick in _ticks(top):
        parts.append(f'<line x1="{_PAD_L}" x2="{_W - 150}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
                     f'<text x="{_PAD_L - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end">{tick / GiB:.0f}</text>')
    parts.append(f'<text x="12" y="{_PAD_T + plot_h / 2:.0f}" font-size="11" transform="rotate(-90 12 {_PAD_T + plot_h / 2:.0f})" '
                 'text-anchor="middle">GiB per GPU</text>')
    legend: dict[str, str] = {}
    for i, (label, est) in enumerate(bars):
        x = _PAD_L + 30 + i * (_BAR_W + 50)
        base = 0
        for comp in est.breakdown.components:
            if comp.bytes <= 0:
                continue
            colour = COLOURS.get(comp.name, "#999")
            legend[comp.name] = colour
            y0, y1 = y(base + comp.bytes), y(base)
            parts.append(f'<rect class="bar-{label} comp-{escape(comp.name)}" x="{x}" y="{y0:.1f}" width="{_BAR_W}" '
                         f'height="{max(y1 - y0, 0.5):.1f}" fill="{colour}"><title>{escape(comp.name)}: '
                         f'{comp.bytes / GiB:.2f} GiB</title></rect>')
            base += comp.bytes
        verdict = "" if est.fits is None else (" fits" if est.fits else " borderline" if est.verdict == "borderline" else " OOM")
        parts.append(f'<text x="{x + _BAR_W / 2}" y="{y(est.peak_bytes) - 4:.1f}" font-size="12" text-anchor="middle">'
                     f'{est.peak_bytes / GiB:.1f} GiB</text>'
                     f'<text x="{x + _BAR_W / 2}" y="{_H - 14}" font-size="12" text-anchor="middle">{label}{verdict}</text>')
    if capacity_bytes:
        parts.append(f'<line class="capacity" x1="{_PAD_L}" x2="{_W - 150}" y1="{y(capacity_bytes):.1f}" y2="{y(capacity_bytes):.1f}" '
                     f'stroke="#c00" stroke-dasharray="6 3"/><text x="{_W - 154}" y="{y(capacity_bytes) - 4:.1f}" font-size="11" '
                     f'fill="#c00" text-anchor="end">GPU {capacity_bytes / GiB:.1f} GiB</text>')
    if budget_bytes and (not capacity_bytes or abs(capacity_bytes - budget_bytes) > 0.03 * capacity_bytes):
        parts.append(f'<line class="budget" x1="{_PAD_L}" x2="{_W - 150}" y1="{y(budget_bytes):.1f}" y2="{y(budget_bytes):.1f}" '
                     f'stroke="#e08a00" stroke-dasharray="2 3"/><text x="{_W - 154}" y="{y(budget_bytes) + 12:.1f}" '
                     f'font-size="11" fill="#b06a00" text-anchor="end">budget {budget_bytes / GiB:.1f} GiB</text>')
    for j, (name, colour) in enumerate(legend.items()):
        ly = _PAD_T + j * 17
        parts.append(f'<rect x="{_W - 140}" y="{ly}" width="11" height="11" fill="{colour}"/>'
                     f'<text x="{_W - 124}" y="{ly + 10}" font-size="11">{escape(name.replace("_", " "))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(top: float) -> list[float]:
    """Round GiB gridlines: about five of them."""
    step_gib = max(1, round(top / GiB / 5))
    for nice in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if nice >= step_gib:
            step_gib = nice
            break
    return [k * step_gib * GiB for k in range(0, int(top / (step_gib * GiB)) + 1)]
