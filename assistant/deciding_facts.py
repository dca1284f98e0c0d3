"""When the leading causes are close, the one fact that separates them, asked for instead of a confident guess.

Each cause is tested by some facts of the run: a micro-batch too large by the micro-batch, an evaluation step by the
evaluation batch, model states by the method and the ZeRO stage. A fact the setup only assumed (provenance
"default") or never had is what the user can settle in one answer. The table is data: one row per label.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tools.labels import Label, RootCause
from ..tools.training_setup import TrainingSetup

CONFIDENT = 0.8   # an answer at this probability or above is stated; below it, the leading causes and a question
CONTENDER_SHARE = 0.25   # a cause at a quarter of the leader's probability or less is not what the question settles
MAX_SHOWN_PROBABILITY = 0.99   # evidence is never a certainty: 0.998 is shown as 99%, not 100%


def shown_probability(p: float) -> str:
    """A probability as the answer prints it (capped below certainty)."""
    return f"{min(p, MAX_SHOWN_PROBABILITY):.0%}"


@dataclass(frozen=True)
class DecidingFact:
    """The setup fields that test a cause, and the question that asks for them."""

    fields: tuple[str, ...]
    question: str


DECIDING_FACTS: dict[Label, DecidingFact] = {
    Label.batch_too_large: DecidingFact(("micro_batch", "seq_len"),
                                        "What are `per_device_train_batch_size` and the sequence length (`cutoff_len` / "
                                        "`max_seq_length`)?"),
    Label.seq_len_too_long: DecidingFact(("seq_len", "micro_batch"),
                                         "How long are the samples: the sequence length (`cutoff_len` / `max_seq_length`) "
                                         "and is packing on?"),
    Label.no_gradient_checkpointing: DecidingFact(("gradient_checkpointing",), "Is gradient checkpointing on?"),
    Label.eager_attention: DecidingFact(("attn_implementation",),
                                        "Which attention runs: eager, sdpa or flash_attention_2 (`attn_implementation`)?"),
    Label.logits_large_vocab: DecidingFact(("model", "micro_batch", "seq_len"),
                                           "Which model is it (its vocabulary size decides the logits), and at what "
                                           "micro-batch and sequence length?"),
    Label.weights_exceed_gpu: DecidingFact(("model", "quantization_bit", "precision"),
                                           "Which model, in which dtype or quantization (bf16, 8-bit, 4-bit)?"),
    Label.full_ft_model_states: DecidingFact(("method", "zero_stage", "num_gpus"),
                                             "Is it full fine-tuning or LoRA, and with which ZeRO stage on how many GPUs?"),
    Label.zero_stage_insufficient: DecidingFact(("zero_stage", "num_gpus", "method"),
                                                "Which ZeRO stage (or FSDP) does the run use, over how many GPUs?"),
    Label.offload_host_ram: DecidingFact(("host_ram_bytes",),
                                         "How much host RAM does the machine have, and was the process killed (no "
                                         "Python error)?"),
    Label.fragmentation: DecidingFact((), "How much memory does the error say is 'reserved by PyTorch but unallocated'? "
                                          "Paste the whole 'CUDA out of memory' line."),
    Label.memory_growth: DecidingFact((), "Does the memory grow step after step, and after how many steps does it fail?"),
    Label.vision_tokens: DecidingFact(("image_max_pixels", "images_per_sample", "video_frames"),
                                      "How large are the images (or how many video frames) per sample, and what is the "
                                      "image cap (`image_max_pixels` / `max_pixels`)?"),
    Label.moe_memory: DecidingFact(("model",), "Which mixture-of-experts model is it, and does it fail while gathering "
                                               "the experts (ZeRO-3) or in the forward step?"),
    Label.eval_accumulation: DecidingFact(("eval_batch",),
                                          "Does it fail during evaluation, and what are `per_device_eval_batch_size` and "
                                          "`eval_accumulation_steps`?"),
    Label.model_load_oom: DecidingFact((), "Does it fail while loading, merging or saving the model, before the first "
                                           "training step?"),
    Label.other_process: DecidingFact((), "What does `nvidia-smi` show on that GPU before the run starts?"),
    Label.quantization_setup: DecidingFact(("quantization_bit",),
                                           "How is the model quantized: `load_in_4bit` / `quantization_config`, and "
                                           "which bitsandbytes version?"),
    Label.dtype_unsupported: DecidingFact(("precision",), "Which GPU and dtype (bf16 / fp16) does the run use?"),
    Label.generation_kv_cache: DecidingFact(("seq_len",),
                                            "How long are the prompts and outputs (`max_new_tokens`, `max_model_len`), and "
                                            "what is `gpu_memory_utilization`?"),
    Label.multi_gpu_imbalance: DecidingFact(("num_gpus",), "Is the memory the same on every GPU, or is one fuller "
                                                           "(`device_map`, rank 0)?"),
    Label.not_oom: DecidingFact((), "Paste the error as printed: is there an 'out of memory' line in the full log?"),
}


def is_confident(causes: list[RootCause]) -> bool:
    """The primary cause is stated only when its probability reaches CONFIDENT."""
    return bool(causes) and (causes[0].probability is None or causes[0].probability >= CONFIDENT)


def deciding_question(causes: list[RootCause], setup: TrainingSetup, limit: int = 3) -> str | None:
    """The question about the fact that separates the leading causes: the first of them whose testing fact the setup
    only assumed or lacks; else the leading cause's own question. A cause far behind the leader (under
    CONTENDER_SHARE of its probability) is not in contention: its fact would not change the answer."""
    top = causes[0].probability if causes and causes[0].probability is not None else None
    leading = [c for c in causes[:limit] if _label(c) in DECIDING_FACTS
               and (top is None or c.probability is None or c.probability >= CONTENDER_SHARE * top)]
    for c in leading:
        fact = DECIDING_FACTS[_label(c)]
        if any(_unknown(setup, f) for f in fact.fields):
            return fact.question
    return DECIDING_FACTS[_label(leading[0])].question if leading else None


def _label(cause: RootCause) -> Label:
    return Label(cause.label)


def _unknown(setup: TrainingSetup, field: str) -> bool:
    """A fact nobody stated: missing, or only the framework's default."""
    if field == "model":
        return setup.model is None or (p := setup.provenance.get("model")) is not None and p.origin == "derived"
    prov = setup.provenance.get(field)
    return getattr(setup, field, None) is None or prov is None or prov.origin == "default"
