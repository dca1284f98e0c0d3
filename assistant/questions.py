"""What the agent asks instead of guessing (the config, the model, the GPU, the GPU count) and the assumptions it
made, each a fact of the setup that stayed at its default."""

from __future__ import annotations

from ..tools.configs.schema import ConfigDocument
from ..tools.report import TORCH_ALLOCATOR_KINDS, OOMReport
from ..tools.root_causes.facts import launched_distributed
from ..tools.training_setup import TrainingSetup
from .diagnosis import Question
from ..tools.labels import RootCause
from .deciding_facts import deciding_question, is_confident


def questions(report: OOMReport, setup: TrainingSetup, doc: ConfigDocument | None,
              causes: list[RootCause] | None = None) -> list[Question]:
    """The facts a memory error's diagnosis lacks, as questions for the user (none when nothing ran out). When the
    leading causes are close, the fact that separates them comes first."""
    if not report.is_memory_error:
        return []
    qs: list[Question] = []
    if causes and not is_confident(causes) and (decide := deciding_question(causes, setup)) is not None:
        qs.append(Question(slot="decide", text=decide))
    if doc is None or not doc.readable:
        qs.append(Question(slot="config", text="Paste your training config (LLaMA-Factory YAML, TrainingArguments JSON or "
                                                "the launch script, plus its DeepSpeed JSON) so I can return it fixed."))
    if setup.model is None:
        named = f" '{setup.model_name}' is not in my registry:" if setup.model_name else ""
        qs.append(Question(slot="model", text=f"Which model do you train?{named} give its Hugging Face name or paste its config.json "
                                              "(--model-config) so I can size weights, activations and logits."))
    elif (p := setup.provenance.get("model")) is not None and p.origin == "derived":
        qs.append(Question(slot="model", text=f"I sized {setup.model.name or 'a stand-in'} in place of {setup.model_name} "
                                              "(not in my registry): paste its config.json (--model-config) to size the real one."))
    if report.kind in TORCH_ALLOCATOR_KINDS and report.requested_bytes is None and report.gpu_total_bytes is None:
        qs.append(Question(slot="other", text="Paste the whole error: PyTorch's 'Tried to allocate … GiB … total capacity …' "
                                              "line and the traceback above it. Its numbers say which tensor ran out."))
    if setup.gpu is None:
        qs.append(Question(slot="gpu", text="Which GPU is it (e.g. --gpu A100-40GB, or --gpu-memory 24)? The log does not say."))
    prov = setup.provenance.get("num_gpus")
    distributed = launched_distributed(report) or setup.zero_stage > 0
    if distributed and (prov is None or prov.origin == "default"):
        qs.append(Question(slot="num_gpus", text="How many GPUs does the run use (--gpus N)? ZeRO sharding divides memory by it."))
    return qs


def assumptions(setup: TrainingSetup) -> list[str]:
    """Every fact of the setup that nobody stated, with the default it was given."""
    out = []
    for field, p in setup.provenance.items():
        if p.origin != "default":
            continue
        value = getattr(setup, field, None)
        shown = value.name if hasattr(value, "name") and not isinstance(value, (str, bool, int)) else value
        out.append(f"{field} = {shown} ({p.detail or 'default'})")
    return out
