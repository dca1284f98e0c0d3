"""The labelled corpus (tests/fixtures/logs): every labelled field of every log must parse right."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ask_oom.tools.log_parser import parse_log

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "logs"
LABELS = sorted(CORPUS.glob("*.expected.json"))


def _accuracy_module():
    spec = importlib.util.spec_from_file_location("parser_accuracy", REPO / "evals" / "parser_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ACCURACY = _accuracy_module()


def test_corpus_is_large_and_covers_every_kind():
    assert len(LABELS) >= 40
    kinds = {json.loads(p.read_text())["expected"]["kind"] for p in LABELS}
    assert kinds == {"cuda_oom", "host_oom", "cublas_alloc", "nccl_oom", "hip_oom", "npu_oom", "mps_oom", "xla_oom",
                     "tf_oom", "related_error", "not_oom"}
    for p in LABELS:
        assert json.loads(p.read_text())["source"], f"{p.name} must say where its format comes from"


@pytest.mark.parametrize("label", LABELS, ids=lambda p: p.name.removesuffix(".expected.json"))
def test_log_matches_its_labels(label: Path):
    expected = json.loads(label.read_text(encoding="utf-8"))["expected"]
    report = parse_log((CORPUS / label.name.replace(".expected.json", ".log")).read_bytes())
    wrong = [(field, detail) for field, ok, detail in ACCURACY.compare(expected, report) if not ok]
    assert not wrong


def test_str_and_bytes_and_stream_agree():
    from ask_oom.tools.log_parser import parse_log_stream

    for label in LABELS[:: max(1, len(LABELS) // 12)]:
        data = (CORPUS / label.name.replace(".expected.json", ".log")).read_bytes()
        a = parse_log(data)
        b = parse_log(data.decode("utf-8"))
        c = parse_log_stream(data[i:i + 7] for i in range(0, len(data), 7))  # chunks split mid-character and mid-line
        assert a.model_dump() == b.model_dump() == c.model_dump()


def test_accuracy_eval_reports_100_percent():
    result = ACCURACY.evaluate_corpus(CORPUS)
    assert result["checked"] > 400
    assert result["correct"] == result["checked"], result["failures"]


def test_numbers_of_the_real_dev_case_reports(shared_dir):
    """The sizes printed in ../shared/dev-cases logs (real reports) parse to their labelled values."""
    rows = ACCURACY.evaluate_dev_cases(shared_dir / "dev-cases")
    assert rows and all(r["correct"] == r["fields"] for r in rows), [r for r in rows if r["misses"]]
