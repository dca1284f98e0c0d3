"""The labelled reports: TF-IDF neighbours, leaving a report's own thread and whole projects out, and the shipped
file kept equal to a build from the dev sets (never a held-out or validation set)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ask_oom.kb.reports import REPORTS_PATH, LabelledReport, LeaveOwnReportOut, ReportIndex, load_reports, report_terms

REPO = Path(__file__).resolve().parents[2]


def _report(rid: str, text: str, label: str, project: str = "proj", source: str | None = None) -> LabelledReport:
    return LabelledReport(id=rid, source=source or f"https://github.com/o/{project}/issues/{rid}", project=project,
                          labels=[label], terms=report_terms(text))


INDEX = ReportIndex(reports=[
    _report("1", "vllm serve kv cache gpu_memory_utilization max_model_len out of memory", "generation_kv_cache", "vllm"),
    _report("2", "vllm kv cache blocks gpu_memory_utilization not enough memory", "generation_kv_cache", "vllm"),
    _report("3", "deepspeed zero3 optimizer states full fine-tuning out of memory", "full_ft_model_states", "ds"),
    _report("4", "deepspeed zero2 optimizer states full fine-tuning adam", "full_ft_model_states", "ds"),
    _report("5", "evaluation nested_concat preds_host logits accumulate memory", "eval_accumulation", "tf"),
])


def test_the_reports_worded_most_alike_come_first():
    near = INDEX.neighbours("vLLM: not enough memory for the kv cache, raise gpu_memory_utilization", k=3)
    assert [n.label for n in near[:2]] == ["generation_kv_cache", "generation_kv_cache"]
    assert near[0].similarity >= near[1].similarity > 0 and len(near) <= 3


def test_a_report_is_never_its_own_neighbour_and_projects_can_be_left_out():
    text = "vllm serve kv cache gpu_memory_utilization max_model_len out of memory"
    own = INDEX.neighbours(text, skip_source="https://github.com/o/vllm/issues/1/")   # URL forms of one thread match
    assert "1" not in [n.id for n in own] and "2" in [n.id for n in own]
    assert all(n.project != "vllm" for n in INDEX.neighbours(text, skip_projects={"vllm"}))
    assert [n.id for n in LeaveOwnReportOut(INDEX, "https://github.com/o/vllm/issues/1").neighbours(text)][0] == "2"
    # from the paste's term counts (as the agent reads them once for the neighbours and the word model) alike
    assert [n.id for n in LeaveOwnReportOut(INDEX, "https://github.com/o/vllm/issues/1").neighbours_of_terms(
        report_terms(text))][0] == "2"


def test_chinese_is_read_as_character_pairs_so_phrases_inside_longer_runs_match():
    """Chinese has no spaces: "训练时显存不足" and "推理显存不足了" share no whole run, but share 显存, 存不 and 不足."""
    assert report_terms("显存不足 OOM") == {"显存": 1, "存不": 1, "不足": 1, "oom": 1}
    index = ReportIndex(reports=[_report("a", "训练时显存不足", "batch_too_large", "p1"),
                                 _report("b", "训练时显存不足", "batch_too_large", "p2"),
                                 _report("c", "模型加载很慢", "model_load_oom", "p3"),
                                 _report("d", "模型加载很慢", "model_load_oom", "p4")])
    near = index.neighbours("推理显存不足了", k=2)
    assert near and {n.id for n in near} == {"a", "b"}


def test_words_no_report_shares_find_nothing():
    assert INDEX.neighbours("zzz qqq xyzzy") == [] and ReportIndex().neighbours("kv cache") == []


@pytest.mark.skipif(not (REPO.parent / "shared" / "dev-cases").is_dir(), reason="../shared is not beside the repo")
def test_the_shipped_reports_are_a_fresh_build_of_the_dev_sets(tmp_path):
    """The build reads ../shared/dev-cases too (one of the dev sets): without it the build is smaller, not stale."""
    sys.path.insert(0, str(REPO / "evals"))
    from build_reports import build

    fresh = tmp_path / "reports.json"
    build().dump(fresh)
    assert fresh.read_text(encoding="utf-8") == REPORTS_PATH.read_text(encoding="utf-8"), \
        "kb/reports.json is stale: run python evals/build_reports.py"


def test_no_held_out_or_validation_report_is_shipped():
    from ruamel.yaml import YAML

    sys.path.insert(0, str(REPO / "evals"))
    from diagnosis_benchmark import HELD_OUT_SETS

    yaml = YAML(typ="safe")
    shipped = {r["source"] for r in json.loads(REPORTS_PATH.read_text(encoding="utf-8"))["reports"]}
    for name in HELD_OUT_SETS:
        for path in (REPO / "evals" / "data" / name).glob("*.yaml"):
            assert yaml.load(path.read_text(encoding="utf-8")).get("source") not in shipped, path.name
    assert len(load_reports().reports) == len(shipped) >= 500


def test_a_long_log_is_compared_on_its_two_ends():
    """The words that say what a long log is sit at its start (the launch) and its end (the error): both are read,
    and the config after it too; a short paste is read whole."""
    from ask_oom.kb.reports import MAX_TEXT, paste_text, report_terms

    progress = "".join(f"{{'loss': {i % 7 / 3:.4f}}}\n" for i in range(MAX_TEXT // 10))
    log = "deepspeed --num_gpus 8 train.py\n" + progress + "torch.OutOfMemoryError: CUDA out of memory\n"
    terms = report_terms(paste_text(log, "gradient_checkpointing: true"))
    assert {"deepspeed", "outofmemoryerror", "gradient_checkpointing"} <= set(terms)
    assert paste_text("short log", None) == "short log\n"
