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
