"""Where in the run an error struck: the phase (loading, forward, backward, optimizer step, evaluation, ...)
and the operation (cross-entropy over logits, attention, vision tower, MoE experts, ZeRO-3 all-gather),
read from the traceback frames and log lines just before the error."""

from __future__ import annotations

import re

# Phases that say *what the run was doing* (they win over the mechanics below when both appear):
# evaluation that runs a forward pass is still evaluation.
_CONTEXT_PHASES: list[tuple[str, re.Pattern]] = [
    ("generation", re.compile(
        r"\.generate\(|\bin (?:generate|_sample|sample|greedy_search|_greedy_search|beam_search|_beam_search"
        r"|_assisted_decoding)\b"
        # llama.cpp creating its context after the weights: the KV cache and compute buffers for its n_ctx tokens
        r"|\b(?:llama_new_context_with_model|llama_init_from_model|llama_kv_cache_init|llama_context):")),
    ("evaluation", re.compile(
        r"\.evaluate\(|\bin (?:evaluate|evaluation_loop|prediction_step|prediction_loop|predict|_evaluate"
        r"|_maybe_log_save_evaluate_eval|evaluation_step|validation_step|eval_step|_eval_step|compute_metrics"
        r"|nested_concat|torch_pad_and_concatenate|nested_numpify|gather_for_metrics)\b"
        r"|\*\*\*\*\* Running (?:Evaluation|Prediction)"
        # source lines that accumulate predictions across eval batches (HF Trainer's preds_host, hand-written loops)
        r"|\b(?:preds_host|labels_host|logits_host|all_preds|all_labels|all_logits|eval_preds)\s{0,2}=|nested_concat\(")),
    ("checkpoint_save", re.compile(
        r"save_pretrained|save_checkpoint|\bin (?:save_model|_save|_save_checkpoint|save_16bit_model"
        r"|_zero3_consolidated_16bit_state_dict|consolidated_16bit_state_dict|_save_to_state_dict|state_dict"
        r"|get_state_dict)\b|torch/serialization\.py\", line \d{1,6}, in _?save\b|Saving model checkpoint|torch\.save\("
        r"|(?<![\w_])\.?state_dict\(\)")),
    ("lora_merge", re.compile(r"merge_and_unload|_unload_and_optionally_merge|\bexport_model\b|\bin merge\b")),
    ("model_loading", re.compile(
        r"from_pretrained|_load_state_dict|load_state_dict|dispatch_model|load_checkpoint|_load_pretrained_model"
        # Module.to/.cuda/.half → _apply → convert: the weights being moved onto the GPU
        r"|nn/modules/module\.py\", line \d{1,6}, in (?:_apply|convert|to|cuda|half|bfloat16|to_empty)\b"
        r"|\b(?:model|base_model|peft_model|lm|llm|net)\.(?:to|cuda|half|bfloat16)\("
        r"|set_module_tensor_to_device|Loading checkpoint shards|loading model tensors|deepspeed\.initialize\(|_move_model_to_device|\bin (?:load_model|load_model_and_tokenizer"
        r"|_move_model_to_device|_configure_distributed_model|prepare_model|_load_checkpoint)\b"
        # building the model on the GPU: a layer's __init__ allocating its weight (vLLM's model_executor, meta-free init)
        r"|(?:self\.\w{1,30}\s{0,2}=\s{0,2})?(?:nn\.)?Parameter\(\s{0,2}torch\.(?:empty|zeros|ones|randn)\("
        r"|\bin (?:_initialize_model|initialize_model|load_weights|init_model)\b"
        # llama.cpp's loader stages (llm_load_print_meta, llm_load_tensors, llama_model_load: error loading model)
        r"|\b(?:llm_load_\w{1,20}|llama_model_load|load_tensors|llama_load_model_from_file):")),
    ("data_loading", re.compile(r"DataLoader worker|\bin (?:_worker_loop|__getitem__|collate\w{0,20}|fetch)\b")),
    # DeepSpeed building the optimizer states (their memory is what runs out): the setup of the optimizer step
    ("optimizer_step", re.compile(r"initializing optimizer states|Adam Optimizer #\d{1,3} is created"
                                  r"|Creating [\w.]{0,20} ?ZeRO stage \d optimizer")),
]
# Backward and optimizer frames win over forward ones: a forward frame inside backward is a
# gradient-checkpointing recompute.
_UPDATE_PHASES: list[tuple[str, re.Pattern]] = [
    ("optimizer_step", re.compile(
        r"optimizer\.step|engine\.step|exp_avg|torch/optim/|_multi_tensor|adamw|cpu_adam|_take_model_step"
        r"|\bin (?:step|_optimizer_step|optimizer_step)\b")),
    ("backward", re.compile(r"backward|torch/autograd/__init__|_execution_engine")),
]
_FORWARD_PHASES: list[tuple[str, re.Pattern]] = [
    ("forward", re.compile(
        r"\bin (?:\w{0,40}forward|_call_impl|_wrapped_call_impl|compute_loss|training_step)\b|model\(\*\*\w{1,20}\)"
        r"|compute_loss|\.forward\(")),
]

# Operation patterns, tried in this order on each line (innermost line first).
_OPERATIONS: list[tuple[str, re.Pattern]] = [
    ("zero3_allgather", re.compile(
        r"partition_parameters|all_gather|allgather|fetch_sub_module|pre_sub_module_forward")),
    ("cross_entropy", re.compile(
        r"cross_entropy|log_softmax|logits\.float\(\)|loss_function|ForCausalLMLoss|CrossEntropyLoss|nll_loss"
        r"|loss_fct")),
    ("moe_experts", re.compile(
        r"\.experts\b|experts\[|block_sparse_moe|router_logits|self\.gate\(|deepspeed/moe/"
        r"|\bin (?:\w{0,20}moe\w{0,20}|\w{0,20}experts?\w{0,20})\b")),
    ("lm_head", re.compile(r"lm_head")),
    ("embedding", re.compile(r"embed_tokens|F\.embedding|torch\.embedding|\bin embedding\b|wte\(")),
    ("optimizer", re.compile(
        r"exp_avg|torch/optim/|optimizer\.step|adamw|_multi_tensor|cpu_adam|\bin (?:step|_optimizer_step)\b")),
    ("attention", re.compile(
        r"scaled_dot_product|sdpa|flash_attn|attn_weights|self_attn|eager_attention|\bin (?:_attn|_flash_attention"
        r"\w{0,20}|attention\w{0,20})\b|softmax\(")),
]
# In an LLM's step, a 2-D/3-D convolution or an unfold (im2col) is the vision encoder cutting the image into patches.
_VISION = re.compile(
    r"visual|(?<![a-z])vision|Vision|image_encoder|modeling_clip|CLIP|[Ss]ig[Ll]ip|\bclip\b|[_/]vit[_.]|\bvit\b|ViT"
    r"|patch_embed|PatchEmbed|pixel_values|\bF\.unfold\b|\bim2col\b|\b[Cc]onv[23]d\b|_conv_forward")


def find_phase(window: list[tuple[int, str]]) -> tuple[str, int, str] | None:
    """(phase, line number, line) from lines before an error, ordered outermost → innermost."""
    for table in (_CONTEXT_PHASES, _UPDATE_PHASES, _FORWARD_PHASES):
        for lineno, text in reversed(window):  # closest to the error first
            for phase, pattern in table:
                if pattern.search(text):
                    return phase, lineno, text
    return None


def find_context_phase(lines: list[tuple[int, str]]) -> tuple[str, int, str] | None:
    """A phase from the log lines around an error (a progress bar, a banner), not from frames: only the
    phases that say what the run was doing (loading, evaluation, saving...)."""
    for lineno, text in reversed(lines):
        if text.lstrip().startswith("File "):
            continue
        for phase, pattern in _CONTEXT_PHASES:
            if pattern.search(text):
                return phase, lineno, text
    return None


# a line gathering predictions across batches ("all_preds = torch.cat([all_preds, logits.float()])") names logits
# without computing a loss over them: it says the phase (evaluation), not the operation
_ACCUMULATION = re.compile(r"\b(?:preds_host|labels_host|logits_host|all_preds|all_labels|all_logits|eval_preds)"
                           r"\s{0,2}=|nested_concat\(")


def find_operation(window: list[tuple[int, str]]) -> tuple[str, int, str] | None:
    """(operation, line number, line): the innermost frame that names one; the vision tower wins over a
    generic attention/embedding match when its frames are on the stack."""
    found = None
    for lineno, text in reversed(window):
        if _ACCUMULATION.search(text):
            continue
        for op, pattern in _OPERATIONS:
            if pattern.search(text):
                found = (op, lineno, text)
                break
        if found:
            break
    if found is None or found[0] in ("attention", "embedding"):
        for lineno, text in reversed(window):
            if _VISION.search(text):
                return "vision_tower", lineno, text
    return found
