"""The FunctionTools the LLM agent gets: each runs the real tool on the session's diagnosis and records its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from ask_oom.assistant.agent import diagnose  # noqa: E402
from ask_oom.assistant.diagnosis import DiagnoseRequest  # noqa: E402
from ask_oom.assistant.llm_tools import ToolContext, build_tools, grounding  # noqa: E402
from ask_oom.assistant.settings import Settings  # noqa: E402

KIMI = Path(__file__).resolve().parents[1] / "fixtures" / "seeds" / "kimi-vl-a3b"


@pytest.fixture(scope="module")
def ctx_tools():
    req = DiagnoseRequest(log_text=(KIMI / "train.log").read_text(), config_text=(KIMI / "train.yaml").read_text(),
                          config_name="train.yaml", extra_configs={"ds_z3_config.json": (KIMI / "ds_z3_config.json").read_text()})
    ctx = ToolContext(diagnosis=diagnose(req), request=req, settings=Settings(llm_base_url=None))
    return ctx, {t.metadata.name: t for t in build_tools(ctx)}


def _call(tool, **kw) -> dict | list:
    return json.loads(tool.call(**kw).content)


def test_tools_are_described_for_the_llm(ctx_tools):
    _, tools = ctx_tools
    assert set(tools) == {"parse_log", "estimate_memory", "search_cases", "plan_fixes"}
    schema = tools["estimate_memory"].metadata.get_parameters_dict()
    assert {"seq_len", "micro_batch", "method"} <= set(schema["properties"])


def test_parse_log_defaults_to_the_sessions_log(ctx_tools):
    ctx, tools = ctx_tools
    out = _call(tools["parse_log"])
    assert out["kind"] == "cuda_oom" and out["requested_gib"] == 16.0


def test_estimate_memory_what_if_changes_the_peak(ctx_tools):
    ctx, tools = ctx_tools
    base = ctx.diagnosis.estimate
    shorter = _call(tools["estimate_memory"], seq_len=4096)
    assert shorter["changes"] == {"seq_len": 4096}
    assert shorter["peak_gib"] < round(base.peak_bytes / 2**30, 2)
    qlora = _call(tools["estimate_memory"], method="qlora")
    assert qlora["changes"] == {"method": "qlora", "quantization_bit": 4} and qlora["peak_gib"] < shorter["peak_gib"] * 2
    bad = _call(tools["estimate_memory"], micro_batch=0)
    assert "error" in bad


def test_search_cases_cites_sources(ctx_tools):
    _, tools = ctx_tools
    hits = _call(tools["search_cases"], query="Kimi-VL full fine-tuning cutoff_len 16384 attention OOM ZeRO-3", k=3)
    assert 1 <= len(hits) <= 3 and all(h["source"] and h["id"] for h in hits)


def test_plan_fixes_under_constraints(ctx_tools):
    ctx, tools = ctx_tools
    plan = _call(tools["plan_fixes"], keep_full=True)
    assert "changes" in plan and all(c["key"] not in ("finetuning_type", "quantization_bit") for c in plan["changes"])
    assert ctx.calls[-1] == "plan_fixes" and len(ctx.outputs) == len(ctx.calls)


def test_grounding_is_compact_and_keeps_the_tool_numbers(ctx_tools):
    ctx, _ = ctx_tools
    g = grounding(ctx.diagnosis)
    assert g["root_causes"][0]["label"] == ctx.diagnosis.root_causes[0].label
    assert g["estimate_before"]["peak_gib"] == round(ctx.diagnosis.estimate.peak_bytes / 2**30, 2)
    assert len(json.dumps(g)) < 12000
