"""Config readers/rewriter and the fix planner: read the configs people use (LLaMA-Factory YAML, HF
TrainingArguments JSON, shell launch scripts, DeepSpeed JSON, accelerate YAML), map them onto a
TrainingSetup, plan the least invasive changes that fit, and write them back in place."""

from .documents import load_config
from .mapping import apply_config_to_setup
from .planner import plan_fixes
from .rewrite import apply_changes, unified_diff
from .schema import ConfigChange, ConfigDocument, Constraints, FixPlan

__all__ = [
    "ConfigChange", "ConfigDocument", "Constraints", "FixPlan",
    "apply_changes", "apply_config_to_setup", "load_config", "plan_fixes", "unified_diff",
]
