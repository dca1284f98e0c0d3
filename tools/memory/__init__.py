"""Memory calculator: exact parameter counts, a per-GPU peak breakdown of one training or eval step,
and DeepSpeed's own model-state estimators. Pure Python (no torch), so it runs anywhere in milliseconds."""

from .arch_loader import load_model_arch
from .params import ParamCount, count_params
from .deepspeed_estimator import DeepSpeedEstimate, deepspeed_estimate
from .estimator import estimate_memory
from .registry import resolve_model

__all__ = ["load_model_arch", "resolve_model", "count_params", "ParamCount", "estimate_memory", "deepspeed_estimate", "DeepSpeedEstimate"]
