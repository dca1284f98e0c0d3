"""What the user's own comparison rules out: "the same run worked with other 7B models" means the model states of a
model this size fit, so what differs is this model's own traits (its vocabulary) and the step's activations."""

from __future__ import annotations

from ..log_cues import LogCues
from ..training_setup import TrainingSetup
from .scores import Scores

# A vocabulary this much larger than the 32k of Llama-2 / Mistral-era models makes its logits the difference.
TYPICAL_VOCAB, LARGE_VOCAB = 32_000, 100_000
# Sizing causes the comparison speaks against keep this share of their points.
SIZE_CAUSES_KEEP = 0.35


def comparable_model_worked(setup: TrainingSetup | None, cues: LogCues | None, s: Scores) -> None:
    """The same run fit with a comparable model: the size causes weigh less, the per-step ones more."""
    said = cues.comparable_worked if cues is not None else None
    if said is None:
        return
    where = f"line {said.line}: {said.text[:90]}"
    for label in ("full_ft_model_states", "weights_exceed_gpu", "zero_stage_insufficient"):
        s.discount(label, SIZE_CAUSES_KEEP, f"but the same run worked with other models of this kind ({where}): the "
                                            "model states of a model this size fit")
    vocab = setup.model.vocab_size if setup is not None and setup.model is not None else None
    if vocab and vocab >= LARGE_VOCAB:
        s.add("logits_large_vocab", 2.0, f"its vocabulary of {vocab:,} tokens is {vocab / TYPICAL_VOCAB:.1f}x the 32,000 of "
                                         f"Llama-2-era models: the logits per token are that much larger ({where})")
    s.add("batch_too_large", 1.5, f"between models of one size the per-step activations differ, and the micro-batch "
                                  f"scales them ({where})")
    s.add("seq_len_too_long", 0.8, f"the tokens per sample scale the per-step activations too ({where})")
