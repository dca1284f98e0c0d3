"""The agent takes the phase from a function name or sentence near the error when the traceback names none,
and ignores one far before it (set-up chatter)."""

from __future__ import annotations

from ask_oom.assistant.agent import diagnose
from ask_oom.assistant.diagnosis import DiagnoseRequest

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."


def test_code_line_next_to_the_error_names_evaluation():
    log = "    all_preds = nested_concat(all_preds, logits, padding_index=-100)\n" + OOM + "\n"
    d = diagnose(DiagnoseRequest(log_text=log), index=None, mode="fast")
    assert d.report.phase == "evaluation"
    assert d.root_causes[0].label == "eval_accumulation"


def test_a_cue_far_before_the_error_is_not_the_phase():
    log = "    all_preds = nested_concat(all_preds, logits)\n" + "step log line\n" * 200 + OOM + "\n"
    d = diagnose(DiagnoseRequest(log_text=log), index=None, mode="fast")
    assert d.report.phase != "evaluation"


def test_vllm_kv_cache_that_does_not_fit_is_a_memory_budget_failure():
    log = ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
           "initializing the engine.\n")
    d = diagnose(DiagnoseRequest(log_text=log), index=None, mode="fast")
    assert d.report.is_memory_error and d.root_causes[0].label == "generation_kv_cache"


def test_growth_said_in_words_next_to_a_pasted_error():
    log = "GPU memory keeps increasing every step until it dies:\n" + OOM + "\n"
    d = diagnose(DiagnoseRequest(log_text=log), index=None, mode="fast")
    assert d.root_causes[0].label == "memory_growth"


def test_prose_about_a_vision_language_model_points_at_visual_tokens():
    d = diagnose(DiagnoseRequest(log_text="Qwen2-VL-7B LoRA with high-resolution images goes OOM\n"), index=None, mode="fast")
    assert d.setup.model is not None and d.setup.model.vision is not None
    assert d.root_causes[0].label == "vision_tokens"


def test_an_adapter_script_in_the_log_sets_the_method_nobody_stated():
    """lit-llama / litgpt's finetune/adapter_v2.py, a finetuning_lora.py, QLoRA frames: adapters train on frozen base
    weights, so the calculator sizes no full fine-tuning states. A method the user states wins."""
    log = ("  File \"finetune/adapter_v2.py\", line 263, in <module>\n"
           "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 316.00 MiB. GPU 0 has a total capacity "
           "of 22.20 GiB of which 144.12 MiB is free. Of the allocated memory 21.23 GiB is allocated by PyTorch, and "
           "57.37 MiB is reserved by PyTorch but unallocated.\n")
    d = diagnose(DiagnoseRequest(log_text=log, model_name="meta-llama/Llama-2-7b-hf", retrieve=False, plan=False))
    assert d.setup.method == "lora" and "adapter_v2.py" in d.setup.provenance["method"].detail
    assert "method" not in d.setup.assumptions()
    said = diagnose(DiagnoseRequest(log_text="full fine-tuning of the whole model\n" + log,
                                    model_name="meta-llama/Llama-2-7b-hf", retrieve=False, plan=False))
    assert said.setup.method == "full"
    qlora = diagnose(DiagnoseRequest(log_text="  File \"/home/u/qlora/qlora.py\", line 9, in train\n" + log.split("\n", 1)[1],
                                     model_name="meta-llama/Llama-2-7b-hf", retrieve=False, plan=False))
    assert qlora.setup.method == "qlora" and qlora.setup.quantization_bit == 4


def test_a_base_loaded_in_8_bits_is_an_adapter_run_of_that_width():
    """A quantized base cannot be trained in full: with no method stated, load_in_8bit means adapters on 8-bit weights."""
    log = ("model = LlamaForCausalLM.from_pretrained(base, load_in_8bit=True, device_map='auto')\n"
           "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.38 GiB (GPU 0; 31.75 GiB total "
           "capacity; 24.78 GiB already allocated; 1.49 GiB free; 29.21 GiB reserved in total by PyTorch)\n")
    d = diagnose(DiagnoseRequest(log_text=log, model_name="meta-llama/Llama-2-13b-hf", retrieve=False, plan=False))
    assert (d.setup.method, d.setup.quantization_bit) == ("qlora", 8)
    assert "load_in_8bit" in d.setup.provenance["method"].detail
