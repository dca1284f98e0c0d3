"""What the user's own comparison rules out: "the same run worked with other 7B models" means the model states of a
model this size fit, so what differs is this model's own traits (its vocabulary) and the step's activations. And what
they say fixed it: the setting a working fix changed names the cause."""

from __future__ import annotations

from ..labels import Label
from ..log_cues import LogCues
from ..training_setup import TrainingSetup
from .signals import Signal, discount, support
from .weights import QUOTE_SAID, THRESHOLDS, TYPICAL_VOCAB, Thresholds

# Sizing causes the comparison speaks against (each keeps the weights table's `comparable_model_worked` share).
SIZE_CAUSES = (Label.full_ft_model_states, Label.weights_exceed_gpu, Label.zero_stage_insufficient)


def comparable_model_worked(setup: TrainingSetup | None, cues: LogCues | None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """The same run fit with a comparable model: the size causes weigh less, the per-step ones more."""
    said = cues.comparable_worked if cues is not None else None
    if said is None:
        return []
    where = f"line {said.line}: {said.text[:QUOTE_SAID]}"
    out = [discount(label, "comparable_model_worked", f"but the same run worked with other models of this kind ({where}): "
                                                      "the model states of a model this size fit")
           for label in SIZE_CAUSES]
    vocab = setup.model.vocab_size if setup is not None and setup.model is not None else None
    # A vocabulary this much larger than the 32k of Llama-2 / Mistral-era models makes its logits the difference.
    if vocab and vocab >= th["comparison_large_vocab"]:
        out.append(support(Label.logits_large_vocab, "comparison_large_vocab",
                           f"its vocabulary of {vocab:,} tokens is {vocab / TYPICAL_VOCAB:.1f}x the {TYPICAL_VOCAB:,} of "
                           f"Llama-2-era models: the logits per token are that much larger ({where})"))
    out.append(support(Label.batch_too_large, "comparison_batch",
                       f"between models of one size the per-step activations differ, and the micro-batch "
                       f"scales them ({where})"))
    out.append(support(Label.seq_len_too_long, "comparison_tokens",
                       f"the tokens per sample scale the per-step activations too ({where})"))
    return out


def adapters_worked(cues: LogCues | None) -> list[Signal]:
    """The user ran the same job with adapters and it fit, and full fine-tuning did not: what the methods differ in is
    the trained parameters' gradients and optimizer states (16 B per parameter with Adam and fp32 masters)."""
    said = cues.method_contrast if cues is not None else None
    if said is None:
        return []
    return [support(Label.full_ft_model_states, "adapters_worked",
                    f"LoRA fit where full fine-tuning ran out (line {said.line}: {said.text[:QUOTE_SAID]}): the gradients "
                    "and optimizer states of every parameter are the difference")]


def fix_said(cues: LogCues | None) -> list[Signal]:
    """The words say a change made the error go away ("I resolved this by reducing num_beams", "改成 zero3 后问题解决了"):
    the cause is what that change fixes. Several fixes share the evidence."""
    fixes = cues.fixes if cues is not None else []
    return [support(f.label, "fix_said", f"the words say changing {f.knob} fixed it (line {f.line}: {f.text[:QUOTE_SAID]})",
                    value=1.0 / len(fixes)) for f in fixes]


def trigger_said(cues: LogCues | None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """The words give a size knob as the error's condition ("OOM at seq_len=21000", "when I use a batch size of 96"), or
    say the inputs are long: the cause is what that knob sizes. A number said with it that is already small (a length
    under long_cutoff_tokens, a batch of 1) is no trigger: the knob is at its floor (ruled_out.short_length_stated)."""
    said = [t for t in (cues.triggers if cues is not None else [])
            if t.value is None or not ((t.label is Label.seq_len_too_long and t.value < th["long_cutoff_tokens"])
                                       or (t.label is Label.batch_too_large and t.value <= 1))]
    return [support(t.label, "trigger_said", f"the words say the error comes with {t.knob}"
                                             f"{f' at {t.value:,}' if t.value is not None else ''} "
                                             f"(line {t.line}: {t.text[:QUOTE_SAID]})", value=1.0 / len(said))
            for t in said]
