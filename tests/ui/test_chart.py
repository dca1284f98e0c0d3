"""The before/after memory chart: one stacked segment per component, capacity and budget lines, no injection."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ask_oom.tools.memory.schema import MemoryBreakdown, MemoryComponent, MemoryEstimate
from ask_oom.ui.chart import memory_chart_svg

GiB = 2**30


def estimate(peak_gib: float, parts: dict[str, float], fits: bool) -> MemoryEstimate:
    comps = [MemoryComponent(name=k, bytes=int(v * GiB)) for k, v in parts.items()]
    return MemoryEstimate(peak_bytes=int(peak_gib * GiB), peak_phase="backward", breakdown=MemoryBreakdown(components=comps),
                          n_params=1, n_trainable=1, fits=fits)


def test_chart_has_a_segment_per_component_and_both_lines():
    before = estimate(40, {"weights": 15, "logits_and_loss": 20, "activations": 5}, fits=False)
    after = estimate(25, {"weights": 15, "logits_and_loss": 5, "activations": 5}, fits=True)
    svg = memory_chart_svg(before, after, int(39.39 * GiB), budget_bytes=int(34.96 * GiB))
    root = ET.fromstring(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if "bar-" in (r.get("class") or "")]
    assert len([b for b in bars if "bar-before" in b.get("class")]) == 3
    assert len([b for b in bars if "bar-after" in b.get("class")]) == 3
    assert root.find(f".//{ns}line[@class='capacity']") is not None
    assert root.find(f".//{ns}line[@class='budget']") is not None
    assert "before OOM" in svg and "after fits" in svg and "GPU 39.4 GiB" in svg
    # taller segment for the bigger component: heights are proportional to bytes
    heights = {b.get("class").split()[1]: float(b.get("height")) for b in bars if "bar-before" in b.get("class")}
    assert heights["comp-logits_and_loss"] > heights["comp-weights"] > heights["comp-activations"]


def test_component_names_are_escaped():
    evil = estimate(1, {"<script>x</script>": 1}, fits=True)
    svg = memory_chart_svg(evil, None, None)
    assert "<script>" not in svg and re.search(r"&lt;script&gt;", svg)


def test_no_estimate_says_what_is_missing():
    assert "No memory estimate" in memory_chart_svg(None, None, None)


def _text_boxes(svg: str) -> list[tuple[str, float, float, float, float]]:
    """Every label's box (text, left, top, right, bottom), its width estimated generously from its length."""
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    boxes = []
    for t in root.iter(f"{ns}text"):
        if t.get("transform"):   # the rotated axis title sits alone left of the tick labels
            continue
        size, x, y, text = float(t.get("font-size")), float(t.get("x")), float(t.get("y")), t.text or ""
        width = len(text) * size * 0.62
        left = {"end": x - width, "middle": x - width / 2}.get(t.get("text-anchor") or "start", x)
        boxes.append((text, left, y - size * 0.8, left + width, y + size * 0.2))
    return boxes


def _overlap(a, b) -> bool:
    return a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]


def _bar_boxes(svg: str) -> list[tuple[str, float, float, float, float]]:
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    return [(r.get("class"), float(r.get("x")), float(r.get("y")), float(r.get("x")) + float(r.get("width")),
             float(r.get("y")) + float(r.get("height"))) for r in root.iter(f"{ns}rect") if "bar-" in (r.get("class") or "")]


def test_labels_never_overlap_each_other_or_the_bars():
    """Peaks at the capacity line, a budget just under it, tiny and huge GPUs: no two labels share a pixel, no label
    lies on a bar, and every label stays inside the picture."""
    comps = ["weights", "gradients", "optimizer_states", "master_weights", "activations", "attention_scores",
             "logits_and_loss", "vision_activations", "optimizer_temporaries", "eval_accumulated", "allocator_reserve"]
    cases = []
    for cap in (8, 23.64, 39.39, 79.15, 139.8):
        for before_f, after_f in ((1.2, 0.97), (1.0, 1.0), (0.9, 0.89), (2.5, 0.5), (0.1, 0.05)):
            for budget_f in (0.9, 0.95, 0.96, 0.5):
                cases.append((cap, before_f * cap, after_f * cap, budget_f * cap))
    for cap, before_gib, after_gib, budget_gib in cases:
        share = {c: 1 / len(comps) for c in comps}
        before = estimate(before_gib, {c: before_gib * s for c, s in share.items()}, fits=False)
        after = estimate(after_gib, {c: after_gib * s for c, s in share.items()}, fits=True)
        svg = memory_chart_svg(before, after, int(cap * GiB), budget_bytes=int(budget_gib * GiB))
        texts, bars = _text_boxes(svg), _bar_boxes(svg)
        root = ET.fromstring(svg)
        _, _, width, height = map(float, root.get("viewBox").split())
        for i, a in enumerate(texts):
            assert 0 <= a[1] and a[3] <= width and 0 <= a[2] and a[4] <= height, (a, cap, before_gib, after_gib, budget_gib)
            for b in texts[i + 1:]:
                assert not _overlap(a, b), (a, b, cap, before_gib, after_gib, budget_gib)
            for bar in bars:
                assert not _overlap(a, bar), (a, bar, cap, before_gib, after_gib, budget_gib)


def test_line_labels_stay_near_their_lines():
    from ask_oom.ui.chart import spread

    assert spread([50, 200], 13, 5, 250) == [50, 200]                     # far apart: exactly on their lines
    close = spread([100, 104], 13, 5, 250)
    assert close[1] - close[0] == 13 and abs(sum(close) / 2 - 102) < 1e-9  # pushed apart around their mean
    assert spread([2, 3], 13, 5, 250) == [5, 18]                         # kept inside the picture
