"""Memory calculator: exact parameter counts, a per-GPU peak breakdown of one training or eval step,
and DeepSpeed's own model-state estimators. Pure Python (no torch), so it runs anywhere in milliseconds.

Modules: arch_loader (config.json → ModelArch), registry (+ registry.json: popular models by name),
params (exact counts, LoRA adapter sizes), activations (saved tensors per layer, loss, vision),
estimator (the step's moments and their peak), deepspeed_estimator (DeepSpeed's formulas, exactly),
calibration (a ../shared/calibration row → the TrainingSetup it measured), band (the error band from the calibration
residuals, and the fits / borderline / does_not_fit verdict).
"""

from .arch_loader import load_model_arch
from .params import ParamCount, count_params
from .deepspeed_estimator import DeepSpeedEstimate, deepspeed_estimate
from .estimator import estimate_memory
from .registry import resolve_model

__all__ = ["load_model_arch", "resolve_model", "count_params", "ParamCount", "estimate_memory", "deepspeed_estimate", "DeepSpeedEstimate"]
