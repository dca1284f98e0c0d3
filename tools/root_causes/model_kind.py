"""What kind of model it is when the calculator cannot size it: mixture of experts, vision-language, quantized
weights. The kind says which tensors usually dominate."""

from __future__ import annotations

import re

from ..labels import Label
from ..log_cues import LogCues
from ..report import OOMReport
from ..training_setup import TrainingSetup
from .facts import moe_reason, multimodal_reason
from .related_errors import RELATED
from .signals import Signal, support
from .weights import QUOTE_LONG, THRESHOLDS, Thresholds

_METHOD_WORDS = re.compile(r"q-?lora|4[- ]?bit|load_in_4bit|quantization_bit|double[_ ]quant", re.IGNORECASE)
_QUANT_TROUBLE = re.compile(r"bitsandbytes/|dequant|Int8Params|Params4bit|8[- ]?bit|int8|gptq|awq|quant_state", re.IGNORECASE)


def moe_by_name(report: OOMReport, setup: TrainingSetup | None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """An MoE model the calculator cannot size: all experts are resident (oom-signals.md, "Defaults that bite")."""
    if setup is not None and setup.model is not None:
        return []  # sized: the estimate's breakdown and the expert-weight candidates weigh it
    why = moe_reason(report, setup)
    if why is None:
        return []
    req, total, free = report.requested_bytes, report.gpu_total_bytes, report.gpu_free_bytes
    full = bool(req and total and free is not None and free <= th["full_gpu_free_share"] * total)
    if report.phase in ("model_loading", "lora_merge", "checkpoint_save") or full:
        return [support(Label.moe_memory, "moe_by_name_resident",
                        f"{why}: every expert's weights are resident although few are active per token")]
    if report.phase in ("forward", "backward", "generation", "unknown"):
        return [support(Label.moe_memory, "moe_by_name_dispatch",
                        f"{why}: expert dispatch buffers and all experts' weights share the GPU")]
    return []


def quantization(report: OOMReport, cues: LogCues | None) -> list[Signal]:
    """4/8-bit weights in play: bitsandbytes frames or quantization flags near the failure."""
    if cues is None or cues.quantization is None or any(RELATED.get(e.kind, ("",))[0] == Label.quantization_setup
                                                        for e in report.related_errors):
        return []  # a quantization error the parser named was already weighed; the same fact counts once
    cue = cues.quantization
    # "QLoRA" / "4-bit" named as the method is the plan, not a sign that the quantization went wrong: weigh it less
    # than a quantization library in the failing frames or an 8-bit/4-bit mismatch
    just_method = bool(_METHOD_WORDS.search(cue.text)) and not _QUANT_TROUBLE.search(cue.text)
    if just_method:
        reason = (f"the method is quantized (line {cue.line}: {cue.text[:QUOTE_LONG]}): if the quantization is not "
                  "applied, or copies are de-quantized, the run holds more than it planned for")
    else:
        reason = (f"quantized weights are in play (line {cue.line}: {cue.text[:QUOTE_LONG]}): a quantization that is "
                  "not applied, or de-quantized copies, changes the memory the run planned for")
    out = [support(Label.quantization_setup, "quantization_method_named" if just_method else "quantization_in_play",
                   reason)]
    if report.requested_bytes is None and report.gpu_total_bytes is None and report.phase in ("unknown", "forward", "backward"):
        # A report without any number whose one concrete detail is how the weights are quantized.
        out.append(support(Label.quantization_setup,
                           "quantization_method_only_detail" if just_method else "quantization_only_detail",
                           "the report gives no memory numbers; the quantization it describes is the one concrete detail "
                           "of the setup"))
    return out


def without_numbers(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None) -> list[Signal]:
    """A report with no memory numbers: what kind of model it is says which tensors usually dominate."""
    if report.requested_bytes is not None or report.gpu_total_bytes is not None or report.kind == "host_oom":
        return []
    if report.phase not in ("unknown", "forward", "backward"):
        return []  # a named phase already says where the memory went
    out: list[Signal] = []
    mm = multimodal_reason(report, setup, cues)
    if mm:
        # Images and video frames become thousands of tokens each (oom-signals.md, vision-tower attention).
        out.append(support(Label.vision_tokens, "vision_model_without_numbers",
                           f"{mm}: without numbers, the visual tokens per sample are the usual driver"))
    moe = moe_reason(report, setup)
    if moe:
        out.append(support(Label.moe_memory, "moe_model_without_numbers",
                           f"{moe}: all experts' weights are resident on every GPU that holds a layer"))
    return out
