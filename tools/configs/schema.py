"""Contracts of the config readers/rewriter and the fix planner."""

from __future__ import annotations

from typing import Any, Literal

from ..memory.schema import MemoryEstimate

from pydantic import BaseModel, Field

# "partial": settings read line by line from a config no format reader accepts (a truncated JSON or YAML, a Markdown list
# of settings, key=value text, a Python argument list): read for the diagnosis, never rewritten.
ConfigFormat = Literal["llamafactory_yaml", "hf_json", "shell", "deepspeed_json", "accelerate_yaml", "yaml", "json", "python",
                       "partial"]

# Per format: the Markdown code-fence language, and the file name a fixed config is offered under.
_FORMAT_FILES: dict[str, tuple[str, str]] = {
    "llamafactory_yaml": ("yaml", "train.fixed.yaml"), "accelerate_yaml": ("yaml", "accelerate.fixed.yaml"),
    "yaml": ("yaml", "config.fixed.yaml"), "hf_json": ("json", "training_args.fixed.json"),
    "json": ("json", "config.fixed.json"), "deepspeed_json": ("json", "ds_config.fixed.json"),
    "shell": ("bash", "train.fixed.sh"), "python": ("python", "train.fixed.py"),
    "partial": ("yaml", "config.fixed.yaml"),   # shown as the key: value settings it was read as; never rewritten
}


def fence_language(fmt: str | None) -> str:
    """The Markdown code-fence language of a config format ('' when there is none to say)."""
    return _FORMAT_FILES.get(fmt or "", ("", ""))[0]


def fixed_file_name(fmt: str | None) -> str:
    """The file name a fixed config of this format is offered under (downloads, Slack uploads)."""
    return _FORMAT_FILES.get(fmt or "", ("", "config.fixed.txt"))[1]


def format_from_filename(name: str) -> ConfigFormat | None:
    """The format a file name's extension says, before any content is read; None when it says none."""
    low = name.lower()
    if low.endswith((".sh", ".bash", ".zsh")):
        return "shell"
    if low.endswith(".json"):
        return "json"
    if low.endswith(".py"):
        return "python"
    if low.endswith((".yaml", ".yml")):
        return "yaml"
    return None


class ConfigDocument(BaseModel):
    """A user's config file as text plus its detected format and the flat settings read from it.

    `text` is kept verbatim: the rewriter edits it in place so everything it does not change
    (comments, order, quoting, unknown keys) survives byte for byte.
    """

    name: str = Field(default="config", description="file name as given (used for the format and the diff header)")
    format: ConfigFormat
    text: str
    settings: dict[str, Any] = Field(default_factory=dict, description="key → value in the framework's own key names")
    deepspeed: dict[str, Any] | None = Field(default=None, description="inline or referenced DeepSpeed config, when readable")
    # additive fields (config IO): what the planner needs to write changes back in the file's own terms
    framework: str | None = Field(default=None, description="llamafactory | hf_trainer | deepspeed_script | accelerate | ...")
    launcher: dict[str, Any] = Field(default_factory=dict, description="shell scripts: program, script, num_gpus (+ the flag that said so), num_nodes, env")
    deepspeed_name: str | None = Field(default=None, description="the DeepSpeed file the config names (as written)")
    deepspeed_text: str | None = Field(default=None, description="that file's text, kept verbatim for in-place edits")
    deepspeed_inline: bool = Field(default=False, description="True when the DeepSpeed config is a dict inside this file")
    deepspeed_assumed: str | None = Field(default=None, description="the published file assumed for a well-known DeepSpeed "
                                          "file the config names but nobody gave (its source link)")
    notes: list[str] = Field(default_factory=list, description="what the reader assumed (e.g. ZeRO stage inferred from a file name)")
    sections: dict[str, str] = Field(default_factory=dict, description="a setting read from a training section (keys."
                                     "TRAINING_SECTIONS) -> that section: it is read as the top level's and edited where "
                                     "it stands")

    @property
    def readable(self) -> bool:
        """False for a config of which nothing could be read (a partial read that found no setting)."""
        return self.format != "partial" or bool(self.settings)


class ConfigChange(BaseModel):
    """One planned edit: a key from → to, or an action outside the config (install, env var, pin)."""

    key: str | None = None
    from_value: Any = None
    to_value: Any = None
    action: str | None = Field(default=None, description="e.g. 'pip install flash-attn', 'export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True'")
    rationale: str = ""
    bytes_saved: int | None = None
    tier: int = Field(default=1, ge=1, le=6, description="1 free ... 6 changes the method; lower is less invasive")
    changes_results: bool = Field(default=False, description="True when it changes the data or the trained model (cutoff_len, LoRA/QLoRA)")
    target: Literal["config", "deepspeed", "env", "install"] = "config"
    confirmed_by: list[str] = Field(default_factory=list, description="knowledge-base case ids where this change fixed it")


class Constraints(BaseModel):
    """What the user said must not change."""

    keep_method: bool = Field(default=False, description="e.g. 'must stay full fine-tuning'")
    keep_seq_len: bool = False
    no_deepspeed: bool = False
    keep_batch: bool = False
    num_gpus: int | None = None
    margin: float = Field(default=0.90, description="fraction of GPU memory the fixed run may use")
    observed_oom: bool = Field(default=False, description="the log shows this run ran out of memory (even if the calculator says it fits)")
    observed_peak_bytes: int | None = Field(
        default=None,
        description="memory the failing run really held at the OOM (allocated + requested, from the log); "
        "when above the calculator's peak, the plan keeps that extra under the budget too",
    )


class FixPlan(BaseModel):
    """The chosen changes, the rewritten config and the before/after verdicts."""

    changes: list[ConfigChange] = Field(default_factory=list)
    fits: bool = False
    fixed_config: str | None = None
    fixed_deepspeed: str | None = Field(default=None, description="rewritten DeepSpeed JSON when that file changes")
    diff: str = ""
    estimate_before: MemoryEstimate | None = None
    estimate_after: MemoryEstimate | None = None
    notes: list[str] = Field(default_factory=list, description="warnings: data changed, results change, nothing fits → closest option")
    sized: bool = Field(default=True, description="False when the calculator could not size the fix (llama.cpp buffers)")
