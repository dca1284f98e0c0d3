"""The error band of an estimate: how far the calculator is known to miss, so "fits" is said only when it surely does.

The point estimate has no constant fitted to the GPU measurements: every byte comes from a mechanism. What the
measurements give is its residual: on the 38 H100 calibration rows (../shared/calibration, evals/calibration_benchmark.py)
the worst under-prediction is 1.1% and the worst over-prediction 0.2%, also when a family is left out of the fit. The
band's edges are the estimate widened by those residuals (rounded up), and further where the setup leaves what the
calibration covers: a model family never measured on a GPU, or a mechanism the GPU rows never exercised (sharding,
offload, generation...). An assumption the estimate had to make with a smaller alternative (the training loop, when
no framework was stated) puts that alternative at the lower edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..training_setup import TrainingSetup

Verdict = Literal["fits", "borderline", "does_not_fit"]

# Fitted on the 38 calibration rows (evals/calibration_benchmark.py prints the fit, all rows and leave-one-family-out):
# worst under-prediction -1.07% (Qwen2.5-VL-7B LoRA), worst over-prediction +0.21% (Mistral-7B LoRA), each rounded up
# to the next 0.5% after a 0.5% allowance (the fitting rule the benchmark applies with a family left out).
CALIBRATED_UNDER = 0.02
CALIBRATED_OVER = 0.01
# Outside the calibration: the leave-one-family-out target of issue 17 (a family the fit never saw is held to 5%); the
# CPU whole-step checks of seven more families stay within 3% (tests/tools/test_memory_families.py).
UNSEEN_FAMILY = 0.05
# A mechanism no GPU row exercised (ZeRO/FSDP sharding and its buffers, offload, freeze tuning, multi-GPU, Liger, 8-bit
# or factored optimizers, DeepSpeed's own allocations, vision towers other than Qwen2.5-VL's): each widens by this much.
UNSEEN_MECHANISM = 0.05
# Workloads sized but never measured on a GPU (generation with a KV cache, serving pools): their own allowance.
UNSEEN_WORKLOAD = 0.10

# model_type of the calibrated families (the rows' architecture dicts).
CALIBRATED_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen2_5_vl", "llama", "mistral", "gemma"})
_CALIBRATED_OPTIMIZERS = frozenset({"adamw", "adamw_fused"})


@dataclass
class Band:
    """Lower and upper edges (bytes) and why the band is as wide as it is."""

    lower: int
    upper: int
    reasons: list[str] = field(default_factory=list)


def _unseen_mechanisms(setup: TrainingSetup) -> list[str]:
    """What this setup runs that no calibration row measured on a GPU."""
    out = []
    if setup.num_gpus > 1 or setup.zero_stage > 0 or setup.fsdp:
        out.append("multi-GPU sharding (ZeRO/FSDP/DDP buffers)")
    if setup.offload_optimizer or setup.offload_param:
        out.append("CPU offload")
    if setup.method == "freeze":
        out.append("freeze tuning")
    if setup.optimizer not in _CALIBRATED_OPTIMIZERS:
        out.append(f"the {setup.optimizer} optimizer")
    if setup.liger_kernel:
        out.append("Liger kernels")
    if setup.precision in ("fp16_mixed", "fp32"):
        out.append(f"{setup.precision} precision")
    m = setup.model
    if m is not None and m.vision is not None and (setup.images_per_sample or setup.video_frames) and m.vision.kind != "qwen2_5_vl":
        out.append(f"the {m.vision.kind} vision tower")
    if setup.stage in ("ppo", "grpo"):
        # (DPO-style stages run the calibrated forward/backward on twice the sequences: no widening of their own)
        out.append(f"the {setup.stage} objective (policy, reference and generations)")
    return out


def error_band(setup: TrainingSetup, peak: int, *, lower_alternative: int | None = None,
               workload_measured: bool = True) -> Band:
    """The band around `peak` for this setup; `lower_alternative` is a smaller peak an assumption could also mean."""
    under, over = CALIBRATED_UNDER, CALIBRATED_OVER
    reasons = [f"calibrated residual: -{100 * over:.0f}% / +{100 * under:.0f}% (H100 measurements)"]
    mt = setup.model.model_type if setup.model is not None else None
    if mt not in CALIBRATED_TYPES:
        under += UNSEEN_FAMILY
        over += UNSEEN_FAMILY
        reasons.append(f"{mt or 'the model'} is not a calibrated family: +/-{100 * UNSEEN_FAMILY:.0f}%")
    unseen = _unseen_mechanisms(setup)
    if unseen:
        under += UNSEEN_MECHANISM
        over += UNSEEN_MECHANISM
        reasons.append(f"not measured on a GPU: {', '.join(unseen)}: +/-{100 * UNSEEN_MECHANISM:.0f}%")
    if not workload_measured:
        under += UNSEEN_WORKLOAD
        over += UNSEEN_WORKLOAD
        reasons.append(f"workload not measured on a GPU: +/-{100 * UNSEEN_WORKLOAD:.0f}%")
    low = peak if lower_alternative is None else min(peak, lower_alternative)
    if lower_alternative is not None and lower_alternative < peak:
        reasons.append("lower edge: the smaller alternative the estimate assumed against")
    return Band(lower=int(low * (1 - over)), upper=int(peak * (1 + under)), reasons=reasons)


def upper_factor(setup: TrainingSetup, workload_measured: bool = True) -> float:
    """1 + the band's upper widening: what a peak is multiplied by before it is held against a budget."""
    return error_band(setup, 10**9, workload_measured=workload_measured).upper / 10**9


def verdict(band: Band, budget: int) -> Verdict:
    """fits: the upper edge fits; does_not_fit: even the lower edge is over; borderline: the budget is inside the band."""
    if band.upper <= budget:
        return "fits"
    if band.lower > budget:
        return "does_not_fit"
    return "borderline"


def verdict_words(est) -> str:
    """The verdict of a MemoryEstimate in words for the renderers: fits / borderline (probe it) / does not fit."""
    if est.verdict == "borderline":
        return "borderline" + (f" (measure it: {est.probe_command})" if est.probe_command else "")
    if est.verdict is not None:
        return {"fits": "fits", "does_not_fit": "does not fit"}[est.verdict]
    return "?" if est.fits is None else "fits" if est.fits else "does not fit"


def probe_command(setup: TrainingSetup) -> str:
    """The `ask-oom probe` command that measures this setup on the GPU (the config file its facts came from)."""
    files = [p.detail.split(":")[0].strip() for p in setup.provenance.values() if p.origin == "config" and ":" in p.detail]
    config = next((f for f in files if f and " " not in f), None)
    cmd = f"ask-oom probe --config {config or 'TRAIN_CONFIG'}"
    if setup.model is not None and setup.provenance.get("model") is not None and setup.provenance["model"].origin == "user":
        cmd += " --model-config config.json"
    return cmd
