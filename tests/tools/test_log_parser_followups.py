"""Follow-ups to the parser: the trigger-word prefilter (same reports with and without it), tracebacks glued to
progress bars, DataLoader bus errors, hub-cache model names, the attention kernel, vLLM under a trainer and host RAM
from DeepSpeed's memory prints. The matching corpus logs live in tests/fixtures/logs/."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ask_oom.tools.log_parser import parse_log
from ask_oom.tools.log_parser.lines import clean_line, iter_text_lines, split_glued_bar
from ask_oom.tools.log_parser.parser import parse_lines
from ask_oom.tools.log_parser.triggers import TRIGGER_WORDS, has_trigger, regex_has_trigger

GiB = 1 << 30
CORPUS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "logs"
LOGS = sorted(CORPUS.glob("*.log"))
OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.18 GiB "
       "of which 1.61 GiB is free. Including non-PyTorch memory, this process has 77.56 GiB memory in use. Of the "
       "allocated memory 70.86 GiB is allocated by PyTorch, and 5.04 GiB is reserved by PyTorch but unallocated. If "
       "reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
       "fragmentation.")


def _both(text: str):
    lines = list(iter_text_lines(text))
    return parse_lines(lines, prefilter=True), parse_lines(lines, prefilter=False)


# -- prefilter ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_prefilter_changes_no_report_on_the_corpus(log: Path):
    fast, full = _both(log.read_bytes().decode("utf-8", "replace"))
    assert fast.model_dump() == full.model_dump()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([p.read_text(encoding="utf-8", errors="replace").splitlines() for p in LOGS[:30]]),
                min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_prefilter_changes_no_report_on_shuffled_corpus_lines(logs, rnd):
    lines = [line for log in logs for line in log]
    rnd.shuffle(lines)
    fast, full = _both("\n".join(lines[:400]))
    assert fast.model_dump() == full.model_dump()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.text(alphabet=string.printable, max_size=120),
                          st.sampled_from(["[rank1]: " + OOM, "Traceback (most recent call last):", "  File \"/a/b.py\", "
                                           "line 3, in backward", "bf16: true", "CPU Virtual Memory:  used = 5.5 GB, "
                                           "percent = 9.1%", "Killed", "exitcode  : -7 (pid: 9)"])), max_size=60))
def test_prefilter_changes_no_report_on_random_text(parts):
    fast, full = _both("\n".join(parts))
    assert fast.model_dump() == full.model_dump()


def test_aho_corasick_and_regex_prefilters_agree():
    rng = random.Random(7)
    samples = [line.lower() for p in LOGS for line in p.read_text(encoding="utf-8", errors="replace").splitlines()]
    samples += ["".join(rng.choices(string.printable, k=rng.randint(0, 200))).lower() for _ in range(3000)]
    samples += [f"xx {w} yy" for w in TRIGGER_WORDS]
    assert all(has_trigger(s) == regex_has_trigger(s) for s in samples)
    assert not has_trigger("{'loss': 0.4123, 'grad_norm': 1.02, 'learning_rate': 1.2e-05, 'epoch': 0.5}")
    assert has_trigger("torch.outofmemoryerror: cuda out of memory.")


def test_lines_without_trigger_words_still_serve_as_traceback_context():
    # frame lines carry no trigger word, yet they decide the phase and the operation
    log = ("Traceback (most recent call last):\n  File \"/w/run.py\", line 9, in step\n"
           "    loss = F.cross_entropy(logits, labels)\n" + OOM + "\n")
    r = parse_log(log)
    assert r.operation == "cross_entropy" and r.phase == "optimizer_step"


# -- progress bars and traceback headers ----------------------------------------------------------------------
def test_header_glued_after_a_bar_starts_the_traceback():
    bar = "Loading checkpoint shards: 100%|##########| 4/4 [00:10<00:00,  2.50s/it]"
    body = ("  File \"/venv/lib/python3.11/site-packages/torch/autograd/__init__.py\", line 266, in backward\n"
            "    Variable._execution_engine.run_backward(\n" + OOM + "\n")
    for sep in ("", "\r", "\n"):
        r = parse_log(bar + sep + "Traceback (most recent call last):\n" + body)
        assert r.phase == "backward", sep


def test_a_bar_glued_before_a_line_is_split_off_as_context():
    assert split_glued_bar("Map: 100%|####| 10/10 [00:01<00:00, 9.1 examples/s][rank2]: RuntimeError: x") == (
        "Map: 100%|####| 10/10 [00:01<00:00, 9.1 examples/s]", "RuntimeError: x")
    assert split_glued_bar("a 100%|####| 10/10 [00:01<00:00]") == (None, "a 100%|####| 10/10 [00:01<00:00]")
    assert clean_line("xx Traceback (most recent call last):")[0] == "Traceback (most recent call last):"
    # the bar still says what the run was doing when the process was killed
    r = parse_log("Loading checkpoint shards:  50%|#####     | 2/4 [00:31<00:31, 15.6s/it]Killed\n")
    assert r.kind == "host_oom" and r.phase == "model_loading" and r.message == "Killed"
    r = parse_log("[rank3]:  10%|#         | 10/100 [00:31<04:39,  3.1s/it][rank3]: " + OOM + "\n")
    assert r.ranks == [3] and r.message.startswith("torch.OutOfMemoryError")


# -- signals -----------------------------------------------------------------------------------------------------
def test_dataloader_bus_error_is_sigbus_not_host_oom():
    r = parse_log("RuntimeError: DataLoader worker (pid 77) is killed by signal: Bus error. It is possible that "
                  "dataloader's workers are out of shared memory. Please try to raise your shared memory limit.")
    assert r.kind == "not_oom" and r.exit_signal == "SIGBUS"
    assert [e.kind for e in r.related_errors] == ["sigbus"]
    killed = parse_log("RuntimeError: DataLoader worker (pid 77) is killed by signal: Killed.")
    assert killed.kind == "host_oom" and killed.exit_signal == "SIGKILL"


# -- model --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", [
    "loading configuration file config.json from cache at /root/.cache/huggingface/hub/models--Qwen--Qwen2.5-7B/"
    "snapshots/0123abcd/config.json",
    "loading file tokenizer_config.json from cache at /root/.cache/huggingface/hub/models--Qwen--Qwen2.5-7B/"
    "snapshots/…/tokenizer_config.json",
    '  "_name_or_path": "/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-7B/snapshots/0123abcd",',
    "Initializing an LLM engine (v0.6.3) with config: model='/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-7B/"
    "snapshots/0123abcd', speculative_config=None",
    "python train.py --model /root/.cache/huggingface/hub/models--Qwen--Qwen2.5-7B/snapshots/0123abcd --bf16",
])
def test_hub_cache_paths_name_the_repo(line):
    assert parse_log(line).model == "Qwen/Qwen2.5-7B"


def test_name_or_path_outside_the_cache_is_kept_as_written():
    assert parse_log('  "_name_or_path": "/data/ckpt/Qwen2.5-7B-sft",').model == "/data/ckpt/Qwen2.5-7B-sft"


# -- attention kernel ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("[INFO|2024-09-02 10:00:03] llamafactory.model.model_utils.attention:157 >> Using vanilla attention "
     "implementation.", "eager"),
    ("[INFO|2024-09-02 10:00:03] llamafactory.model.model_utils.attention:154 >> Using torch SDPA for faster training "
     "and inference.", "sdpa"),
    ("Using FlashAttention-2 for faster training and inference.", "flash_attention_2"),
    ("ModelArguments(attn_implementation='eager', torch_dtype='bfloat16')", "eager"),
    ("flash_attn: fa2", "flash_attention_2"),
    ("model = AutoModelForCausalLM.from_pretrained(path, use_flash_attention_2=True)", "flash_attention_2"),
    ("[WARNING|attention:80] >> FlashAttention-2 is not installed.", "eager_or_sdpa"),
    ("INFO 03-11 09:30:33 selector.py:115] Using XFormers backend.", "xformers"),
    ("INFO 03-11 09:30:33 cuda.py:230] Using Flash Attention backend.", "flash_attention_2"),
    ("flash_attention: true", "flash_attention_2"),
    ("sdp_attention: true", "sdpa"),
    ("O^O/ \\_/ \\    Torch: 2.4.0+cu121. CUDA: 8.9. Bfloat16 = TRUE. FA [Xformers = 0.0.27.post2. FA2 = False]",
     "xformers"),
    ("\\        /    Bfloat16 = TRUE. FA [Xformers = 0.0.28. FA2 = True]", "flash_attention_2"),
])
def test_attention_kernel_from_log_lines(line, expected):
    r = parse_log(line)
    assert r.attn_implementation == expected
    assert any(e.fact == "attn_implementation" and e.line == 1 for e in r.evidence)


def test_what_ran_beats_what_was_unavailable():
    r = parse_log("FlashAttention-2 is not installed.\nUsing torch SDPA for faster training and inference.\n")
    assert r.attn_implementation == "sdpa"
    assert [e.line for e in r.evidence if e.fact == "attn_implementation"] == [2]
    assert parse_log("flash_attn: auto\n").attn_implementation is None
    assert parse_log("flash_attention: false\n").attn_implementation is None
    assert parse_log("Using the `SDPA` attention implementation on multi-gpu setup with ROCM").attn_implementation \
        is None


# -- vLLM under a trainer ---------------------------------------------------------------------------------------
def test_vllm_frames_on_the_error_stack_win_over_trl():
    frames = ("Traceback (most recent call last):\n"
              "  File \"/v/lib/python3.11/site-packages/trl/trainer/grpo_trainer.py\", line 840, in _generate\n"
              "    outs = self.llm.generate(prompts)\n"
              "  File \"/v/lib/python3.11/site-packages/vllm/entrypoints/llm.py\", line 465, in generate\n"
              "    outputs = self._run_engine(use_tqdm=use_tqdm)\n")
    r = parse_log(frames + OOM)
    assert r.framework == "vllm"
    assert [e.line for e in r.evidence if e.fact == "framework"] == [4]
    trl_only = frames.split("  File \"/v/lib/python3.11/site-packages/vllm")[0]
    assert parse_log(trl_only + OOM).framework == "trl"


# -- host RAM ----------------------------------------------------------------------------------------------------
def test_deepspeed_cpu_virtual_memory_gives_host_ram_at_its_peak():
    log = ("[INFO] [utils.py:787:see_memory_usage] CPU Virtual Memory:  used = 212.46 GB, percent = 41.3%\n"
           "[INFO] [utils.py:787:see_memory_usage] CPU Virtual Memory:  used = 503.3 GB, percent = 97.9%\n"
           "[INFO] [utils.py:787:see_memory_usage] CPU Virtual Memory:  used = 300.1 GB, percent = 58.4%\n")
    r = parse_log(log)
    assert r.host_ram_used_bytes == round(503.3 * GiB)
    assert r.host_ram_total_bytes == round(round(503.3 * GiB) * 100 / 97.9)
    assert 513 * GiB < r.host_ram_total_bytes < 515 * GiB
    assert {e.fact: e.line for e in r.evidence if e.fact.startswith("host_ram")} == {
        "host_ram_used_bytes": 2, "host_ram_total_bytes": 2}


def test_no_memory_print_leaves_host_ram_unknown():
    r = parse_log("CPU Virtual Memory:  used = 5 GB, percent = 0%\n" + OOM)
    assert r.host_ram_total_bytes is None and r.host_ram_used_bytes is None


@pytest.mark.parametrize("line", [
    "Loading extension module cpu_adam...",
    "Time to load cpu_adam op: 60.97907280921936 seconds",
    "Adam Optimizer #0 is created with AVX2 arithmetic capability.",
    "[rank0]: optimizer = DeepSpeedCPUAdam(model_params, lr=1e-5)",
])
def test_deepspeeds_cpu_adam_means_the_optimizer_is_offloaded(line):
    r = parse_log("[INFO] training starts\n" + line + "\nLoading checkpoint shards: 100%|| 8/8\n")
    assert r.optimizer_offloaded and [e.line for e in r.evidence if e.fact == "optimizer_offloaded"] == [2]


def test_fused_adam_on_the_gpu_is_not_an_offload():
    r = parse_log("Loading extension module fused_adam...\nTime to load fused_adam op: 0.3 seconds\n" + OOM)
    assert not r.optimizer_offloaded and not [e for e in r.evidence if e.fact == "optimizer_offloaded"]


def test_adversarial_progress_bar_lines_are_read_in_bounded_time():
    # lines full of bar-like fragments: the glued-bar cut scans a bounded span after the last "%|"
    lines = ["%|" + "|1/1 [" * 700, "%|" + "|1" * 3000, "50%|" * 2000, "%|| 1/2 [" + "x" * 5000 + "]Traceback"]
    r = parse_log("\n".join(lines * 200) + "\n" + OOM)
    assert r.kind == "cuda_oom" and r.lines == 801


@pytest.mark.parametrize("question", ["cuda 内存溢出 (CUDA out of memory)", "Qwen2 keeps hitting CUDA out of memory:"])
def test_a_question_naming_the_error_does_not_hide_the_real_message(question):
    # the user's own words above the pasted error: the message with the allocator's numbers is the error
    r = parse_log(question + "\n\n" + OOM)
    assert r.message.startswith("torch.OutOfMemoryError")
    assert r.gpu_total_bytes == round(79.18 * GiB) and r.torch_allocated_bytes == round(70.86 * GiB)
    assert r.requested_bytes == 2 * GiB


def test_a_bare_size_line_after_the_error_still_completes_it():
    r = parse_log("NCCL error: unhandled cuda error, NCCL version 2.18.1\n"
                  "h:1:2 [3] include/alloc.h:185 NCCL WARN Failed to CUDA calloc 6291456 bytes\n")
    assert r.requested_bytes == 6291456


def test_a_summary_sentence_takes_its_phase_from_the_trace_pasted_below_it():
    log = ("CUDA out of memory when evaluating model\n\n"
           "Loading checkpoint shards:  89%|████████▊ | 8/9 [00:46<00:05,  5.78s/it]\n[...]\n"
           "Traceback (most recent call last):\n"
           '  File "/app/src/llamafactory/train/sft/workflow.py", line 48, in run_sft\n'
           "    model = load_model(tokenizer, model_args, finetuning_args, training_args.do_train)\n"
           '  File "/app/src/llamafactory/model/loader.py", line 160, in load_model\n')
    r = parse_log(log)
    assert r.kind == "cuda_oom" and r.phase == "model_loading"
    assert r.message == "CUDA out of memory when evaluating model"


@pytest.mark.parametrize("frame", [
    '  File "torch/nn/functional.py", line 4853, in unfold\n    return torch._C._nn.im2col(input, _pair(kernel_size))\n',
    '  File "torch/nn/modules/conv.py", line 549, in _conv_forward\n    return F.conv2d(input, weight, bias)\n',
    '  File "modeling_qwen2_vl.py", line 250, in forward\n    hidden_states = self.patch_embed(hidden_states)\n'])
def test_a_patch_embedding_frame_is_the_vision_tower(frame):
    r = parse_log("Traceback (most recent call last):\n" + frame + OOM)
    assert r.operation == "vision_tower"


def test_a_layer_allocating_its_weight_in_init_is_model_loading():
    frames = ("Traceback (most recent call last):\n"
              '  File "vllm/model_executor/models/llama.py", line 103, in __init__\n'
              "    self.qkv_proj = ColumnParallelLinear(\n"
              '  File "vllm/model_executor/parallel_utils/tensor_parallel/layers.py", line 272, in __init__\n'
              "    self.weight = Parameter(torch.empty(\n")
    assert parse_log(frames + OOM).phase == "model_loading"


@pytest.mark.parametrize("text, stage", [("采用 deepspeed zero3.\n", 3), ("we train with ZeRO-2 on 8 GPUs\n", 2),
                                         ("zero 2 problems so far\n", None), ("see ds_z3_config.json\n", None)])
def test_zero_stage_named_in_a_sentence(text, stage):
    assert parse_log(text + OOM).deepspeed_stage == stage
