"""Close causes are not stated as one: below the confidence bar the answer names the leading causes with their
probabilities and asks the one question that separates them; every label has its deciding fact."""

from __future__ import annotations

from ask_oom.assistant.agent import diagnose
from ask_oom.assistant.deciding_facts import CONFIDENT, DECIDING_FACTS, deciding_question, is_confident
from ask_oom.assistant.diagnosis import DiagnoseRequest
from ask_oom.tools.labels import Label, RootCause
from ask_oom.tools.training_setup import TrainingSetup

SMALL_REQUEST_FULL_GPU = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total "
                          "capacity of 23.65 GiB of which 10.56 MiB is free. Of the allocated memory 22.91 GiB is allocated "
                          "by PyTorch, and 301.66 MiB is reserved by PyTorch but unallocated.\n")


def test_every_label_has_a_deciding_fact():
    assert set(DECIDING_FACTS) == set(Label)
    for fact in DECIDING_FACTS.values():
        assert fact.question.endswith("?") or fact.question.endswith("line.")
        assert all(f in TrainingSetup.model_fields for f in fact.fields)


def test_probabilities_sum_to_at_most_one_and_follow_the_order():
    d = diagnose(DiagnoseRequest(log_text=SMALL_REQUEST_FULL_GPU, retrieve=False))
    probs = [c.probability for c in d.root_causes]
    assert all(p is not None for p in probs) and sum(probs) <= 1.0 + 1e-6
    assert probs == sorted(probs, reverse=True)


def test_an_unsure_answer_names_the_leading_causes_and_asks_what_decides():
    d = diagnose(DiagnoseRequest(log_text=SMALL_REQUEST_FULL_GPU, retrieve=False))
    assert not is_confident(d.root_causes)
    assert d.summary.count("Not sure yet") == 1 and "Most likely cause" not in d.summary
    decide = [q for q in d.questions if q.slot == "decide"]
    assert len(decide) == 1 and decide[0].text in d.summary
    assert decide[0].text == deciding_question(d.root_causes, d.setup)


def test_the_question_asks_for_a_fact_the_setup_only_assumed():
    setup = TrainingSetup().with_fact("micro_batch", 4, "config", "train.yaml: per_device_train_batch_size")
    causes = [RootCause(label="batch_too_large", score=0.5, probability=0.5),
              RootCause(label="eval_accumulation", score=0.4, probability=0.4)]
    # the micro-batch and length are known... the length is not: the batch question still asks for it
    assert deciding_question(causes, setup) == DECIDING_FACTS[Label.batch_too_large].question
    setup = setup.with_fact("seq_len", 4096, "config", "train.yaml: cutoff_len")
    assert deciding_question(causes, setup) == DECIDING_FACTS[Label.eval_accumulation].question


def test_a_cause_far_behind_the_leaders_does_not_choose_the_question():
    """Two close leaders whose facts are both known: a third cause at 2% lacks its facts, but settling them would not
    change the answer, so the leader's own question is asked."""
    setup = (TrainingSetup().with_fact("micro_batch", 8, "config", "axolotl.yaml: micro_batch_size")
             .with_fact("seq_len", 4096, "config", "axolotl.yaml: sequence_len"))
    causes = [RootCause(label="seq_len_too_long", score=0.9, probability=0.51),
              RootCause(label="batch_too_large", score=0.9, probability=0.45),
              RootCause(label="weights_exceed_gpu", score=0.7, probability=0.02)]
    assert deciding_question(causes, setup) == DECIDING_FACTS[Label.seq_len_too_long].question
    close = [*causes[:2], RootCause(label="weights_exceed_gpu", score=0.7, probability=0.40)]
    assert deciding_question(close, setup) == DECIDING_FACTS[Label.weights_exceed_gpu].question


def test_a_confident_answer_is_stated_with_its_probability():
    causes = [RootCause(label="other_process", score=0.9, probability=CONFIDENT + 0.05)]
    assert is_confident(causes)
