"""Read a fine-tuning dataset sample by sample: JSON, JSONL, Parquet, or a LLaMA-Factory data directory.

Each record becomes a `Sample` (its index, id, the concatenated text of its turns, its image and video
references), so the token and image counters never see a file format. Files are streamed: JSONL line by
line, Parquet in batches of the needed columns; a whole-file JSON list is the one format read at once.
Schema: LLaMA-Factory data/README.md (dataset_info.json: file_name, formatting, ranking, columns, tags).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError

# ---- limits (explicit, so a huge or hostile input fails with one line instead of exhausting the host)
MAX_JSON_FILE_BYTES = 2 * 1024**3        # a JSON list is parsed whole: beyond this, convert it to JSONL
MAX_JSONL_LINE_BYTES = 64 * 1024**2      # one JSONL record
MAX_DATASET_INFO_BYTES = 16 * 1024**2    # dataset_info.json
MAX_FILES_PER_ENTRY = 10_000             # files in a `file_name` folder
PARQUET_BATCH_ROWS = 8_192               # rows per Parquet batch (only the needed columns are read)
BAD_LINES_SHOWN = 5                      # bad JSONL line numbers kept for the report

Formatting = Literal["alpaca", "sharegpt"]
ImageRef = str | bytes  # a path (relative to the media dir) or the encoded image itself (Parquet image structs)

# LLaMA-Factory defaults (data/README.md; llamafactory/data/parser.py DatasetAttr)
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_COLUMNS = {"messages": "conversations"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value"}
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content"}
IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER = "<image>", "<video>"  # llamafactory/extras/constants.py defaults
ID_FIELDS = ("id", "_id", "uid", "sample_id", "idx")
SUPPORTED_SUFFIXES = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
SKIPPED_SUFFIXES = {".csv", ".arrow", ".txt"}  # LLaMA-Factory reads them; not profiled here (noted)


@dataclass(frozen=True, slots=True)
class Sample:
    """One training sample as the profiler needs it: what it is called and what it holds."""

    index: int                      # position in the stream (0-based, across the selected datasets in order)
    id: str | None                  # the record's own id field, when it has one
    text: str                       # the turns' text, joined by newlines
    turns: int                      # messages (system, user, assistant, tool...) the chat template wraps
    images: tuple[ImageRef, ...] = ()
    videos: tuple[Any, ...] = ()    # a path, or a list of frame paths (LLaMA-Factory nested-image videos)
    source: str = ""                # dataset name (or file name)
    media_dir: str = ""             # where relative image / video paths are resolved (LLaMA-Factory media_dir)


@dataclass(frozen=True)
class SourceSpec:
    """One dataset to read: its file(s) and how its records map to turns (a dataset_info.json entry)."""

    name: str
    path: Path
    formatting: Formatting | None = None   # None: decided per record (plain files without dataset_info.json)
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    ranking: bool = False
    media_dir: Path | None = None


@dataclass
class ReadStats:
    """What reading found besides samples: bad records, skipped entries, notes (filled by the reader, read by the caller)."""

    records: int = 0
    bad_records: int = 0
    bad_lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- sources


def resolve_sources(path: str | Path, dataset_names: list[str] | str | None = None,
                    media_dir: str | Path | None = None, stats: ReadStats | None = None) -> list[SourceSpec]:
    """The datasets to read: one file, or the selected entries of a LLaMA-Factory `dataset_info.json` directory."""
    p = Path(path)
    stats = stats if stats is not None else ReadStats()
    if not p.exists():
        raise InputError(f"dataset not found: {p}")
    if p.is_file():
        return [SourceSpec(name=p.name, path=p, media_dir=Path(media_dir) if media_dir else p.parent)]
    info_path = p / "dataset_info.json"
    if not info_path.is_file():
        files = _data_files(p)
        if not files:
            raise InputError(f"{p} has no dataset_info.json and no .json/.jsonl/.parquet files")
        return [SourceSpec(name=f.name, path=f, media_dir=Path(media_dir) if media_dir else p) for f in files]
    info = _load_dataset_info(info_path)
    names = _selected_names(info, dataset_names, info_path)
    specs: list[SourceSpec] = []
    for name in names:
        entry = info[name]
        if not isinstance(entry, dict):
            raise InputError(f"{info_path}: entry {name!r} is not an object")
        remote = next((k for k in ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name") if entry.get(k)), None)
        if remote:
            stats.notes.append(f"dataset {name!r} is remote ({remote}: {entry[remote]}): not profiled")
            continue
        file_name = entry.get("file_name")
        if not file_name:
            raise InputError(f"{info_path}: dataset {name!r} has no file_name")
        formatting = entry.get("formatting", "alpaca")
        if formatting not in ("alpaca", "sharegpt"):
            raise InputError(f"{info_path}: dataset {name!r} has formatting {formatting!r} (alpaca or sharegpt)")
        specs.append(SourceSpec(name=name, path=p / str(file_name), formatting=formatting,
                                columns=dict(entry.get("columns") or {}), tags=dict(entry.get("tags") or {}),
                                ranking=bool(entry.get("ranking")), media_dir=Path(media_dir) if media_dir else p))
        if entry.get("num_samples"):
            stats.notes.append(f"dataset {name!r} sets num_samples={entry['num_samples']}: every sample is profiled")
    return specs


def _load_dataset_info(info_path: Path) -> dict[str, Any]:
    if info_path.stat().st_size > MAX_DATASET_INFO_BYTES:
        raise InputError(f"{info_path} is over {MAX_DATASET_INFO_BYTES // 1024**2} MiB: not a dataset_info.json")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{info_path} is not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise InputError(f"{info_path} must map dataset names to descriptions")
    return info


def _selected_names(info: dict[str, Any], dataset_names: list[str] | str | None, info_path: Path) -> list[str]:
    if dataset_names is None:
        return list(info)
    names = [n.strip() for n in (dataset_names.split(",") if isinstance(dataset_names, str) else dataset_names) if n.strip()]
    missing = [n for n in names if n not in info]
    if missing:
        raise InputError(f"dataset {missing[0]!r} is not in {info_path} (it has: {', '.join(list(info)[:10])})")
    return names


def _data_files(folder: Path) -> list[Path]:
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES)
    if len(files) > MAX_FILES_PER_ENTRY:
        raise InputError(f"{folder} holds over {MAX_FILES_PER_ENTRY} data files")
    return files


# ---------------------------------------------------------------- records


def read_samples(path: str | Path, stats: ReadStats, *, dataset_names: list[str] | str | None = None,
                 media_dir: str | Path | None = None) -> Iterator[Sample]:
    """Stream every sample of the selected datasets, in order; bad records are counted in `stats`, not raised."""
    index = 0
    for spec in resolve_sources(path, dataset_names, media_dir, stats):
        stats.datasets.append(spec.name)
        before = stats.records
        for record in _records(spec, stats):
            stats.records += 1
            sample = to_sample(record, spec, index)
            if sample is None:
                stats.bad_records += 1
                if len(stats.bad_lines) < BAD_LINES_SHOWN:
                    stats.bad_lines.append(f"{spec.name} record {stats.records - before}: no text in the expected columns")
                continue
            yield sample
            index += 1
    if stats.records and stats.bad_records >= stats.records:
        raise InputError(f"no usable sample in {path}: all {stats.records} records are malformed "
                         f"({'; '.join(stats.bad_lines[:2])})")


def _records(spec: SourceSpec, stats: ReadStats) -> Iterator[Any]:
    """Raw records of one dataset (its file, or every data file of its folder)."""
    if not spec.path.exists():
        raise InputError(f"dataset {spec.name!r}: {spec.path} not found")
    files = _data_files(spec.path) if spec.path.is_dir() else [spec.path]
    for f in files:
        suffix = f.suffix.lower()
        if suffix in SKIPPED_SUFFIXES:
            stats.notes.append(f"{f.name}: {suffix[1:]} files are not profiled (convert to JSONL or Parquet)")
            continue
        kind = SUPPORTED_SUFFIXES.get(suffix)
        if kind is None:
            raise InputError(f"{f}: unsupported data file type {suffix or '(none)'} (json, jsonl, parquet)")
        if kind == "parquet":
            yield from _parquet_records(f, spec)
        elif kind == "jsonl":
            yield from _jsonl_records(f, stats)
        else:
            yield from _json_records(f, stats)


def _json_records(f: Path, stats: ReadStats) -> Iterator[Any]:
    """A JSON list of records; a .json file holding JSON Lines is read as JSONL (as HF datasets' json loader does)."""
    if f.stat().st_size > MAX_JSON_FILE_BYTES:
        raise InputError(f"{f} is over {MAX_JSON_FILE_BYTES // 1024**3} GiB: a JSON list is parsed whole; convert it to JSONL")
    text = f.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            yield from _jsonl_records(f, stats)
            return
        raise InputError(f"{f} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                         "is it truncated? JSONL needs one record a line") from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None) if len(data) == 1 else [data]
    if not isinstance(data, list):
        raise InputError(f"{f}: expected a JSON list of records")
    yield from data


def _jsonl_records(f: Path, stats: ReadStats) -> Iterator[Any]:
    """One JSON object a line; a bad line is counted (and its number kept), never fatal by itself."""
    loads = json.loads
    with f.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if len(line) > MAX_JSONL_LINE_BYTES:
                raise InputError(f"{f} line {lineno} is over {MAX_JSONL_LINE_BYTES // 1024**2} MiB")
            if not line.strip():
                continue
            try:
                record = loads(line)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                stats.records += 1
                stats.bad_records += 1
                if len(stats.bad_lines) < BAD_LINES_SHOWN:
                    stats.bad_lines.append(f"{f.name} line {lineno}: {str(exc).split(':')[0]}")
                continue
            yield record


def _parquet_records(f: Path, spec: SourceSpec) -> Iterator[dict[str, Any]]:
    """Parquet rows in batches, reading only the columns the format needs."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a bad file
        raise InputError(f"{f} is not a readable Parquet file ({str(exc).splitlines()[0][:160]})") from None
    names = set(pf.schema_arrow.names)
    wanted = sorted(names & _wanted_columns(spec))
    if not wanted:
        raise InputError(f"{f}: none of the expected columns ({', '.join(sorted(_wanted_columns(spec)))}) is present")
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
        yield from batch.to_pylist()


def _wanted_columns(spec: SourceSpec) -> set[str]:
    cols = set(spec.columns.values()) | set(ID_FIELDS) | {"images", "videos", "system", "tools", "history", "text"}
    if spec.formatting in (None, "alpaca"):
        cols |= set(ALPACA_COLUMNS.values()) | {"chosen", "rejected"}
    if spec.formatting in (None, "sharegpt"):
        cols |= {"conversations", "messages", "chosen", "rejected"}
    return cols


# ---------------------------------------------------------------- record -> sample


def to_sample(record: Any, spec: SourceSpec, index: int) -> Sample | None:
    """One record as a Sample (alpaca or sharegpt, with images and videos); None when it holds no text."""
    if not isinstance(record, dict):
        return None
    formatting = spec.formatting or _guess_formatting(record)
    cols = spec.columns
    pieces: list[str] = []
    turns = 0
    for key in ("system", "tools"):
        value = record.get(cols.get(key, key))
        if value:
            pieces.append(_text(value))
            turns += 1
    if formatting == "sharegpt":
        added = _sharegpt_turns(record, spec, pieces)
    else:
        added = _alpaca_turns(record, spec, pieces)
    if added == 0:
        return None
    sample_id = next((record[k] for k in ID_FIELDS if record.get(k) is not None), None)
    images = _media(record.get(cols.get("images", "images")))
    videos = _media(record.get(cols.get("videos", "videos")))
    text = "\n".join(pieces)
    if images or videos:  # the placeholders become the image / video tokens, counted separately
        text = text.replace(IMAGE_PLACEHOLDER, "").replace(VIDEO_PLACEHOLDER, "")
    return Sample(index=index, id=None if sample_id is None else str(sample_id), text=text, turns=turns + added,
                  images=images, videos=videos, source=spec.name, media_dir=str(spec.media_dir or spec.path.parent))


def _guess_formatting(record: dict[str, Any]) -> Formatting:
    return "sharegpt" if isinstance(record.get("conversations", record.get("messages")), list) else "alpaca"


def _alpaca_turns(record: dict[str, Any], spec: SourceSpec, pieces: list[str]) -> int:
    """instruction + input as the user turn, output as the answer, history pairs before them (data/README.md)."""
    cols = {**ALPACA_COLUMNS, **spec.columns}
    turns = 0
    history = record.get(cols.get("history", "history"))
    if isinstance(history, list):
        for pair in history:
            if isinstance(pair, (list, tuple)):
                pieces.extend(_text(x) for x in pair if x)
                turns += len(pair)
    prompt = "\n".join(_text(record[c]) for c in (cols["prompt"], cols["query"]) if record.get(c))
    if not prompt and "text" in record and "prompt" not in spec.columns:
        prompt = _text(record["text"])  # pre-training form {"text": ...}
    if prompt:
        pieces.append(prompt)
        turns += 1
    answer = _ranked_answer(record, cols, spec.ranking) or _text(record.get(cols["response"]) or "")
    if answer:
        pieces.append(answer)
        turns += 1
    return turns


def _sharegpt_turns(record: dict[str, Any], spec: SourceSpec, pieces: list[str]) -> int:
    """Every message's content, with the role/content keys of the entry's tags (from/value, or role/content)."""
    cols = {**SHAREGPT_COLUMNS, **spec.columns}
    messages = record.get(cols["messages"])
    if messages is None and "messages" in record:
        messages = record["messages"]
    if not isinstance(messages, list):
        return 0
    tags = {**SHAREGPT_TAGS, **spec.tags}
    if not spec.tags and messages and isinstance(messages[0], dict) and "content" in messages[0] and "value" not in messages[0]:
        tags = OPENAI_TAGS
    turns = 0
    for msg in messages:
        if isinstance(msg, dict) and msg.get(tags["content_tag"]) is not None:
            pieces.append(_text(msg[tags["content_tag"]]))
            turns += 1
    answer = _ranked_answer(record, cols, spec.ranking)
    if answer:
        pieces.append(answer)
        turns += 1
    return turns


def _ranked_answer(record: dict[str, Any], cols: dict[str, str], ranking: bool) -> str:
    """Preference data: the longer of chosen / rejected (both run through the model; the batch pads to the longer)."""
    if not ranking and not ("chosen" in record and "rejected" in record):
        return ""
    texts = [_text(record.get(cols.get(k, k)) or "") for k in ("chosen", "rejected")]
    return max(texts, key=len)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # a sharegpt message (chosen/rejected) or a content part
        inner = value.get("value", value.get("content", value.get("text")))
        return _text(inner) if inner is not None else json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "\n".join(_text(v) for v in value if v is not None)
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, (int, float)) else str(value)


def _media(value: Any) -> tuple[Any, ...]:
    """Image / video references: a path, a list of them, HF image structs ({'path', 'bytes'})."""
    if value is None or value == "":
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("bytes") or item.get("path")
        if isinstance(item, (str, bytes)) and item:
            out.append(item)
        elif isinstance(item, (list, tuple)):  # a video given as its frames
            out.append(tuple(x for x in item if isinstance(x, str)))
    return tuple(out)
