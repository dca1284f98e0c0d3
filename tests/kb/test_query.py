"""kb/query.py: the retrieval query says what failed, where and with which settings — facts, not the raw log."""

from __future__ import annotations

from ask_oom.kb.query import build_query
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.report import Evidence, GPUSeen, LoggedArg, OOMReport, RelatedError
from ask_oom.tools.training_setup import TrainingSetup


def _report(**kw) -> OOMReport:
    base = dict(kind="cuda_oom", phase="backward", framework="llamafactory", deepspeed_stage=3,
                model="/data/models/Qwen2.5-VL-7B-Instruct", gpus=[GPUSeen(name="NVIDIA A100-SXM4-40GB")],
                training_args={"cutoff_len": LoggedArg(value="16384", line=3), "seed": LoggedArg(value="42", line=4),
                               "logging_steps": LoggedArg(value="10", line=5)},
                evidence=[Evidence(line=120, text="  File \"/opt/py/site-packages/torch/autograd/__init__.py\", line 251")])
    base.update(kw)
    return OOMReport(**base)


def test_report_facts_become_words():
    q = build_query(_report())
    for needle in ("CUDA out of memory", "phase backward", "framework llamafactory", "ZeRO-3",
                   "Qwen2.5-VL-7B-Instruct", "A100", "cutoff_len=16384"):
        assert needle in q, needle
    assert "seed=42" not in q and "logging_steps" not in q  # arguments that do not drive memory are left out
    assert "autograd" not in q and "site-packages" not in q  # never the raw log lines


def test_setup_adds_only_observed_facts():
    setup = (TrainingSetup()
             .with_fact("method", "full", "config", "finetuning_type")
             .with_fact("micro_batch", 8, "config", "per_device_train_batch_size")
             .with_fact("gradient_checkpointing", False, "config", "gradient_checkpointing")
             .with_fact("gpu", lookup_gpu("A100-40GB"), "user")
             .with_fact("num_gpus", 8, "user"))
    setup = setup.model_copy(update={"seq_len": 4096})  # a default-valued field without provenance
    q = build_query(_report(), setup)
    assert "full fine-tuning" in q and "per_device_train_batch_size 8" in q
    assert "gradient checkpointing off" in q and "x8" in q
    assert "cutoff_len 4096" not in q  # not observed: not part of the query


def test_assumed_defaults_are_not_part_of_the_query():
    """A default the assembler filled in says nothing about this case; words every assumed setup shares made the
    cases with the most settings (long seed articles) everyone's nearest neighbours."""
    setup = (TrainingSetup()
             .with_fact("seq_len", 1024, "default", "LLaMA-Factory default")
             .with_fact("micro_batch", 1, "default", "LLaMA-Factory default")
             .with_fact("zero_stage", 0, "default", "no DeepSpeed config")
             .with_fact("gradient_checkpointing", False, "default", "")
             .with_fact("method", "lora", "config", "finetuning_type"))
    q = build_query(_report(deepspeed_stage=None), setup)
    assert "LoRA" in q
    for assumed in ("cutoff_len 1024", "batch size 1", "ZeRO-0", "gradient checkpointing"):
        assert assumed not in q, assumed


def test_memory_that_grew_is_said_in_the_cases_words():
    from ask_oom.tools.memory_trend import MemoryTrend

    plain = build_query(_report())
    assert "memory grows" not in plain
    assert "memory grows every step" in build_query(_report(), trend=MemoryTrend(said="memory keeps rising"))
    assert "memory grows every step" in build_query(_report(), trend=MemoryTrend(growing=True))
    assert "memory grows" not in build_query(_report(), trend=MemoryTrend())   # readings that did not grow


def test_kinds_and_related_errors():
    host = build_query(OOMReport(kind="host_oom", phase="model_loading", exit_signal="SIGKILL"))
    assert "host RAM" in host and "killed" in host and "loading" in host
    rel = build_query(OOMReport(kind="related_error", message="RuntimeError: \"triu_tril_cuda_template\" not implemented for 'BFloat16'",
                                related_errors=[RelatedError(kind="dtype_not_implemented", line=3,
                                                             message="\"triu_tril_cuda_template\" not implemented for 'BFloat16'")]))
    assert "BFloat16" in rel and "dtype" in rel
    frag = build_query(OOMReport(kind="cuda_oom", torch_reserved_unallocated_bytes=9 * 2**30))
    assert "fragmentation" in frag
    assert build_query(OOMReport(kind="not_oom")) == ""
