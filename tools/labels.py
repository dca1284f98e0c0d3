"""The root-cause vocabulary (../shared/root-causes.md): stable snake_case labels every diagnosis,
knowledge-base case and evaluation uses; the first cause of a list is the primary one.

`Label` holds the vocabulary in the file's order with its meanings; the members between the BEGIN/END marks are
generated from the file: `python -m ask_oom.tools.labels ../shared/root-causes.md` prints them (`--write` rewrites
this module in place). A misspelled label raises: `Label("seq_len_to_long")` is a ValueError.
"""

from __future__ import annotations

import re
import sys
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field


class Label(str, Enum):
    """One root cause of ../shared/root-causes.md; the value is the label, `.meaning` its one-line definition."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> Label:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    # BEGIN generated from ../shared/root-causes.md
    seq_len_too_long = "seq_len_too_long", "sequence length (cutoff_len, max_seq_length, packed length) drives activations and logits past the budget"
    batch_too_large = "batch_too_large", "the per-device micro-batch is too large (train or eval)"
    no_gradient_checkpointing = "no_gradient_checkpointing", "activations of every layer are kept because gradient checkpointing is off"
    eager_attention = "eager_attention", "attention materialises the b*heads*s*s score matrix (eager / no sdpa or flash-attn)"
    logits_large_vocab = "logits_large_vocab", "the logits and the fp32 cross-entropy over a large vocabulary dominate the peak"
    weights_exceed_gpu = "weights_exceed_gpu", "the (frozen or trained) weights alone do not fit one GPU: quantize (4/8-bit), shard (ZeRO-3/FSDP) or split the model"
    full_ft_model_states = "full_ft_model_states", "weights + gradients + optimizer states of full fine-tuning do not fit; LoRA/QLoRA, ZeRO or offload needed"
    zero_stage_insufficient = "zero_stage_insufficient", "sharding too weak for the GPU count (ZeRO-0/1/2 where 3 is needed, no FSDP)"
    offload_host_ram = "offload_host_ram", "host (CPU) RAM exhausted: offload, model loading on every rank, dataloader workers; process killed"
    fragmentation = "fragmentation", "large \"reserved but unallocated\" memory; allocator fragmentation (expandable_segments helps)"
    memory_growth = "memory_growth", "memory grows across steps: tensors kept alive, variable shapes, a leak in a model or framework version"
    vision_tokens = "vision_tokens", "too many visual tokens (image resolution, number of images, video frames) or a trainable vision tower"
    moe_memory = "moe_memory", "mixture-of-experts specifics: all experts resident, expert gathering under ZeRO-3, router buffers"
    eval_accumulation = "eval_accumulation", "OOM only in evaluation/prediction: accumulated logits or predictions, a larger eval batch"
    model_load_oom = "model_load_oom", "OOM while loading, merging (LoRA merge), converting or saving a checkpoint"
    other_process = "other_process", "other processes (or another rank's context) hold memory on the same GPU"
    quantization_setup = "quantization_setup", "4/8-bit quantization misconfigured or incompatible (bitsandbytes, quantization_config)"
    dtype_unsupported = "dtype_unsupported", "an op is not implemented for the chosen dtype / a version incompatibility met while fixing memory"
    generation_kv_cache = "generation_kv_cache", "KV cache of generation or inference (vLLM gpu_memory_utilization, long max_new_tokens)"
    multi_gpu_imbalance = "multi_gpu_imbalance", "one rank holds more than the others (device_map auto, rank-0 gathers, uneven pipeline)"
    not_oom = "not_oom", "the log shows no memory error"
    # END generated


# label → meaning, in the vocabulary's order (the shape callers have always used).
ROOT_CAUSES: dict[str, str] = {label.value: label.meaning for label in Label}


class RootCause(BaseModel):
    """One ranked cause: a vocabulary label, a score in [0, 1], and the evidence that supports it."""

    label: str
    score: float = Field(ge=0.0, le=1.0)
    why: list[str] = Field(default_factory=list, description="each item one piece of evidence, numbers from tools")
    probability: float | None = Field(default=None, ge=0.0, le=1.0,
                                      description="how likely this cause is the primary one, among the causes with "
                                                  "evidence (a softmax of the points; its calibration is measured by "
                                                  "evals/fit_weights.py on folds grouped by project)")

    @property
    def meaning(self) -> str:
        return ROOT_CAUSES.get(self.label, "")


def is_known_label(label: str) -> bool:
    return label in ROOT_CAUSES


# ---- generation from ../shared/root-causes.md -------------------------------------------------------------------

_ROW = re.compile(r"^\|\s*([a-z][a-z0-9_]*)\s*\|\s*(.+?)\s*\|\s*$")
_BEGIN, _END = "    # BEGIN generated from ../shared/root-causes.md\n", "    # END generated\n"


def parse_vocabulary(markdown: str) -> list[tuple[str, str]]:
    """(label, meaning) rows of the vocabulary's markdown table, in the file's order."""
    return [(m.group(1), m.group(2)) for line in markdown.splitlines() if (m := _ROW.match(line)) and m.group(1) != "label"]


def render_members(rows: list[tuple[str, str]]) -> str:
    """The enum members `Label` holds for these rows, as they stand between the BEGIN/END marks of this module."""
    return "".join(f"    {label} = {_quoted(label)}, {_quoted(meaning)}\n" for label, meaning in rows)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(argv: list[str] | None = None) -> int:
    """Print the members generated from the vocabulary file; with --write, put them into this module."""
    args = list(sys.argv[1:] if argv is None else argv)
    write = "--write" in args
    paths = [a for a in args if a != "--write"]
    if len(paths) != 1:
        print("usage: python -m ask_oom.tools.labels PATH/TO/root-causes.md [--write]", file=sys.stderr)
        return 2
    members = render_members(parse_vocabulary(Path(paths[0]).read_text(encoding="utf-8")))
    if not write:
        sys.stdout.write(members)
        return 0
    module = Path(__file__)
    text = module.read_text(encoding="utf-8")
    head, rest = text.split(_BEGIN, 1)
    _, tail = rest.split(_END, 1)
    module.write_text(head + _BEGIN + members + _END + tail, encoding="utf-8")
    print(f"wrote {len(members.splitlines())} labels into {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
