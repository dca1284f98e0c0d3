"""Fixes found by the diagnosis stage: an OOM message without a GPU index, llama.cpp/ggml allocation failures,
phases read from frames and their source lines, paths that are not models, PEFT's parameter counts, and random
text that must stay not_oom. The matching corpus logs live in tests/fixtures/logs/."""

from __future__ import annotations

import pytest

from ask_oom.tools.log_parser import parse_log

GiB, MiB = 1 << 30, 1 << 20


# -- 1. "GPU  has a total capacity" (no index) ---------------------------------------------------------------
def test_new_format_without_gpu_index_keeps_every_number():
    r = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB. GPU  has a total "
                  "capacity of 15.77 GiB of which 100.12 MiB is free. Process 4242 has 1.50 GiB memory in use. "
                  "Including non-PyTorch memory, this process has 14.17 GiB memory in use. Of the allocated memory "
                  "13.01 GiB is allocated by PyTorch, and 0.90 GiB is reserved by PyTorch but unallocated. If reserved "
                  "but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True")
    assert r.kind == "cuda_oom" and r.gpu_index is None
    assert r.requested_bytes == 512 * MiB
    assert r.gpu_total_bytes == round(15.77 * GiB) and r.gpu_free_bytes == round(100.12 * MiB)
    assert r.process_used_bytes == round(14.17 * GiB) and r.torch_allocated_bytes == round(13.01 * GiB)
    assert r.torch_reserved_unallocated_bytes == round(0.90 * GiB)
    assert [(p.pid, p.bytes) for p in r.other_processes] == [(4242, round(1.5 * GiB))]


def test_new_format_with_index_still_reads_it():
    r = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 3 has a total "
                  "capacity of 79.15 GiB of which 3.06 MiB is free.")
    assert r.gpu_index == 3 and r.gpu_total_bytes == round(79.15 * GiB)


# -- 2. llama.cpp / ggml allocation failures ------------------------------------------------------------------
def test_ggml_cudamalloc_line_gives_size_and_device():
    r = parse_log("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 1234.56 MiB on device 1: "
                  "cudaMalloc failed: out of memory")
    assert r.kind == "cuda_oom" and r.gpu_index == 1
    assert r.requested_bytes == round(1234.56 * MiB)


def test_ggml_exact_buffer_size_refines_the_rounded_one():
    r = parse_log("llama_new_context_with_model: pipeline parallelism enabled (n_copies=4)\n"
                  "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 144.00 MiB on device 4: cudaMalloc failed: "
                  "out of memory\n"
                  "ggml_gallocr_reserve_n: failed to allocate CUDA4 buffer of size 150995968\n"
                  "llama_new_context_with_model: failed to allocate compute buffers\n")
    assert (r.kind, r.requested_bytes, r.gpu_index, r.framework) == ("cuda_oom", 150995968, 4, "llama.cpp")
    assert {e.fact: e.line for e in r.evidence if e.fact in ("kind", "requested_bytes")} == {
        "kind": 2, "requested_bytes": 3}


def test_ggml_buffer_line_alone_and_bare_cudamalloc():
    r = parse_log("alloc_tensor_range: failed to allocate CUDA0 buffer of size 151851674624\n"
                  "llama_model_load: error loading model: unable to allocate CUDA0 buffer")
    assert (r.kind, r.requested_bytes, r.gpu_index) == ("cuda_oom", 151851674624, 0)
    r = parse_log("cudaMalloc failed: out of memory")
    assert r.kind == "cuda_oom" and r.requested_bytes is None


def test_ggml_buffers_by_backend():
    assert parse_log("ggml_gallocr_reserve_n: failed to allocate ROCm1 buffer of size 2097152").kind == "hip_oom"
    host = parse_log("llama_kv_cache_init: failed to allocate CUDA_Host buffer of size 1073741824")
    assert host.kind == "host_oom" and host.requested_bytes == 1 << 30


def test_a_distinct_later_size_is_not_merged():
    r = parse_log("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 144.00 MiB on device 0: cudaMalloc failed: "
                  "out of memory\nalloc_tensor_range: failed to allocate CUDA0 buffer of size 999999999")
    assert r.requested_bytes == 144 * MiB


# -- 5. PEFT's parameter counts ---------------------------------------------------------------------------------
def test_peft_trainable_line_keeps_both_counts_with_their_line():
    r = parse_log("Loading checkpoint shards: 100%|██████████| 2/2\n"
                  "trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622\n")
    assert r.training_args["trainable_params"].value == "4194304"
    assert r.training_args["all_params"].value == "6742609920"
    assert r.training_args["all_params"].line == 2
    assert any(e.fact == "training_args.all_params" and "all params" in e.text for e in r.evidence)


def test_the_models_whole_parameter_count_as_trainers_and_tools_print_it():
    """Unsloth's "X of Y", ParlAI's and scripts' "Total parameters", mlx-lm's two banners, nanoGPT's and llama.cpp's
    counts are the model's size (all_params); a rank's share, a share in percent and a small count are not."""
    printed = {
        "Trainable parameters = 1,361,753,856 of 5,661,833,328 (24.05% trained)": "5661833328",
        "2022-04-03 18:42:45,809 INFO | Total parameters: 2,826,830,336 (2,826,830,336 trainable)": "2826830336",
        "Total number of parameters in the model: 3,161,117,824": "3161117824",
        "Total parameters 7243.436M": "7243436000",
        "Trainable parameters: 4.178% (335.544M/8030.261M)": "8030261000",
        "number of parameters: 123.69M": "123690000",
        "print_info: model params     = 3.21 B": "3210000000",
    }
    for line, count in printed.items():
        r = parse_log(line + "\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB\n")
        assert r.training_args["all_params"].value == count, line
    for line in ("number of parameters on (tensor, pipeline) model parallel rank (0, 0): 6738415616",
                 "Total params: 1,234", "Trainable parameters 0.426M"):
        r = parse_log(line + "\n")
        assert "all_params" not in r.training_args and "trainable_params" not in r.training_args, line
    r = parse_log("Trainable parameters = 1,361,753,856 of 5,661,833,328 (24.05% trained)\n")
    assert r.training_args["trainable_params"].value == "1361753856"


def test_hf_trainer_trainable_banner_has_no_all_params():
    r = parse_log("[INFO|trainer.py:2136] >>   Number of trainable parameters = 20,971,520")
    assert r.training_args["trainable_params"].value == "20971520" and "all_params" not in r.training_args


# -- 3. phases from frames and the source lines under them -----------------------------------------------------
_OOM_LINE = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 8 GiB"
_MODULE = '  File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line {n}, in {fn}'


def _trace(*frames: str) -> str:
    return "\n".join(["Traceback (most recent call last):", *frames, _OOM_LINE])


@pytest.mark.parametrize("frames, phase", [
    # Module.to → _apply → convert: weights moving onto the GPU
    (('  File "train.py", line 9, in <module>', "    model.to('cuda')", _MODULE.format(n=1343, fn="to"),
      "    return self._apply(convert)", _MODULE.format(n=903, fn="_apply"), "    module._apply(fn)",
      _MODULE.format(n=1329, fn="convert"), "    return t.to("), "model_loading"),
    (('  File "train.py", line 9, in <module>', "    model = model.cuda()", _MODULE.format(n=1050, fn="cuda"),
      "    return self._apply(lambda t: t.cuda(device))"), "model_loading"),
    # state_dict / _save_to_state_dict / torch.save: a checkpoint being written
    (('  File "train.py", line 40, in <module>', "    sd = model.state_dict()", _MODULE.format(n=1908, fn="state_dict"),
      "    self._save_to_state_dict(destination, prefix, keep_vars)"), "checkpoint_save"),
    (('  File "train.py", line 41, in <module>', '    torch.save(model.state_dict(), "ckpt.pt")',
      '  File "/venv/lib/python3.11/site-packages/torch/serialization.py", line 850, in save',
      "    _save(obj, opened_zipfile, pickle_module, pickle_protocol)"), "checkpoint_save"),
    (('  File "/venv/lib/python3.11/site-packages/peft/peft_model.py", line 310, in save_pretrained',
      "    output_state_dict = get_peft_model_state_dict("), "checkpoint_save"),
    # evaluation read from the source lines when no frame names it
    (('  File "eval.py", line 88, in <module>', "    all_preds = torch.cat([all_preds, preds], dim=0)"), "evaluation"),
    (("    preds_host = logits if preds_host is None else nested_concat(preds_host, logits, padding_index=-100)",
      '  File "/venv/lib/python3.11/site-packages/transformers/trainer_pt_utils.py", line 84, in torch_pad_and_concatenate',
      "    result = tensor1.new_full(new_shape, padding_index)"), "evaluation"),
])
def test_phase_from_frames_and_source_lines(frames, phase):
    assert parse_log(_trace(*frames)).phase == phase


@pytest.mark.parametrize("frames, phase", [
    # casting a tensor inside forward is not moving the model
    (('  File "/venv/lib/python3.11/site-packages/transformers/models/llama/modeling_llama.py", line 300, in forward',
      "    attn_weights = attn_weights.to(query_states.dtype)"), "forward"),
    # loading a checkpoint is not saving one
    (('  File "train.py", line 12, in <module>', "    model.load_state_dict(torch.load('ckpt.pt'))"), "model_loading"),
    # plain backward frames stay backward
    (('  File "/venv/lib/python3.11/site-packages/torch/_tensor.py", line 581, in backward',
      "    torch.autograd.backward("), "backward"),
])
def test_phase_patterns_do_not_overreach(frames, phase):
    assert parse_log(_trace(*frames)).phase == phase


# -- 4. only model-like names become the model -----------------------------------------------------------------
from ask_oom.tools.log_parser.model_names import looks_like_model  # noqa: E402


@pytest.mark.parametrize("name", [
    "meta-llama/Llama-2-7b-hf", "facebook/opt-1.3b", "bigscience/bloomz-7b1", "EleutherAI/pythia-160m", "gpt2",
    "qwen2.5-7b", "THUDM/chatglm3-6b", "mistralai/Mixtral-8x7B-v0.1", "/data/llama-7b", "./checkpoints/llavaqwen-1.8b-ft",
    "/out/qwen-lora/checkpoint-500", "/data/models/my-sft", "/root/.cache/modelscope/hub/SomeOrg/SomeName", "allenai/OLMoE-1B-7B-0924",
    "C:\\models\\Meta-Llama-3-8B-Instruct", "/hub/models--Qwen--Qwen2-7B/snapshots/abc",
])
def test_model_like_names(name):
    assert looks_like_model(name)


@pytest.mark.parametrize("name", [
    "lib/python3.7/site-packages/transformers", "/usr/local/lib/python3.10/dist-packages/peft",
    "training/step1_supervised_finetuning/output", "/root/DeepSpeed-Chat/training/step1_supervised_finetuning/output",
    "training/step1_supervised_finetuning/run.sh", "(input_ids", "self.base_model.model", "Dahoas/rm-static",
    "output", "/tmp/out/checkpoint-500", "optimizer", "config.json", "", "a/b",
])
def test_not_model_like(name):
    assert not looks_like_model(name)


@pytest.mark.parametrize("text", [
    "model_name_or_path: /root/DeepSpeedExamples/applications/DeepSpeed-Chat/training/step1_supervised_finetuning/output",
    "loading weights file /home/u/.local/lib/python3.7/site-packages/foo/pytorch_model.bin",
    "    return self.base_model(input_ids, attention_mask=attention_mask)",
    "model='lib/python3.7/site-packages/x'",
    "--model training/step1_supervised_finetuning/run.sh",
    '"_name_or_path": "/usr/local/lib/python3.7/site-packages/x"',
])
def test_paths_and_code_never_become_the_model(text):
    assert parse_log(text).model is None


def test_a_rejected_argument_leaves_room_for_a_later_model_print():
    r = parse_log("--model_name_or_path training/step1_supervised_finetuning/output\n"
                  '  "_name_or_path": "facebook/opt-1.3b",\n')
    assert r.model == "facebook/opt-1.3b"
    assert [e.line for e in r.evidence if e.fact == "model"] == [2]


# -- 6. random text yields nothing -------------------------------------------------------------------------------
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import string  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ask_oom.tools.log_parser.arguments import plausible_value  # noqa: E402


@pytest.mark.parametrize("alphabet", [string.printable, string.ascii_lowercase + " =:-/._'\n0123456789"],
                         ids=["printable", "lowercase_and_separators"])
def test_cli_on_megabytes_of_random_text_reports_nothing(alphabet):
    rnd = random.Random(1234)
    data = "".join(rnd.choices(alphabet, k=3_000_000)).encode()
    proc = subprocess.run([sys.executable, "-m", "ask_oom.ui.cli", "parse", "--json"], input=data,
                          capture_output=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 3, proc.stderr  # no memory error
    report = json.loads(proc.stdout)
    assert report["kind"] == "not_oom" and report["model"] is None and report["training_args"] == {}
    assert report["framework"] is None and report["versions"] == {} and report["gpus"] == []
    assert report["lines"] > 1000


@pytest.mark.parametrize("key, value, ok", [
    ("bf16", "true", True), ("bf16", "True", True), ("fp16", "auto", True), ("bf16", "t5", False),
    ("gradient_checkpointing", "memory_and", False), ("bits", "4", True), ("bits", "not", False),
    ("per_device_train_batch_size", "8", True), ("per_device_train_batch_size", "auto", True),
    ("max_pixels", "1280*28*28", True), ("max_pixels", "passed", False), ("lora_alpha", "16.0", True),
    ("cutoff_len", "4,096", True), ("deepspeed", "ds_z3_config.json", True), ("template", "qwen", True),
])
def test_typed_argument_values(key, value, ok):
    assert plausible_value(key, value) is ok


_WORDS = ("the model of a run with batch size and loading file from cache at path to gpu memory python train eval "
          "step loss lr bf16 fp16 bits cutoff_len per_device_train_batch_size x y 7b qwen llama opt data output "
          "checkpoint = : -- ' / site-packages lib python3.7 training step1_supervised_finetuning").split()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_WORDS), st.sampled_from(["", " ", "_", "-", "/", "\n", ": ", "="])),
                max_size=400))
def test_word_salad_gives_only_well_shaped_facts(parts):
    r = parse_log("".join(w + sep for w, sep in parts))
    assert r.kind == "not_oom"
    for key, arg in r.training_args.items():
        assert plausible_value(key, arg.value)
    assert r.model is None or looks_like_model(r.model)


def test_ggml_hip_build_cuda_wording_then_rocm_device_is_one_hip_error():
    r = parse_log("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 2.00 MiB on device 1: cudaMalloc failed: "
                  "out of memory\nggml_gallocr_reserve_n: failed to allocate ROCm1 buffer of size 2097152")
    assert (r.kind, r.requested_bytes, r.gpu_index) == ("hip_oom", 2097152, 1)


def test_accumulating_logits_is_evaluation_not_cross_entropy():
    r = parse_log(_trace('  File "eval.py", line 88, in <module>',
                         "    all_preds = torch.cat([all_preds, logits.float()], dim=0)"))
    assert r.phase == "evaluation" and r.operation is None


def test_prose_question_yields_no_arguments_or_model():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "tests/fixtures/logs/prose_question_no_log.log").read_bytes()
    r = parse_log(text)
    assert r.kind == "not_oom" and r.model is None and r.training_args == {} and r.gpus == []


def test_ggml_error_on_several_ranks_is_reported_once_with_its_ranks():
    text = "".join(f"[rank{r}]: ggml_backend_cuda_buffer_type_alloc_buffer: allocating 144.00 MiB on device {r}: "
                   f"cudaMalloc failed: out of memory\n"
                   f"[rank{r}]: ggml_gallocr_reserve_n: failed to allocate CUDA{r} buffer of size 150995968\n"
                   for r in range(4))
    r = parse_log(text)
    assert (r.kind, r.requested_bytes, r.ranks) == ("cuda_oom", 150995968, [0, 1, 2, 3])


def test_out_of_memory_errors_other_libraries_raise_in_their_own_words():
    """accelerate's find_executable_batch_size gives up after a CUDA OOM at every batch size; OpenVINO's GPU plugin
    refuses one allocation above the device's largest object (its request read); Intel MKL's host allocator fails.
    The traceback's own source line ("raise RuntimeError(...)") is not the error."""
    accelerate = ('  File "accelerate/utils/memory.py", line 142, in decorator\n'
                  '    raise RuntimeError("No executable batch size found, reached zero.")\n'
                  'RuntimeError: No executable batch size found, reached zero.\n')
    r = parse_log(accelerate)
    assert r.kind == "cuda_oom" and r.message == "RuntimeError: No executable batch size found, reached zero."
    # a CUDA OOM it caught, when printed, is the message with numbers
    r = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
                  "of 23.65 GiB of which 1.00 GiB is free.\n" + accelerate)
    assert r.kind == "cuda_oom" and r.requested_bytes == 2 * 2**30
    r = parse_log("RuntimeError: Exception from src/inference/src/cpp/infer_request.cpp:223: Check '!exceed_allocatable_mem_"
                  "size' failed at src/plugins/intel_gpu/src/runtime/ocl/ocl_engine.cpp:142: [GPU] Exceeded max size of "
                  "memory object allocation: requested 11271610368 bytes, but max alloc size supported by device is "
                  "4294959104 bytes.Please try to reduce batch size or use lower precision.\n")
    assert r.kind == "xpu_oom" and r.requested_bytes == 11271610368
    r = parse_log("Traceback (most recent call last):\nRuntimeError: mkl_malloc: failed to allocate memory\n")
    assert r.kind == "host_oom"


def test_onnx_runtime_arena_failure_is_a_memory_error_with_its_request():
    """ONNX Runtime's BFC arena throws when its device allocator fails: the request is read; a line cut before the
    message still names the function, which throws nothing else. Other arena lines (its config, its stats) are not."""
    r = parse_log("2023-05-18 09:46:49.687 [E:onnxruntime:, inference_session.cc:1532 operator()] Exception during "
                  "initialization: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:368 void* onnxruntime::"
                  "BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, onnxruntime::"
                  "WaitNotificationFn) Failed to allocate memory for requested buffer of size 37898745088\n")
    assert (r.kind, r.requested_bytes) == ("cuda_oom", 37898745088)
    r = parse_log("[E:onnxruntime:, inference_session.cc:1532 operator()] Exception during initialization: "
                  "/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:368 void* onnxruntime::BFCArena::"
                  "AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, on\n")
    assert r.kind == "cuda_oom" and r.requested_bytes is None
    r = parse_log("2023-05-18 09:46:47 [I:onnxruntime:, bfc_arena.cc:29 BFCArena] Creating BFCArena for Cuda with "
                  "following configs: initial_chunk_size_bytes: 1048576 max_dead_bytes_per_chunk: 134217728\n")
    assert not r.is_memory_error


def test_turbomind_device_malloc_failure_is_in_model_loading():
    """TurboMind allocates each weight tensor with deviceMalloc (memory_utils.cu) as the model loads, its KV cache from
    the block allocator afterwards: an OOM raised in memory_utils.cu is the weights', in model loading. The same
    CUDA runtime error elsewhere (the allocator) names no phase."""
    r = parse_log("RuntimeError: [TM][ERROR] CUDA runtime error: out of memory "
                  "/lmdeploy/src/turbomind/utils/memory_utils.cu:32\n")
    assert (r.kind, r.phase) == ("cuda_oom", "model_loading")
    assert any(e.fact == "phase" and "memory_utils.cu" in e.text for e in r.evidence)
    r = parse_log("[TM][ERROR] CUDA runtime error: out of memory /lmdeploy/src/turbomind/utils/allocator.h:231\n")
    assert (r.kind, r.phase) == ("cuda_oom", "unknown")


def test_the_cuda_runtime_error_string_printed_by_a_c_program_is_a_gpu_memory_error():
    """llm.c's cudaCheck prints "[CUDA ERROR] at file train_gpt2.cu:693:" and then cudaGetErrorString's "out of memory"
    on a line of its own (pastes glue the two): either is a CUDA memory error. A sentence saying it is not."""
    for text in ("[CUDA ERROR] at file train_gpt2.cu:693:\nout of memory\n",
                 "[CUDA ERROR] at file train_gpt2.cu:693: out of memory\n"):
        assert parse_log(text).kind == "cuda_oom", text
    assert not parse_log("step 10: it ran out of memory after the eval\n").is_memory_error
