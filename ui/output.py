"""Terminal output (rich Markdown when stdout is a terminal, the plain Markdown text when piped) and the fixed
config written to a file: never over an input or an existing file without --force, atomically, keeping the mode."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
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


def write_fixed(d, target: str, inputs_read: list[str], *, force: bool = False, source: str | None = None) -> list[str]:
    """Write the fixed config, and a new or changed DeepSpeed file beside it (under the name the fix gives it).

    Never over an input (by path or hard link) or any existing file without `force`, and never over a directory or a
    special file; each file is written to a temporary file in the same folder and renamed into place, with the mode of
    the file it fixes (`source`, else the input of that name), so a failed write leaves nothing half-written. Every
    target is checked before anything is written. Raises UserError (exit 2) for a refusal or a failed write; returns
    the paths written."""
    inputs = [Path(p) for p in inputs_read]
    out = Path(target)
    _check_target(out, inputs, force)
    if not d.fixed_config:
        why = "the planner could not rewrite this config (see the notes)" if d.config else "pass your training config with --config"
        raise UserError(f"no fixed config to write: {why}")
    files = [(out, d.fixed_config, _mode_of(source or (inputs[0] if inputs else None)))]
    if d.fixed_deepspeed:
        name = d.fixed_deepspeed_name
        ds_out = out.parent / name
        if not force and (_input_at(ds_out, inputs) is not None or os.path.lexists(ds_out)):
            ds_out = out.parent / (Path(name).stem + ".fixed.json")   # beside the user's own file, not over it
        _check_target(ds_out, inputs, force)
        files.append((ds_out, d.fixed_deepspeed, _mode_of(next((p for p in inputs if p.name == name), None) or source)))
    for path, text, mode in files:
        _atomic_write(path, text, mode, force)
    return [str(path) for path, _, _ in files]


def _input_at(path: Path, inputs: list[Path]) -> Path | None:
    """The input file `path` is (the same path, or a hard link to it), if any."""
    for inp in inputs:
        try:
            if path.resolve() == inp.resolve() or (path.exists() and inp.exists() and os.path.samefile(path, inp)):
                return inp
        except OSError:
            continue
    return None


def _check_target(path: Path, inputs: list[Path], force: bool) -> None:
    """Refuse a target that is an input or exists (unless forced), or that no file may replace."""
    if path.is_dir():
        raise UserError(f"{path} is a directory: give the path of the file to write")
    if os.path.lexists(path) and not path.is_symlink() and not path.is_file():
        raise UserError(f"{path} is not a regular file (a device, pipe or socket): write the fix to a file")
    if force:
        return
    inp = _input_at(path, inputs)
    if inp is not None:
        raise UserError(f"{path} would overwrite the input {inp}: write the fix to a new path (or pass --force)")
    if os.path.lexists(path):
        raise UserError(f"{path} exists: write the fix to a new path, or pass --force to replace it")


def _mode_of(source: str | Path | None) -> int:
    """The permission bits of the file a fix comes from; without one, a new file's (0666 less the umask)."""
    if source is not None:
        try:
            return stat.S_IMODE(os.stat(source).st_mode)
        except OSError:
            pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, text: str, mode: int, force: bool) -> None:
    """Write `text` to a temporary file beside `path` and move it into place (a hard link when nothing may be
    replaced, so a file that appeared meanwhile is still not overwritten)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:   # newline="": the config's own line ends
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise UserError(f"{path} exists: write the fix to a new path, or pass --force to replace it") from None
            except OSError:   # a file system without hard links: the check above is all there is
                os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
