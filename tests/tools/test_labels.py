"""The Label enum is the vocabulary of ../shared/root-causes.md (names, order, meanings), generated from it; a label
outside the vocabulary raises wherever the ranking meets it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ask_oom.tools.labels import ROOT_CAUSES, Label, RootCause, is_known_label, main, parse_vocabulary, render_members
from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.root_causes import rank_root_causes, score_signals
from ask_oom.tools.root_causes.signals import Signal, support

VOCABULARY = Path(__file__).resolve().parents[2].parent / "shared" / "root-causes.md"
REGENERATE = ("tools/labels.py differs from ../shared/root-causes.md: regenerate it with "
              "`python -m ask_oom.tools.labels ../shared/root-causes.md --write` (or paste what it prints without --write "
              "between the BEGIN/END marks of the Label class)")


@pytest.fixture(scope="module")
def vocabulary() -> list[tuple[str, str]]:
    if not VOCABULARY.is_file():
        pytest.skip(f"{VOCABULARY} is not beside the repository")
    rows = parse_vocabulary(VOCABULARY.read_text(encoding="utf-8"))
    assert rows, f"no label table found in {VOCABULARY}"
    return rows


def test_the_enum_is_the_vocabulary_file_names_order_and_meanings(vocabulary):
    assert [(label.value, label.meaning) for label in Label] == vocabulary, REGENERATE
    assert [label.name for label in Label] == [label.value for label in Label], REGENERATE


def test_the_module_holds_exactly_what_the_generator_prints(vocabulary):
    text = Path(__import__("ask_oom.tools.labels", fromlist=["x"]).__file__).read_text(encoding="utf-8")
    block = text.split("# BEGIN generated from ../shared/root-causes.md\n")[1].split("    # END generated\n")[0]
    assert block == render_members(vocabulary), REGENERATE


def test_the_generator_prints_the_members(capsys, vocabulary):
    assert main([str(VOCABULARY)]) == 0
    printed = capsys.readouterr().out
    assert printed == render_members(vocabulary) and printed.count("\n") == len(Label)


def test_root_causes_and_helpers_keep_their_shape():
    assert list(ROOT_CAUSES) == [label.value for label in Label]
    assert all(isinstance(k, str) and type(k) is str and v for k, v in ROOT_CAUSES.items())
    assert is_known_label("fragmentation") and not is_known_label("seq_len_to_long")
    assert RootCause(label="not_oom", score=0.5).meaning == Label.not_oom.meaning
    assert f"{Label.not_oom}" == str(Label.not_oom) == "not_oom" == Label("not_oom")


def test_a_misspelled_label_raises():
    with pytest.raises(ValueError):
        Label("seq_len_to_long")
    with pytest.raises(ValueError):
        Signal(label="seq_len_to_long", name="no_evidence_length")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        support("seq_len_to_long", "no_evidence_length", "a reason")


def test_a_misspelled_label_in_the_ranking_raises_instead_of_vanishing():
    class Case:   # a retrieved case whose label is misspelled: the old score sheet dropped it silently
        id, root_causes = "typo-case", ["seq_len_to_long"]

    report = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n")
    assert rank_root_causes(report, hits=[])   # the same report ranks without the misspelled vote
    with pytest.raises(ValueError, match="seq_len_to_long"):
        rank_root_causes(report, hits=[Case()])
    with pytest.raises(ValueError):
        score_signals([support("batch_to_large", "no_evidence_batch", "a reason")])
