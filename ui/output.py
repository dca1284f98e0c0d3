"""Terminal output (rich Markdown when stdout is a terminal, the plain Markdown text when piped) and the fixed
config written to a file, never over one the user gave."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .errors import UserError


def print_markdown(text: str) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(text))
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def print_json(obj: Any) -> None:
    """One JSON object on stdout (pydantic models are dumped in JSON mode)."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_fixed(d, target: str, inputs_read: list[str]) -> list[str]:
    """Write the fixed config (and a changed DeepSpeed file beside it), never over a file the user gave us."""
    out = Path(target)
    inputs = {Path(c).resolve() for c in inputs_read}
    if out.resolve() in inputs:
        raise UserError(f"{target} would overwrite an input file: write the fix to a new path")
    if not d.fixed_config:
        raise UserError("no fixed config to write: the planner could not rewrite this config (see the notes)")
    out.write_text(d.fixed_config, encoding="utf-8")
    written = [str(out)]
    if d.fixed_deepspeed:
        ds_name = Path(_ds_target_name(d)).name
        ds_path = out.parent / ds_name
        if ds_path.resolve() in inputs or ds_path.exists():
            ds_path = out.parent / (Path(ds_name).stem + ".fixed.json")
        ds_path.write_text(d.fixed_deepspeed, encoding="utf-8")
        written.append(str(ds_path))
    return written


def _ds_target_name(d) -> str:
    for ch in d.fixes:
        if ch.key == "deepspeed" and isinstance(ch.to_value, str):
            return ch.to_value
    return (d.config.deepspeed_name if d.config else None) or "ds_config.json"
