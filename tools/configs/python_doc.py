"""Python training snippets: the keyword arguments of the calls that configure a run (TrainingArguments,
SFTConfig, from_pretrained, BitsAndBytesConfig, LoraConfig, ...) read as settings and edited in place.

Safety: the code is never run. Each argument's source is parsed alone with `ast.parse` and only literals
(numbers, strings, booleans, None, lists/tuples/dicts of them) and dotted names (torch.bfloat16, kept as text)
are read. Edits replace one literal's exact source span, so every other byte stays as written; snippets
pasted into issues with elisions ("[...]") still read, because arguments are split and parsed one by one.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from ..errors import InputError
from .keys import LORA_CONFIG_KEYS, VLLM_KEYS
from .safe_yaml import MAX_DEPTH

# Calls whose keyword arguments are training settings, and what each configures (where a new key goes).
TRAINING_ARGS_CALLS = ("TrainingArguments", "Seq2SeqTrainingArguments", "SFTConfig", "DPOConfig", "GRPOConfig",
                       "ORPOConfig", "KTOConfig", "RewardConfig", "UnslothTrainingArguments")
QUANT_CALLS = ("BitsAndBytesConfig",)
LORA_CALLS = ("LoraConfig", "get_peft_model")
LOAD_CALLS = ("from_pretrained",)
VLLM_CALLS = ("LLM", "AsyncEngineArgs", "EngineArgs")   # vLLM's offline engine: LLM(model=..., tensor_parallel_size=...)
ARGS_DICT_CALLS = ("dict",)   # LLaMA-Factory's Python entry: run_exp(dict(stage="sft", cutoff_len=8192, ...))
SETTING_CALLS = (TRAINING_ARGS_CALLS + QUANT_CALLS + LORA_CALLS + LOAD_CALLS + VLLM_CALLS + ("SFTTrainer", "Trainer")
                 + ARGS_DICT_CALLS)
CALL_PATTERN = re.compile(r"(?<![\w.])(?:[A-Za-z_][\w]*\.)*(" + "|".join(SETTING_CALLS) + r")\s*\(")

_QUANT_KEYS = ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_compute_dtype", "bnb_4bit_use_double_quant")
_LOAD_KEYS = ("attn_implementation", "torch_dtype", "device_map", "low_cpu_mem_usage", "max_memory",
              "offload_folder", "max_seq_length", "use_gradient_checkpointing")
_PROCESSOR_KEYS = ("max_pixels", "min_pixels")   # Qwen-VL processors take the image cap at from_pretrained
_UNREADABLE = object()


def is_processor_call(call: Call) -> bool:
    """`AutoProcessor.from_pretrained(...)`, `Qwen2VLProcessor.from_pretrained(...)`: where image settings go."""
    return call.name in LOAD_CALLS and call.owner.endswith("Processor")


@dataclass
class Kwarg:
    """One keyword argument: its value and the source span of the value (for in-place edits)."""

    call: str
    name: str
    value: Any
    start: int
    end: int


@dataclass
class Call:
    """One configuring call: its name, the offsets of its parentheses and its keyword arguments."""

    name: str
    open: int
    close: int
    kwargs: list[Kwarg]
    first_positional: tuple[str, int, int] | None = None   # source text and span of the first positional argument
    owner: str = ""   # what the call is made on: "AutoProcessor" in AutoProcessor.from_pretrained(...)
    cut: bool = False   # the paste ends inside the call: its arguments up to the cut are read, none is added


def _matching_paren(text: str, i: int) -> int:
    """Offset of the ")" closing the "(" at i (strings and comments skipped), or -1."""
    depth, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = _matching_string_end(text, i)
            if j < 0:
                return -1
            i = j
            continue
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_args(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Top-level comma-separated argument spans between start and end (brackets and strings respected)."""
    spans, depth, i, piece = [], 0, start, start
    while i < end:
        c = text[i]
        if c in "'\"":
            close = _matching_string_end(text, i)
            i = close if close > 0 else end
            continue
        if c == "#":
            j = text.find("\n", i)
            i = end if j < 0 or j > end else j
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            spans.append((piece, i))
            piece = i + 1
        i += 1
    spans.append((piece, end))
    return spans


def _matching_string_end(text: str, i: int) -> int:
    c = text[i]
    quote = text[i:i + 3] if text.startswith(c * 3, i) else c
    j = text.find(quote, i + len(quote))
    while j > 0 and len(quote) == 1 and text[j - 1] == "\\":
        j = text.find(quote, j + 1)
    return j + len(quote) if j >= 0 else -1


def _skip_comments(text: str, i: int, end: int) -> int:
    """The offset of the first code character at or after i (blanks and whole comment lines skipped)."""
    while i < end:
        if text[i].isspace():
            i += 1
        elif text[i] == "#":
            j = text.find("\n", i, end)
            i = end if j < 0 else j
        else:
            break
    return i


def _code_end(text: str, start: int, end: int) -> int:
    """The offset just after the last code character in [start, end): trailing blanks and comments excluded."""
    i, last = start, start
    while i < end:
        c = text[i]
        if c in "'\"":
            close = _matching_string_end(text, i)
            i = close if 0 < close <= end else end
            last = i
            continue
        if c == "#":
            j = text.find("\n", i)
            i = end if j < 0 or j > end else j
            continue
        if not c.isspace():
            last = i + 1
        i += 1
    return last


def literal(source: str) -> Any:
    """The value of a literal expression, a dotted name as text, or _UNREADABLE (never evaluates code)."""
    try:
        node = ast.parse(source.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _UNREADABLE
    if too_large(node):
        return _UNREADABLE
    if isinstance(node, (ast.Name, ast.Attribute)):
        return ast.unparse(node)
    if isinstance(node, ast.BinOp):
        return int_arithmetic(node)   # pixel caps are written max_pixels=1280*28*28
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return _UNREADABLE


def too_large(node: ast.AST) -> bool:
    """Nested deeper than a config may nest (safe_yaml.MAX_DEPTH; a 990-term sum is 990 levels: literal_eval, unparse
    and the arithmetic recurse), so it is not read and never recursed into.
    Walked with an explicit stack, so measuring cannot overflow the stack; a wide literal (a DeepSpeed dict) passes."""
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return False


_INT_OPS = {ast.Mult: lambda a, b: a * b, ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
            ast.FloorDiv: lambda a, b: a // b if b else None}
_MAX_INT = 1 << 62   # no setting is larger; keeps a pasted 10**10**10 from being computed


def int_arithmetic(node: ast.AST, name_value: Callable[[str], Any] | None = None) -> Any:
    """+, -, *, // over integer literals and, given `name_value`, over the names it knows (python_names: what the
    snippet sets them to); _UNREADABLE for anything else, a name it does not know or an absurd size."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if name_value is not None and isinstance(node, (ast.Name, ast.Attribute)):
        value = name_value(ast.unparse(node))
        return value if type(value) is int else _UNREADABLE
    if isinstance(node, ast.BinOp) and type(node.op) in _INT_OPS:
        a, b = int_arithmetic(node.left, name_value), int_arithmetic(node.right, name_value)
        if a is _UNREADABLE or b is _UNREADABLE or abs(a) > _MAX_INT or abs(b) > _MAX_INT:
            return _UNREADABLE
        out = _INT_OPS[type(node.op)](a, b)
        return out if out is not None and abs(out) <= _MAX_INT else _UNREADABLE
    return _UNREADABLE


_KWARG = re.compile(r"\s*([A-Za-z_]\w*)\s*=(?!=)\s*", re.S)


def find_calls(text: str) -> list[Call]:
    """Every configuring call in the snippet, in source order."""
    calls = []
    for m in CALL_PATTERN.finditer(text):
        open_at = m.end() - 1
        close = _matching_paren(text, open_at)
        cut = close < 0
        if cut:   # a paste cut inside the call ("lora_al"): read the arguments it still shows
            close = len(text)
        kwargs, first = [], None
        for a, b in _split_args(text, open_at + 1, close):
            a = _skip_comments(text, a, b)
            piece = text[a:b]
            km = _KWARG.match(piece)
            if km is None:
                if first is None and piece.strip() and not kwargs:
                    lead = len(piece) - len(piece.lstrip())
                    first = (piece.strip(), a + lead, a + lead + len(piece.strip()))
                continue
            vstart = a + km.end()
            vend = _code_end(text, vstart, b)
            value = literal(text[vstart:vend])
            if value is not _UNREADABLE:
                kwargs.append(Kwarg(m.group(1), km.group(1), value, vstart, vend))
        owner = m.group(0)[:m.start(1) - m.start(0)].rstrip(".")
        calls.append(Call(m.group(1), open_at, close, kwargs, first, owner, cut))
    return calls


def _assigned_string(text: str, name: str) -> str | None:
    """`name = "..."` at the start of a line: the value a variable argument refers to."""
    m = re.search(rf"^\s*{re.escape(name)}\s*=\s*(['\"])([^'\"\n]+)\1\s*$", text, re.M)
    return m.group(2) if m else None


def python_settings(text: str) -> tuple[dict[str, Any], str]:
    """Flat settings (first occurrence of each keyword wins) and the framework the snippet uses."""
    calls = find_calls(text)
    if not calls:
        raise InputError("python snippet: no TrainingArguments / SFTConfig / from_pretrained / BitsAndBytesConfig / "
                         "LoraConfig / vLLM LLM call found; paste the code that configures the run")
    from .python_names import UNSET, named_values, reference, stated_values
    from .validation import RULES

    assigned = named_values(stated_values(text))
    settings: dict[str, Any] = {}
    for call in calls:
        if call.name in LOAD_CALLS and call.first_positional and "model_name_or_path" not in settings:
            src = call.first_positional[0]
            value = literal(src)
            if isinstance(value, str) and not re.fullmatch(r"[\w.]+", src):
                settings["model_name_or_path"] = value
            elif isinstance(value, str):
                named = _assigned_string(text, value)
                if named:
                    settings["model_name_or_path"] = named
        for kw in call.kwargs:
            ref = reference(text[kw.start:kw.end])
            if ref is not None:
                # a variable: the value the snippet gives it; one it never sets cannot be read (not impossible)
                value = ref.value_in(assigned)
                if value is not UNSET:
                    kw = replace(kw, value=value)
                elif kw.name in RULES:
                    continue
            if kw.name in ("model_name", "pretrained_model_name_or_path") and isinstance(kw.value, str):
                settings.setdefault("model_name_or_path", _assigned_string(text, kw.value) or kw.value)
            settings.setdefault(kw.name, kw.value)
    names = {c.name for c in calls}
    if names & set(LORA_CALLS) and not any(k in settings for k in ("r", "lora_r")):
        settings.setdefault("use_peft", True)   # LoRA is applied even when the snippet elides its rank
    if names & set(VLLM_CALLS) and not names & set(TRAINING_ARGS_CALLS):
        framework = "vllm"   # an inference engine: its keywords are the server's flags (model, tensor_parallel_size...)
    elif re.search(r"\bFast(?:Language|Vision)?Model\b", text):
        framework = "unsloth"
    elif names & {"SFTConfig", "DPOConfig", "GRPOConfig", "ORPOConfig", "KTOConfig", "RewardConfig", "SFTTrainer"}:
        framework = "trl"
    else:
        framework = "hf_trainer"
    return settings, framework


def render_literal(value: Any, like: str | None = None) -> str:
    """Python source for a value; a string keeps the quote style of the literal it replaces."""
    if isinstance(value, str):
        quote = '"' if like and like.lstrip().startswith('"') else "'" if like else '"'
        return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote
    return repr(value)


def _home_call(calls: list[Call], key: str) -> Call | None:
    """The call a new keyword belongs in: quantization → BitsAndBytesConfig/from_pretrained, LoRA → LoraConfig,
    loading → from_pretrained, anything else → the TrainingArguments-like call."""
    if key in _PROCESSOR_KEYS:
        return next((c for c in calls if is_processor_call(c)), None)
    if key in _QUANT_KEYS:
        order = QUANT_CALLS + LOAD_CALLS
    elif key in LORA_CONFIG_KEYS:
        order = LORA_CALLS
    elif key in _LOAD_KEYS:
        order = LOAD_CALLS
    elif key in VLLM_KEYS:
        order = VLLM_CALLS
    else:
        order = TRAINING_ARGS_CALLS
    for name in order + ARGS_DICT_CALLS:   # an argument dict takes every key its framework reads
        found = next((c for c in calls if c.name == name and not is_processor_call(c) and not c.cut), None)
        if found is not None:
            return found
    return None


def set_python_values(text: str, updates: dict[str, Any], name: str = "snippet") -> str:
    """The snippet with each keyword's literal replaced in place, or added to the call it belongs in."""
    edits: list[tuple[int, int, str]] = []
    inserts: dict[int, tuple[Call, list[str]]] = {}   # new keywords per call: one edit each (spans never overlap)
    calls = find_calls(text)
    for key, value in updates.items():
        existing = next((kw for c in calls for kw in c.kwargs if kw.name == key), None)
        if existing is not None:
            edits.append((existing.start, existing.end, render_literal(value, text[existing.start:existing.end])))
            continue
        call = _home_call(calls, key)
        if call is None:
            raise InputError(f"{name}: no call to put {key}= in (expected TrainingArguments/SFTConfig, "
                             "from_pretrained, BitsAndBytesConfig or LoraConfig); set it where your script builds its arguments")
        inserts.setdefault(call.open, (call, []))[1].append(f"{key}={render_literal(value)}")
    edits.extend(_insertion(text, call, args) for call, args in inserts.values())
    out = text
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        out = out[:start] + new + out[end:]
    return out


def _insertion(text: str, call: Call, args: list[str]) -> tuple[int, int, str]:
    """An edit adding `args` as the call's last arguments, in the call's own layout (one per line or inline)."""
    inner = text[call.open + 1:call.close]
    last_end = _code_end(text, call.open + 1, call.close)
    body = text[call.open + 1:last_end]
    if not body.strip():
        return call.close, call.close, ", ".join(args)
    if "\n" not in inner:
        return last_end, last_end, (" " if body.endswith(",") else ", ") + ", ".join(args)
    lines = [ln for ln in body.split("\n") if ln.strip()]
    indent = re.match(r"[ \t]*", lines[-1]).group(0) if len(lines) > 1 or inner.startswith("\n") else "    "
    added = "".join(f"\n{indent}{a}," for a in args)
    eol = text.find("\n", last_end, call.close)
    tail = text[last_end:eol] if eol >= 0 else ""
    if tail.strip().startswith("#"):   # a comment after the last argument stays on its line
        return last_end, eol, f"{'' if body.endswith(',') else ','}{tail}{added}"
    if body.endswith(","):
        return last_end, last_end, added
    return last_end, last_end, "," + added[:-1]
