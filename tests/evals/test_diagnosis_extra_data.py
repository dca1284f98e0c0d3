"""The diagnosis sets of our own (evals/data/diagnosis_extra/, diagnosis_fresh/, diagnosis_fresh2/, diagnosis_fresh3/,
diagnosis_fresh4/, the validation sets diagnosis_fresh5/ to diagnosis_fresh25/, the dev corpora diagnosis_corpus_a/ to diagnosis_corpus_z/ and diagnosis_corpus_aa/ to diagnosis_corpus_az/, diagnosis_corpus_ba/ to diagnosis_corpus_bh/, and the held-out project group
heldout_projects/, *.yaml): real public OOM reports in the format of
../shared/dev-cases. These tests keep all of them usable as evaluation sets: every file has the dev-case keys, the
labels come from the root-cause vocabulary, ids and sources are unique and never overlap the dev cases, the knowledge
base, the benchmark's own set or each other, and every number in `expected.parse` is printed in the case's own log
(read here with plain regexes, independently of the product's parser). Every check runs for each folder."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ask_oom.kb.cases import thread_key
from ask_oom.tools.labels import ROOT_CAUSES

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "evals"))
from diagnosis_benchmark import HELD_OUT_SETS as HELD_OUT_NAMES, TARGET_SETS  # noqa: E402

# every set of our own in the dev-case format: the dev corpora, then the held-out and validation sets (the benchmark's
# names, so a new set is checked as soon as the benchmark measures it); ../shared/dev-cases and diagnosis/ are not ours
# or not in this format
OUR_SETS = [REPO / "evals" / "data" / name for name in (*TARGET_SETS, *HELD_OUT_NAMES)
            if name not in ("dev-cases", "diagnosis")]
KB_CASES = REPO / "kb" / "cases"
# sets written as the threads were found, without a quota of non-memory reports or of first labels: the validation
# sets (projects found in no other set), and corpus F (serving, multimodal and RL projects, whose reports are mostly
# KV cache, images and host RAM) and corpora W and AA (themes given, each first label as its thread settled it, with a
# floor of 8 and 10 distinct ones: each set's 25 reports settled 11), and corpus AV (a spread was asked, but the
# unused English threads for six causes had all been taken: its reports settled 10 first labels), and corpus AW (the
# same for the Chinese threads: 10 first labels), and corpus AY (inference threads as found: its one look-alike prints
# an OutOfMemoryError, so the set has no not_oom report), and corpus AZ (the unused LLM threads had run out: encoder and
# speech reports, 5 labels), and corpus BG (multimodal and speech threads as found: the unused ones held no look-alike)
# and corpus BM (Chinese-project threads as found: the unused ones held no look-alike), and corpora BO and BP (the last
# unused threads whose cause could be told)
AS_FOUND_SETS = {"diagnosis_corpus_az", "diagnosis_corpus_bg", "diagnosis_corpus_bm", "diagnosis_corpus_bo", "diagnosis_corpus_bp", "diagnosis_corpus_av", "diagnosis_corpus_aw", "diagnosis_corpus_ay", "diagnosis_fresh5", "diagnosis_fresh6", "diagnosis_fresh7", "diagnosis_fresh8", "diagnosis_fresh9",
                 "diagnosis_fresh10", "diagnosis_fresh11", "diagnosis_fresh12", "diagnosis_fresh13",
                 "diagnosis_fresh14", "diagnosis_fresh15", "diagnosis_fresh16", "diagnosis_fresh17",
                 "diagnosis_fresh18", "diagnosis_fresh19", "diagnosis_fresh20",
                 "diagnosis_fresh21", "diagnosis_fresh22", "diagnosis_fresh23", "diagnosis_fresh24", "diagnosis_fresh25",
                 "diagnosis_corpus_f", "diagnosis_corpus_w", "diagnosis_corpus_aa"}
SIBLING_SET = REPO / "evals" / "data" / "diagnosis"  # the benchmark's other own-cases folder

TOP_KEYS = {"id", "source", "project", "title", "log", "environment", "model", "phase", "expected", "resolution",
            "confirmed"}
# words: the reporter's own sentences written before anyone replied (pasted above the log, as a user pastes a report);
# replies: what others said in the thread, and the reporter after a reply (the answer: never pasted); reporter: the
# handle of the thread's author
OPTIONAL_TOP_KEYS = {"config", "words", "replies", "reporter"}
# a line that starts with a GitHub handle and a colon: who is speaking, as the sets quote a thread
SPEAKER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{1,38}): ", re.M)
ENV_KEYS = {"gpu", "gpu_memory_gib", "gpus"}
EXPECTED_KEYS = {"parse", "primary_any_of"}
OPTIONAL_EXPECTED_KEYS = {"top3_must_include"}
# the keys evals/parser_accuracy.py compares for the dev cases
PARSE_KEYS = {"requested_gib", "total_gib", "free_gib", "torch_allocated_gib", "reserved_unallocated_gib", "gpu_index"}
MIN_CASES = 12   # a blind set is written in a fixed time: 12 reports from 10 or more projects still vary enough
# sets cut after they were written (see their READMEs): reports on vision or diffusion models removed before the first
# measurement (AT, AU), or threads the knowledge base also cites removed before the set joined the dev set (BA): what
# is left must still come from 10 or more projects
CUT_SETS, MIN_CASES_AFTER_CUT = {"diagnosis_corpus_at", "diagnosis_corpus_au", "diagnosis_corpus_ba"}, 10
# sets as found whose threads settled fewer labels than half their size: the floor is the count their README records
NARROW_SETS = {"diagnosis_corpus_az": 5, "diagnosis_corpus_bo": 2, "diagnosis_corpus_bp": 3}
# sets written after the stored pool of unused threads had run out (BO, BP: about 35 searches each found 4 whose cause
# could be told, see their READMEs): the (cases, projects) they hold, kept as found rather than padded
SHORT_SETS = {"diagnosis_corpus_bo": (4, 3), "diagnosis_corpus_bp": (4, 3)}
# causes that are not a memory budget problem: they may be accepted beside not_oom (a dtype error is not an OOM)
NON_MEMORY_CAUSES = {"dtype_unsupported", "quantization_setup"}

_yaml = YAML(typ="safe")


def _load(path: Path) -> dict:
    return _yaml.load(path.read_text(encoding="utf-8"))


def _case_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def _sources(directory: Path) -> set:
    out = set()
    for path in directory.glob("*.yaml"):
        data = _load(path) or {}
        if isinstance(data, dict) and data.get("source"):
            out.add(thread_key(str(data["source"])))
    return out


SETS = [pytest.param(directory, id=directory.name) for directory in OUR_SETS]
CASES = [pytest.param(path, id=f"{directory.name}/{path.stem}")
         for directory in OUR_SETS for path in _case_files(directory)]


@pytest.mark.parametrize("directory", SETS)
def test_enough_cases_and_a_varied_mix(directory: Path):
    cases = [_load(p) for p in _case_files(directory)]
    floor, project_floor = SHORT_SETS.get(directory.name, (MIN_CASES_AFTER_CUT if directory.name in CUT_SETS
                                                          else MIN_CASES, 10))
    assert len(cases) >= floor, f"only {len(cases)} cases in {directory}"
    primaries = {c["expected"]["primary_any_of"][0] for c in cases}
    all_labels = {label for c in cases for label in c["expected"]["primary_any_of"]}
    varied = all_labels if directory.name in AS_FOUND_SETS else primaries   # as found: every accepted label counts
    assert len(varied) >= NARROW_SETS.get(directory.name, min(12, len(cases) // 2)), f"labels cover only {sorted(varied)}"
    if directory.name not in AS_FOUND_SETS:
        assert "not_oom" in all_labels, "the set needs reports that are not memory errors at all"
    assert len({c["project"].split()[0] for c in cases}) >= project_floor, "too few distinct projects"


@pytest.mark.parametrize("path", CASES)
def test_case_has_the_dev_case_keys(path: Path):
    case = _load(path)
    keys = set(case)
    assert TOP_KEYS <= keys, f"missing {sorted(TOP_KEYS - keys)}"
    assert keys <= TOP_KEYS | OPTIONAL_TOP_KEYS, f"unknown keys {sorted(keys - TOP_KEYS - OPTIONAL_TOP_KEYS)}"
    assert path.stem == case["id"] or path.stem.startswith(f"{case['id']}-"), "file name must start with the id"
    assert case["source"].startswith("https://github.com/"), "source must be the public thread"
    for key in ("title", "log", "model", "phase", "resolution", "project"):
        assert isinstance(case[key], str) and case[key].strip(), f"{key} is empty"
    if "config" in case:
        assert isinstance(case["config"], str) and case["config"].strip()
    for key in ("words", "replies"):
        assert key not in case or (isinstance(case[key], str) and case[key].strip()), f"{key} is empty"
    assert case.get("reporter") is None or isinstance(case["reporter"], str)
    assert isinstance(case["confirmed"], bool)

    env = case["environment"]
    assert set(env) == ENV_KEYS
    assert env["gpu_memory_gib"] is None or isinstance(env["gpu_memory_gib"], (int, float))
    assert env["gpus"] is None or (isinstance(env["gpus"], int) and env["gpus"] >= 1)

    expected = case["expected"]
    assert EXPECTED_KEYS <= set(expected) <= EXPECTED_KEYS | OPTIONAL_EXPECTED_KEYS
    assert set(expected["parse"]) <= PARSE_KEYS, f"unknown parse keys {set(expected['parse']) - PARSE_KEYS}"


@pytest.mark.parametrize("path", CASES)
def test_labels_come_from_the_vocabulary(path: Path):
    expected = _load(path)["expected"]
    primary = expected["primary_any_of"]
    top3 = expected.get("top3_must_include") or []
    assert primary, "primary_any_of must name at least one cause"
    assert len(primary) == len(set(primary)), "duplicate labels"
    for label in [*primary, *top3]:
        assert label in ROOT_CAUSES, f"{label!r} is not in tools/labels.py ROOT_CAUSES"
    assert len(top3) <= 3
    if "not_oom" in primary:
        memory_causes = set(primary) - {"not_oom"} - NON_MEMORY_CAUSES
        assert not memory_causes, f"not_oom cannot be accepted beside memory causes {sorted(memory_causes)}"


@pytest.mark.parametrize("directory", SETS)
def test_ids_and_sources_are_unique(directory: Path):
    cases = [_load(p) for p in _case_files(directory)]
    ids = [c["id"] for c in cases]
    keys = [thread_key(c["source"]) for c in cases]
    assert len(ids) == len(set(ids)), f"duplicate ids {sorted(i for i in ids if ids.count(i) > 1)}"
    assert len(keys) == len(set(keys)), "two cases cite the same thread"


@pytest.mark.parametrize("directory", SETS)
def test_no_case_comes_from_the_knowledge_base(directory: Path):
    """A held-out case whose thread is also a knowledge-base case would be retrieved as its own answer."""
    overlap = _sources(directory) & _sources(KB_CASES)
    assert not overlap, f"threads also in kb/cases: {sorted(overlap)}"


@pytest.mark.parametrize("directory", SETS)
def test_no_case_duplicates_the_sibling_evaluation_set(directory: Path):
    """The benchmark reads both folders; a thread in both would be counted twice."""
    overlap = _sources(directory) & _sources(SIBLING_SET)
    assert not overlap, f"threads also in evals/data/diagnosis: {sorted(overlap)}"


def test_the_held_out_sets_share_no_thread():
    """Each fresh set measures generalisation beyond the sets before it: a thread in two sets would be no news to it."""
    seen: dict = {}
    for directory in OUR_SETS:
        for key in _sources(directory):
            assert key not in seen, f"{key} is in both {seen[key].name} and {directory.name}"
            seen[key] = directory


@pytest.mark.parametrize("directory", SETS)
def test_no_case_duplicates_a_dev_case(directory: Path, shared_dir):
    overlap = _sources(directory) & _sources(shared_dir / "dev-cases")
    assert not overlap, f"threads also in ../shared/dev-cases: {sorted(overlap)}"


# Each expected.parse number must be printed in the log; both PyTorch message formats (before and after 2.1), the
# caching allocator's message when a memory fraction caps the process ("Allocation on device 0 would exceed allowed
# memory ... Requested : X ... Device limit : Y") and ggml's allocator line are read.
_NUM = r"([\d.]+)\s*(bytes|B|KiB|MiB|GiB|TiB)"   # PyTorch prints "0 bytes" for an empty count
# read case-blind, as the parser reads them: a paste lower-cased as a whole keeps its numbers ("78.88 mib")
_UNIT = {"bytes": 1 / 1024**3, "b": 1 / 1024**3, "kib": 1 / 1024**2, "mib": 1 / 1024, "gib": 1.0, "tib": 1024.0}
_PATTERNS = {
    "requested_gib": [rf"Tried to allocate {_NUM}", rf"allocating {_NUM} on device", rf"Requested\s*: {_NUM}"],
    "total_gib": [rf"total capac\w* of {_NUM}", rf"{_NUM} total capacity", rf"Device limit\s*: {_NUM}"],
    "free_gib": [rf"of which {_NUM} is free", rf"{_NUM} free;", rf"Free \(according to CUDA\)\s*: {_NUM}"],
    "torch_allocated_gib": [rf"{_NUM} is allocated by PyTorch", rf"{_NUM} already allocated",
                            rf"Currently allocated\s*: {_NUM}"],
    "reserved_unallocated_gib": [rf"{_NUM} is reserved by PyTorch but unallocated", rf"{_NUM} cached\)"],   # PyTorch < 1.4
}


def _printed_sizes(log: str, key: str) -> list[float]:
    return [float(n) * _UNIT[u.lower()] for pattern in _PATTERNS[key] for n, u in re.findall(pattern, log, re.IGNORECASE)]


def _old_format_unallocated(log: str) -> list[float]:
    """Pre-2.1 messages print 'X already allocated; ... Y reserved in total': unallocated = Y - X."""
    out = []
    for line in log.splitlines():
        alloc = re.search(rf"{_NUM} already allocated", line)
        reserved = re.search(rf"{_NUM} reserved in total", line)
        if alloc and reserved:
            out.append(float(reserved[1]) * _UNIT[reserved[2].lower()] - float(alloc[1]) * _UNIT[alloc[2].lower()])
    return out


@pytest.mark.parametrize("path", CASES)
def test_parse_numbers_are_printed_in_the_log(path: Path):
    case = _load(path)
    # Markdown bold around a number is formatting, not text; a message the paste hard-wrapped is one message
    log = " ".join(case["log"].replace("**", "").split())
    for key, want in case["expected"]["parse"].items():
        if key == "gpu_index":
            assert re.search(rf"\b(?:GPU|device) {want}\b", log, re.IGNORECASE), f"GPU {want} not in the log"
            continue
        printed = _printed_sizes(log, key)
        if key == "reserved_unallocated_gib":
            printed += _old_format_unallocated(log)
        assert any(abs(p - want) <= max(0.005 * abs(want), 0.0005) for p in printed), (
            f"{key}={want} GiB does not match any printed size {[round(p, 5) for p in printed]}")


@pytest.mark.parametrize("path", CASES)
def test_memory_errors_with_a_pytorch_message_label_its_numbers(path: Path):
    """A log that prints PyTorch's OOM numbers must have them labelled, so the parser is scored on them too."""
    case = _load(path)
    if re.search(r"Tried to allocate [\d.]+ ?[KMG]iB", case["log"]):
        assert "requested_gib" in case["expected"]["parse"]


@pytest.mark.parametrize("path", CASES)
def test_the_paste_holds_no_reply_from_the_thread(path: Path):
    """The benchmark pastes `words` and `log` as the user's report: nobody who answers in the thread (its `replies`)
    may speak there, or the answer is handed to the tool and the measurement flatters it."""
    case = _load(path)
    others = set(SPEAKER.findall(str(case.get("replies") or ""))) - {case.get("reporter")}
    for key in ("words", "log"):
        heard = others & set(SPEAKER.findall(str(case.get(key) or "")))
        assert not heard, f"{key} quotes {sorted(heard)}, who reply in the thread"
