"""`ask-oom kb ingest`: a raw document (Markdown, text, HTML; Chinese or English) → a validated draft case YAML.

Pipeline: read with limits → strip page debris (extract_clean) → deterministic facts (extract) → optional LLM
structured extraction for what the rules leave empty (extract_llm) → validate as a `Case` → refuse duplicates
(same source or near-identical content) → write the YAML to a drafts folder for a human to review.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from ..tools.errors import InputError
from .cases import CaseError, case_files, load_case_file, load_cases, parse_case_text
from .extract import Extraction, KeyChange, _clauses, extract
from .extract_clean import clean_document
from .extract_rules import CONFIRMED, KEY_LABELS
from .schema import Case, CaseFix, CaseHardware, CaseModel, CaseSymptom
from .text import tokenize

MAX_DOC_BYTES = 4 * 1024 * 1024
NEAR_DUPLICATE = 0.92  # cosine similarity of token counts above which two cases say the same thing

RATIONALES = {
    "seq_len_too_long": "Activations, attention intermediates and logits grow with the tokens per sample; a shorter cutoff lowers the peak.",
    "batch_too_large": "Activation memory scales with the per-device micro-batch; raise gradient accumulation to keep the effective batch.",
    "no_gradient_checkpointing": "Recomputing activations in backward keeps one layer's activations instead of all of them.",
    "eager_attention": "A fused attention kernel (FlashAttention-2 / SDPA) never materialises the full score matrix.",
    "weights_exceed_gpu": "4/8-bit loading shrinks the frozen weights so the model fits the GPU.",
    "full_ft_model_states": "Training an adapter instead of every weight removes full gradients and optimizer states.",
    "vision_tokens": "Fewer trainable vision parameters and visual tokens lower gradients, optimizer states and activations.",
    "eval_accumulation": "Evaluation keeps fewer predictions / a smaller batch on the GPU.",
    "generation_kv_cache": "A smaller KV-cache reservation leaves memory for the rest.",
    "fragmentation": "Allocator settings reduce memory reserved but not usable because of fragmentation.",
}
ACTION_RATIONALES = [
    (r"^pin ", "A version pin avoids an incompatibility met while fixing memory."),
    (r"install flash-attn", "The fused attention kernel only takes effect when the package is installed."),
    (r"^export PYTORCH_CUDA_ALLOC_CONF", "Allocator settings change how cached blocks are split and reused."),
]


class IngestResult(BaseModel):
    """A draft case, where it was written, and what the reviewer should check."""

    case: Case
    path: Path | None = None
    duplicate_of: str | None = Field(default=None, description="id (or file) of the existing case it duplicates")
    llm_used: bool = False
    warnings: list[str] = Field(default_factory=list)
    extraction: Extraction | None = None


def read_document(path: str | Path) -> str:
    """A document's text with limits: must exist, be text (UTF-8, or GB18030 for Chinese pages) and < 4 MiB."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"cannot ingest: no such file: {path}")
    if p.stat().st_size > MAX_DOC_BYTES:
        raise InputError(f"cannot ingest {p.name}: larger than {MAX_DOC_BYTES // 2**20} MiB (save the article alone)")
    data = p.read_bytes()
    if not data.strip():
        raise InputError(f"cannot ingest {p.name}: the file is empty")
    if b"\x00" in data[:8192]:
        raise InputError(f"cannot ingest {p.name}: binary file, not Markdown / text / HTML")
    for enc in ("utf-8", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")


def _slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9.]+", "-", text.lower().split("/")[-1]).strip("-.")
    return s[:limit].strip("-.") or "case"


def _source_url(text: str) -> str | None:
    m = re.search(r"(?:原文|来源|source|原文链接|URL)\s*[:：]?\s*(https?://\S+)", text[:3000], re.IGNORECASE)
    return m.group(1).rstrip(").,，。") if m else None


def _fix_from_change(ch: KeyChange) -> CaseFix:
    label = KEY_LABELS.get(ch.key or "")
    rationale = RATIONALES.get(label or "", "")
    if ch.action:
        rationale = next((r for pat, r in ACTION_RATIONALES if re.search(pat, ch.action)), rationale)
    clause = " ".join(ch.clause.split())
    rationale = (rationale + " " if rationale else "") + f"[source: {clause[:160]}]"
    return CaseFix(key=ch.key or None, from_value=ch.from_value, to_value=ch.to_value, action=ch.action,
                   rationale=rationale.strip(), confirmed=ch.confirmed or bool(CONFIRMED.search(ch.clause)))


def draft_from_extraction(ex: Extraction, source: str, text: str) -> tuple[Case, list[str]]:
    """A schema-valid draft Case from the extracted facts, plus warnings for what a reviewer must fill."""
    warnings: list[str] = []
    labels = ex.labels
    if not labels:
        labels = ["not_oom"] if ex.error_kind == "not_oom" else []
        if not labels:
            warnings.append("no root-cause keyword matched: set root_causes by hand")
            labels = ["not_oom"]
    if ex.model_name is None:
        warnings.append("no model name recognised: set model.name")
    if not ex.changes:
        warnings.append("no fix (key change or action) recognised: add fixes")
    oom_lines = [ln for ln in ex.error_lines if re.search(r"out of memory|OutOfMemory|Killed", ln, re.I)]
    message = (oom_lines or ex.error_lines or [None])[0]
    if message is None:
        oom = re.compile(r"OOM|out of memory|内存不足|显存不足|显存溢出", re.I)
        message = next((c for c in _clauses(text) if oom.search(c) and len(c) < 400), None)
    digest = hashlib.sha256(source.encode()).hexdigest()[:6]
    case_id = f"draft-{_slug(ex.model_name or ex.framework)}-{labels[0].replace('_', '-')}-{digest}"
    case = Case(
        id=case_id[:80],
        title=ex.title or source,
        source=source if len(source) >= 5 else f"document {source}",
        language=ex.language if ex.language in ("en", "zh") else "other",
        model=CaseModel(name=ex.model_name or "unknown", size=ex.model_size, modality=ex.modality),
        hardware=CaseHardware(gpu=ex.gpu, count=ex.gpu_count, memory_gib=ex.gpu_memory_gib, host_ram_gib=ex.host_ram_gib),
        framework=ex.framework,
        launcher=ex.launcher,
        method=ex.method,
        settings=ex.settings,
        symptom=CaseSymptom(error_kind=ex.error_kind, phase=ex.phase, message=message[:300] if message else None,
                            numbers=ex.numbers),
        root_causes=labels,
        fixes=[_fix_from_change(ch) for ch in ex.changes],
        outcome="",
        related_errors=[ln for ln in ex.error_lines if ln != message][:6],
        tags=["draft"],
    )
    return case, warnings


def draft_case(raw: str, name: str, source: str | None = None) -> tuple[Case, Extraction, list[str], str]:
    """(draft case, extraction, warnings, cleaned text) for one raw document; deterministic, no I/O."""
    doc = clean_document(raw, name)
    if len(doc.text) < 40:
        raise InputError(f"cannot ingest {name}: no article text left after removing page debris")
    ex = extract(doc.title, doc.text)
    case, warnings = draft_from_extraction(ex, source or _source_url(doc.text) or name, doc.text)
    return case, ex, warnings, doc.text


def _norm_source(source: str) -> str:
    s = source.strip().lower().rstrip("/")
    s = re.sub(r"^https?://(www\.)?", "", s)
    return s.rsplit("/", 1)[-1] if not s.startswith(("github.com", "huggingface.co")) and "/" in s else s


def _cosine(a: Counter, b: Counter) -> float:
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def _fingerprint(case: Case) -> Counter:
    """What a case says (model, settings, symptom, causes, fixes) without its wording-heavy free text."""
    c = case.model_copy(update={"title": "", "outcome": "", "tags": [],
                                "fixes": [f.model_copy(update={"rationale": ""}) for f in case.fixes]})
    return Counter(tokenize(c.search_text()))


def _model_tokens(case: Case) -> set[str]:
    """Family tokens of the model name: 'meta-llama/Llama-2-13b' and 'Llama2-13B' share {llama2, 13b}."""
    name = re.sub(r"^[\w.-]+/", "", case.model.name.lower())
    name = re.sub(r"([a-z])[-_ ]?(\d)", r"\1\2", name)
    return {t for t in re.split(r"[^a-z0-9.]+", name) if re.match(r"[a-z]", t)} - {
        "instruct", "chat", "hf", "base", "model", "unknown", "family", "the"}


def _size(case: Case) -> str | None:
    m = re.search(r"(\d+(?:\.\d+)?)\s?b\b", f"{case.model.size or ''} {case.model.name}".lower())
    return m.group(1) if m else None


def same_incident(a: Case, b: Case) -> bool:
    """Same model (family and size), same primary cause, and the same hardware — or, where either case does not
    say the hardware, mostly the same fixed keys: two write-ups of one incident, whatever their wording."""
    if not (_model_tokens(a) & _model_tokens(b)) or a.root_causes[0] != b.root_causes[0]:
        return False
    sa, sb = _size(a), _size(b)
    if sa and sb and sa != sb:
        return False
    hw = [(c.hardware.count, round(c.hardware.memory_gib) if c.hardware.memory_gib else None) for c in (a, b)]
    if any(hw[0]) and any(hw[1]):
        return all(x == y or x is None or y is None for x, y in zip(*hw))
    if not (sa and sb):
        return False  # no size and no hardware on one side: too little to call it the same incident
    keys = [{f.key for f in c.fixes if f.key} for c in (a, b)]
    union = keys[0] | keys[1]
    return bool(union) and len(keys[0] & keys[1]) / len(union) >= 0.5


def find_duplicate(case: Case, existing: list[Case]) -> tuple[str | None, str]:
    """(id of the case it duplicates, why): same source, the same incident (model, cause, hardware or fixes),
    or near-identical content — else (None, '')."""
    src = _norm_source(case.source)
    fp = _fingerprint(case)
    for other in existing:
        if other.id == case.id:
            return other.id, "same id"
        if _norm_source(other.source) == src:
            return other.id, f"same source ({other.source})"
    for other in existing:
        if same_incident(case, other):
            return other.id, f"same incident (model {other.model.name}, {other.root_causes[0]}, same hardware or fixes)"
    best, best_sim = None, 0.0
    for other in existing:
        sim = _cosine(fp, _fingerprint(other))
        if sim > best_sim:
            best, best_sim = other.id, sim
    if best is not None and best_sim >= NEAR_DUPLICATE:
        return best, f"near-identical content (similarity {best_sim:.2f})"
    return None, ""


def case_to_yaml(case: Case) -> str:
    """The case as review-friendly YAML (field order of the schema, no empty fields); round-trips through load."""
    from ruamel.yaml import YAML

    data = case.model_dump(mode="json", by_alias=True, exclude_none=True)
    data = {k: v for k, v in data.items() if v not in ({}, [], "") or k in ("root_causes",)}
    for part in ("model", "hardware", "symptom"):
        if part in data:
            data[part] = {k: v for k, v in data[part].items() if v not in ({}, [], "")}
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.allow_unicode = True
    yaml.width = 120
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def default_drafts_dir() -> Path:
    import os

    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "ask-oom" / "drafts"


def _existing(cases_dir: Path | None, drafts_dir: Path | None) -> list[Case]:
    cases = load_cases(cases_dir)
    if drafts_dir is not None and drafts_dir.is_dir():
        for f in case_files(drafts_dir):
            try:
                cases.append(load_case_file(f))
            except CaseError:
                continue  # a draft being edited by hand may be invalid; it is not a reason to stop
    return cases


def ingest_file(path: str | Path, *, cases_dir: str | Path | None = None, out_dir: str | Path | None = None,
                source: str | None = None, settings=None, use_llm: bool | None = None, force: bool = False,
                write: bool = True) -> IngestResult:
    """Ingest one document: draft, (LLM fill), validate, refuse duplicates unless force, write YAML to out_dir."""
    raw = read_document(path)
    case, ex, warnings, text = draft_case(raw, Path(path).name, source=source or _source_url(raw))
    if source is None and case.source == Path(path).name:
        case = case.model_copy(update={"source": Path(path).as_posix()})
    llm_used = False
    want_llm = use_llm if use_llm is not None else bool(getattr(settings, "llm_base_url", None))
    if want_llm:
        if not getattr(settings, "llm_base_url", None):
            raise InputError("--llm needs an LLM endpoint: set ASK_OOM_LLM_BASE_URL (OpenAI-compatible)")
        from .extract_llm import LLMExtractionError, llm_fill

        try:
            case = llm_fill(case, text, settings)
            llm_used = True
        except LLMExtractionError as exc:
            warnings.append(f"LLM extraction skipped: {exc}")
    case = parse_case_text(case_to_yaml(case), case.id)  # what is written is exactly what loads back
    drafts = Path(out_dir) if out_dir is not None else default_drafts_dir()
    dup, why = find_duplicate(case, _existing(Path(cases_dir) if cases_dir else None, drafts))
    result = IngestResult(case=case, duplicate_of=dup, llm_used=llm_used, warnings=warnings, extraction=ex)
    if dup and not force:
        result.warnings.append(f"duplicate of {dup}: {why}")
        return result
    if write:
        drafts.mkdir(parents=True, exist_ok=True)
        out = drafts / f"{case.id}.yaml"
        out.write_text(case_to_yaml(case), encoding="utf-8")
        result.path = out
    return result
