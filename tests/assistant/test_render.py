"""Renderers: the documented JSON object and terminal-readable Markdown, both built only from Diagnosis fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ask_oom.assistant.agent import diagnose
from ask_oom.assistant.diagnosis import DiagnoseRequest
from ask_oom.assistant.render import render_json, render_markdown
from ask_oom.kb.index import CaseIndex
from ask_oom.tools.units import format_bytes

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"


@pytest.fixture(scope="module")
def diagnosis():
    folder = SEEDS / "deepke-llama2-13b"
    req = DiagnoseRequest(log_text=(folder / "train.log").read_text(encoding="utf-8"),
                          config_text=(folder / "run.sh").read_text(encoding="utf-8"), config_name="run.sh")
    return diagnose(req, index=CaseIndex.load_or_build())


def test_json_has_the_documented_keys_and_round_trips(diagnosis):
    out = render_json(diagnosis)
    for key in ("report", "setup", "estimate", "root_causes", "similar_cases", "fixes", "fixed_config", "estimate_after",
                "primary_cause", "questions", "assumptions", "status"):
        assert key in out
    assert json.loads(json.dumps(out)) == out
    assert out["primary_cause"] == out["root_causes"][0]["label"] == "weights_exceed_gpu"
    assert all(c["meaning"] and c["why"] for c in out["root_causes"])
    assert all(p["origin"] in ("log", "config", "user", "default", "registry", "derived")
               for p in out["setup"]["provenance"].values())


def test_markdown_sections_and_numbers(diagnosis):
    md = render_markdown(diagnosis)
    for heading in ("# ask-oom diagnosis", "## What ran out of memory", "## Why (ranked causes)",
                    "## Memory per GPU (calculator)", "## Changes", "## Diff", "## Fixed config",
                    "## Similar documented cases"):
        assert heading in md
    assert format_bytes(diagnosis.report.requested_bytes) in md            # 2.00 MiB
    assert format_bytes(diagnosis.report.gpu_free_bytes) in md             # 704.00 KiB
    assert format_bytes(diagnosis.estimate.peak_bytes) in md
    assert "| `bits` | unset → `4` |" in md
    assert "```bash" in md and "--bits 4" in md
    assert "None" not in md.replace("None of", "")


def test_markdown_without_a_memory_error_is_short():
    d = diagnose(DiagnoseRequest(log_text="Traceback (most recent call last):\nValueError: bad value\n"),
                 index=CaseIndex.load_or_build())
    md = render_markdown(d)
    assert "No out-of-memory error" in md
    assert "## Memory per GPU" not in md and "## Changes" not in md
