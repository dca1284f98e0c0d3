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
    for key in ("report", "setup", "estimate", "root_causes", "similar_cases", "similar_reports", "fixes", "fixed_config",
                "estimate_after", "primary_cause", "questions", "assumptions", "status"):
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


def test_the_public_reports_like_this_one_are_listed_with_their_threads_and_causes(diagnosis):
    assert diagnosis.similar_reports and len(diagnosis.similar_reports) <= 5
    md = render_markdown(diagnosis)
    assert "## Public reports worded like this one" in md
    for r in diagnosis.similar_reports:
        assert f"[{r.id}]({r.source})" in md and f"**{r.cause}**" in md and r.source.startswith("https://")
    sims = [r.similarity for r in diagnosis.similar_reports]
    assert sims == sorted(sims, reverse=True)
    voted = {s.label.value for s in diagnosis.signals if s.name == "labelled_report_votes"}
    assert {r.cause for r in diagnosis.similar_reports} <= voted   # every listed report's cause was weighed


def test_markdown_without_a_memory_error_is_short():
    d = diagnose(DiagnoseRequest(log_text="Traceback (most recent call last):\nValueError: bad value\n"),
                 index=CaseIndex.load_or_build())
    md = render_markdown(d)
    assert "No out-of-memory error" in md
    assert "## Memory per GPU" not in md and "## Changes" not in md


def test_a_chinese_report_takes_its_fixed_words_from_the_chinese_table(diagnosis):
    """The full report in a Chinese session: headings, table headers, verdicts and the summary's template in Chinese;
    cause labels, config keys and numbers unchanged; English stays byte-identical to what `diagnose` prints."""
    from ask_oom.assistant.texts import EN, ZH

    en = render_markdown(diagnosis)
    assert render_markdown(diagnosis, "en") == en and en.startswith("# ask-oom diagnosis\n\n" + diagnosis.summary)
    zh = render_markdown(diagnosis, "zh")
    for heading in ("# ask-oom diagnosis", "## What ran out of memory", "## Why (ranked causes)", "## Memory per GPU",
                    "## Changes", "## Fixed config", "## Similar documented cases", "| component | before |",
                    "| fact | value |", "| change | from → to | why | saves |", "The calculator predicts", "unset"):
        assert heading not in zh, heading
    for key in ("rp_title", "rp_ran_out", "rp_causes", "rp_memory", "rp_changes", "rp_fixed_config", "rp_similar"):
        assert ZH[key] in zh and EN[key] in en
    assert diagnosis.primary_cause in zh and "`bits`" in zh and "--bits 4" in zh
    assert format_bytes(diagnosis.estimate.peak_bytes) in zh and format_bytes(diagnosis.report.requested_bytes) in zh
    summary = zh.split("\n\n")[1]
    assert "计算器预测" in summary and format_bytes(diagnosis.estimate.peak_bytes) in summary


def test_the_slack_summary_follows_the_language(diagnosis):
    from ask_oom.assistant.render_slack import render_slack, summary_text

    assert summary_text(diagnosis) == summary_text(diagnosis, "en") and "*Primary cause:*" in summary_text(diagnosis)
    zh = summary_text(diagnosis, "zh")
    assert "*主要原因：*" in zh and f"`{diagnosis.primary_cause}`" in zh and "Primary cause" not in zh
    message = render_slack(diagnosis, markdown=render_markdown(diagnosis, "zh"), language="zh")
    labels = [e["text"]["text"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert labels[0] == "为什么？" and "Solved" not in labels


def test_every_summary_kind_has_a_chinese_form():
    """Config-only and no-memory-error summaries are written again in Chinese; the English one is the pipeline's."""
    from ask_oom.assistant.summary import localized_summary

    no_oom = diagnose(DiagnoseRequest(log_text="Traceback (most recent call last):\nValueError: bad value\n"),
                      index=CaseIndex.load_or_build())
    assert localized_summary(no_oom, "en") == no_oom.summary
    assert localized_summary(no_oom, "zh").startswith("这个日志里没有显存不足的错误。")
    folder = SEEDS / "deepke-llama2-13b"
    config_only = diagnose(DiagnoseRequest(config_text=(folder / "run.sh").read_text(encoding="utf-8"), config_name="run.sh",
                                           gpu="4090"), index=CaseIndex.load_or_build())
    assert config_only.summary.startswith("No log given")
    assert localized_summary(config_only, "zh").startswith("没有日志：计算器估算了 run.sh。")


def test_no_fixed_text_key_is_written_twice():
    """A dict literal with a key written twice keeps the last silently: each text table's keys are unique."""
    import ast
    from pathlib import Path

    import ask_oom.assistant.texts as texts

    tree = ast.parse(Path(texts.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            assert len(keys) == len(set(keys)), sorted({k for k in keys if keys.count(k) > 1})
