"""llama.cpp commands as the pasted config: the model and its quantization read from the GGUF file name, a vision
projector (--mmproj) marking a multimodal run, and a plan of llama.cpp's own levers that says it is not verified."""

from __future__ import annotations

from ask_oom.assistant.agent import diagnose
from ask_oom.assistant.diagnosis import DiagnoseRequest
from ask_oom.tools.configs import apply_config_to_setup, load_config
from ask_oom.tools.training_setup import TrainingSetup

CMD = ('llama-qwen2vl-cli -m Qwen2-VL-7B-Instruct-Q4_K_M.gguf --mmproj mmproj-Qwen2-VL-7B-Instruct-f32.gguf '
       '-c 8192 -p "Describe this image" --image "facture_1.png"\n')
LOG = ("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 937664.01 MiB on device 0: cudaMalloc failed: out of memory\n"
       "ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer of size 983211975680\n")


def test_a_llama_cpp_command_reads_model_quantization_and_projector():
    doc = load_config(CMD, "run.sh")
    assert doc.framework == "llama.cpp" and doc.launcher["task"] == "inference"
    assert doc.settings["model"] == "Qwen2-VL-7B-Instruct" and doc.settings["quantization_bit"] == 4
    setup = apply_config_to_setup(doc, TrainingSetup())
    assert setup.model is not None and setup.model.vision is not None


def test_a_vision_buffer_larger_than_any_gpu_gets_llama_cpp_levers_not_training_ones():
    d = diagnose(DiagnoseRequest(log_text=LOG, config_text=CMD, config_name="run.sh"))
    assert d.root_causes[0].label == "vision_tokens"
    assert "larger than any GPU" in " ".join(d.root_causes[0].why)
    actions = [f.action for f in d.fixes if f.action]
    assert any("downscale the image" in a for a in actions)
    assert all(f.key not in ("gradient_checkpointing", "per_device_train_batch_size") for f in d.fixes)
    assert d.fits_after is None   # ggml's buffers are not sized: no verdict


CONTEXT_LOG = ("llama_new_context_with_model: n_ctx      = {n_ctx}\n"
               "llama_new_context_with_model: n_batch    = 2048\n"
               "llama_kv_cache_init:      CUDA0 KV buffer size =  {kv}.00 MiB\n"
               "llama_kv_cache_init:      CUDA1 KV buffer size =  {kv}.00 MiB\n"
               "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 1024.00 MiB on device 1: cudaMalloc failed: "
               "out of memory\n")


def test_the_context_llama_cpp_created_and_its_kv_buffers_are_read():
    from ask_oom.tools.log_cues import log_cues

    ctx = log_cues(CONTEXT_LOG.format(n_ctx=131072, kv=8192)).engine_context
    assert ctx is not None and ctx.tokens == 131072 and ctx.line == 1
    assert ctx.kv_bytes == 2 * 8192 * 2**20 and ctx.kv_line == 4   # one buffer per device, summed
    # a later context starts afresh; an older build's total ("KV self size") is the sum already
    again = log_cues(CONTEXT_LOG.format(n_ctx=131072, kv=8192) + "llama_new_context_with_model: n_ctx = 4096\n"
                     "llama_new_context_with_model: KV self size  =  512.00 MiB, K (f16):  256.00 MiB\n").engine_context
    assert again.tokens == 4096 and again.kv_bytes == 512 * 2**20


def test_a_very_long_llama_cpp_context_speaks_for_its_kv_cache_with_the_printed_size():
    d = diagnose(DiagnoseRequest(log_text=CONTEXT_LOG.format(n_ctx=131072, kv=8192)))
    signal = next(s for s in d.signals if s.name == "engine_context_long")
    assert signal.label == "generation_kv_cache"
    assert "n_ctx = 131,072 (line 1)" in signal.reason and "16.00 GiB of KV cache" in signal.reason
    # a default-sized context says nothing of the cache
    d = diagnose(DiagnoseRequest(log_text=CONTEXT_LOG.format(n_ctx=2048, kv=256)))
    assert not any(s.name == "engine_context_long" for s in d.signals)


LOAD_LOG = ("llm_load_print_meta: model size       = 376.65 GiB (4.82 BPW)\n"
            "llm_load_tensors: offloading 61 repeating layers to GPU\n"
            "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 35533.34 MiB on device 0: cudaMalloc failed: out of memory\n"
            "llama_model_load: error loading model: unable to allocate CUDA0 buffer\n")


def test_llama_cpp_stages_say_the_phase_loading_the_weights_or_creating_the_context():
    """llama.cpp places the offloaded layers' weights while loading (llm_load_tensors, llama_model_load), then creates
    its context: the KV cache and compute buffers for n_ctx tokens. The stage lines before the failed buffer say which."""
    from ask_oom.tools.log_parser import parse_log

    loading = parse_log(LOAD_LOG)
    assert loading.is_memory_error and loading.phase == "model_loading"
    context = parse_log(LOAD_LOG.replace("llama_model_load: error loading model: unable to allocate CUDA0 buffer\n", "")
                        .replace("ggml_backend", "llama_new_context_with_model: n_ctx = 131072\nggml_backend"))
    assert context.phase == "generation"
