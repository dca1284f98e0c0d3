"""One documented OOM case: the structured facts retrieval and the planner use, always with a source."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ..tools.frameworks import CASE_FRAMEWORKS
from ..tools.labels import ROOT_CAUSES


class CaseModel(BaseModel):
    name: str
    size: str | None = Field(default=None, description="e.g. '7B', '16B (A3B active)'")
    modality: Literal["text", "vision-language", "moe", "vision-language-moe"] = "text"


class CaseHardware(BaseModel):
    gpu: str | None = None
    count: int | None = None
    memory_gib: float | None = None
    host_ram_gib: float | None = None


class CaseSymptom(BaseModel):
    error_kind: str = Field(description="an OOMReport.kind: cuda_oom, host_oom, related_error, ...")
    phase: str | None = None
    operation: str | None = None
    message: str | None = Field(default=None, description="the key error line, shortened")
    numbers: dict[str, float] = Field(default_factory=dict, description="e.g. requested_gib, total_gib, free_gib")


class CaseFix(BaseModel):
    """A typed change (key from → to) or an action, why it helps, and whether the source confirms it worked."""

    key: str | None = None
    from_value: Any = Field(default=None, alias="from")
    to_value: Any = Field(default=None, alias="to")
    action: str | None = None
    rationale: str
    confirmed: bool = False

    model_config = {"populate_by_name": True}


class Case(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{2,80}$")
    title: str
    source: str = Field(min_length=5, description="URL or source document name")
    language: Literal["en", "zh", "other"] = "en"
    model: CaseModel
    hardware: CaseHardware = Field(default_factory=CaseHardware)
    framework: str = Field(description=" | ".join(CASE_FRAMEWORKS))
    launcher: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    method: Literal["full", "freeze", "lora", "qlora", "inference", "other"] = "full"
    settings: dict[str, Any] = Field(default_factory=dict, description="relevant settings before the fix, framework key names")
    symptom: CaseSymptom
    root_causes: list[str] = Field(min_length=1, description="labels from root-causes.md, primary first")
    fixes: list[CaseFix] = Field(default_factory=list)
    outcome: str = ""
    related_errors: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @field_validator("root_causes")
    @classmethod
    def _known_labels(cls, labels: list[str]) -> list[str]:
        unknown = [label for label in labels if label not in ROOT_CAUSES]
        if unknown:
            raise ValueError(f"unknown root-cause label(s): {', '.join(unknown)}")
        return labels

    @property
    def primary_cause(self) -> str:
        return self.root_causes[0]

    def search_text(self) -> str:
        """The text that is embedded and BM25-indexed: facts in words, not raw YAML."""
        parts = [self.title, f"model {self.model.name} {self.model.size or ''} {self.model.modality}",
                 f"framework {self.framework} {self.launcher or ''} method {self.method}"]
        if self.hardware.gpu:
            parts.append(f"hardware {self.hardware.count or ''}x {self.hardware.gpu} {self.hardware.memory_gib or ''} GiB")
        parts.append(" ".join(f"{k}={v}" for k, v in self.settings.items()))
        s = self.symptom
        parts.append(f"error {s.error_kind} phase {s.phase or ''} operation {s.operation or ''} {s.message or ''}")
        parts.append("causes " + " ".join(c.replace("_", " ") for c in self.root_causes))
        for f in self.fixes:
            parts.append(f"fix {f.key or ''} {f.from_value if f.from_value is not None else ''} -> {f.to_value if f.to_value is not None else ''} {f.action or ''} {f.rationale}")
        parts.extend(self.related_errors)
        parts.append(self.outcome)
        return "\n".join(p for p in parts if p.strip())
