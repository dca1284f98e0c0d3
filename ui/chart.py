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
    "allocator_reserve": "#d3d3d3", "kv_cache": "#86bcb6", "kv_cache_pool": "#86bcb6", "reference_weights": "#a0cbe8",
    "reference_logits": "#d4a6c8", "fragmentation": "#c9c9c9", "unattributed": "#8c8c8c",
}

_W, _H, _PAD_L, _PAD_B, _PAD_T, _BAR_W = 640, 300, 56, 36, 16, 90
# Columns, left to right: the y axis, the two bars (each with its peak above it), the end of the plot, the labels of
# the capacity and budget lines (a column of their own, so they never cross a bar or a peak label), the legend.
_PLOT_R = 330          # where the gridlines, the capacity and the budget lines end
_LINE_LABEL_X = _PLOT_R + 6
_LEGEND_X = 470
_FONT = 11             # px, every label but the peaks and the bar names (12)
_LABEL_GAP = 2         # px between two stacked labels


def memory_chart_svg(before: MemoryEstimate | None, after: MemoryEstimate | None, capacity_bytes: int | None,
                     budget_bytes: int | None = None, held: list[tuple[str, dict[str, int]]] | None = None) -> str:
    """Stacked bars (GiB) of the estimate before and after the fix against the GPU's capacity
    (red) and the planner's budget (orange: capacity x margin - CUDA context); `held` adds one bar per memory snapshot
    (label, component → bytes held), beside the prediction it is compared with."""
    bars = [(label, [(c.name, c.bytes) for c in est.breakdown.components], est.peak_bytes, _verdict(est))
            for label, est in (("before" if not held else "predicted", before), ("after", after)) if est is not None]
    bars[1:1] = [(label, list(parts.items()), sum(parts.values()), "") for label, parts in held or []]
    if not bars:
        return '<div class="ask-oom-chart empty">No memory estimate yet: paste a config or name the model.</div>'
    top = max([peak for _, _, peak, _ in bars] + [capacity_bytes or 0]) * 1.08 or 1
    # bars share the plot's width: 90 px each with 50 px between for two, narrower when snapshots add more
    gap = 50 if len(bars) <= 2 else 16
    bar_w = min(_BAR_W, (_PLOT_R - _PAD_L - 30 - gap * (len(bars) - 1)) / len(bars))
    plot_h = _H - _PAD_B - _PAD_T

    def y(n_bytes: float) -> float:
        return _PAD_T + plot_h * (1 - n_bytes / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ask-oom-chart" viewBox="0 0 {_W} {_H}" '
             f'width="100%" role="img" aria-label="GPU memory before and after the fix">']
    for tick in _ticks(top):
        parts.append(f'<line x1="{_PAD_L}" x2="{_PLOT_R}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
                     f'<text x="{_PAD_L - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end">{tick / GiB:.0f}</text>')
    parts.append(f'<text x="12" y="{_PAD_T + plot_h / 2:.0f}" font-size="11" transform="rotate(-90 12 {_PAD_T + plot_h / 2:.0f})" '
                 'text-anchor="middle">GiB per GPU</text>')
    legend: dict[str, str] = {}
    for i, (label, components, peak, verdict) in enumerate(bars):
        x = _PAD_L + 30 + i * (bar_w + gap)
        base = 0
        for name, n_bytes in components:
            if n_bytes <= 0:
                continue
            colour = COLOURS.get(name, "#999")
            legend[name] = colour
            y0, y1 = y(base + n_bytes), y(base)
            parts.append(f'<rect class="bar-{escape(label.split()[0])} comp-{escape(name)}" x="{x:.1f}" y="{y0:.1f}" '
                         f'width="{bar_w:.1f}" height="{max(y1 - y0, 0.5):.1f}" fill="{colour}"><title>{escape(name)}: '
                         f'{n_bytes / GiB:.2f} GiB</title></rect>')
            base += n_bytes
        size = 12 if len(bars) <= 2 else _FONT
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y(peak) - 4:.1f}" font-size="{size}" text-anchor="middle">'
                     f'{peak / GiB:.1f} GiB</text>'
                     f'<text x="{x + bar_w / 2:.1f}" y="{_name_y(i, len(bars))}" font-size="{size}" text-anchor="middle">'
                     f'{escape(label)}{verdict}</text>')
    lines: list[tuple[str, float, str, str, str, str]] = []   # class, y, stroke, dash, label colour, label
    if capacity_bytes:
        lines.append(("capacity", y(capacity_bytes), "#c00", "6 3", "#c00", f"GPU {capacity_bytes / GiB:.1f} GiB"))
    if budget_bytes and (not capacity_bytes or abs(capacity_bytes - budget_bytes) > 0.03 * capacity_bytes):
        lines.append(("budget", y(budget_bytes), "#e08a00", "2 3", "#b06a00", f"budget {budget_bytes / GiB:.1f} GiB"))
    # each label centred on its line, moved apart just enough when the lines are close (the order is kept)
    centres = spread([ly for _, ly, *_ in lines], _FONT + _LABEL_GAP, _FONT / 2, _H - _PAD_B - _FONT / 2)
    for (cls, ly, stroke, dash, colour, label), centre in zip(lines, centres):
        parts.append(f'<line class="{cls}" x1="{_PAD_L}" x2="{_PLOT_R}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{stroke}" '
                     f'stroke-dasharray="{dash}"/><text class="{cls}-label" x="{_LINE_LABEL_X}" y="{centre + _FONT * 0.35:.1f}" '
                     f'font-size="{_FONT}" fill="{colour}" text-anchor="start">{label}</text>')
    step = min(17.0, (_H - _PAD_T - _FONT) / max(len(legend), 1))
    for j, (name, colour) in enumerate(legend.items()):
        ly = _PAD_T + j * step
        parts.append(f'<rect x="{_LEGEND_X}" y="{ly:.1f}" width="11" height="11" fill="{colour}"/>'
                     f'<text x="{_LEGEND_X + 16}" y="{ly + 10:.1f}" font-size="{_FONT}">{escape(name.replace("_", " "))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _name_y(i: int, n_bars: int) -> int:
    """Baseline of bar i's name: one row under two bars; with more (narrower) bars, two staggered rows."""
    if n_bars <= 2:
        return _H - 14
    return _H - 20 if i % 2 == 0 else _H - 5


def _verdict(est: MemoryEstimate) -> str:
    return "" if est.fits is None else (" fits" if est.fits else " borderline" if est.verdict == "borderline" else " OOM")


def held_bars(reconciliation) -> list[tuple[str, dict[str, int]]]:
    """One bar per snapshot of a reconciliation (tools.snapshot): the bytes it held by component."""
    if reconciliation is None:
        return []
    return [(f"held r{c.rank}" if c.rank is not None else "held", {r.component: r.held_bytes for r in c.rows})
            for c in reconciliation.comparisons]


def spread(centres: list[float], gap: float, lo: float, hi: float) -> list[float]:
    """Positions for labels wanted at `centres` (one axis) at least `gap` apart, inside [lo, hi], each as near its
    wish as that allows and in the same order: overlapping neighbours are merged into a block centred on their
    mean wish, until no two blocks overlap."""
    if not centres:
        return []
    order = sorted(range(len(centres)), key=lambda i: centres[i])
    blocks: list[list[float]] = []   # [first position, count, sum of wishes]
    for i in order:
        blocks.append([centres[i], 1, centres[i]])
        while True:
            last = blocks[-1]
            start = last[2] / last[1] - gap * (last[1] - 1) / 2           # the block centred on its members' wishes
            start = min(max(start, lo), max(lo, hi - gap * (last[1] - 1)))
            last[0] = start
            if len(blocks) > 1 and blocks[-2][0] + gap * blocks[-2][1] > start:
                prev = blocks.pop(-2)
                last[1] += prev[1]
                last[2] += prev[2]
                continue
            break
    placed: dict[int, float] = {}
    k = 0
    for first, count, _ in blocks:
        for j in range(int(count)):
            placed[order[k]] = first + j * gap
            k += 1
    return [placed[i] for i in range(len(centres))]


def _ticks(top: float) -> list[float]:
    """Round GiB gridlines: about five of them."""
    step_gib = max(1, round(top / GiB / 5))
    for nice in (1, 2, 5, 10, 20, 50, 100, 200, 500):
        if nice >= step_gib:
            step_gib = nice
            break
    return [k * step_gib * GiB for k in range(0, int(top / (step_gib * GiB)) + 1)]
