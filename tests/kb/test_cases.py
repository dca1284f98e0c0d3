"""The knowledge-base case files: every one valid and cited, ids unique, the five seed cases carrying their documented
fixes, no case taken from the evaluation set, and every root-cause label covered by at least two cases."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import get_args

import pytest

from ask_oom.kb.cases import CaseError, case_files, parse_case_text, thread_key
from ask_oom.kb.schema import Case
from ask_oom.tools.frameworks import CASE_FRAMEWORKS
from ask_oom.tools.labels import ROOT_CAUSES
from ask_oom.tools.report import OOMKind, Phase

REPO = Path(__file__).resolve().parents[2]
CASES_DIR = REPO / "kb" / "cases"
FRAMEWORKS = set(CASE_FRAMEWORKS)
# A GitHub thread (issue, pull request or discussion), a forum/blog/doc page, or a seed document under shared/seeds/.
SOURCE_RE = re.compile(r"^(https?://\S+|shared/seeds/\d{3}_[0-9a-f]+\.txt)$")
GITHUB_THREAD_RE = re.compile(r"^https://github\.com/([^/\s]+)/([^/\s]+)/(issues|pull|discussions)/(\d+)$")
CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
MIN_CASES_PER_LABEL = 2

SEED_IDS = {
    "seed-kimi-vl-a3b-full-z3-cutoff16k": "shared/seeds/000_9bf0b41c8e84ba26.txt",
    "seed-moe-llava-phi2-batch8-a100-40g": "shared/seeds/001_1baa7663d0f6c7eb.txt",
    "seed-deepke-llama2-13b-3x24g-4bit": "shared/seeds/002_0ef80b50caa5b878.txt",
    "seed-qwen2.5-vl-7b-full-memory-growth": "shared/seeds/003_afb8ccfd6fa59596.txt",
    "seed-qwen2.5-32b-full-z3-offload-host-ram": "shared/seeds/004_60066ac378bab0ac.txt",
}


CASE_FILES = case_files(CASES_DIR)


def _load_valid() -> dict[Path, Case]:
    """Every case that parses; a file that does not is reported by test_case_file_is_valid, not here."""
    loaded = {}
    for path in CASE_FILES:
        try:
            loaded[path] = parse_case_text(path.read_text(encoding="utf-8"), name=path.name)
        except CaseError:
            continue
    return loaded


@pytest.fixture(scope="module")
def cases_by_file() -> dict[Path, Case]:
    return _load_valid()


@pytest.fixture(scope="module")
def cases(cases_by_file) -> dict[str, Case]:
    return {case.id: case for case in cases_by_file.values()}


def _fix_changes(case: Case) -> dict[str, tuple[object, object]]:
    return {f.key: (f.from_value, f.to_value) for f in case.fixes if f.key}


def _fix_actions(case: Case) -> str:
    return " ".join(f.action or "" for f in case.fixes).lower()


# --- every file -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.stem)
def test_case_file_is_valid(path):
    """Safe YAML, a mapping, valid against `Case` (known labels included); the error names the field."""
    parse_case_text(path.read_text(encoding="utf-8"), name=path.name)


def test_there_are_cases(cases_by_file):
    assert len(CASE_FILES) >= 60
    assert len(cases_by_file) == len(CASE_FILES), "some case files do not parse (see test_case_file_is_valid)"


def test_file_name_is_the_id(cases_by_file):
    wrong = [p.name for p, c in cases_by_file.items() if p.stem != c.id]
    assert not wrong, f"file name must be <id>.yaml: {wrong}"


def test_ids_are_unique(cases_by_file):
    counts = Counter(c.id for c in cases_by_file.values())
    assert not [i for i, n in counts.items() if n > 1]


def test_each_thread_is_one_case(cases_by_file):
    counts = Counter(thread_key(c.source) for c in cases_by_file.values())
    assert not [s for s, n in counts.items() if n > 1], "two cases cite the same source"


def test_every_case_cites_a_source(cases_by_file):
    bad = [c.id for c in cases_by_file.values() if not SOURCE_RE.match(c.source.strip())]
    assert not bad, f"source must be a URL or a shared/seeds document: {bad}"


def test_github_sources_name_a_thread(cases_by_file):
    bad = [
        (c.id, c.source) for c in cases_by_file.values()
        if "github.com" in c.source and not GITHUB_THREAD_RE.match(c.source.strip())
    ]
    assert not bad, f"GitHub sources must be issue / pull / discussion URLs: {bad}"


def test_labels_are_known_and_not_repeated(cases_by_file):
    for case in cases_by_file.values():
        assert set(case.root_causes) <= set(ROOT_CAUSES), case.id
        assert len(case.root_causes) == len(set(case.root_causes)), f"{case.id}: a label repeated"


def test_symptom_kind_and_phase_use_the_report_vocabulary(cases_by_file):
    kinds, phases = set(get_args(OOMKind)), set(get_args(Phase))
    for case in cases_by_file.values():
        assert case.symptom.error_kind in kinds, f"{case.id}: error_kind {case.symptom.error_kind!r}"
        assert case.symptom.phase is None or case.symptom.phase in phases, f"{case.id}: phase {case.symptom.phase!r}"


def test_framework_is_a_known_name(cases_by_file):
    bad = [(c.id, c.framework) for c in cases_by_file.values() if c.framework not in FRAMEWORKS]
    assert not bad


def test_not_oom_cases_say_so(cases_by_file):
    """A case whose primary cause is not_oom must not describe a memory error in its symptom."""
    for case in cases_by_file.values():
        if case.primary_cause == "not_oom":
            assert case.symptom.error_kind in ("not_oom", "related_error"), case.id


def test_fixes_are_typed_changes_or_actions_with_a_reason(cases_by_file):
    for case in cases_by_file.values():
        for fix in case.fixes:
            assert fix.key or fix.action, f"{case.id}: a fix needs a key or an action"
            if fix.from_value is not None:
                assert fix.key, f"{case.id}: 'from' without a key"
            assert len(fix.rationale.split()) >= 4, f"{case.id}: rationale too thin: {fix.rationale!r}"


def test_numbers_are_consistent(cases_by_file):
    for case in cases_by_file.values():
        n = case.symptom.numbers
        assert all(v >= 0 for v in n.values()), case.id
        total = n.get("total_gib")
        if total:
            for key in ("free_gib", "allocated_gib", "reserved_gib", "process_used_gib"):
                if key in n:
                    assert n[key] <= total * 1.001, f"{case.id}: {key} {n[key]} > total {total}"


def test_text_fields_are_written_in_english(cases_by_file):
    """Sources may be Chinese; the case text (title, rationales, outcome) is in English, in the writer's words."""
    for case in cases_by_file.values():
        texts = [case.title, case.outcome, *(f.rationale for f in case.fixes)]
        assert not any(CJK_RE.search(t) for t in texts), case.id


def test_cases_round_trip_through_the_schema(cases_by_file):
    for case in cases_by_file.values():
        dumped = case.model_dump(by_alias=True)
        assert Case.model_validate(dumped) == case


# --- the five seed documents -------------------------------------------------------------------------------------


def test_the_five_seed_cases_exist(cases):
    missing = set(SEED_IDS) - set(cases)
    assert not missing
    for case_id, source in SEED_IDS.items():
        assert cases[case_id].source == source
        assert cases[case_id].language == "zh"


def test_seed_sources_are_real_documents(shared_dir):
    for source in SEED_IDS.values():
        assert (shared_dir / source.removeprefix("shared/")).is_file(), source


def test_seed_kimi_vl(cases):
    case = cases["seed-kimi-vl-a3b-full-z3-cutoff16k"]
    assert (case.hardware.gpu, case.hardware.count, case.hardware.memory_gib) == ("H20", 8, 96)
    assert case.method == "full" and case.model.modality == "vision-language-moe"
    changes = _fix_changes(case)
    assert changes["cutoff_len"] == (16384, 4096)
    assert changes["flash_attn"][1] == "fa2"
    assert changes["freeze_vision_tower"][1] is True
    assert changes["freeze_multi_modal_projector"][1] is True
    assert changes["per_device_train_batch_size"][1] == 1
    assert {"gradient_accumulation_steps", "streaming", "buffer_size"} <= set(changes)
    assert "flash-attn" in _fix_actions(case)
    assert case.root_causes[0] == "seq_len_too_long" and "eager_attention" in case.root_causes


def test_seed_moe_llava(cases):
    case = cases["seed-moe-llava-phi2-batch8-a100-40g"]
    assert (case.hardware.gpu, case.hardware.count, case.hardware.memory_gib) == ("A100", 8, 40)
    changes = _fix_changes(case)
    assert changes["per_device_train_batch_size"] == (8, 4)
    assert changes["gradient_accumulation_steps"] == (2, 4)
    assert changes["per_device_eval_batch_size"] == (4, 4)
    assert case.symptom.numbers == {"requested_gib": 6.56, "free_gib": 3.18, "allocated_gib": 33.67}
    assert case.primary_cause == "batch_too_large"
    assert all(f.confirmed for f in case.fixes)


def test_seed_deepke(cases):
    case = cases["seed-deepke-llama2-13b-3x24g-4bit"]
    assert (case.hardware.count, case.hardware.memory_gib) == (3, 23.64)
    n = case.symptom.numbers
    assert (n["total_gib"], n["allocated_gib"]) == (23.64, 23.08)
    assert "Tried to allocate 2.00 MiB" in (case.symptom.message or "")
    assert _fix_changes(case)["bits"][1] == 4
    actions = _fix_actions(case)
    assert "transformers==4.33.0" in actions and "max_split_size_mb:1024" in actions
    confirmed = {f.action or f.key: f.confirmed for f in case.fixes}
    assert confirmed["pin transformers==4.33.0"] and not confirmed["export PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:1024"]
    assert {"quantization_setup", "dtype_unsupported"} <= set(case.root_causes)
    related = " ".join(case.related_errors)
    assert "triu_tril_cuda_template" in related and "quantization_config" in related


def test_seed_qwen25_vl_growth(cases):
    case = cases["seed-qwen2.5-vl-7b-full-memory-growth"]
    assert case.primary_cause == "memory_growth" and case.framework == "llamafactory"
    changes = _fix_changes(case)
    assert {"per_device_train_batch_size", "gradient_accumulation_steps", "cutoff_len", "bf16", "deepspeed",
            "freeze_vision_tower", "freeze_multi_modal_projector", "train_mm_proj_only"} <= set(changes)
    assert "window attention" in case.outcome


def test_seed_qwen25_32b_host_ram(cases):
    case = cases["seed-qwen2.5-32b-full-z3-offload-host-ram"]
    assert case.primary_cause == "offload_host_ram" and case.symptom.error_kind == "host_oom"
    assert (case.hardware.gpu, case.hardware.memory_gib, case.hardware.host_ram_gib) == ("H100", 96, 744)
    n = case.symptom.numbers
    assert (n["estimate_gpu_no_offload_gb"], n["estimate_cpu_zero3_offload_gb"], n["estimate_gpu_zero3_offload_gb"]) == (539, 804, 2.9)
    assert (n["estimate_gpu_zero2_optimizer_offload_gb"], n["estimate_cpu_zero2_optimizer_offload_gb"]) == (62.5, 715)
    assert _fix_changes(case)["finetuning_type"] == ("full", "lora")
    assert "gradient_checkpointing" in _fix_changes(case)


# --- the evaluation set stays out --------------------------------------------------------------------------------


def test_no_case_cites_a_dev_case_source(cases_by_file, shared_dir):
    dev_sources = set()
    for path in sorted((shared_dir / "dev-cases").glob("*.yaml")):
        match = re.search(r"^source:\s*(\S+)", path.read_text(encoding="utf-8"), re.MULTILINE)
        if match:
            dev_sources.add(thread_key(match.group(1)))
    assert dev_sources, "dev-cases carry sources"
    leaked = [c.id for c in cases_by_file.values() if thread_key(c.source) in dev_sources]
    assert not leaked, f"cases taken from the evaluation set: {leaked}"


def test_thread_key_folds_repo_renames():
    a = thread_key("https://github.com/hiyouga/LLaMA-Factory/issues/1221/")
    assert a == thread_key("https://github.com/hiyouga/LlamaFactory/issues/1221")
    assert a == thread_key("https://www.github.com/hiyouga/llamafactory/issues/1221#issuecomment-5")
    assert a != thread_key("https://github.com/hiyouga/LlamaFactory/issues/12210")
    # an owner move keeps the thread (microsoft/DeepSpeed -> deepspeedai/DeepSpeed); another repository does not
    assert thread_key("https://github.com/microsoft/DeepSpeed/issues/3517") == \
        thread_key("https://github.com/deepspeedai/DeepSpeed/pull/3517")
    assert thread_key("https://github.com/huggingface/peft/issues/7") != thread_key("https://github.com/huggingface/trl/issues/7")
    assert thread_key("shared/seeds/002_0ef.txt ") == "shared/seeds/002_0ef.txt"


# --- coverage of the vocabulary ----------------------------------------------------------------------------------


@pytest.mark.parametrize("label", sorted(ROOT_CAUSES))
def test_label_is_covered_at_least_twice(label, cases_by_file):
    """Coverage over the current union of all case files in kb/cases (every writer's), as primary or secondary cause;
    one test per label so a gap names the label."""
    holders = [c.id for c in cases_by_file.values() if label in c.root_causes]
    assert len(holders) >= MIN_CASES_PER_LABEL, f"{label}: only {holders}"


def test_most_labels_are_also_a_primary_cause(cases_by_file):
    """A label that is never primary cannot teach the ranking what it looks like when it dominates."""
    primaries = Counter(c.primary_cause for c in cases_by_file.values())
    never_primary = [label for label in ROOT_CAUSES if primaries[label] == 0]
    assert len(never_primary) <= 3, f"never a primary cause: {never_primary}"


def test_mix_of_modalities_and_stacks(cases_by_file):
    modalities = Counter(c.model.modality for c in cases_by_file.values())
    assert modalities["text"] >= 5 and modalities["vision-language"] >= 5
    assert modalities["moe"] + modalities["vision-language-moe"] >= 2
    frameworks = Counter(c.framework for c in cases_by_file.values())
    assert len(frameworks) >= 6
