"""The follow-up evaluation set (evals/data/followups/messages.jsonl) stays usable as a specification: enough rows in
each language, unique ids, only the public state vocabulary with the right types, a thread URL for every message,
and enough rows that must change nothing. Read with plain json, independently of the product."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "evals" / "data" / "followups" / "messages.jsonl"
README = REPO / "evals" / "data" / "followups" / "README.md"

MIN_ROWS = 150
MIN_PER_LANGUAGE = 70
MIN_NO_CHANGE = 20

ROW_KEYS = {"id", "lang", "source", "context", "message", "expect", "intent"}
STATE_KEYS = {"gpus", "nodes", "gpu_memory_gib", "gpu_name", "host_ram_gib", "what_if", "keep"}
INTENTS = {"hardware", "host_ram", "constraint", "what_if", "why", "still_oom", "solved", "show", "probe", "other"}
KEEP_WORDS = {"seq_len", "batch", "effective_batch", "full_finetuning", "deepspeed", "model"}
WHAT_IF_TYPES = {
    "per_device_train_batch_size": int, "gradient_accumulation_steps": int, "cutoff_len": int, "zero_stage": int,
    "gradient_checkpointing": bool, "finetuning_type": str, "lora_rank": int, "quantization_bit": int, "offload": str,
}
WHAT_IF_CHOICES = {"zero_stage": {0, 1, 2, 3}, "finetuning_type": {"lora", "full"}, "quantization_bit": {4, 8},
                   "offload": {"optimizer", "all", "none"}}
# canonical card names: vendor-model-memory, the memory a whole number of GB that the name implies
GPU_NAME = re.compile(r"^(?:RTX-)?[A-Z0-9]+(?:-[A-Z0-9]+)*-(\d{2,3})GB$")
URL = re.compile(r"^https?://[^\s/]+\.[^\s/]+/\S*$")
HAN = re.compile(r"[\u4e00-\u9fff]")


def _rows() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


ROWS = _rows()


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_state(state: dict, where: str) -> None:
    assert isinstance(state, dict), where
    unknown = set(state) - STATE_KEYS
    assert not unknown, f"{where}: keys outside the vocabulary {sorted(unknown)}"
    if "gpus" in state:
        assert _is_int(state["gpus"]) and state["gpus"] >= 1, f"{where}: gpus {state['gpus']!r}"
    if "nodes" in state:
        assert _is_int(state["nodes"]) and state["nodes"] >= 1, f"{where}: nodes {state['nodes']!r}"
    for key in ("gpu_memory_gib", "host_ram_gib"):
        if key in state:
            assert isinstance(state[key], float) and state[key] > 0, f"{where}: {key} {state[key]!r} (a float)"
    if "gpu_name" in state:
        m = GPU_NAME.match(state["gpu_name"] or "")
        assert m, f"{where}: gpu_name {state['gpu_name']!r} is not canonical"
        if "gpu_memory_gib" in state:
            assert abs(float(m.group(1)) - state["gpu_memory_gib"]) <= 0.5, f"{where}: name and memory disagree"
    if "keep" in state:
        assert isinstance(state["keep"], list) and state["keep"], f"{where}: keep must be a non-empty list"
        assert set(state["keep"]) <= KEEP_WORDS, f"{where}: keep {state['keep']!r}"
        assert len(set(state["keep"])) == len(state["keep"]), f"{where}: keep has duplicates"
    if "what_if" in state:
        wi = state["what_if"]
        assert isinstance(wi, dict) and wi, f"{where}: what_if must be a non-empty mapping"
        for key, value in wi.items():
            assert key in WHAT_IF_TYPES, f"{where}: what_if key {key!r}"
            typ = WHAT_IF_TYPES[key]
            ok = isinstance(value, bool) if typ is bool else (_is_int(value) if typ is int else isinstance(value, typ))
            assert ok, f"{where}: what_if {key}={value!r} is not {typ.__name__}"
            if key in WHAT_IF_CHOICES:
                assert value in WHAT_IF_CHOICES[key], f"{where}: what_if {key}={value!r}"
            if typ is int and key not in ("zero_stage",):
                assert value > 0, f"{where}: what_if {key}={value!r}"


def test_enough_rows():
    assert len(ROWS) >= MIN_ROWS


def test_row_keys_and_ids_unique():
    for row in ROWS:
        assert set(row) == ROW_KEYS, f"{row.get('id')}: keys {sorted(row)}"
        assert isinstance(row["id"], str) and row["id"].strip()
        assert isinstance(row["message"], str) and row["message"].strip(), row["id"]
    ids = Counter(row["id"] for row in ROWS)
    assert not [i for i, n in ids.items() if n > 1], "duplicate ids"


def test_messages_are_unique():
    texts = Counter(row["message"].strip().lower() for row in ROWS)
    assert not [t for t, n in texts.items() if n > 1], "duplicate messages"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_enough_rows_per_language(lang):
    assert sum(1 for row in ROWS if row["lang"] == lang) >= MIN_PER_LANGUAGE


def test_language_labels_match_the_text():
    for row in ROWS:
        assert row["lang"] in ("en", "zh"), row["id"]
        assert bool(HAN.search(row["message"])) == (row["lang"] == "zh"), f"{row['id']}: lang {row['lang']}"


def test_sources_are_urls():
    for row in ROWS:
        assert isinstance(row["source"], str) and URL.match(row["source"]), f"{row['id']}: source {row['source']!r}"


def test_intents_in_vocabulary():
    for row in ROWS:
        assert row["intent"] in INTENTS, f"{row['id']}: intent {row['intent']!r}"


def test_context_and_expect_use_the_vocabulary_with_right_types():
    for row in ROWS:
        _check_state(row["context"], f"{row['id']} context")
        _check_state(row["expect"], f"{row['id']} expect")


def test_enough_rows_that_change_nothing():
    assert sum(1 for row in ROWS if row["expect"] == {}) >= MIN_NO_CHANGE


def test_state_intents_change_something():
    """A hardware, host-RAM, constraint or what-if message states something: its row expects a change."""
    for row in ROWS:
        if row["intent"] in ("hardware", "host_ram", "constraint", "what_if"):
            assert row["expect"], f"{row['id']}: a {row['intent']} row with nothing expected"


def test_readme_describes_the_set():
    text = README.read_text(encoding="utf-8")
    for word in ("nodes", "gpus", "what_if", "keep", "last_intent", "source"):
        assert word in text
