"""Completing the parsed report from the rest of the input: vLLM's KV-cache refusal, a failure told in words, the
phase from an evaluation-only config or a cue near the error; the failing step's mode and observed peak."""

from __future__ import annotations

import pytest

from ask_oom.tools.configs import load_config
from ask_oom.tools.log_cues import log_cues
from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.memory_trend import failure_trend
from ask_oom.tools.report_refinement import CUE_LINES_BEFORE, estimate_mode, observed_peak, refine_report
from ask_oom.tools.units import GiB

OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB "
       "of which 1.00 GiB is free. Including non-PyTorch memory, this process has 78.00 GiB memory in use. Of the "
       "allocated memory 70.00 GiB is allocated by PyTorch, and 6.00 GiB is reserved by PyTorch but unallocated.\n")


def refine(text: str, **kw):
    return refine_report(parse_log(text), text, cues=log_cues(text), **kw)


def test_vllm_kv_cache_refusal_is_a_gpu_memory_failure_in_generation():
    text = "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`.\n"
    assert parse_log(text).kind == "not_oom"
    out = refine(text)
    assert out.report.kind == "cuda_oom" and out.report.phase == "generation" and out.report.framework == "vllm"
    assert any(e.fact == "kind" and e.line == 1 for e in out.report.evidence)
    assert out.notes and "KV cache" in out.notes[0]


def test_a_failure_told_in_words_stands_for_the_missing_traceback():
    text = "I got OOM on each GPU while evaluating Qwen/Qwen2-7B-Instruct, memory keeps increasing every step\n"
    out = refine(text)
    assert out.described is not None
    assert (out.report.kind, out.report.phase, out.report.model) == ("cuda_oom", "evaluation", "Qwen/Qwen2-7B-Instruct")
    assert any("describes" in n for n in out.notes)
    # the stated growth makes the trend growing although the text holds no readings
    trend = failure_trend(text, out.described)
    assert trend.growing and not trend.readings and trend.said


def test_a_real_error_is_not_replaced_by_prose_around_it():
    out = refine(OOM + "I think it is an OOM while evaluating\n")
    assert out.described is None and out.report.requested_bytes == 2 * GiB


def test_evaluation_only_config_names_the_phase():
    doc = load_config("do_eval: true\ndo_train: false\nper_device_eval_batch_size: 8\n", "eval.yaml")
    out = refine(OOM, doc=doc)
    assert out.report.phase == "evaluation"
    assert out.report.evidence[-1].text == "eval.yaml: do_eval without do_train"
    training = load_config("do_train: true\ndo_eval: true\n", "train.yaml")
    assert refine(OOM, doc=training).report.phase == "unknown"


def test_a_phase_cue_counts_only_near_the_error():
    cue = "starting evaluation of the checkpoint\n"  # a sentence the parser does not read as a frame
    assert parse_log(cue + OOM).phase == "unknown"
    near = refine(cue + OOM).report
    assert near.phase == "evaluation" and near.evidence[-1].line == 1
    far = cue + "step done\n" * (CUE_LINES_BEFORE + 5) + OOM
    assert refine(far).report.phase == "unknown"


def test_truncated_input_is_said():
    out = refine(OOM, truncated=True)
    assert out.report.truncated and any("larger than the input limit" in n for n in out.notes)


def test_failing_step_mode_and_observed_peak():
    report = parse_log(OOM)
    assert estimate_mode(report) == "train"
    assert estimate_mode(report.model_copy(update={"phase": "generation"})) == "eval"
    assert estimate_mode(report.model_copy(update={"framework": "vllm"})) == "eval"
    assert observed_peak(report) == report.torch_allocated_bytes + 2 * GiB
    assert observed_peak(report.model_copy(update={"kind": "host_oom"})) is None


@pytest.mark.parametrize("lines, phase", [
    (["INFO 12-27 08:52:17 llm_engine.py:249] Initializing an LLM engine (v0.6.4) with config: model='/m/Qwen2-VL-72B'"],
     "model_loading"),
    (["INFO 12-27 08:52:17 llm_engine.py:249] Initializing an LLM engine (v0.6.4) with config: model='/m/Qwen2-7B'",
      "INFO 06-30 18:37:30 model_runner.py:160] Loading model weights took 17.9828 GB",
      "before loading weight it already consumed 18.7G VRAM"], "generation")])
def test_vllm_start_up_lines_say_where_it_failed(lines, phase):
    text = "\n".join(lines) + "\ntorch.OutOfMemoryError: CUDA out of memory.\n"
    report = refine_report(parse_log(text), text, cues=log_cues(text)).report
    assert report.framework == "vllm" and report.phase == phase


def test_words_and_a_config_without_any_error_read_as_the_question_whether_it_fits():
    text = "Try to fine tune an 8B model on a 80GB H100 using cutoff_len 51974, it should be possible per the wiki\n"
    doc = load_config('{\n  "finetuning_type": "lora",\n  "cutoff_len": 51974,\n  [...]\n  "bf16": true\n}\n', "config.json")
    out = refine(text, doc=doc)
    assert out.report.kind == "cuda_oom" and any("fits in GPU memory" in n for n in out.notes)
    assert refine(text).report.kind == "not_oom"                          # without a config nothing is asked
    assert refine("Traceback (most recent call last):\nKeyError: 'labels'\n", doc=doc).report.kind == "not_oom"


@pytest.mark.parametrize("message, needle", [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.64 GiB "
     "of which 39.39 GiB is free. Of the allocated memory 20.00 GiB is allocated by PyTorch, and 1.00 GiB is reserved "
     "by PyTorch but unallocated.", "39.39 GiB free on a GPU of 23.64 GiB"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.64 GiB "
     "of which 1.00 GiB is free. Of the allocated memory 80.00 GiB is allocated by PyTorch, and 1.00 GiB is reserved "
     "by PyTorch but unallocated.", "80.00 GiB allocated by PyTorch on a GPU of 23.64 GiB"),
    ("RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 23.64 GiB total capacity; 22.00 GiB already "
     "allocated; 10.00 MiB free; 21.00 GiB reserved in total by PyTorch)", "22.00 GiB allocated but only 21.00 GiB reserved"),
])
def test_impossible_oom_numbers_are_flagged_in_the_notes(message, needle):
    """More free (or allocated) than the GPU holds, or more allocated than reserved: an edited or mistyped paste."""
    notes = refine(message + "\n").notes
    assert any("cannot all be true" in n and needle in n for n in notes), notes


def test_possible_oom_numbers_add_no_note():
    assert not any("cannot all be true" in n for n in refine(OOM).notes)


def test_an_engine_the_words_name_sets_the_framework_and_a_server_fails_generating():
    out = refine("Using VLLM0.7.2 server to start DeepSeek-R1, it dies with cuda out of memory\n" + OOM)
    assert out.report.framework == "vllm" and out.report.phase == "unknown"   # vLLM may still be placing the weights
    out = refine("ollama run llama3.1:70b-128k\n" + OOM)
    assert out.report.phase == "generation" and any(e.fact == "phase" and "ollama" in e.text for e in out.report.evidence)
    # a frame that names the phase wins, and training words mean the engine is a trainer's rollout engine
    assert refine("ollama run x\nmodel = AutoModel.from_pretrained(p)\n" + OOM).report.phase == "model_loading"
    assert refine("GRPO training, vllm colocated\n" + OOM).report.phase == "unknown"


def test_a_failure_the_log_shows_outranks_an_oom_the_words_suspect():
    words = "I don't think bs=1, seq_len=64 should lead to OOM on an RTX 3060 Laptop GPU.\n"
    shown = refine(words + "CUDA error: an illegal memory access was encountered\n")
    assert shown.report.kind == "not_oom" and shown.described is None
    assert refine(words).report.kind == "cuda_oom"   # with no failure shown, the words describe one


def test_a_dead_ranks_aftermath_does_not_outrank_the_failure_the_words_state():
    """NCCL watchdog timeouts and the elastic agent's ChildFailedError follow any rank's death: they say a process
    ended, not why, so the OOM killer the user names stays the failure."""
    words = "After a few episodes of long multi-image training the run randomly dies through the OOM killer.\n"
    timeout = ("[rank4]:[E416 13:21:26.946] ProcessGroupNCCL.cpp:616] [Rank 4] Watchdog caught collective operation "
               "timeout: WorkNCCL(SeqNum=5, OpType=ALLREDUCE) ran for 1800000 milliseconds before timing out.\n")
    child = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\ntrain.py FAILED\n"
    for aftermath in (timeout, child):
        out = refine(words + aftermath)
        assert out.described is not None and out.report.kind == "host_oom"
    assert refine(words + "KeyError: 'input_ids'\n").described is None   # a real exception still outranks the words


@pytest.mark.parametrize("said", ["training at 131K tokens/device OOMs instantly",
                                  "it fills up the VRAM until it OOMs", "the run OOMed at step 300",
                                  "OOMing when the co-resident vLLM server holds 20 GiB"])
def test_oom_said_as_a_verb(said):
    assert refine(said + "\n").report.kind == "cuda_oom"


def test_the_model_a_paste_names_is_read_with_or_without_a_printed_memory_error():
    """The model is a fact of the run whatever the paste shows: a question about a model's memory with no error
    printed, or another error, still names it (so its size can be weighed); a paste naming none leaves it unset."""
    asked = "I tried running the bi-encoder example with intfloat/e5-mistral-7b-instruct and it could not train at batch 1\n"
    out = refine(asked)
    assert not out.report.is_memory_error and out.report.model == "intfloat/e5-mistral-7b-instruct"
    assert any("intfloat/e5-mistral-7b-instruct" in note for note in out.notes)
    assert refine("Loading checkpoint shards:  62%|██████▏   | 5/8\n").report.model is None
