"""The Diagnosis: the agent's one output object, which the renderers turn into Markdown, JSON and Slack."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..tools.configs.schema import ConfigChange
from ..tools.dataset import DatasetProfile, DatasetVerdict
from ..tools.snapshot import RankTable, Reconciliation, SnapshotSummary
from ..tools.labels import RootCause
from ..tools.root_causes.signals import Signal
from ..tools.memory.schema import MemoryEstimate
from ..tools.report import OOMReport
from ..tools.training_setup import TrainingSetup


class SimilarCase(BaseModel):
    id: str
    title: str
    source: str
    score: float
    primary_cause: str
    why_similar: list[str] = Field(default_factory=list, description="shared facts: same model family, same key=value, same phase")
    fix_summary: str = ""


class SimilarReport(BaseModel):
    """A labelled public report worded like the paste (kb/reports.py): its thread and the cause it settled."""

    id: str
    source: str
    cause: str
    similarity: float = Field(description="cosine similarity of their words, 0 to 1")


class Question(BaseModel):
    """Something the agent needs from the user instead of guessing."""

    slot: Literal["config", "gpu", "model", "num_gpus", "decide", "other"] = Field(
        description="what the answer fills; 'decide' is the fact that separates close causes")
    text: str


class ConfigInfo(BaseModel):
    """The user's main config as the pipeline read it."""

    name: str
    format: str
    framework: str | None = None
    deepspeed_name: str | None = Field(default=None, description="the DeepSpeed file the config names")


class Diagnosis(BaseModel):
    """What ran out of memory and why, the similar documented cases, and the fixed config."""

    status: Literal["diagnosed", "no_memory_error", "needs_input"] = "diagnosed"
    summary: str = ""
    config: ConfigInfo | None = Field(default=None, description="the main config read, when one was given")
    sized: Literal["train", "eval", "predict", "generate", "serve"] | None = Field(
        default=None, description="the step the calculator sized (a training step, the config's inference workload, or "
                                  "a vLLM server)")
    report: OOMReport
    setup: TrainingSetup
    estimate: MemoryEstimate | None = None
    root_causes: list[RootCause] = Field(default_factory=list)
    similar_cases: list[SimilarCase] = Field(default_factory=list)
    similar_reports: list[SimilarReport] = Field(default_factory=list, description="the labelled public reports most "
                                                 "like the paste, whose causes vote (labelled_report_votes)")
    fixes: list[ConfigChange] = Field(default_factory=list)
    fixed_config: str | None = None
    fixed_config_format: str | None = None
    fixed_deepspeed: str | None = None
    diff: str = ""
    estimate_after: MemoryEstimate | None = None
    fits_after: bool | None = None
    assumptions: list[str] = Field(default_factory=list)
    questions: list[Question] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    probe: dict | None = Field(default=None, description="live CUDA probe result, when one ran")
    reconciliation: Reconciliation | None = Field(
        default=None, description="memory snapshots (one per rank) against the calculator, component by component")
    ranks: RankTable | None = Field(default=None, description="per-rank OOM numbers when several ranks printed one")
    dataset: "DatasetReport | None" = Field(default=None, description="the dataset's worst case (--dataset)")
    signals: list[Signal] = Field(default_factory=list,
                                  description="every piece of evidence the ranking weighed: rule (its key in the weights "
                                              "table), label, value, reason, support or discount")

    @property
    def primary_cause(self) -> str | None:
        return self.root_causes[0].label if self.root_causes else None

    @property
    def fixed_deepspeed_name(self) -> str | None:
        """The file name the fixed DeepSpeed config is shown and written under: the file the fix points the config at,
        else the one the config names (None without a fixed DeepSpeed config)."""
        if not self.fixed_deepspeed:
            return None
        switched = next((c.to_value for c in self.fixes if c.key == "deepspeed" and isinstance(c.to_value, str)), None)
        name = switched or (self.config.deepspeed_name if self.config else None) or "ds_config.json"
        return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


class DatasetReport(BaseModel):
    """The dataset's token distribution and its worst batch against the budget (tools/dataset)."""

    profile: DatasetProfile
    verdict: DatasetVerdict | None = Field(default=None, description="None without a model to size the batch with")


class DatasetSource(BaseModel):
    """A dataset to profile (--dataset): a file or a LLaMA-Factory data directory, the entries to read, a tokenizer."""

    path: str
    names: list[str] = Field(default_factory=list, description="dataset_info.json entries (default: the config's `dataset`)")
    tokenizer_dir: str | None = Field(default=None, description="a local model directory with tokenizer.json (default: "
                                                                "the config's model path, when it is one)")
    steps: int | None = Field(default=None, description="the run's length in steps, for the chance of meeting a worst sample")


class StatedFact(BaseModel):
    """One setting the user stated outside their files (a CLI flag, a what-if): it wins over the log and the config."""

    field: str = Field(description="a TrainingSetup field, e.g. micro_batch, zero_stage, host_ram_bytes")
    value: Any
    said: str = Field(default="", description="how the user said it, e.g. '--micro-batch 4'")


class DiagnoseRequest(BaseModel):
    """Everything one run of the pipeline reads: the log, the configs, the user's words and statements about the
    hardware and the setup, the constraints on a fix, and which stages to compute. Every entry point builds one."""

    log_text: str = ""
    log_truncated: bool = False
    config_text: str | None = None
    config_name: str | None = Field(default=None, description="file name, used to detect the format (train.yaml, ds.json, run.sh)")
    extra_configs: dict[str, str] = Field(default_factory=dict, description="other files by name, e.g. a referenced ds_z3.json")
    model_config_json: str | None = Field(default=None, description="the model's config.json text, when given")
    model_name: str | None = Field(default=None, description="a model the user named (--model): resolved like any other name")
    gpu: str | None = None
    gpu_memory_gib: float | None = None
    num_gpus: int | None = None
    host_ram_gib: float | None = Field(default=None, description="host RAM per node the user stated (checks CPU offload)")
    facts: list[StatedFact] = Field(default_factory=list, description="settings the user stated, applied last")
    keep: list[str] = Field(default_factory=list, description="constraints: 'full' (method), 'seq' (cutoff_len), 'batch', 'no-deepspeed'")
    margin: float | None = Field(default=None, description="usable fraction of GPU memory (default: the settings' gpu_margin)")
    mode: Literal["auto", "train", "eval"] = Field(default="auto", description="the step to size; auto reads it from the log")
    retrieve: bool = Field(default=True, description="look up similar documented cases (their labels count as weak evidence)")
    plan: bool = Field(default=True, description="plan fixes and rewrite the config")
    snapshots: list[SnapshotSummary] = Field(default_factory=list,
                                             description="memory snapshots the door read (tools.snapshot), one per rank")
    dataset: DatasetSource | None = Field(default=None, description="a dataset whose worst batch to size")


Diagnosis.model_rebuild()
