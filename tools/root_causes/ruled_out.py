"""What the run's stated settings rule out: a cause whose fix the settings have already applied cannot be why the run
ran out. Each cause in ../shared/root-causes.md is named by its fix ("reduce the micro-batch"), so a run already at
the end of that fix speaks against it, whatever else (similar reports, the words "batch size") speaks for it."""

from __future__ import annotations

from ..labels import Label
from ..report import OOMReport
from ..training_setup import ADAPTER_METHODS, TrainingSetup
from .facts import observed, read_from_run, stated_micro_batch
from .signals import Signal, discount
from .weights import THRESHOLDS, Thresholds

# phases whose batch is not the training micro-batch: evaluation runs per_device_eval_batch_size (8 by default in the
# HF Trainer), generation its own number of sequences
_OTHER_BATCH_PHASES = ("evaluation", "generation")


def ruled_out_by_settings(report: OOMReport, setup: TrainingSetup | None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """Discounts for the causes the stated settings have already fixed."""
    out: list[Signal] = []
    if setup is not None and observed(setup, "seq_len") and setup.seq_len < th["long_cutoff_tokens"] \
            and report.phase != "generation":
        where = setup.provenance["seq_len"]
        out.append(discount(Label.seq_len_too_long, "short_length_stated",
                            f"the sequence length is already short, {setup.seq_len} tokens ({where.detail or where.origin}): "
                            "activations grow with the tokens per sample, and these are few; what fills the card is "
                            "more likely the model's states or the batch"))
    if setup is not None and read_from_run(setup, "method") and setup.method in ADAPTER_METHODS and setup.workload == "train":
        method = setup.provenance["method"]
        out.append(discount(Label.full_ft_model_states, "adapters_trained",
                            f"the run trains adapters ({setup.method}: {method.detail or method.origin}): the base weights "
                            "are frozen, so no gradients or optimizer states of every parameter are kept; what fills the "
                            "card is the frozen weights or the step's activations"))
    if stated_micro_batch(setup) == 1 and report.phase not in _OTHER_BATCH_PHASES:
        where = setup.provenance["micro_batch"]
        out.append(discount(Label.batch_too_large, "batch_of_one",
                            f"the micro-batch is already 1 ({where.detail or where.origin}): it cannot be reduced, so a "
                            "smaller batch is no fix here; what a step holds grows with the tokens per sample instead"))
    return out
