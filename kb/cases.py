"""Loading knowledge-base cases: one YAML file per case, parsed safely and validated against `Case`.

Errors name the file and the field, so a case writer (or `ask-oom kb ingest`) knows what to fix.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import ValidationError

from ..tools.errors import InputError
from .schema import Case

CASES_DIR = Path(__file__).resolve().parent / "cases"
MAX_CASE_BYTES = 256 * 1024  # a case is a few KB; anything larger is not a hand-written case
MAX_CASES = 20_000


_THREAD = re.compile(r"github\.com/[^/\s]+/([^/\s#?]+)/(?:issues|pull|discussions)/(\d+)", re.IGNORECASE)


def thread_key(source: str | None) -> str:
    """A source's identity across renames and URL forms: a GitHub thread is its repository name (no owner, letters and
    digits only: LLaMA-Factory and LlamaFactory, microsoft and deepspeedai are one) and its number; anything else its
    text, lower-cased. Two cases with one key document one thread."""
    text = str(source or "").strip()
    m = _THREAD.search(text)
    return f"{re.sub(r'[^a-z0-9]', '', m.group(1).lower())}#{m.group(2)}" if m else text.rstrip("/").lower()


class CaseError(InputError):
    """A case file is unreadable, unsafe or invalid; the message names the file and what to fix."""


def default_cases_dir(path: str | Path | None = None) -> Path:
    """The folder the cases come from: `path`, else the packaged kb/cases."""
    return Path(path) if path is not None else CASES_DIR


def case_files(path: str | Path | None = None) -> list[Path]:
    """Case YAML files under `path` (a folder, or one file), sorted by name for stable ids and hashes."""
    root = default_cases_dir(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CaseError(f"no case folder at {root}: pass a folder of case YAML files")
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if len(files) > MAX_CASES:
        raise CaseError(f"{root} holds {len(files)} case files (limit {MAX_CASES})")
    return files


def parse_case_text(text: str, name: str = "case") -> Case:
    """One case from YAML text (safe loader: no tags, no objects); CaseError with the field path if invalid."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if len(text.encode("utf-8", errors="replace")) > MAX_CASE_BYTES:
        raise CaseError(f"{name}: case file larger than {MAX_CASE_BYTES // 1024} KiB")
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaseError(f"{name}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise CaseError(f"{name}: a case file must be a YAML mapping (id, title, source, ...), got {type(data).__name__}")
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise CaseError(f"{name}: field '{where}': {err['msg']}{more}") from None


def load_case_file(path: str | Path) -> Case:
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise CaseError(f"cannot read case file {p}: {exc.strerror}") from None
    if size > MAX_CASE_BYTES:
        raise CaseError(f"{p.name}: case file larger than {MAX_CASE_BYTES // 1024} KiB")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CaseError(f"{p.name}: not UTF-8 text") from None
    case = parse_case_text(text, p.name)
    if p.stem != case.id:
        raise CaseError(f"{p.name}: id '{case.id}' must match the file name ({case.id}.yaml)")
    return case


def load_cases(path: str | Path | None = None) -> list[Case]:
    """All cases under `path` (default: the packaged kb/cases), validated, ids unique, sorted by file name."""
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for f in case_files(path):
        case = load_case_file(f)
        if case.id in seen:
            raise CaseError(f"duplicate case id '{case.id}' in {f.name} and {seen[case.id]}")
        seen[case.id] = f.name
        cases.append(case)
    return cases


def cases_hash(path: str | Path | None = None, extra: str = "") -> str:
    """Content hash of the case files (names + bytes) without parsing them: cheap enough for every start."""
    h = hashlib.sha256(extra.encode())
    for f in case_files(path):
        h.update(f.name.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()
