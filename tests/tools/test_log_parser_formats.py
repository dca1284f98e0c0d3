"""Each message format and log convention the parser must read, one small realistic excerpt per test."""

from __future__ import annotations

import pytest

from ask_oom.tools.log_parser import parse_log, parse_log_stream

GiB, MiB, KiB = 1 << 30, 1 << 20, 1 << 10


def gib(x: float) -> int:
    return round(x * GiB)


NEW = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 4.00 GiB. GPU 0 has a total capacity of 79.18 GiB "
       "of which 3.61 GiB is free. Process 1234 has 10.00 GiB memory in use. Including non-PyTorch memory, this process "
       "has 65.56 GiB memory in use. Of the allocated memory 59.86 GiB is allocated by PyTorch, and 5.04 GiB is reserved "
       "by PyTorch but unallocated. If reserved but unallocated memory is large try setting "
       "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.")
OLD = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 MiB (GPU 2; 23.64 GiB total capacity; "
       "23.08 GiB already allocated; 704.00 KiB free; 23.20 GiB reserved in total by PyTorch) If reserved memory is >> "
       "allocated memory try setting max_split_size_mb to avoid fragmentation.")


def test_current_format_all_numbers():
    r = parse_log(NEW)
    assert r.kind == "cuda_oom" and r.is_memory_error
    assert r.requested_bytes == 4 * GiB
    assert (r.gpu_index, r.gpu_total_bytes, r.gpu_free_bytes) == (0, gib(79.18), gib(3.61))
    assert r.process_used_bytes == gib(65.56)
    assert r.torch_allocated_bytes == gib(59.86)
    assert r.torch_reserved_unallocated_bytes == gib(5.04)
    assert [(p.pid, p.bytes) for p in r.other_processes] == [(1234, 10 * GiB)]
    assert r.gpus[0].index == 0 and r.gpus[0].memory_bytes == gib(79.18)


def test_old_format_fills_reserved_and_reserved_minus_allocated():
    r = parse_log(OLD)
    assert r.requested_bytes == 2 * MiB and r.gpu_index == 2
    assert r.gpu_free_bytes == 704 * KiB
    assert r.torch_allocated_bytes == gib(23.08) and r.torch_reserved_bytes == gib(23.20)
    assert r.torch_reserved_unallocated_bytes == gib(23.20) - gib(23.08)


@pytest.mark.parametrize("text, free", [
    ("CUDA out of memory. Tried to allocate 2.00 MiB (GPU 2; 23.64 GiB total capacity; 23.08 GiB already allocated; "
     "704.00 KiB free)", 704 * KiB),
    ("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.35 GiB total capacity; 77.12 GiB already allocated; "
     "0 bytes free; 78.01 GiB reserved in total by PyTorch)", 0),
    ("CUDA out of memory. Tried to allocate 192.00 MiB. GPU 0 has a total capacity of 23.65 GiB of which 3.56 MiB is "
     "free. Including non-PyTorch memory, this process has 23.57 GiB memory in use.", round(3.56 * MiB)),
    ("CUDA out of memory. Tried to allocate 172.00 MiB. GPU 0 has a total capacty of 79.35 GiB of which 72.94 MiB is "
     "free. Process 193789 has 79.27 GiB memory in use.", round(72.94 * MiB)),
])
def test_old_and_current_variants(text, free):
    r = parse_log("RuntimeError: " + text)
    assert r.kind == "cuda_oom" and r.gpu_free_bytes == free and r.gpu_total_bytes is not None


def test_message_cut_short_keeps_what_it_printed():
    r = parse_log("[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 34.83 GiB. GPU 0 has a total "
                  "capacity of 44.55 GiB of which 22.25 GiB i")
    assert (r.requested_bytes, r.gpu_total_bytes, r.gpu_free_bytes) == (gib(34.83), gib(44.55), gib(22.25))
    assert r.torch_allocated_bytes is None and r.ranks == [0]


@pytest.mark.parametrize("width", [60, 80, 100, 137])
def test_message_hard_wrapped_at_any_width(width):
    text = "\n".join(NEW[i:i + width] for i in range(0, len(NEW), width))
    r = parse_log("some context line\n" + text + "\nnext unrelated line")
    assert r.requested_bytes == 4 * GiB and r.torch_reserved_unallocated_bytes == gib(5.04)
    assert r.process_used_bytes == gib(65.56)
    assert r.evidence[0].line == 2


def test_two_messages_glued_on_one_line_are_two_errors_first_wins():
    a = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 136.00 MiB. GPU 0 has a total capacty of "
         "31.73 GiB of which 24.69 MiB is free. Process 149826 has 16.98 GiB memory in use. See documentation f")
    b = ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 50.00 MiB. GPU 0 has a total capacty of "
         "31.73 GiB of which 24.69 MiB is free. Process 150072 has 14.72 GiB memory in use.")
    r = parse_log(a + b)
    assert r.requested_bytes == 136 * MiB
    assert [p.pid for p in r.other_processes] == [149826]


@pytest.mark.parametrize("line, kind, requested", [
    ("RuntimeError: CUDA error: out of memory", "cuda_oom", None),
    ("E external/xla/stream_executor/cuda/cuda_driver.cc:711] failed to alloc 2147483648 bytes on host: "
     "CUDA_ERROR_OUT_OF_MEMORY", "host_oom", None),
    ("jax: cuMemAlloc failed to allocate 1073741824 bytes: CUDA_ERROR_OUT_OF_MEMORY", "cuda_oom", 1073741824),
    ("torch.OutOfMemoryError: HIP out of memory. Tried to allocate 8.00 GiB. GPU 0 has a total capacity of 63.98 GiB "
     "of which 5.12 GiB is free.", "hip_oom", 8 * GiB),
    ("RuntimeError: XPU out of memory. Tried to allocate 130.00 MiB (GPU 0; 15.11 GiB total capacity; 11.09 GiB "
     "already allocated; 11.23 GiB reserved in total by PyTorch)", "xpu_oom", 130 * MiB),   # Intel GPUs (IPEX)
    ("RuntimeError: MPS backend out of memory (MPS allocated: 17.68 GB, other allocations: 3.95 MB, max allowed: "
     "18.13 GB). Tried to allocate 1024.00 MB on private pool.", "mps_oom", 1024 * MiB),
    ("jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate 7406166528 "
     "bytes.", "xla_oom", 7406166528),
    ("ResourceExhaustedError: OOM when allocating tensor with shape[100,4096,32] and type float on "
     "/job:localhost/replica:0/task:0/device:GPU:1 by allocator GPU_1_bfc", "tf_oom", 100 * 4096 * 32 * 4),
    ("RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", "cublas_alloc", None),
    ("RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED", "cublas_alloc", None),
    ("node:21:23 [0] include/alloc.h:178 NCCL WARN Cuda failure 'out of memory'", "nccl_oom", None),
    ("RuntimeError: [enforce fail at alloc_cpu.cpp:83] err == 0. DefaultCPUAllocator: can't allocate memory: you "
     "tried to allocate 268435456 bytes. Error code 12 (Cannot allocate memory)", "host_oom", 268435456),
    ("OSError: [Errno 12] Cannot allocate memory", "host_oom", None),
])
def test_every_error_kind(line, kind, requested):
    r = parse_log(line)
    assert r.kind == kind and r.requested_bytes == requested


def test_mps_numbers_and_gb_is_binary():
    r = parse_log("MPS backend out of memory (MPS allocated: 17.02 GB, other allocations: 1.05 GB, max allowed: "
                  "18.13 GB). Tried to allocate 96.00 MB on private pool.")
    assert r.torch_allocated_bytes == gib(17.02) and r.gpu_total_bytes == gib(18.13)
    assert r.process_used_bytes == gib(17.02) + gib(1.05)
    # the unit stays as written in the evidence
    assert any(e.fact == "requested_bytes" and "96.00 MB" in e.text for e in r.evidence)


def test_tf_device_index_and_nccl_size_on_next_line():
    assert parse_log("OOM when allocating tensor with shape[2,3] and type half on /job:localhost/replica:0/task:0/"
                     "device:GPU:3 by allocator GPU_3_bfc").gpu_index == 3
    r = parse_log("h:1:2 [3] include/alloc.h:178 NCCL WARN Cuda failure 'out of memory'\n"
                  "h:1:2 [3] include/alloc.h:185 NCCL WARN Failed to CUDA calloc 6291456 bytes\n")
    assert r.kind == "nccl_oom" and r.requested_bytes == 6291456


def test_the_vllm_servers_own_launch_command_names_the_framework():
    for cmd in ("python -m vllm.entrypoints.openai.api_server --model /model/Qwen2-7B",
                "vllm serve Qwen/Qwen2-7B --max-model-len 8192"):
        r = parse_log(cmd + "\ntorch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 9.25 GiB.\n")
        assert r.framework == "vllm", cmd


@pytest.mark.parametrize("line", [
    "RuntimeError: [TM][ERROR] CUDA runtime error: out of memory /lmdeploy/src/turbomind/utils/memory_utils.cu:32",
    "RuntimeError: cuda runtime error (2) : out of memory at /pytorch/aten/src/THC/THCCachingAllocator.cpp:510",
])
def test_the_cuda_runtimes_own_out_of_memory_string_is_a_gpu_oom(line):
    """TurboMind and PyTorch before 1.0 print the CUDA runtime's error string for cudaErrorMemoryAllocation."""
    assert parse_log(line).kind == "cuda_oom"


@pytest.mark.parametrize("text, signal", [
    ("Killed", "SIGKILL"),
    ("./train.sh: line 3: 88123 Killed                  python train.py", "SIGKILL"),
    ("  exitcode  : -9 (pid: 14750)\n  traceback : Signal 9 (SIGKILL) received by PID 14750", "SIGKILL"),
    ("[ERROR] [launch.py:321:sigkill_handler] ['python', 'train.py'] exits with return code = -9", "SIGKILL"),
    ("RuntimeError: DataLoader worker (pid 40921) is killed by signal: Killed.", "SIGKILL"),
    ("[Sat Mar  8 04:12:55 2025] Out of memory: Killed process 771203 (python) total-vm:301224376kB", "SIGKILL"),
    # Ray's memory monitor: host RAM of the node, although the exception is called OutOfMemoryError
    ("ray.exceptions.OutOfMemoryError: Task was killed due to the node running low on memory.", "SIGKILL"),
    # ... and its own words, with no "out of memory" in them, also when the paste cuts the line
    ("Memory on the node (IP: 10.0.0.3, ID: 37f3bd9f) where the task (actor ID: 658f, name=RewardModelRayActor.__init__,"
     " pid=5315, memory used=1.67GB) was running was 243.58GB / 251.55GB (0.968), which exceeds the memory usage "
     "threshold of 0.95. Ray killed this worker (ID: 2c4b) because it was the most recently scheduled task", "SIGKILL"),
    ("Memory on the node ( ID: 37f3bd9fa11d642c9e13892ee048dfc1f58c4597b77202a59a33835b) where the task (actor ID: "
     "658f7608dec0f9a3428857d502000000, name=RewardModelRayActor.__init__, pid=5315, memory use", "SIGKILL"),
])
def test_host_oom_signals(text, signal):
    r = parse_log(text)
    assert r.kind == "host_oom" and r.exit_signal == signal


@pytest.mark.parametrize("text, signal, related", [
    ("failed (exitcode: -7) local_rank: 1 (pid: 311) of binary: /usr/bin/python", "SIGBUS", "sigbus"),
    ("  traceback : Signal 7 (SIGBUS) received by PID 311", "SIGBUS", "sigbus"),
    ("failed (exitcode: -8) local_rank: 2 (pid: 1541107) of binary: /bin/python3.10", "SIGFPE", "sigfpe"),
])
def test_sigbus_and_sigfpe_are_not_host_oom(text, signal, related):
    r = parse_log(text)
    assert r.kind == "not_oom" and r.exit_signal == signal
    assert [e.kind for e in r.related_errors] == [related]


def test_exitcode_1_and_sigterm_are_not_memory_errors():
    r = parse_log("Sending process 86503 closing signal SIGTERM\nfailed (exitcode: 1) local_rank: 2 (pid: 86505)")
    assert r.kind == "not_oom" and r.exit_signal is None


@pytest.mark.parametrize("line, kind", [
    ("ValueError: You can't pass `load_in_4bit`or `load_in_8bit` as a kwarg when passing `quantization_config` "
     "argument at the same time.", "bnb_quantization_kwargs"),
    ('RuntimeError: "triu_tril_cuda_template" not implemented for \'BFloat16\'', "dtype_not_implemented"),
    ('RuntimeError: "addmm_impl_cpu_" not implemented for \'Half\'', "dtype_not_implemented"),
    ("ImportError: FlashAttention2 has been toggled on, but it cannot be used due to the following error: the package "
     "flash_attn seems to be not installed.", "flash_attn_missing"),
    ("ModuleNotFoundError: No module named 'flash_attn'", "flash_attn_missing"),
    ("Flash Attention 2 only supports torch.float16 and torch.bfloat16 dtypes, but the current dype in LlamaModel is "
     "torch.float32.", "flash_attn_unused"),
    # accelerate's device map put layers on the CPU or the disk: the weights did not fit the GPU
    ("Some parameters are on the meta device because they were offloaded to the cpu.", "weights_offloaded"),
    ("NotImplementedError: Cannot copy out of meta tensor; no data!", "weights_offloaded"),
    ("RuntimeError: Tensor on device meta is not on the expected device cuda:0!", "weights_offloaded"),
    ("ValueError: The current `device_map` had weights offloaded to the disk. Please provide an `offload_folder` for "
     "them.", "weights_offloaded"),
    ("ValueError: We need an `offload_dir` to dispatch this model according to this `device_map`, the following "
     "submodules need to be offloaded: base_model.model.model.layers.27", "weights_offloaded"),
    ("ValueError: Some modules are dispatched on the CPU or the disk. Make sure you have enough GPU RAM to fit the "
     "quantized model.", "weights_offloaded"),
])
def test_related_errors_make_a_related_error_report(line, kind):
    r = parse_log(line)
    assert r.kind == "related_error" and [e.kind for e in r.related_errors] == [kind]


def test_related_error_beside_an_oom_keeps_the_oom_primary():
    r = parse_log(OLD + "\nValueError: You can't pass `load_in_4bit`or `load_in_8bit` as a kwarg when passing "
                  "`quantization_config` argument at the same time.")
    assert r.kind == "cuda_oom" and [e.kind for e in r.related_errors] == ["bnb_quantization_kwargs"]


def test_meta_words_that_say_nothing_of_offloading_are_not_related_errors():
    # loader metadata and a model built on the meta device on purpose (init_empty_weights) say nothing of placement
    assert parse_log("llama_model_loader: loaded meta data with 26 key-value pairs and 995 tensors").related_errors == []
    assert parse_log("with init_empty_weights(): model = AutoModel.from_config(config)  # meta device").related_errors == []


def test_device_side_assert_before_cublas_and_nccl_timeout():
    r = parse_log("Indexing.cu:1289: indexSelectLargeIndex: block: [0,0,0] Assertion `srcIndex < srcSelectDimSize` "
                  "failed.\nRuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
    assert r.kind == "cublas_alloc" and [e.kind for e in r.related_errors] == ["device_side_assert"]
    r = parse_log("[rank3]:[E1002 ProcessGroupNCCL.cpp:607] [Rank 3] Watchdog caught collective operation timeout: "
                  "WorkNCCL(SeqNum=8, OpType=_ALLGATHER_BASE, Timeout(ms)=1800000) ran for 1800051 milliseconds")
    assert r.kind == "not_oom" and [e.kind for e in r.related_errors] == ["nccl_timeout"]
    # the CUDA hint about device-side assertions is not an assert
    assert parse_log("Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.").related_errors == []


# --- pasted-text conventions -------------------------------------------------------------------------------------

def test_same_oom_on_many_ranks_reported_once_with_ranks():
    lines = [f"[rank{r}]: " + NEW.replace("GPU 0", f"GPU {r}") for r in (3, 1, 0, 2)]
    r = parse_log("\n".join(lines))
    assert r.ranks == [0, 1, 2, 3] and r.gpu_index == 3
    assert sum(1 for e in r.evidence if e.fact == "kind") == 1


@pytest.mark.parametrize("prefix, rank", [("[rank3]:", 3), ("[default5]:", 5), ("0: ", 0), ("12: ", 12),
                                          ("localhost: [rank1]:", 1), ("[1,6]<stderr>:", 6),
                                          ("(RayWorkerWrapper pid=4411, ip=10.0.0.2) [rank2]:", 2)])
def test_rank_prefixes(prefix, rank):
    r = parse_log(prefix + NEW)
    assert r.ranks == [rank] and r.requested_bytes == 4 * GiB


def test_ansi_tqdm_crlf_fences_and_slack_quotes():
    ansi = "\x1b[1;31mtorch.OutOfMemoryError: \x1b[0m" + NEW.split(": ", 1)[1]
    tqdm = " 10%|#         | 1/10 [00:01<00:09]\r 20%|##        | 2/10 [00:02<00:08]\r" + NEW
    crlf = ("Traceback (most recent call last):\r\n  File \"t.py\", line 3, in <module>\r\n    loss.backward()\r\n"
            + NEW + "\r\n")
    fenced = "```text\n" + NEW + "\n```\n"
    slack = "&gt; " + OLD.replace(">>", "&gt;&gt;")
    for text in (ansi, tqdm, crlf, fenced, slack):
        r = parse_log(text)
        assert r.kind == "cuda_oom" and r.requested_bytes in (4 * GiB, 2 * MiB), text[:40]
        assert "\x1b" not in r.message and "\r" not in r.message and not r.message.startswith(">")
    assert parse_log(crlf).phase == "backward"


def test_non_utf8_bytes_are_replaced_not_rejected():
    data = b"\xff\xfe garbage \xc3\x28 line\n" + NEW.encode() + b"\n\x80\x81 tail"
    r = parse_log(data)
    assert r.kind == "cuda_oom" and r.lines == 3


def test_stream_chunks_of_any_size_give_the_same_report():
    text = ("line one\n\x1b[31m[rank0]: Traceback (most recent call last):\n[rank0]:   File \"x.py\", line 1, in "
            "forward\n[rank0]: " + NEW + "\nü tail ✓\n").encode()
    expected = parse_log(text).model_dump()
    for size in (1, 2, 3, 5, 64, 4096):
        assert parse_log_stream(text[i:i + size] for i in range(0, len(text), size)).model_dump() == expected


# --- context: phase, operation -----------------------------------------------------------------------------------

def _tb(*frames: str) -> str:
    body = "\n".join(f'  File "/x/{f}"' if f.endswith(tuple("0123456789")) or " in " in f else f"    {f}"
                     for f in frames)
    return "Traceback (most recent call last):\n" + body + "\n" + NEW


@pytest.mark.parametrize("frames, phase", [
    (("trainer.py\", line 1, in training_step", "loss = self.compute_loss(model, inputs)",
      "modeling_llama.py\", line 2, in forward"), "forward"),
    (("trainer.py\", line 1, in training_step", "self.accelerator.backward(loss)",
      "torch/utils/checkpoint.py\", line 3, in backward", "modeling_llama.py\", line 2, in forward"), "backward"),
    (("trainer.py\", line 1, in _inner_training_loop", "self.optimizer.step()",
      "torch/optim/adamw.py\", line 5, in _multi_tensor_adamw"), "optimizer_step"),
    (("trainer.py\", line 1, in evaluate", "trainer.py\", line 2, in evaluation_loop",
      "modeling_llama.py\", line 2, in forward"), "evaluation"),
    (("trainer_seq2seq.py\", line 1, in prediction_step", "generated = self.model.generate(**inputs)",
      "generation/utils.py\", line 2, in _sample", "modeling_llama.py\", line 2, in forward"), "generation"),
    (("run.py\", line 1, in main", "model = AutoModelForCausalLM.from_pretrained(path)",
      "modeling_utils.py\", line 2, in _load_state_dict_into_meta_model"), "model_loading"),
    (("trainer.py\", line 1, in _save_checkpoint", "self.save_model(output_dir)"), "checkpoint_save"),
    (("export.py\", line 1, in main", "model = model.merge_and_unload()"), "lora_merge"),
])
def test_phase_from_frames(frames, phase):
    assert parse_log(_tb(*frames)).phase == phase


@pytest.mark.parametrize("frames, op", [
    (("modeling_gemma.py\", line 1, in forward", "logits = logits.float()"), "cross_entropy"),
    (("loss_utils.py\", line 1, in ForCausalLMLoss", "loss = fixed_cross_entropy(logits, labels)"), "cross_entropy"),
    (("modeling_llama.py\", line 1, in forward", "attn_output = F.scaled_dot_product_attention(q, k, v)"), "attention"),
    (("modeling_qwen2_vl.py\", line 1, in forward", "image_embeds = self.visual(pixel_values)",
      "modeling_qwen2_vl.py\", line 2, in forward", "attn_weights = torch.matmul(q, k.transpose(1, 2))"),
     "vision_tower"),
    (("modeling_mixtral.py\", line 1, in forward", "out, router_logits = self.block_sparse_moe(h)"), "moe_experts"),
    (("deepspeed/runtime/zero/partition_parameters.py\", line 1, in all_gather_coalesced", "buf = torch.empty(n)"),
     "zero3_allgather"),
    (("torch/optim/adamw.py\", line 1, in _multi_tensor_adamw", "exp_avg_sq_sqrt = torch._foreach_sqrt(v)"),
     "optimizer"),
    (("modeling_llama.py\", line 1, in forward", "logits = self.lm_head(hidden_states)"), "lm_head"),
    (("modeling_llama.py\", line 1, in forward", "inputs_embeds = self.embed_tokens(input_ids)"), "embedding"),
])
def test_operation_from_frames(frames, op):
    assert parse_log(_tb(*frames)).operation == op


def test_frames_of_an_earlier_traceback_do_not_leak():
    text = ("Traceback (most recent call last):\n  File \"a.py\", line 1, in evaluate\nKeyError: 'x'\n"
            + _tb("trainer.py\", line 1, in training_step", "loss.backward()"))
    assert parse_log(text).phase == "backward"


# --- run facts ---------------------------------------------------------------------------------------------------

def test_framework_launcher_stage_model_from_a_deepspeed_run():
    r = parse_log(
        "[INFO] [runner.py:568:main] cmd = /usr/bin/python3 -u -m deepspeed.launcher.launch --world_info=e30= "
        "src/train.py --deepspeed ds_z3_config.json --model_name_or_path /data/Qwen2.5-7B --finetuning_type full\n"
        "[INFO] [logging.py:96:log_dist] [Rank 0] DeepSpeed info: version=0.14.4, git-hash=unknown\n"
        "[INFO] [config.py:1000:print]   zero_optimization_stage ...... 3\n" + OLD)
    assert (r.framework, r.launcher, r.deepspeed_stage, r.model) == ("llamafactory", "deepspeed", 3, "/data/Qwen2.5-7B")
    assert r.versions["deepspeed"] == "0.14.4"
    assert r.training_args["deepspeed"].value == "ds_z3_config.json" and r.training_args["deepspeed"].line == 1


def test_zero_stage_from_config_file_name_when_not_printed():
    r = parse_log("torchrun --nproc_per_node 4 train.py --deepspeed configs/ds_config_zero2.json\n" + OLD)
    assert r.deepspeed_stage == 2 and r.launcher == "torchrun" and r.gpu_count == 4


def test_model_from_hf_cache_path_and_weights_file():
    r = parse_log("loading weights file /root/.cache/huggingface/hub/models--Qwen--Qwen2-VL-7B-Instruct/snapshots/"
                  "a1b2c3/model.safetensors.index.json\n" + NEW)
    assert r.model == "Qwen/Qwen2-VL-7B-Instruct"
    r = parse_log("[INFO|modeling_utils.py:3474] >> loading weights file /models/glm-4-9b/model.safetensors\n")
    assert r.model == "/models/glm-4-9b"


def test_training_args_from_every_print_style_with_lines():
    r = parse_log(
        "Seq2SeqTrainingArguments(\nper_device_train_batch_size=8,\ngradient_checkpointing=True,\n)\n"
        "cutoff_len: 4096\n"
        "    --gradient_accumulation_steps 4 \\\n    --bf16 \\\n"
        "  Instantaneous batch size per device = 16\n"
        "  Total train batch size (w. parallel, distributed & accumulation) = 512\n"
        "{'lora_rank': 64, 'template': 'qwen'}\n")
    got = {k: (a.value, a.line) for k, a in r.training_args.items()}
    assert got["per_device_train_batch_size"] == ("8", 2)  # the first print wins; the banner says 16 later
    assert got["gradient_checkpointing"] == ("True", 3)
    assert got["cutoff_len"] == ("4096", 5)
    assert got["gradient_accumulation_steps"] == ("4", 6)
    assert got["bf16"] == ("true", 7)
    assert got["total_train_batch_size"] == ("512", 9)
    assert got["lora_rank"] == ("64", 10) and got["template"] == ("qwen", 10)
    assert any(e.fact == "training_args.cutoff_len" and e.line == 5 for e in r.evidence)


def test_logged_metrics_are_not_arguments():
    r = parse_log("{'loss': 1.2, 'grad_norm': 0.3, 'learning_rate': 2e-05, 'epoch': 0.1}\n")
    assert r.training_args == {}


def test_versions_from_env_blocks_pins_and_prose():
    r = parse_log("- `transformers` version: 4.41.2\n- PyTorch version (GPU?): 2.1.0+cu121 (True)\n"
                  "pip install deepspeed==0.12.3 peft==0.7.1\nflash-attn                2.5.8\n"
                  "I use torch 2.1.0 and bitsandbytes 0.41.1\n")
    assert r.versions == {"transformers": "4.41.2", "torch": "2.1.0+cu121", "deepspeed": "0.12.3", "peft": "0.7.1",
                          "flash_attn": "2.5.8", "bitsandbytes": "0.41.1"}


def test_gpus_from_nvidia_smi_and_messages():
    r = parse_log(
        "|   0  NVIDIA A100-SXM4-40GB          On  | 00000000:07:00.0 Off |                    0 |\n"
        "| N/A   31C    P0              58W / 400W |     39MiB / 40960MiB |      0%      Default |\n"
        "|   1  NVIDIA A100-SXM4-40GB          On  | 00000000:0F:00.0 Off |                    0 |\n"
        "| N/A   30C    P0              57W / 400W |  40100MiB / 40960MiB |    100%      Default |\n")
    assert [(g.index, g.name, g.memory_bytes, g.used_bytes) for g in r.gpus] == [
        (0, "NVIDIA A100-SXM4-40GB", 40960 * MiB, 39 * MiB), (1, "NVIDIA A100-SXM4-40GB", 40960 * MiB, 40100 * MiB)]
    assert r.gpu_count == 2 and r.kind == "not_oom"


def test_source_lines_naming_the_error_are_not_errors():
    text = ('  File "/x/utils.py", line 12, in run\n    except torch.cuda.OutOfMemoryError:\n'
            "    # retry when CUDA out of memory\n")
    assert parse_log(text).kind == "not_oom"


def test_wrapped_message_stops_at_the_short_last_fragment():
    width = 90
    wrapped = "\n".join(NEW[i:i + width] for i in range(0, len(NEW), width))
    r = parse_log("[rank0]: x\n" + wrapped.replace("\n", "\n") + "\nI tried batch size 1 too\nKilled\n")
    assert r.kind == "cuda_oom" and r.requested_bytes == 4 * GiB
    assert r.exit_signal == "SIGKILL"  # the 'Killed' line after the message was still read on its own


def test_prose_around_flags_is_not_a_value():
    r = parse_log("我加了 --bits 4参数尝试进行量化 and --lora_target q_proj,v_proj \\\n")
    assert "bits" not in r.training_args and r.training_args["lora_target"].value == "q_proj,v_proj"


def test_error_first_then_its_traceback():
    text = (OLD + "\nTraceback (most recent call last):\n  File \"t.py\", line 9, in <module>\n    trainer.train()\n"
            "  File \"/x/torch/optim/adamw.py\", line 5, in _multi_tensor_adamw\n    exp_avg.lerp_(grad, 1 - beta1)\n"
            "torch.cuda.OutOfMemoryError: CUDA out of memory.\n")
    r = parse_log(text)
    assert r.phase == "optimizer_step" and r.operation == "optimizer"


def test_phase_from_surrounding_lines_when_frames_say_nothing():
    text = ("Loading checkpoint shards:  40%|####      | 2/5 [00:31<00:47]\nTraceback (most recent call last):\n"
            "  File \"/usr/bin/torchrun\", line 8, in <module>\n    sys.exit(main())\nKilled\n")
    r = parse_log(text)
    assert r.kind == "host_oom" and r.phase == "model_loading"


def test_real_host_allocator_failure_from_the_installed_torch():
    """A real c10 DefaultCPUAllocator failure (not a hand-written string): the parser reads its exact size."""
    import traceback

    torch = pytest.importorskip("torch")
    size = 1 << 45  # 32 TiB: more than any test machine has
    try:
        torch.empty(size, dtype=torch.uint8)
    except RuntimeError:
        text = traceback.format_exc()
    else:  # pragma: no cover - a machine with 32 TiB of RAM
        pytest.skip("the allocation succeeded")
    r = parse_log(text)
    assert r.kind == "host_oom" and r.requested_bytes == size


def test_without_a_traceback_log_lines_give_the_phase_but_no_operation():
    text = ("[2025-03-02 16:41:02,336] [INFO] [partition_parameters.py:348:__exit__] finished initializing model\n"
            "Loading checkpoint shards: 100%|##########| 17/17 [03:12<00:00, 11.32s/it]\n"
            "[2025-03-02 16:44:41,530] [INFO] [utils.py:781:see_memory_usage] Before initializing optimizer states\n"
            "Adam Optimizer #0 is created with AVX512 arithmetic capability.\n"
            "[2025-03-02 16:48:20,661] [ERROR] [launch.py:325:sigkill_handler] ['python', 'train.py'] exits with "
            "return code = -9\n")
    r = parse_log(text)
    assert r.kind == "host_oom" and r.phase == "optimizer_step" and r.operation is None


def test_model_from_a_hub_cache_config_line():
    r = parse_log("[INFO|configuration_utils.py:699] >> loading configuration file config.json from cache at "
                  "/data/hf/hub/models--Qwen--Qwen2.5-32B-Instruct/snapshots/5ede1c9/config.json\n")
    assert r.model == "Qwen/Qwen2.5-32B-Instruct"


def test_progress_bar_after_a_cut_message_is_not_joined():
    r = parse_log(NEW[:260] + "\n  0%|          | 0/5700 [00:38<?, ?it/s]\n")
    assert r.requested_bytes == 4 * GiB and "%|" not in r.message


def test_same_error_on_several_gpus_without_prefixes_gives_local_ranks():
    r = parse_log("\n".join(NEW.replace("GPU 0", f"GPU {g}") for g in (1, 0, 3)))
    assert r.ranks == [0, 1, 3] and r.gpu_index == 1
    assert parse_log(NEW).ranks == []


def test_zero_stage_from_a_printed_deepspeed_json_config():
    r = parse_log('[INFO] [config.py:1004:print_user_config]   json = {\n    "zero_optimization": {\n'
                  '        "offload_param": {"device": "cpu"},\n        "stage": 3,\n        "overlap_comm": true\n'
                  '    }\n}\n')
    assert r.deepspeed_stage == 3
    # a lone "stage": 2 far from any zero_optimization block is not a ZeRO stage
    assert parse_log('{"stage": 2, "name": "warmup"}').deepspeed_stage is None


@pytest.mark.parametrize("line", [
    "subprocess.CalledProcessError: Command '['python', 'train.py']' died with <Signals.SIGKILL: 9>.",
    "srun: error: node-3: task 0: Exited with exit code 137",
    "terminate called after throwing an instance of 'std::bad_alloc'",
    "It loads everything, then flips out right after loading the checkpoint and gives error code -9.",
    "Error code 137 when loading RWKV-4-RAVEN model",
    "the trainer exited with status 137",
    # Windows' commit limit (RAM plus the paging file), in English and in a localised Windows
    "OSError: [WinError 1455] The paging file is too small for this operation to complete. Error loading "
    "\"C:\\venv\\lib\\site-packages\\torch\\lib\\cudnn_cnn_infer64_8.dll\" or one of its dependencies.",
    "OSError: [WinError 1455] 页面文件太小，无法完成操作。",
    # a notebook's or a hosted app's RAM cap
    "Your session crashed after using all available RAM.",
    "Runtime error: Memory limit exceeded (16Gi)",
    # ggml_init's host memory pool
    "D:/a/ggml/src/ggml.c:1530: GGML_ASSERT(ctx->mem_buffer != NULL) failed",
])
def test_more_host_kill_forms(line):
    assert parse_log(line).kind == "host_oom"


def test_cr_only_line_endings_are_lines_but_tqdm_redraws_are_not():
    cr = "Traceback (most recent call last):\r  File \"t.py\", line 1, in <module>\r    loss.backward()\r" + OLD + "\r"
    r = parse_log(cr)
    assert r.kind == "cuda_oom" and r.phase == "backward" and r.lines == 4
    bars = "".join(f"{p}%|##| {p}/100 [00:0{p % 10}<00:10, 9.1it/s]\r" for p in range(0, 100, 10)) + OLD
    r = parse_log(bars)
    assert r.kind == "cuda_oom" and r.lines == 1


@pytest.mark.parametrize("line", ["Process finished with error code 1", "return code -9.5 on the meter",
                                  "exit code 0", "error code 13", "CUDA memory limit exceeded"])
def test_exit_statuses_other_than_a_kill_are_not_the_host(line):
    assert parse_log(line).kind != "host_oom"


FRACTION = (
    "  File \"nodes.py\", line 1520, in sample\n"
    "torch.cuda.OutOfMemoryError: Allocation on device 0 would exceed allowed memory. (out of memory)\n"
    "Currently allocated     : 6.89 GiB\n"
    "Requested               : 320.00 MiB\n"
    "Device limit            : 23.69 GiB\n"
    "Free (according to CUDA): 2.94 MiB\n"
    "PyTorch limit (set by user-supplied memory fraction)\n"
    "                        : 17179869184.00 GiB\n"
    "2024-06-22 15:13:25,079- root:124- INFO- Prompt executed in 57.84 seconds\n"
)


def test_the_memory_fraction_message_reads_one_field_a_line():
    """With a memory fraction set (torch.cuda.set_per_process_memory_fraction), the caching allocator prints its
    numbers one field a line under the header: the request, what PyTorch holds, the card and what CUDA says is free."""
    from ask_oom.tools.log_parser.parser import parse_lines

    r = parse_log(FRACTION)
    assert r.kind == "cuda_oom" and r.gpu_index == 0
    assert r.requested_bytes == 320 * 1024**2
    assert r.torch_allocated_bytes == gib(6.89) and r.gpu_total_bytes == gib(23.69)
    assert r.torch_reserved_bytes == gib(6.89)   # "Currently allocated" is the allocator's cudaMalloc'd total
    assert abs(r.gpu_free_bytes - 2.94 * 1024**2) < 1024
    lines = FRACTION.splitlines(keepends=True)
    fast, slow = parse_lines(lines, prefilter=True), parse_lines(lines, prefilter=False)
    assert (fast.requested_bytes, fast.gpu_total_bytes) == (slow.requested_bytes, slow.gpu_total_bytes)
    # the block ends at the first line that is no field: a later log record is not read into it
    assert "Prompt executed" not in r.message


def test_a_header_without_its_fields_is_still_the_memory_error():
    r = parse_log("torch.cuda.OutOfMemoryError: Allocation on device 1 would exceed allowed memory. (out of memory)\n"
                  "Traceback (most recent call last):\n")
    assert r.kind == "cuda_oom" and r.requested_bytes is None and r.gpu_index == 1


def test_a_message_lower_cased_as_a_whole_keeps_its_numbers():
    """Issue titles and some pastes arrive lower-cased ("tried to allocate 78.88 mib (gpu 0; 3.95 gib total capacity;
    ..."): the words and units are read case-blind, and a bare cut-off prefix stays upper-case only ("4 each" is no
    size)."""
    r = parse_log("runtimeerror: cuda out of memory. tried to allocate 78.88 mib (gpu 0; 3.95 gib total capacity; "
                  "2.99 gib already allocated; 74.44 mib free; 557.82 mib cached)\n")
    assert r.kind == "cuda_oom" and r.gpu_index == 0
    assert r.requested_bytes == round(78.88 * 1024**2) and r.gpu_total_bytes == gib(3.95)
    assert r.torch_allocated_bytes == gib(2.99) and r.torch_reserved_unallocated_bytes == round(557.82 * 1024**2)
    new = parse_log("torch.outofmemoryerror: cuda out of memory. tried to allocate 2.00 gib. gpu 1 has a total capacity "
                    "of 23.64 gib of which 1.06 gib is free. of the allocated memory 21.10 gib is allocated by pytorch, "
                    "and 0.99 gib is reserved by pytorch but unallocated.\n")
    assert (new.requested_bytes, new.gpu_index, new.gpu_total_bytes) == (2 * 1024**3, 1, gib(23.64))



@pytest.mark.parametrize("text, size", [
    ("Error: CUDA out of memory. Tried to allocate more than 1EB memory", 1 << 60),   # c10's floor for a huge size
    ("Out of memory error on GPU 0. Cannot allocate 937.335938PB memory on GPU 0", int(round(937.335938 * (1 << 50)))),
])
def test_sizes_past_terabytes_are_read(text, size):
    assert parse_log(text).requested_bytes == size
