"""The training loop as a memory mechanism: an HF Trainer step against a plain PyTorch loop, measured on CPU.

Under HF Trainer with bf16=True, accelerate wraps the forward in torch.autocast (PEFT's lora_A then saves a bf16
cast of its input, not the fp32 copy) and Trainer.compute_loss returns only the loss (the bf16 logits are freed
before backward). The calibration harness is a plain loop that keeps the model output. Both steps run here on the
same tiny LoRA model; the allocator trace's peak difference is compared with the calculator's difference.
"""

from __future__ import annotations

import tempfile
import warnings

import pytest

from ask_oom.tools.memory import estimate_memory, load_model_arch
from ask_oom.tools.training_setup import TrainingSetup

from .memory_peaks import allocator_peak

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CFG = dict(model_type="qwen2", hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=2048)
B, S = 2, 192




def _lora_model():
    peft = pytest.importorskip("peft")
    config = transformers.AutoConfig.for_model(**CFG)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()   # PEFT's autocast_adapter_dtype: fp32 adapters on a bf16 base
    model.train()
    return model


def test_trainer_step_needs_what_the_calculator_says_less_than_a_plain_loop():
    pytest.importorskip("accelerate")
    ids = torch.randint(0, CFG["vocab_size"], (B, S))
    plain_model = _lora_model()

    def plain():
        out = plain_model(input_ids=ids, labels=ids)   # the output (and its bf16 logits) stays referenced
        out.loss.backward()

    plain()
    plain_model.zero_grad(set_to_none=True)
    plain_peak = allocator_peak(plain)

    model = _lora_model()
    with tempfile.TemporaryDirectory() as out_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = transformers.TrainingArguments(output_dir=out_dir, bf16=True, use_cpu=True, per_device_train_batch_size=B,
                                              report_to=[], save_strategy="no", logging_strategy="no")
        trainer = transformers.Trainer(model=model, args=args)
        prepared = trainer.accelerator.prepare_model(model)   # what Trainer.train does: autocast around forward
        trainer.current_gradient_accumulation_steps = 1
        trainer.training_step(prepared, {"input_ids": ids, "labels": ids})
        prepared.zero_grad(set_to_none=True)
        trainer_peak = allocator_peak(lambda: trainer.training_step(prepared, {"input_ids": ids, "labels": ids}))

    arch = load_model_arch(CFG)

    def peak(**kw) -> int:
        return estimate_memory(TrainingSetup(model=arch, method="lora", lora_rank=8, micro_batch=B, seq_len=S, **kw),
                               margin=1.0).peak_bytes

    measured = plain_peak - trainer_peak
    predicted = peak(framework="other") - peak(framework="hf_trainer")
    assert measured > 0
    assert predicted == pytest.approx(measured, rel=0.05)


def test_an_unstated_framework_is_sized_as_the_larger_plain_loop():
    """TrainingSetup's default framework is an assumption: the estimate takes the larger loop, and says so."""
    arch = load_model_arch(CFG)
    base = dict(model=arch, method="lora", micro_batch=4, seq_len=1024)
    unstated = estimate_memory(TrainingSetup(**base))
    assert unstated.peak_bytes == estimate_memory(TrainingSetup(framework="other", **base)).peak_bytes
    assert unstated.peak_bytes > estimate_memory(TrainingSetup(framework="hf_trainer", **base)).peak_bytes
    assert any("framework not stated" in n for n in unstated.notes)
    stated = TrainingSetup(**base).with_fact("framework", "llamafactory", "config", "train.yaml: file format")
    assert stated.stated("framework")
    assert not TrainingSetup(**base).with_fact("framework", "hf_trainer", "default", "assumed").stated("framework")
