"""What can be read of a config that no format reader accepts: a JSON or YAML file cut short by a paste, a Markdown list
of settings ("- batch size：1", "- 学习率: 1e-4", common in issue reports), `key=value` text, `--flag value` lines, or the
argument list of a command as Python prints it (['--per_device_train_batch_size', '8', ...]).

Every setting that can be read is kept under the key a config would use (human names through keys.SETTING_ALIASES),
with its line; the document says which lines could not be read. Such a document (format "partial") serves the diagnosis
and is never rewritten. An impossible value is still an error naming its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .json_doc import parse_json
from .keys import FIELD_KEYS, MODEL_NAME_KEYS, SETTING_ALIASES, TRAINING_KEYS, VLLM_KEYS
from .safe_yaml import check_size, parse_plain_scalar
from .schema import ConfigDocument
from .python_names import UNREADABLE, UNSET, Reference, named_values, stated_values, value_of
from .validation import RULES, impossible, key_line, setting_problem
from .yaml_doc import read_yaml

MAX_UNREAD_SHOWN = 5
_YAML_TAIL_LINES = 3     # a YAML paste cut short breaks on its last lines: drop up to this many to read the rest
_MAX_KEY_WORDS = 5       # "Note that the run is: ..." is a sentence, not a setting
KNOWN_KEYS = frozenset({*TRAINING_KEYS, *MODEL_NAME_KEYS, *(k for keys in FIELD_KEYS.values() for k in keys)})

_LIST_ITEM = re.compile(r"^(?:[-*+•]|\d{1,3}[.)、])\s+")
# a shell prompt or a notebook's shell escape before a command ("$ torchrun ...", "!python train.py ...")
_PROMPT = re.compile(r"^(?:\$\s+|!\s*)")
# a flag inside a command line, not at its start: "torchrun --nproc_per_node=2 train.py --model_name_or_path x ..."
_INLINE_FLAG = re.compile(r"(?<=\s)--[A-Za-z_]")
# one token of a command line: a quoted string (closed or cut short by the paste) or a run of other characters
_TOKEN = re.compile(r"""(?:[^\s'"]+|'[^']*(?:'|$)|"[^"]*(?:"|$))+""")
# lm-eval style values that hold settings: --model_args "pretrained=Qwen/Qwen2.5-72B,tensor_parallel_size=8"
_SUB_SETTING = re.compile(r"^([A-Za-z_][\w.]{0,60})=(.*)$")
_FLAG = re.compile(r"^--([A-Za-z_][\w.-]{0,60})(?:[ \t]*=[ \t]*|[ \t]+)?(.*?)[ \t]*\\?$")
_PAIR = re.compile(r"""^[`*'"]*([^:=：`*'"]{1,60}?)[`*'"]*[ \t]*[:=：][ \t]*(.*?)[ \t]*,?$""")
_KEY_CHARS = re.compile(r"^[A-Za-z_\u4e00-\u9fff][\w .\-/\u4e00-\u9fff]*$")
_QUOTED = re.compile(r"""'([^'\n]*)'|"([^"\n]*)\"""")
_NUMBER_HEAD = re.compile(r"^([+-]?\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*([kK])?(?![\w.])")


@dataclass
class Setting:
    """One setting read from one line."""

    key: str        # the key a config would use
    written: str    # the key as the text writes it
    value: Any
    line: int


def canonical_key(written: str) -> str | None:
    """The config key a written name stands for: a known key as it is, a human name through SETTING_ALIASES, any
    other identifier as it is (unknown keys are kept); None for something that is not a name."""
    name = written.strip().strip("`*'\"").strip()
    if not name or not _KEY_CHARS.match(name) or len(name.split()) > _MAX_KEY_WORDS:
        return None
    snake = re.sub(r"[\s\-]+", "_", name)
    if snake in KNOWN_KEYS or snake.lower() in KNOWN_KEYS:
        return snake if snake in KNOWN_KEYS else snake.lower()
    alias = SETTING_ALIASES.get(re.sub(r"[\s_\-]+", " ", name.lower()).strip())
    if alias is not None:
        return alias
    return snake if re.fullmatch(r"[A-Za-z_][\w.]*", snake) else None


def scalar(raw: str) -> Any:
    """A value as written: quotes removed, YAML's plain scalars (8, 1e-4, true), "4k" as 4096, a number followed by
    words ("1 (per GPU)") as the number."""
    text = raw.strip().rstrip(",;").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    m = _NUMBER_HEAD.match(text)
    if m and (m.group(2) or m.end() < len(text)):
        number = parse_plain_scalar(m.group(1))
        return int(number * 1024) if m.group(2) and isinstance(number, (int, float)) else number
    return parse_plain_scalar(text)


def _bare(line: str) -> str:
    """The line without its list marker ("- ", "1. ") and a prompt or notebook escape ("$ ", "!")."""
    return _PROMPT.sub("", _LIST_ITEM.sub("", line.strip(), count=1).strip(), count=1)


def setting_of(line: str) -> tuple[str, str, str] | None:
    """(config key, key as written, raw value) of one line that states a setting in any of the forms above."""
    text = _bare(line)
    if not text or text.startswith(("#", "//")):
        return None
    m = _FLAG.match(text)
    if m:
        key = canonical_key(m.group(1))
        return (key, m.group(1), m.group(2) or "true") if key else None
    m = _PAIR.match(text)
    if m and m.group(2) and not m.group(2).startswith(("//", "#")):
        key = canonical_key(m.group(1))
        return (key, m.group(1).strip(), m.group(2)) if key else None
    return None


def settings_in(text: str) -> list[Setting]:
    """Every setting the lines of `text` state, in order (a key stated twice: the last one counts when read). A
    command written on one line gives every flag it carries; Python code gives the values it assigns, its dataclass
    fields' and its argparse flags' defaults (python_names), a variable by the value the snippet gives it."""
    out = []
    code = _code_settings(text)
    for n, line in enumerate(text.splitlines(), start=1):
        if n in code:
            out.extend(code[n])
            continue
        flags = command_flags(line)
        if flags:
            out.extend(Setting(key=k, written=w, value=scalar(v), line=n) for k, w, v in flags)
            continue
        found = setting_of(line)
        if found is not None:
            out.append(Setting(key=found[0], written=found[1], value=scalar(found[2]), line=n))
    return out


def _code_settings(text: str) -> dict[int, list[Setting]]:
    """Line -> the settings Python code on it states where the line reader would misread it: a dataclass field's
    default (`max_len: int = 384 + 8`), an argparse flag's default, and a value given by name or as arithmetic over
    names, taken as the snippet sets them (python_names). A variable the snippet never sets is not read: for a
    numeric setting its line gives none ("max_seq_length = max_seq_length" is a variable, not an impossible length);
    for any other the line is read as text, as before. Plain literal assignments are left to the line reader."""
    stated = stated_values(text)
    names = named_values(stated)
    out: dict[int, list[Setting]] = {}
    for s in stated:
        key = canonical_key(s.name)
        if key is None or (s.form in ("assignment", "entry") and not isinstance(s.value, Reference)):
            continue
        value = value_of(s.value, names)
        if value is UNSET or value is UNREADABLE:
            if key in RULES:
                out.setdefault(s.line, [])
            continue
        out.setdefault(s.line, []).append(Setting(key=key, written=s.name, value=value, line=s.line))
    return out


def command_flags(line: str) -> list[tuple[str, str, str]]:
    """(config key, key as written, raw value) of every `--flag value` / `--flag=value` of a command line that carries
    flags after its start (a program, its arguments and flags on one line); [] for any other line. A value that
    lists `key=value` pairs (lm-eval's --model_args) gives those settings too. Quotes a paste cut short are read
    to the end of the line."""
    text = _bare(line)
    if not _INLINE_FLAG.search(text):
        return []
    tokens = []
    for t in _TOKEN.finditer(text):
        if t.group(0).startswith("#"):   # a shell comment: "run.sh  # only --num_train_epochs changed" sets nothing
            break
        tokens.append(t.group(0))
    out: list[tuple[str, str, str]] = []
    for i, token in enumerate(tokens):
        if not token.startswith("--") or len(token) < 3:
            continue
        name, eq, inline = token[2:].partition("=")
        key = canonical_key(name)
        if key is None:
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        raw = inline if eq else following if following and not following.startswith("-") and following != "\\" else "true"
        out.append((key, name, raw))
        value = raw.strip("'\"")
        if "=" in value:
            for part in value.split(","):
                sub = _SUB_SETTING.match(part.strip())
                if sub and (sub_key := canonical_key(sub.group(1))) is not None:
                    out.append((sub_key, sub.group(1), sub.group(2)))
    return out


def argument_list_settings(text: str) -> list[Setting]:
    """Settings from a command printed as a Python list: "['--per_device_train_batch_size', '8', '--bf16', ...]"."""
    out: list[Setting] = []
    # a list of quoted strings, its closing bracket perhaps cut off by the paste ("..., '--gradient_accumulation [...]")
    for m in re.finditer(r"\[(?=\s{0,20}['\"])[^\[\]]{0,100000}", text):
        items = [(a if a is not None else b, item.start()) for item in _QUOTED.finditer(m.group(0))
                 for a, b in [item.groups()]]
        for i, (item, pos) in enumerate(items):
            if not item.startswith("--"):
                continue
            name, eq, inline = item[2:].partition("=")
            key = canonical_key(name)
            if key is None:
                continue
            value = inline if eq else items[i + 1][0] if i + 1 < len(items) and not items[i + 1][0].startswith("--") else "true"
            line = text.count("\n", 0, m.start() + pos) + 1
            out.append(Setting(key=key, written=name, value=scalar(value), line=line))
    return out


def read_partial(text: str, name: str, extra_files: dict[str, str] | None = None, *, reason: str = "") -> ConfigDocument:
    """The settings that can be read of `text` (a config `load_config` refused, for `reason`), as a "partial" document
    whose notes say why, how it was read and which lines were not; a DeepSpeed config it names is attached as
    `load_config` does. InputError when nothing at all can be read; ImpossibleValue for an impossible value."""
    from .documents import attach_deepspeed

    check_size(text, name)
    data, how, unread = _structured(text, name)
    if data is not None:
        code = _code_settings(text)   # a YAML reading of Python's `max_len: int = 384 + 8` is the field's default
        found = []
        for k, v in data.items():
            if (key := canonical_key(str(k))) is not None:
                line = key_line(text, k) or 0
                found += [s for s in code[line] if s.key == key] if line in code else \
                    [Setting(key=key, written=k, value=v, line=line)]
    else:
        listed = argument_list_settings(text)
        in_lists = {s.line for s in listed}
        found = [s for s in settings_in(text) if s.line not in in_lists] + listed
        read_lines = {s.line for s in found}
        unread = [n for n, line in enumerate(text.splitlines(), start=1)
                  if n not in read_lines and line.strip() and not line.strip().startswith(("#", "//", "```"))
                  and line.strip().strip(",") not in ("{", "}", "[", "]")]
        how = "line by line"
    settings: dict[str, Any] = {}
    for s in found:
        why = setting_problem(s.key, s.value)
        if why:
            raise impossible(name, s.written, s.value, why, s.line or None)
        settings[s.key] = s.value
    if not settings:
        raise InputError(f"{name}: no setting could be read from it (not YAML, JSON, a shell command or a list of "
                         "settings)")
    doc = ConfigDocument(name=name, format="partial", text=text, settings=settings, framework=_framework(settings))
    doc.notes.append(_note(name, how, settings, unread, reason))
    attach_deepspeed(doc, extra_files)
    return doc


def _structured(text: str, name: str) -> tuple[dict[str, Any] | None, str, list[int]]:
    """A JSON object cut short, closed after its last complete member; or a YAML mapping without its broken last
    lines. (settings, how it was read, lines not read), or (None, "", []) when neither works."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        closed = _closed_json(text)
        if closed is not None:
            body, cut = closed
            try:
                value = parse_json(body, name).value
            except InputError:
                value = None
            if isinstance(value, dict) and value:
                rest = text[cut:]   # what follows the last complete member: the lines it touches were not read
                unread = sorted({text.count("\n", 0, cut + i) + 1 for i, ch in enumerate(rest)
                                 if not ch.isspace() and ch != ","})
                return value, "as JSON cut short (closed after its last complete setting)", unread
        return None, "", []
    lines = text.splitlines()
    for drop in range(1, min(_YAML_TAIL_LINES, len(lines) - 1) + 1):
        try:
            value = read_yaml("\n".join(lines[:-drop]) + "\n", name)
        except InputError:
            continue
        if value:
            return value, f"as YAML without its last {drop} line{'s' if drop > 1 else ''}", \
                list(range(len(lines) - drop + 1, len(lines) + 1))
    return None, "", []


def _closed_json(text: str) -> tuple[str, int] | None:
    """`text` cut after the last member that ends at a comma (outside strings), with the brackets still open closed:
    ('{"a": 1, "b": {"c": 2}}', cut) for '{"a": 1, "b": {"c": 2, "d": "x'. One pass; None when there is no such cut."""
    stack: list[str] = []
    in_string = escaped = False
    best: tuple[int, list[str]] | None = None
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                return None
            stack.pop()
            if not stack:
                return None   # a complete object: the reader's own error stands
        elif ch == "," and stack:
            best = (i, list(stack))
    if best is None:
        return None
    cut, open_ = best
    return text[:cut] + "".join(reversed(open_)), cut


def _framework(settings: dict[str, Any]) -> str | None:
    from .documents import HF_TRAINER_KEYS, LLAMAFACTORY_KEYS

    keys = set(settings)
    if keys & LLAMAFACTORY_KEYS:
        return "llamafactory"
    if keys & HF_TRAINER_KEYS:
        return "hf_trainer"
    # the engine's own arguments, "quantization" aside (a word training configs use too)
    return "vllm" if keys & (set(VLLM_KEYS) - {"quantization"}) else None


def unreadable(text: str, name: str, *, reason: str) -> ConfigDocument:
    """A config of which nothing could be read: no settings (nothing of it enters the setup), only the note why."""
    return ConfigDocument(name=name, format="partial", text=text, notes=[
        f"{name} could not be read ({reason}) and no setting could be read from it line by line: diagnosed from the log "
        "alone; paste the whole config to get it fixed"])


def _note(name: str, how: str, settings: dict[str, Any], unread: list[int], reason: str = "") -> str:
    keys = ", ".join(list(settings)[:8]) + (", ..." if len(settings) > 8 else "")
    why = f" ({reason})" if reason else ""
    note = (f"{name} is not a complete config{why}: read {how}, {len(settings)} setting{'s' if len(settings) != 1 else ''} "
            f"({keys})")
    if unread:
        shown = ", ".join(str(n) for n in unread[:MAX_UNREAD_SHOWN]) + (f" and {len(unread) - MAX_UNREAD_SHOWN} more"
                                                                       if len(unread) > MAX_UNREAD_SHOWN else "")
        note += f"; could not read line{'s' if len(unread) > 1 else ''} {shown}"
    return note + "; the fix is described, not written into it"
