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
