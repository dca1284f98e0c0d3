"""Memory failures that runtimes print in their own words (vLLM's start-up check and KV-cache profile, llama.cpp's KV
buffer, MLX/Metal's allocator, a notebook's exception header), a cuBLAS handle failure beside an out-of-range index,
and a process said to be killed: each is read as what it is, through the whole pipeline."""

from __future__ import annotations

import pytest

from ask_oom.assistant.agent import diagnose
from ask_oom.assistant.diagnosis import DiagnoseRequest
from ask_oom.tools.units import GiB


def _run(log: str):
    return diagnose(DiagnoseRequest(log_text=log, retrieve=False))


def test_vllm_startup_check_is_memory_held_by_another_process():
    d = _run("INFO 06-30 13:53:18 [core.py:69] Initializing a V1 LLM engine (v0.9.1) with config: model='Qwen/Qwen2.5-7B'\n"
             "ERROR 06-30 13:53:19 [core.py:515] ValueError: Free memory on device (12.50/79.19 GiB) on startup is less than "
             "desired GPU memory utilization (0.9, 71.27 GiB). Decrease GPU memory utilization or reduce GPU memory used by "
             "other processes.\n")
    assert d.report.is_memory_error and d.report.gpu_total_bytes == int(79.19 * GiB)
    assert d.root_causes[0].label == "other_process"
    assert "66.69 GiB" in d.root_causes[0].why[0]          # 79.19 - 12.50 held before the engine loaded anything


@pytest.mark.parametrize("line", [
    "INFO worker.py:267] model weights take 13.20GiB; non_torch_memory takes 0.03GiB; PyTorch activation peak memory takes "
    "1.42GiB; the rest of the memory reserved for KV Cache is -2.05GiB.",
    "INFO executor_base.py:111] # cuda blocks: 0, # CPU blocks: 4681",
    "llama_kv_cache_init: failed to allocate buffer for kv cache",
])
def test_an_engine_whose_kv_cache_does_not_fit_is_a_kv_cache_budget_failure(line):
    d = _run(line + "\n")
    assert d.report.is_memory_error
    assert d.root_causes[0].label == "generation_kv_cache"


def test_metal_allocator_failure_is_the_macs_unified_memory():
    d = _run("Loading pretrained model\nTraining\nlibc++abi: terminating due to uncaught exception of type "
             "std::runtime_error: [malloc_or_wait] Unable to allocate 4294967296 bytes.\n")
    assert d.report.kind == "mps_oom"


def test_metal_failing_a_command_buffer_for_memory_is_the_macs_unified_memory():
    # MLX raises Metal's command-buffer failure as a RuntimeError: the exception is the memory error, not another one
    d = _run("crashes during generation:\nRuntimeError: [METAL] Command buffer execution failed: Insufficient Memory "
             "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)\n")
    assert d.report.kind == "mps_oom"
    assert d.root_causes[0].label != "not_oom"


def test_a_notebook_exception_header_without_its_message_is_a_gpu_oom():
    d = _run("---------------------------------------------------------------------------\n"
             "OutOfMemoryError                          Traceback (most recent call last)\n"
             "Cell In[21], line 2\n----> 2 trainer.train()\n")
    assert d.report.is_memory_error


@pytest.mark.parametrize("words", [
    "IndexError: index out of range in self",
    "it happens when I pass ids greater than num_embeddings to the embedding layer",
])
def test_cublas_handle_failure_beside_an_out_of_range_index_is_not_oom(words):
    d = _run(f"RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`\n{words}\n")
    assert d.root_causes[0].label == "not_oom"


def test_a_cublas_failure_alone_stays_a_memory_question():
    d = _run("RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`\n")
    assert d.root_causes[0].label != "not_oom"


def test_a_process_said_to_be_killed_without_an_error_is_the_host_oom_killer():
    d = _run("I tried to merge the LoRA into the 70B base model on the CPU in bf16.\nIt was still killed suddenly, no error.\n")
    assert d.report.kind == "host_oom"
    assert d.root_causes[0].label in ("offload_host_ram", "model_load_oom")


def test_a_request_of_one_zero3_optimizer_sub_group_is_full_fine_tuning_states():
    # DeepSpeed's default sub_group_size is 1e9 parameters: their fp32 copy is 3.73 GiB
    d = _run("  File \"deepspeed/runtime/zero/stage3.py\", line 1450, in _prepare_fp32_grad_for_sub_group\n"
             "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.73 GiB. GPU 3 has a total capacity of 39.39 GiB "
             "of which 943.06 MiB is free. Of the allocated memory 35.98 GiB is allocated by PyTorch, and 1.59 GiB is "
             "reserved by PyTorch but unallocated.\n")
    top = d.root_causes[0]
    assert top.label == "full_ft_model_states" and any("sub group" in w for w in top.why)
    # the request is one tensor: explained as a state buffer, no activation reading of its size is left
    reasons = [w for c in d.root_causes for w in c.why]
    assert not any("activation" in w for w in reasons), reasons


def test_a_request_while_zero3_gathers_parameters_is_model_states_not_activations():
    d = _run("  File \"deepspeed/runtime/zero/partition_parameters.py\", line 1166, in all_gather_coalesced\n"
             "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.92 GiB. GPU 0 has a total capacity of 31.74 GiB "
             "of which 120.00 MiB is free. Of the allocated memory 30.00 GiB is allocated by PyTorch, and 812.00 MiB is "
             "reserved by PyTorch but unallocated.\n")
    assert d.report.operation == "zero3_allgather"
    top = d.root_causes[0]
    assert top.label == "full_ft_model_states" and any("gathering parameters" in w for w in top.why)
    labels = [c.label for c in d.root_causes]
    assert "seq_len_too_long" not in labels and "batch_too_large" not in labels, labels


@pytest.mark.parametrize("words", ["sft_type为lora的时候是正常的，改成full后报错", "LoRA works fine but full fine-tuning OOMs"])
def test_the_users_own_method_contrast_points_at_full_fine_tuning_states(words):
    d = _run(f"{words}\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 112.00 MiB. GPU 0 has a total capacity "
             "of 79.33 GiB of which 25.81 MiB is free. Of the allocated memory 78.23 GiB is allocated by PyTorch, and "
             "554.17 MiB is reserved by PyTorch but unallocated.\n")
    assert d.root_causes[0].label == "full_ft_model_states"


def test_lora_on_a_full_dataset_is_no_method_contrast():
    from ask_oom.tools.log_cues import log_cues

    assert log_cues("I use lora on a full dataset and it works").method_contrast is None


@pytest.mark.parametrize("words", ["Qwen1.5-72B full fine-tuning on 2 nodes x 8 A800, deepspeed zero2",
                                   "Qwen1.5-72B 全参微调，两台机器，每台8张A800"])
def test_a_request_that_back_solves_to_the_models_size_over_the_ranks_is_a_zero_partition(words):
    # 16.83 GiB x 16 ranks / 4 B = 72.3B: one rank's fp32 partition of the whole 72B model, not an activation
    d = _run(f"{words}\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 16.83 GiB. GPU 0 has a total "
             "capacity of 79.33 GiB of which 10.26 GiB is free. Of the allocated memory 66.31 GiB is allocated by PyTorch, "
             "and 1.66 GiB is reserved by PyTorch but unallocated.\n")
    assert d.setup.num_gpus == 16 and d.setup.num_nodes == 2
    top = d.root_causes[0]
    assert top.label == "full_ft_model_states"
    assert any("16.83 GiB x 16 ranks / 4 B = 72.3B parameters" in w for w in top.why)


def test_an_assumed_gpu_count_back_solves_nothing():
    from ask_oom.tools.log_parser import parse_log
    from ask_oom.tools.root_causes.request_size import zero_partition_request
    from ask_oom.tools.training_setup import TrainingSetup

    report = parse_log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 16.83 GiB. GPU 0 has a total "
                       "capacity of 79.33 GiB of which 10.26 GiB is free.\n")
    assumed = TrainingSetup(num_gpus=16, model_name="Qwen1.5-72B")          # no provenance: nobody said 16
    assert zero_partition_request(report, assumed) == []
    stated = assumed.with_fact("num_gpus", 16, "user", "--gpus 16")
    assert zero_partition_request(report, stated)
