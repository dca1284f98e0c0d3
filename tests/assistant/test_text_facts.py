"""Facts the user's sentences state beside the log (GPUs, count, sequence length, micro-batch, method) fill what the
log, the config and the flags left at a default, and never override what they said."""

from __future__ import annotations

from ask_oom.assistant.text_facts import text_facts
from ask_oom.tools.described_oom import model_named
from ask_oom.tools.gpus import lookup_gpu
from ask_oom.tools.training_setup import TrainingSetup

TEXT = ("Hi, I'm trying to use qlora+fsdp for the llama3.1 70B model with 8x A100 80GB. In my case, the context length "
        "is large (32k), bs=1.\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
        '  File "train.py", line 10, in <module>\n')


def test_sentences_fill_what_nobody_stated():
    s = text_facts(TrainingSetup(), TEXT)
    assert s.gpu is not None and s.gpu.name == "A100-80GB" and s.num_gpus == 8
    assert (s.seq_len, s.micro_batch, s.method, s.quantization_bit) == (32768, 1, "qlora", 4)
    assert all(s.provenance[f].origin == "user" and s.provenance[f].detail.startswith("the text:")
               for f in ("gpu", "num_gpus", "seq_len", "micro_batch", "method"))
    assert model_named(TEXT) == "llama3.1-70B"


def test_stated_facts_win_over_the_text():
    stated = (TrainingSetup().with_fact("gpu", lookup_gpu("4090"), "user", "--gpu 4090")
              .with_fact("seq_len", 2048, "config", "train.yaml: cutoff_len")
              .with_fact("method", "full", "config", "train.yaml: finetuning_type"))
    s = text_facts(stated, TEXT)
    assert s.gpu.name == "RTX-4090-24GB" and s.seq_len == 2048 and s.method == "full"


def test_log_lines_and_numbers_elsewhere_are_not_read_as_statements():
    s = text_facts(TrainingSetup(), "[rank0]: batch size 64 dataloader\nINFO step 10 loss 1.2 lr 2e-5\n")
    assert "micro_batch" not in s.provenance and s.gpu is None


def test_cards_counted_with_their_size_but_no_model_are_cards_of_that_size():
    """"4张24G的卡" / "two 24GB GPUs": a card of that size at the share torch reports; a size said alone may be the
    memory in use ("显存占用24G"), so it sizes no card."""
    for said in ("我用的是4张24G的卡，lora微调还是爆显存\n", "I train on two 24GB GPUs and it runs out of memory\n"):
        s = text_facts(TrainingSetup(), said)
        assert s.gpu is not None and s.gpu.memory_bytes == lookup_gpu("24GB GPU").memory_bytes, said
        assert s.num_gpus in (2, 4) and s.provenance["gpu"].origin == "user"
    assert text_facts(TrainingSetup(), "训练时显存占用24G，然后就爆显存了\n").gpu is None


def test_host_ram_said_in_words():
    s = text_facts(TrainingSetup(), "这是资源图，512GB内存，显存一直没问题，稳定在50GB左右，内存会一直增长\n")
    assert s.host_ram_bytes == 512 * 2**30 and s.provenance["host_ram_bytes"].origin == "user"
    assert text_facts(TrainingSetup(), "a node with 1.4TB host memory\n").host_ram_bytes == int(1.4 * 1024 * 2**30)
    assert text_facts(TrainingSetup(), "the 80GB GPU memory is full\n").host_ram_bytes is None


def test_a_context_length_said_in_chinese():
    for words, tokens in (("我正在用500k的上下文长度微调，仍然出现了OOM", 512000), ("上下文长度为32k时显存不足", 32768),
                          ("序列长度设置为4096", 4096)):
        s = text_facts(TrainingSetup(), words)
        assert s.seq_len == tokens and s.provenance["seq_len"].origin == "user", words


def test_the_method_in_words_an_adapter_denied_is_full_fine_tuning():
    said = {"I fine-tune Qwen2-7B with LoRA on one 4090 and it runs out of memory.": "lora",
            "I wanted to fine-tune llama-7b without any PEFT and quantization, and it runs out of memory.": None,
            "Full-parameter fine-tuning of Qwen2-7B on one A100 runs out of memory here.": "full",
            "我不用lora，全参微调 Qwen2-7B，显存不够了，请问怎么办？": "full",
            # the user's own contrast: adapters worked, the full fine-tune is the run that failed
            "sft_type为lora的时候是正常的，改成full后报错 OOM": "full",
            "LoRA works fine but full fine-tuning OOMs on the same two cards": "full"}
    for text, method in said.items():
        s = text_facts(TrainingSetup(), text)
        assert (s.method if "method" in s.provenance else None) == method, text


def test_gradient_checkpointing_said_to_be_off_or_broken():
    """"Without gradient checkpointing", "activation checkpointing got broken", "没开梯度检查点": the run kept every
    layer's activations, stated by the user; checkpointing said to be on (or not to help) states nothing of the kind."""
    for said in ("Since the gradient checkpointing is NOT implemented by modeling_phi.py, finetuning it raises OOM.",
                 "With that commit activation checkpointing got broken, resulting in out-of-memory errors.",
                 "If we disable gradient_checkpointing, it leads to Out-of-Memory errors.",
                 "Gradient checkpointing is never enabled when finetune_use_unsloth is false, so it runs out of memory.",
                 "训练时没开梯度检查点，显存爆了"):
        s = text_facts(TrainingSetup(), said + "\ntorch.OutOfMemoryError: CUDA out of memory.\n")
        assert s.gradient_checkpointing is False and s.provenance["gradient_checkpointing"].origin == "user", said
    for said in ("I enabled gradient checkpointing but it did not help.",
                 "Even with gradient checkpointing on, it fails.",
                 "I use use_gradient_checkpointing_offload and deepspeed stage 3 and it still runs out of memory."):
        s = text_facts(TrainingSetup(), said + "\ntorch.OutOfMemoryError: CUDA out of memory.\n")
        assert "gradient_checkpointing" not in s.provenance, said
    on = TrainingSetup().with_fact("gradient_checkpointing", True, "config", "train.yaml: gradient_checkpointing")
    assert text_facts(on, "Without gradient checkpointing it would not fit.\n").gradient_checkpointing is True


def test_a_micro_batch_said_per_device():
    """"batch size per device = 16" and "batch size per GPU is 1" state the micro-batch, as "bs=16" does."""
    for said, batch in (("I train on 8 A100 with batch size per device = 16, it is out of memory.\n", 16),
                        ("I use gradient checkpointing and my batch size per GPU is 1 only.\n", 1)):
        s = text_facts(TrainingSetup(), said)
        assert s.micro_batch == batch and s.provenance["micro_batch"].origin == "user", said


def test_token_lengths_said_of_the_samples():
    """"32k的序列", "sequences that are over 5000 tokens long", "long prompts (~24K tokens)" state the length; an
    engine's "4096 tokens per request" does not."""
    for said, tokens in (("运行报OOM，32k的序列训不起来么？\n", 32768),
                         ("a dataset containing sequences that are over 5000 tokens long.\n", 5000),
                         ("I'm running into OOM crashes with long prompts (~24K tokens) on a Mac mini\n", 24576),
                         ("For 13k-token sequences this accumulates to ~70 GiB of activations.\n", 13312),
                         ("Training on 8192 token prompts runs out of memory on an A100.\n", 8192)):
        s = text_facts(TrainingSetup(), said)
        assert s.seq_len == tokens and s.provenance["seq_len"].origin == "user", said
    s = text_facts(TrainingSetup(), "Maximum concurrency for 4096 tokens per request: 0.00x\n")
    assert "seq_len" not in s.provenance or s.provenance["seq_len"].origin != "user"


def test_the_words_below_a_long_log_are_read():
    """A paste of thousands of training lines with the user's sentence under it: the sentence is read, as it is
    above a short log."""
    progress = "".join(f"{{'loss': {i % 7 / 3:.4f}, 'epoch': {i / 1000:.2f}}}\n" for i in range(5000))
    setup = text_facts(TrainingSetup(), progress + "My sequence length is 4096, on one A100 40GB.\n")
    assert setup.seq_len == 4096
    assert setup.gpu is not None and setup.gpu.name == "A100-40GB"
