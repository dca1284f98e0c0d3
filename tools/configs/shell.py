"""Training command lines inside shell scripts (`deepspeed train.py --per_device_train_batch_size 8 \\`,
`torchrun ...`, `accelerate launch ...`, `llamafactory-cli train ...`): every word is kept with its
character span, so a flag's value is edited in place and a missing flag is appended to the same
command in the script's own continuation style; the rest of the script stays byte for byte."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .safe_yaml import GAP_MARK, check_size, parse_plain_scalar

_OPERATORS = ("&&", "||", ";;", ";", "|", "&", "(", ")")
_REDIRECT = re.compile(r"^\d*(?:>>?|<|>&|&>)")
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
_PREFIX_WORDS = ("nohup", "exec", "time", "env")   # run the command after them, with the same environment prefix
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:-][^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")

# an interpreter named with its minor version (python3.10, /usr/bin/python2.7): the launcher its major version names
_VERSIONED_PYTHON = re.compile(r"^(python[23]?)\.\d{1,2}$")
LAUNCHERS = ("deepspeed", "torchrun", "accelerate", "llamafactory-cli", "swift", "python", "python3", "vllm")
# launcher options that are switches (take no value); every other launcher option takes one
_LAUNCHER_SWITCHES = {
    "--standalone", "--no_python", "--no-python", "--multi_gpu", "--use_deepspeed", "--use_fsdp", "--no_local_rank",
    "--no_ssh_check", "--force_multi", "--autotuning", "--elastic_training", "--module", "-m", "--debug",
    "--tpu", "--cpu", "--mps", "--same_network", "--dynamo_use_fullgraph", "-u", "--use_env", "--use-env",
}


@dataclass
class Word:
    """One shell word: raw text with its span, and its value with quotes removed."""

    raw: str
    start: int
    end: int
    value: str
    line: int = 0


@dataclass
class Flag:
    """A program option: `--name value...`, `--name=value` or a bare `--name`."""

    name: str
    word: Word
    values: list[Word] = field(default_factory=list)
    inline: bool = False  # --name=value


@dataclass
class Command:
    """One simple command that runs a training script, with the launcher's own options split off."""

    env: dict[str, str]
    program: str
    launcher_flags: dict[str, str]
    script: str | None
    subcommand: str | None
    flags: list[Flag]
    words: list[Word]
    end: int  # end of the last argument word (before redirections / operators)

    def flag(self, name: str) -> Flag | None:
        """The flag `name` (a setting's key: `micro_batch_size` is also `--micro-batch-size`, as argparse reads it)."""
        return next((f for f in self.flags if f.name == name), None) or next(
            (f for f in self.flags if setting_name(f.name) == name), None)

    def flag_spelling(self, key: str) -> str:
        """A new flag spelled the way the command spells its own: Megatron's --micro-batch-size, HF's --max_steps."""
        worded = [f.name for f in self.flags if "-" in f.name or "_" in f.name]
        dashed = sum("-" in n for n in worded)
        return key.replace("_", "-") if worded and dashed > len(worded) - dashed else key


def tokenize(text: str) -> list[list[Word]]:
    """Simple commands as lists of words (continuations joined, comments and operators dropped)."""
    commands: list[list[Word]] = []
    current: list[Word] = []
    i, n, line = 0, len(text), 0
    while i < n:
        ch = text[i]
        if ch == "\\" and text.startswith("\n", i + 1):
            i += 2
            line += 1
            continue
        if ch == "\\" and text.startswith("\r\n", i + 1):   # a script saved with Windows line ends
            i += 3
            line += 1
            continue
        if ch == "\n":
            if current and _continues_pasted(text, i + 1):
                i += 1   # a flag line pasted without its backslash (issue trackers eat them) continues the command
                line += 1
                continue
            if current:
                commands.append(current)
                current = []
            i += 1
            line += 1
            continue
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op:
            if current:
                commands.append(current)
                current = []
            i += len(op)
            continue
        start, value = i, []
        while i < n and text[i] not in " \t\r\n;&|()":
            c = text[i]
            if c == "\\" and i + 1 < n:
                if text[i + 1] == "\n" or text.startswith("\r\n", i + 1):
                    break
                value.append(text[i + 1])
                i += 2
            elif c in "'\"":
                close = text.find(c, i + 1)
                if close < 0:
                    raise InputError(f"shell script: unterminated {c} quote on line {line + 1}")
                value.append(text[i + 1:close])
                line += text.count("\n", i, close)
                i = close + 1
            elif c == "$" and text.startswith("$(", i):
                depth, j = 0, i
                while j < n:
                    if text[j] == "(":
                        depth += 1
                    elif text[j] == ")":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                value.append(text[i:j + 1])
                i = j + 1
            else:
                value.append(c)
                i += 1
        current.append(Word(raw=text[start:i], start=start, end=i, value="".join(value), line=line))
    if current:
        commands.append(current)
    return commands


def script_variables(commands: list[list[Word]]) -> dict[str, str]:
    """`name=value` and `export name=value` lines (later ones win), for resolving ${name} in flags."""
    out: dict[str, str] = {}
    for words in commands:
        ws = words[1:] if words and words[0].value == "export" else words
        if ws and all(_ASSIGN.match(w.value) for w in ws):
            for w in ws:
                m = _ASSIGN.match(w.value)
                out[m.group(1)] = substitute(m.group(2), out)
    return out


def ascii_digits(text: str) -> bool:
    """'8' yes; '³' or '٣' no (str.isdigit accepts them, int() does not or should not)."""
    return text.isascii() and text.isdigit()


def substitute(value: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), value)


def setting_name(flag: str) -> str:
    """The setting a flag sets: argparse stores `--micro-batch-size` as micro_batch_size."""
    return flag.replace("-", "_")


# a paste's elision on a continued line: not the flag's next value
_GAP_WORD = re.compile(GAP_MARK)


def _is_value_word(w: Word) -> bool:
    v = w.value
    if _GAP_WORD.fullmatch(v):
        return False
    return not v.startswith("-") or bool(re.match(r"^-\d", v)) or v == "-"


def parse_command(words: list[Word]) -> Command | None:
    """The training command in `words`, or None when it does not launch training."""
    env: dict[str, str] = {}
    i = 0
    while i < len(words) and _ASSIGN.match(words[i].value):
        m = _ASSIGN.match(words[i].value)
        env[m.group(1)] = m.group(2)
        i += 1
    if i < len(words) and words[i].value in _PREFIX_WORDS:
        i += 1
        while i < len(words) and _ASSIGN.match(words[i].value):
            m = _ASSIGN.match(words[i].value)
            env[m.group(1)] = m.group(2)
            i += 1
    if i >= len(words):
        return None
    program = words[i].value.rsplit("/", 1)[-1]
    program = _VERSIONED_PYTHON.sub(r"\1", program)   # python3.10 runs as python3 does
    if program not in LAUNCHERS and not is_llama_cpp_program(program):
        return None
    i += 1
    subcommand = None
    if program in ("accelerate", "llamafactory-cli", "swift", "vllm"):
        if i >= len(words):
            return None
        subcommand = words[i].value
        i += 1
        if program == "accelerate" and subcommand != "launch":
            return None
        if program == "llamafactory-cli" and subcommand not in ("train", "sft", "export"):
            return None
        if program == "swift" and subcommand not in ("sft", "pt", "rlhf", "export", "merge-lora"):
            return None
        if program == "vllm" and subcommand != "serve":   # `vllm serve MODEL --flags`: an inference server
            return None
    launcher_flags: dict[str, str] = {}
    script = None
    if program not in ("llamafactory-cli", "swift", "vllm") and not is_llama_cpp_program(program):
        while i < len(words):
            w = words[i]
            v = w.value
            if not v.startswith("-"):
                if program in ("python", "python3") and launcher_flags.get("-m") == "":
                    pass
                script = v
                i += 1
                break
            if "=" in v:
                k, val = v.split("=", 1)
                launcher_flags[k] = val
                i += 1
                continue
            if v in _LAUNCHER_SWITCHES:
                launcher_flags[v] = ""
                i += 1
                if v == "-m" and i < len(words):   # python -m torch.distributed.run / module
                    launcher_flags["-m"] = words[i].value
                    i += 1
                    if words[i - 1].value in ("torch.distributed.run", "torch.distributed.launch"):
                        program = "torchrun"
                        continue
                    script = words[i - 1].value
                    break
                continue
            if i + 1 < len(words) and not words[i + 1].value.endswith(".py"):
                launcher_flags[v] = words[i + 1].value
                i += 2
                continue
            if i + 1 < len(words):            # an unknown switch right before the script
                launcher_flags[v] = ""
                i += 1
                continue
            i += 1
    elif i < len(words) and not words[i].value.startswith("-"):
        script = words[i].value  # llamafactory-cli train config.yaml / vllm serve MODEL
        i += 1
    flags: list[Flag] = []
    end = words[i - 1].end if i else words[0].end
    j = i
    while j < len(words):
        w = words[j]
        if _REDIRECT.match(w.raw):
            break
        if w.value.startswith("--") or (w.value.startswith("-") and not _is_value_word(w)):
            name = w.value.lstrip("-")
            if "=" in name:
                name, _, _ = name.partition("=")
                eq = w.raw.index("=")
                vword = Word(raw=w.raw[eq + 1:], start=w.start + eq + 1, end=w.end,
                             value=w.value.split("=", 1)[1], line=w.line)
                flags.append(Flag(name=name, word=w, values=[vword], inline=True))
                end = w.end
                j += 1
                continue
            flag = Flag(name=name, word=w)
            j += 1
            while j < len(words) and _is_value_word(words[j]) and not _REDIRECT.match(words[j].raw):
                flag.values.append(words[j])
                j += 1
            flags.append(flag)
            end = (flag.values[-1] if flag.values else w).end
            continue
        end = w.end
        j += 1
    return Command(env=env, program=program, launcher_flags=launcher_flags, script=script,
                   subcommand=subcommand, flags=flags, words=words, end=end)


def _continues_pasted(text: str, i: int) -> bool:
    """True when the line starting at i begins with a --flag: no shell command starts so, so it is a continuation."""
    while i < len(text) and text[i] in " \t":
        i += 1
    return text.startswith("--", i) and text[i + 2:i + 3].isalpha()


# llama.cpp's programs: llama-cli, llama-server, llama-mtmd-cli, llama-qwen2vl-cli, llava-cli, ... (inference)
_LLAMA_CPP_PROGRAM = re.compile(r"(?:llama-[a-z0-9-]{2,30}|llava-cli|minicpmv-cli)(?:\.exe)?", re.IGNORECASE)


def is_llama_cpp_program(program: str) -> bool:
    return bool(_LLAMA_CPP_PROGRAM.fullmatch(program))


def training_commands(text: str) -> list[Command]:
    """Every command in the script that launches training."""
    return [c for c in (parse_command(ws) for ws in tokenize(text)) if c is not None]


def main_command(text: str, name: str = "script") -> Command:
    check_size(text, name)
    commands = training_commands(text)
    if not commands:
        raise InputError(
            f"{name}: no training command found (expected deepspeed, torchrun, accelerate launch, "
            "llamafactory-cli train, python <script>.py with --flags, vllm serve or a llama.cpp program)"
        )
    # the command with the most training flags is the training run (a script may also run eval/merge)
    return max(commands, key=lambda c: len(c.flags))


def flag_settings(cmd: Command, variables: dict[str, str]) -> dict[str, Any]:
    """Flags as settings: typed single values, lists for multi-value flags, True for bare switches; a dashed flag
    under its name as written and under the setting's name (micro_batch_size for --micro-batch-size)."""
    out: dict[str, Any] = {}
    for f in cmd.flags:
        if not f.values:
            value: Any = True
        else:
            vals = [parse_plain_scalar(substitute(v.value, variables)) if not v.raw.startswith(("'", '"'))
                    else substitute(v.value, variables) for v in f.values]
            value = vals[0] if len(vals) == 1 else vals
        out[f.name] = value   # as written; a dashed flag is also the setting argparse stores (--micro-batch-size)
        out.setdefault(setting_name(f.name), value)
    return out


def num_gpus_from_command(cmd: Command, variables: dict[str, str]) -> tuple[int | None, str]:
    """Data-parallel processes the launcher starts on one node, and the flag that said so."""
    lf = {k.lstrip("-").replace("-", "_"): substitute(v, variables) for k, v in cmd.launcher_flags.items()}
    for key in ("num_gpus", "nproc_per_node", "num_processes"):
        if ascii_digits(lf.get(key, "")):
            return int(lf[key]), f"--{key}"
    if "include" in lf:
        hosts = lf["include"].split("@")
        total = 0
        for h in hosts:
            _, _, slots = h.partition(":")
            total += len([s for s in slots.split(",") if s]) if slots else 0
        if total:
            return total, "--include"
    env = {**variables, **cmd.env}
    if cmd.program in ("llamafactory-cli", "swift") and ascii_digits(str(env.get("NPROC_PER_NODE", "")).strip("'\"")):
        # LLaMA-Factory and ms-swift start torchrun themselves with NPROC_PER_NODE processes
        return int(str(env["NPROC_PER_NODE"]).strip("'\"")), "NPROC_PER_NODE"
    visible = cmd.env.get("CUDA_VISIBLE_DEVICES") or variables.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [s for s in substitute(visible, variables).strip("'\"").split(",") if s.strip()]
        if ids:
            return len(ids), "CUDA_VISIBLE_DEVICES"
    if cmd.program in ("python", "python3") and "-m" not in cmd.launcher_flags:
        return 1, "single process (python)"
    return None, ""


def num_nodes_from_command(cmd: Command, variables: dict[str, str]) -> int | None:
    lf = {k.lstrip("-").replace("-", "_"): substitute(v, variables) for k, v in cmd.launcher_flags.items()}
    for key in ("num_nodes", "nnodes", "num_machines"):
        if ascii_digits(lf.get(key, "")):
            return int(lf[key])
    nnodes = str({**variables, **cmd.env}.get("NNODES", "")).strip("'\"")
    if cmd.program in ("llamafactory-cli", "swift") and ascii_digits(nnodes):
        return int(nnodes)
    return None


def render_value(value: Any, like: Word | None = None) -> str:
    """A shell word for `value`, quoted like the word it replaces."""
    if isinstance(value, bool):
        text = "True" if value else "False"
        if like is not None and like.value.islower():
            text = text.lower()
    else:
        text = str(value)
    if like is not None and like.raw[:1] in ("'", '"'):
        return f"{like.raw[0]}{text}{like.raw[0]}"
    if re.search(r"[\s'\"$`\\;&|<>(){}*?#]", text):
        return "'" + text.replace("'", "'\\''") + "'"
    return text


def set_flags(text: str, updates: dict[str, Any], name: str = "script") -> str:
    """Edit the training command's flags in place; add missing ones on the same command.

    A value of None removes nothing (flags are never deleted); a bare switch set to False
    becomes `--switch False`.
    """
    for key, value in updates.items():
        cmd = main_command(text, name)
        if ENV_KEY.fullmatch(key):
            text = _set_env(text, cmd, key, value)
            continue
        flag = cmd.flag(key)
        if flag is not None:
            if len(flag.values) == 1 and (assign := _sole_assignment(text, flag.values[0])) is not None:
                # `--per_device_train_batch_size $BS` with `BS=8` set once and used once: edit the assignment
                start, end, like = assign
                text = text[:start] + render_value(value, like) + text[end:]
                continue
            if flag.values:
                w = flag.values[0]
                new = render_value(value, w)
                if len(flag.values) > 1:   # multi-value flag replaced by one value
                    text = text[:w.start] + new + text[flag.values[-1].end:]
                else:
                    text = text[:w.start] + new + text[w.end:]
            elif value is not True:
                text = text[:flag.word.end] + " " + render_value(value) + text[flag.word.end:]
            continue
        text = _append_flag(text, cmd, f"--{cmd.flag_spelling(key)}" + ("" if value is True else " " + render_value(value)))
    return text


# A setting the launcher reads from the environment (ms-swift's MAX_PIXELS, NPROC_PER_NODE): upper case, as scripts
# write them; flags are lower case.
ENV_KEY = re.compile(r"[A-Z][A-Z0-9_]*")


def _set_env(text: str, cmd: Command, key: str, value: Any) -> str:
    """Set an environment variable for the command: its `KEY=value` prefix (or the script's one `KEY=`/`export KEY=`
    assignment) edited in place, else a new prefix right before the program."""
    literal = render_value(value)
    for words in tokenize(text):
        exported = bool(words) and words[0].value == "export"
        ws = words[1:] if exported else words
        for w in ws:
            m = _ASSIGN.match(w.raw)
            # the command's own prefix, an `export KEY=`, or a `KEY=` line of its own
            if m and m.group(1) == key and (w in cmd.words or exported or len(ws) == 1):
                start = w.start + len(key) + 1
                return text[:start] + literal + text[w.end:]
            if not (m or w.value in _PREFIX_WORDS):
                break   # past the command's prefix: assignments later on the line are arguments
    program = next(w for w in cmd.words if not _ASSIGN.match(w.value) and w.value not in _PREFIX_WORDS)
    return text[:program.start] + f"{key}={literal} " + text[program.start:]


def _sole_assignment(text: str, word: Word) -> tuple[int, int, Word] | None:
    """The span of NAME's value in its one `NAME=value` line when `word` is exactly $NAME / ${NAME} and the
    script uses NAME nowhere else (so editing the assignment changes only this flag)."""
    m = re.fullmatch(r"[\"']?\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))[\"']?", word.raw)
    if not m:
        return None
    var = m.group(1) or m.group(2)
    uses = re.findall(r"\$\{?" + re.escape(var) + r"\b", text)
    if len(uses) != 1:
        return None
    assigns = []
    for words in tokenize(text):
        ws = words[1:] if words and words[0].value == "export" else words
        for w in ws:
            am = _ASSIGN.match(w.raw)
            if am and am.group(1) == var:
                assigns.append(w)
    if len(assigns) != 1:
        return None
    w = assigns[0]
    vstart = w.start + len(var) + 1
    like = Word(raw=w.raw[len(var) + 1:], start=vstart, end=w.end, value=w.value[len(var) + 1:], line=w.line)
    if "$" in like.raw or "`" in like.raw:
        return None
    return vstart, w.end, like


def _append_flag(text: str, cmd: Command, literal: str) -> str:
    """Add a flag after the command's last argument, continuing the line the way the script does."""
    pos = cmd.end
    nl = "\r\n" if "\r\n" in text else "\n"
    cont = "\\" + nl
    first_line_start = text.rfind("\n", 0, cmd.words[0].start) + 1
    if cont not in text[first_line_start:pos]:
        return text[:pos] + " " + literal + text[pos:]
    # the continuation style of the previous lines: spacing before the backslash and the indent after it
    last_cont = text.rfind(cont, first_line_start, pos)
    before = re.search(r"[ \t]*$", text[:last_cont]).group(0) or " "
    line_start = last_cont + len(cont)
    indent = re.match(r"[ \t]*", text[line_start:]).group(0)
    return text[:pos] + before + cont + indent + literal + text[pos:]
