"""Split a chat message (and attached files) into what it carries: a log, a training config, a model
config.json, or chat text for the intent parser. Any mix, in any order, fenced or not: a log pasted above a fenced
config, a config block between the user's sentences and the traceback, a Markdown list of settings. Slack's escaping
is undone at its door (`unescape_slack`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import islice
from typing import Any, Literal

from pydantic import BaseModel

from ..tools.configs.documents import looks_like_python
from ..tools.configs.keys import TRAINING_KEYS
from ..tools.configs.partial import argument_list_settings, setting_of
from ..tools.errors import InputError
from ..tools.log_parser.lines import window_cut

PartKind = Literal["log", "config", "model_config", "chat"]
# Turns that bring new input rather than follow up on the last answer: a pasted log or config (answered with a full
# report), or memory snapshots (answered with what they held). Compose, the conversation and the Slack bot read these.
PASTE_TURNS = frozenset({"log", "config"})
NEW_INPUT_TURNS = PASTE_TURNS | {"snapshot"}

MAX_PART_CHARS = 8 * 1024 * 1024  # a part beyond this is cut (logs keep their end, where the error is)

_PARENT_KEY = re.compile(r"^[A-Za-z_][\w.-]{0,60}:[ \t]*$")   # "deepspeed_config:" opening a nested YAML block
_FLAG_ANYWHERE = re.compile(r"""(?:^|[\s'"])--([A-Za-z_]\w{1,60})""")
_KEY_LINE = re.compile(r'^\s*(?:--|"|-\s+)?([A-Za-z_][\w.]*)"?\s*(?:[:=]|\s+\S)', re.M)
# A launcher run as a command (not a `deepspeed:` key): at a line start, after `nohup`/env assignments, or after `&&`.
# `torchrun`/`deepspeed` are also words of prose ("deepspeed isn't installed"): as commands they are followed by an
# option, a path or script, a variable, a line continuation, or nothing.
_LAUNCH = re.compile(r"(?:^|&&|;|\bnohup)[ \t]*(?:[A-Z_][A-Z0-9_]*=\S*[ \t]+)*"
                     r"(?:(?:torchrun|deepspeed)(?=[ \t]*\\?$|[ \t]+(?:-|\$|\S*[./]))|(?:accelerate launch|"
                     r"llamafactory-cli|python3? -m torch\.distributed|python3? [\w./-]+\.py|swift sft|axolotl)\b(?![ \t]*:))",
                     re.M)
_LOG_LINE = re.compile(
    r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+|\d{2}:\d{2}:\d{2}|^\[(?:INFO|WARNING|ERROR|rank\d+)|"
    r"^\s*\[rank\d+\]|\d+%\|[^|]*\|\s*\d+/\d+|Error:|warnings\.warn|^\s*(?:INFO|WARNING|ERROR)\b|\bstep\s+\d+|loss[:=]\s*\d",
    re.M,
)
_MODEL_CONFIG_KEYS = {"architectures", "num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"}
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)
MAX_CONFIG_LINES = 80      # the most lines a text with one training key and a launch command has to be a config
MAX_SETTING_LINES = 2000   # lines of a text counted for settings when classifying it (a config is short)
MAX_RUN_LINES = 200_000    # lines searched for an unfenced config block (one may follow a long log)
MIN_RUN_SETTINGS = 3       # an unfenced config block states at least this many settings...
MIN_RUN_TRAINING_KEYS = 2  # ...of which this many are training keys


class MessagePart(BaseModel):
    kind: PartKind
    text: str
    name: str | None = None
    truncated: bool = False


def training_key_hits(text: str) -> int:
    """How many distinct training-config keys the text sets, written as keys or as people name them ("batch size")."""
    head = text[:200_000]
    keys = {m.group(1).lower() for m in _KEY_LINE.finditer(head)}
    keys |= {k.lower() for k in re.findall(r'"([A-Za-z_]\w*)"\s*:', head)}
    keys |= {found[0] for line in head.splitlines()[:MAX_SETTING_LINES] if (found := setting_of(line)) is not None}
    keys |= {k.lower() for k in _FLAG_ANYWHERE.findall(head)}   # a one-line command: --flags anywhere in it
    keys |= {s.key for s in argument_list_settings(head)}        # a command printed as a Python list
    return len(keys.intersection(TRAINING_KEYS))


def is_model_config(text: str) -> bool:
    s = text.strip()
    if not s.startswith("{"):
        return False
    try:
        data = json.loads(s)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and len(_MODEL_CONFIG_KEYS.intersection(data)) >= 3 and "zero_optimization" not in data


def classify_text(text: str) -> PartKind:
    """What a block of text is. A memory error in it makes it a log, whatever else it contains."""
    stripped = text.strip()
    if not stripped:
        return "chat"
    if is_model_config(stripped):
        return "model_config"
    kind = _kind_by_lines(stripped)
    if kind == "log":
        return kind   # the parser could only say the same: parse a long log once, in the diagnosis
    from ..tools.log_parser import parse_log  # the parser is the authority on "this is an OOM log"

    report = parse_log(stripped)
    return "log" if report.is_memory_error or report.kind == "related_error" else kind


def _kind_by_lines(stripped: str) -> PartKind:
    """What a text without a memory error in it is: a config (training keys, few log lines), a log, or chat."""
    lines = _count((ln for ln in stripped.splitlines() if ln.strip()), MAX_CONFIG_LINES + 1)   # as far as compared
    hits = training_key_hits(stripped)
    launched = hits >= 1 and _LAUNCH.search(stripped) and lines <= MAX_CONFIG_LINES
    if hits >= 3 or (hits >= 2 and lines <= 40) or launched:
        if _count(_LOG_LINE.finditer(stripped), max(3, hits)) < max(3, hits):
            return "config"
    if _count(_LOG_LINE.finditer(stripped), 3) >= 3 or lines >= 15:
        return "log"
    return "chat"


def _count(items: Iterable[object], most: int) -> int:
    """How many items there are, counted up to `most`: a long log's lines need not all be found to be many."""
    return sum(1 for _ in islice(items, most))


def classify_file(name: str, text: str) -> PartKind:
    """An attached file: its content decides, its extension breaks ties (a .yaml is never chat)."""
    kind = classify_text(text)
    ext = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    if kind == "chat":
        if ext in ("yaml", "yml", "json", "sh", "toml", "cfg"):
            return "config"
        return "log"
    if kind == "log" and ext in ("yaml", "yml", "json", "toml") and training_key_hits(text) >= 2:
        return "config"
    return kind


def split_message(message: str, files: dict[str, str] | None = None) -> list[MessagePart]:
    """The parts of one turn, in the order written: each fenced block classified, each stretch of text between them
    read for logs and unfenced config blocks (`read_loose`), each file classified; the user's words, together, last."""
    parts: list[MessagePart] = []
    words: list[str] = []
    described: list[str] = []   # words that only describe the failure: the log when the message has no other
    message = message or ""
    fenced = _FENCE.search(message) is not None
    pos = 0
    for m in [*_FENCE.finditer(message), None]:
        loose = message[pos:m.start() if m is not None else len(message)]
        found, said = read_loose(loose, alone=not fenced)
        parts.extend(found)
        if said and (fenced or len(found)) and _describes_failure(said):
            described.append(said)
        elif said:
            words.append(said)
        if m is not None:
            kind = classify_text(m.group(1))
            parts.append(_part("log" if kind == "chat" else kind, m.group(1)))
            pos = m.end()
    for name, text in (files or {}).items():
        parts.append(_part(classify_file(name, text), text, name=name))
    if described and not any(p.kind == "log" for p in parts):
        parts.insert(0, _part("log", "\n".join(described)))
    else:
        words = described + words
    chat = "\n".join(words).strip()
    if chat:
        parts.append(MessagePart(kind="chat", text=chat[:MAX_PART_CHARS]))
    return parts


def read_loose(text: str, *, alone: bool = True) -> tuple[list[MessagePart], str]:
    """Unfenced text: (the logs and configs it holds, the words left for the intent parser). A whole text that is a
    config or a model config.json is one; config blocks inside it (YAML, --flags, Markdown lists of settings) are cut
    out, and what is left is a log if it shows or describes the failure (`alone`, a whole message: also any long text,
    as a bare paste always was), else words."""
    stripped = text.strip()
    if not stripped:
        return [], ""
    kind = classify_text(stripped)
    if kind == "model_config":
        return [_part(kind, stripped)], ""
    lines = stripped.splitlines()
    runs = config_runs(lines)
    inside = {i for a, b in runs for i in range(a, b)}
    rest = "\n".join(line for i, line in enumerate(lines) if i not in inside).strip()
    if kind == "config" and (not runs or all(not ln.strip() or ln.lstrip().startswith("#") for ln in rest.splitlines())):
        return [_part("config", stripped)], ""   # the whole text is the config (its comments included)
    configs = [_part("config", "\n".join(lines[a:b])) for a, b in runs]
    if runs:
        stripped = rest
        kind = classify_text(stripped) if stripped else "chat"
    if (runs or not alone) and stripped:
        # beside a config: text that shows the failure is the log; words (describing it or not) are words
        kind = "log" if _shows_failure(stripped) else "chat"
    if kind == "log":
        return [_part("log", stripped), *configs], ""
    return configs, stripped


def _shows_failure(text: str) -> bool:
    """Does this text show the failure (log lines, an error message)?"""
    from ..tools.log_parser import parse_log

    if _LOG_LINE.search(text):
        return True
    report = parse_log(text)
    return report.is_memory_error or report.kind == "related_error"


def _describes_failure(text: str) -> bool:
    """Do these words describe a memory failure ("fine-tuning with ZeRO-3 still OOMs")? Without a log in the message,
    the description is what the diagnosis reads."""
    from ..tools.described_oom import described_oom

    return described_oom(text) is not None


def config_runs(lines: list[str]) -> list[tuple[int, int]]:
    """[start, end) line ranges of unfenced config blocks: consecutive lines that state settings (or continue them:
    comments, indented lines, shell continuations, blank lines between), with at least MIN_RUN_SETTINGS settings of which
    MIN_RUN_TRAINING_KEYS are training keys, no log line among them, and none right before or after them: a block
    printed inside a log (an argument dump, the command a launcher echoes) stays part of the log."""
    runs: list[tuple[int, int]] = []
    i, n = 0, min(len(lines), MAX_RUN_LINES)
    head_end, tail_start = _window_lines(lines[:n])
    while i < n:
        if head_end <= i < tail_start:
            i = tail_start   # a block opens where a user pastes one: at the text's start or end (its scan window)
            continue
        if not _opens_block(lines[i]):
            i += 1
            continue
        j, keys = i, []
        while j < n and _continues_block(lines[j], lines[j - 1] if j > i else ""):
            keys += _line_settings(lines[j])
            j += 1
        end = j
        while end > i and not lines[end - 1].strip():
            end -= 1
        apart = (i == 0 or not _LOG_LINE.search(lines[i - 1])) and (end >= len(lines) or not _LOG_LINE.search(lines[end]))
        if apart and len(keys) >= MIN_RUN_SETTINGS and len(set(keys) & TRAINING_KEYS) >= MIN_RUN_TRAINING_KEYS:
            runs.append((i, end))
        i = max(j, i + 1)
    return runs


def _window_lines(lines: list[str]) -> tuple[int, int]:
    """(end of the head, start of the tail) of `lines`: the lines scan_window keeps at the text's two ends (its
    window_cut); (n, n) when it keeps them all."""
    text = "\n".join(lines)
    cut = window_cut(text)
    if cut is None:
        return len(lines), len(lines)
    return text.count("\n", 0, cut[0]), text.count("\n", 0, cut[1])


def _line_settings(line: str) -> list[str]:
    """The keys one line of a config block sets: a `key: value` line one, a command or a Python argument list all of
    its flags."""
    if _LAUNCH.match(line.strip()) or line.lstrip().startswith("--"):
        return [k.lower() for k in _FLAG_ANYWHERE.findall(line)]
    listed = [s.key for s in argument_list_settings(line)]
    if listed:
        return listed
    found = setting_of(line)
    return [found[0]] if found is not None else []


def _opens_block(line: str) -> bool:
    return not _LOG_LINE.search(line) and (bool(_line_settings(line)) or bool(_LAUNCH.match(line.strip())))


def _continues_block(line: str, before: str) -> bool:
    """Can `line` belong to the config block that `before` belongs to?"""
    stripped = line.strip()
    if _LOG_LINE.search(line):
        return False
    if not stripped:
        return bool(before.strip())   # one blank line inside a block; two end it
    return (bool(_line_settings(line)) or stripped.startswith(("#", "--", "{", "}", "]", ")")) or line[:1] in " \t"
            or before.rstrip().endswith("\\") or bool(_LAUNCH.match(stripped)) or bool(_PARENT_KEY.match(line)))


def _part(kind: PartKind, text: str, name: str | None = None) -> MessagePart:
    truncated = len(text) > MAX_PART_CHARS
    if truncated:
        text = text[-MAX_PART_CHARS:] if kind == "log" else text[:MAX_PART_CHARS]
    return MessagePart(kind=kind, text=text, name=name, truncated=truncated)


# a program (its environment, a notebook's "!" or a prompt's "$" before it; a subcommand or a few arguments after it)
# with its flags on the first line (`llama-cli -m x.gguf`, `swift export --merge_lora`, `CUDA_VISIBLE_DEVICES=0 swift
# infer --model_type ...`, `vllm serve /models/MiniCPM-V-2_6 --dtype auto`)
_COMMAND = re.compile(r"\s*(?:[A-Z_][A-Z0-9_]{0,60}=\S{0,200}[ \t]+){0,8}(?:[!$][ \t]?)?[\w./-]+(?:[ \t]+[^\s-]\S{0,300}){0,3}"
                      r"[ \t]+-{1,2}[A-Za-z]")


def config_name_for(text: str) -> str:
    """A file name for a pasted config, so the config reader detects its format: JSON, a Python snippet, a command
    line or shell script, else YAML."""
    s = text.lstrip()
    if s.startswith("{"):
        return "pasted_deepspeed.json" if "zero_optimization" in s else "pasted_config.json"
    if looks_like_python(text) and not _LAUNCH.match(s):
        return "pasted_config.py"
    if (_LAUNCH.search(text) or re.search(r"^\s*--\w+", text, re.M) or s.startswith("#!") or "\\\n" in text
            or _COMMAND.match(s)):
        return "pasted_run.sh"   # a command: a `deepspeed:` key in a YAML is not one
    return "pasted_config.yaml"


def is_deepspeed_config(name: str, text: str) -> bool:
    return name.lower().endswith(".json") and "zero_optimization" in text


def referenced_deepspeed(config_text: str) -> str | None:
    """The DeepSpeed file a training config points to (`deepspeed: ds_z3.json`, `--deepspeed ds.json`)."""
    m = re.search(r"""(?:^|\s)-{0,2}"?deepspeed"?\s*[:=\s]\s*["']?([^\s"',}]+\.json)""", config_text, re.M)
    return m.group(1) if m else None


def text_files(files: dict[str, Any] | None) -> dict[str, str] | None:
    """Attached files as text: bytes are decoded (UTF-8, replacement); binary data is refused with a one-line error."""
    if not files:
        return None
    out: dict[str, str] = {}
    for name, data in files.items():
        if isinstance(data, bytes):
            if b"\x00" in data[:8192]:
                raise InputError(f"{name} looks binary, not a text log or config: attach the .log / .yaml / .json / .sh file")
            data = data.decode("utf-8", errors="replace")
        if not isinstance(data, str):
            raise InputError(f"{name}: expected file text, got {type(data).__name__}")
        if "\x00" in data[:8192]:
            raise InputError(f"{name} looks binary, not a text log or config: attach the .log / .yaml / .json / .sh file")
        out[str(name)[:255]] = data
    return out


_SLACK_LINK = re.compile(r"<((?:https?|mailto|ftp):[^|>\s]{1,2000})(?:\|([^>]{0,2000}))?>")
_SLACK_ENTITY = re.compile(r"&(amp|lt|gt);")
_SLACK_CHARS = {"amp": "&", "lt": "<", "gt": ">"}


def unescape_slack(text: str) -> str:
    """A Slack message's text as the user typed it: Slack sends `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;` and links as
    `<url|label>`. Links become their label (or URL), then each entity is undone once, in one pass, so a literal
    `&lt;` the user typed (sent as `&amp;lt;`) stays `&lt;`. Called once, at the Slack door."""
    text = _SLACK_LINK.sub(lambda m: m.group(2) or m.group(1), text)
    return _SLACK_ENTITY.sub(lambda m: _SLACK_CHARS[m.group(1)], text)
