"""tools/root_causes/ruled_out.py: a cause whose fix the stated settings already applied is discounted."""

from __future__ import annotations

from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.root_causes import rank_root_causes
from ask_oom.tools.root_causes.ranking import collect_signals
from ask_oom.tools.root_causes.ruled_out import ruled_out_by_settings
from ask_oom.tools.root_causes.weights import DEFAULT_WEIGHTS
from ask_oom.tools.training_setup import TrainingSetup

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB.\n"


def _named(signals):
    return {(s.label.value, s.name, s.kind.value) for s in signals}


def test_a_stated_micro_batch_of_one_discounts_the_batch():
    """At micro-batch 1 there is no smaller batch to run: the batch is discounted, with where the 1 was read."""
    stated = TrainingSetup().with_fact("micro_batch", 1, "config", "per_device_train_batch_size: 1")
    out = ruled_out_by_settings(parse_log(OOM), stated)
    assert _named(out) == {("batch_too_large", "batch_of_one", "discount")}
    assert "per_device_train_batch_size: 1" in out[0].reason


def test_an_assumed_or_larger_batch_rules_nothing_out():
    """The default micro-batch of 1 is an assumption, not the user's setting; a stated 4 can still be reduced."""
    assumed = TrainingSetup().with_fact("micro_batch", 1, "default", "assumed 1")
    four = TrainingSetup().with_fact("micro_batch", 4, "config", "per_device_train_batch_size: 4")
    assert ruled_out_by_settings(parse_log(OOM), assumed) == []
    assert ruled_out_by_settings(parse_log(OOM), four) == []
    assert ruled_out_by_settings(parse_log(OOM), None) == []


def test_evaluation_and_generation_run_another_batch():
    """A training micro-batch of 1 says nothing of the evaluation batch (per_device_eval_batch_size, 8 by default)
    or of how many sequences a generation step runs."""
    stated = TrainingSetup().with_fact("micro_batch", 1, "config", "per_device_train_batch_size: 1")
    for phase in ("evaluation", "generation"):
        report = parse_log(OOM).model_copy(update={"phase": phase})
        assert ruled_out_by_settings(report, stated) == []


def test_the_discount_lowers_the_batch_below_the_length_in_the_ranking():
    """With nothing else to tell them apart, the batch and the length tie; a stated batch of 1 leaves the length
    ahead (the discount is a factor below one in the table)."""
    assert 0 < DEFAULT_WEIGHTS.points["batch_of_one"] < 1
    stated = TrainingSetup().with_fact("micro_batch", 1, "config", "per_device_train_batch_size: 1")
    report = parse_log(OOM)
    assert ("batch_too_large", "batch_of_one", "discount") in _named(collect_signals(report, stated))
    ranked = [str(c.label) for c in rank_root_causes(report, stated)]
    assert "seq_len_too_long" in ranked
    if "batch_too_large" in ranked:
        assert ranked.index("seq_len_too_long") < ranked.index("batch_too_large")


def test_a_stated_short_length_discounts_the_length_but_not_in_generation():
    """Under long_cutoff_tokens (2048) the length is already short: the length is discounted, with where it was read;
    an assumed length, a long one, or a generation step (whose prompt is not the training cutoff) rule nothing out."""
    short = TrainingSetup().with_fact("seq_len", 256, "config", "--max_seq_len 256")
    out = ruled_out_by_settings(parse_log(OOM), short)
    assert _named(out) == {("seq_len_too_long", "short_length_stated", "discount")}
    assert "256 tokens (--max_seq_len 256)" in out[0].reason
    long = TrainingSetup().with_fact("seq_len", 4096, "config", "cutoff_len: 4096")
    assumed = TrainingSetup().with_fact("seq_len", 512, "default", "assumed 512")
    assert ruled_out_by_settings(parse_log(OOM), long) == []
    assert ruled_out_by_settings(parse_log(OOM), assumed) == []
    assert ruled_out_by_settings(parse_log(OOM).model_copy(update={"phase": "generation"}), short) == []


def test_stated_adapters_discount_the_full_fine_tuning_states():
    """A run that trains LoRA or QLoRA adapters keeps no gradients or optimizer states of the frozen base: the full
    fine-tuning states are discounted, with where the config or log states the method; assumed, only said in words (a
    plan or an alternative as often as the run), full, or not training, nothing is."""
    lora = TrainingSetup().with_fact("method", "lora", "config", "finetuning_type: lora")
    out = ruled_out_by_settings(parse_log(OOM), lora)
    assert _named(out) == {("full_ft_model_states", "adapters_trained", "discount")}
    assert "finetuning_type: lora" in out[0].reason and 0 < DEFAULT_WEIGHTS.points["adapters_trained"] < 1
    assumed = TrainingSetup().with_fact("method", "lora", "default", "assumed lora")
    said = TrainingSetup().with_fact("method", "lora", "user", "the text: LoRA is supported in SFT, but not in RM")
    full = TrainingSetup().with_fact("method", "full", "config", "finetuning_type: full")
    serving = lora.with_fact("workload", "generate", "log", "generation")
    assert not any(ruled_out_by_settings(parse_log(OOM), s) for s in (assumed, said, full, serving))
