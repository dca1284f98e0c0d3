"""Our extra diagnosis dev cases (evals/data/diagnosis/*.yaml) stay a valid dataset: dev-case keys, known labels,
unique ids and sources, and no overlap with the knowledge base, the shared dev cases or the held-out set."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from ask_oom.tools.labels import ROOT_CAUSES

REPO = Path(__file__).resolve().parents[2]
OURS = REPO / "evals" / "data" / "diagnosis"
OTHERS = [REPO / "evals" / "data" / "diagnosis_extra", REPO.parent / "shared" / "dev-cases"]
_yaml = YAML(typ="safe")


def _cases(folder: Path) -> list[dict]:
    return [_yaml.load(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.yaml"))] if folder.is_dir() else []


def test_cases_are_well_formed():
    cases = _cases(OURS)
    assert len(cases) >= 5
    for c in cases:
        assert {"id", "source", "log", "environment", "expected"} <= set(c), c.get("id")
        assert c["source"].startswith("https://")
        labels = c["expected"]["primary_any_of"] + c["expected"].get("top3_must_include", [])
        assert labels and all(label in ROOT_CAUSES for label in labels), c["id"]
    assert len({c["id"] for c in cases}) == len(cases)


def test_no_overlap_with_the_knowledge_base_or_other_sets():
    ours = _cases(OURS)
    kb_sources = {(_yaml.load(p.read_text(encoding="utf-8")) or {}).get("source") for p in (REPO / "kb" / "cases").glob("*.yaml")}
    other = [c for folder in OTHERS for c in _cases(folder)]
    for c in ours:
        assert c["source"] not in kb_sources, c["id"]
        assert c["id"] not in {o.get("id") for o in other} and c["source"] not in {o.get("source") for o in other}, c["id"]
