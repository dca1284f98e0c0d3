"""The values a pasted Python snippet gives names, read without running it: assignments (`max_seq_length = 1024*32`,
`max_model_len, tp_size = 131072, 1`), dataclass fields (`max_seq_len: int = 384 + 8`,
`per_device_train_batch_size: int = field(default=1, metadata=...)`) and argparse flags
(`parser.add_argument("--batch_size", type=int, default=64)`).

Training scripts pasted into issues set their numbers this way and pass them on by name
(`FastLanguageModel.from_pretrained(max_seq_length = max_seq_length)`, `TrainingArguments(
per_device_train_batch_size=args.per_device_train_batch_size)`): a name is read as the value the snippet gives it, and a
name the snippet never sets is a value nobody can read here, not an impossible one. Only literals and integer
arithmetic of literals are read (python_doc.literal); each line is parsed alone, so the work is linear in the paste.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from .python_doc import _INT_OPS, _UNREADABLE as UNREADABLE, _matching_paren, int_arithmetic, literal, too_large

MAX_CODE_LINE = 2000   # a longer line is not a setting anyone wrote by hand: not parsed
MAX_CALL_SPAN = 4000   # an add_argument(...) call is read within this many characters of its name

# `name = value`, `a, b = x, y`, `name: Type = value` at a line's start (not `==`); a keyword argument on a line of its
# own (`max_seq_length = max_seq_length,`) reads as one too. The type is a type's spelling (Optional[int], str | None),
# so a YAML line's comment ("cutoff_len: 1024 # tokens = words") is not one.
_ASSIGNMENT = re.compile(r"^[ \t]*([A-Za-z_]\w{0,60}(?:[ \t]*,[ \t]*[A-Za-z_]\w{0,60}){0,7})[ \t]*"
                         r"(:[ \t]*[A-Za-z_][\w.\[\], \t|]{0,80})?=(?!=)[ \t]*")
# a dict entry with a quoted key: `"train_micro_batch_size_per_gpu": Q_batch_size*num_pre_Q,`
_ENTRY = re.compile(r"""^[ \t]*(['"])([A-Za-z_][\w.]{0,60})\1[ \t]*:[ \t]*""")
_ADD_ARGUMENT = re.compile(r"\badd_argument[ \t]*\(")
_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class Reference:
    """A value given as a name or arithmetic over names (`max_seq_length`, `args.batch_size`, `bs * n`): what the
    snippet sets them to decides it, if it sets them at all."""

    source: str
    node: ast.expr | None = field(default=None, compare=False, repr=False)   # its parsed form, kept: never parsed twice

    def value_in(self, names: dict[str, Any]) -> Any:
        """What the names the snippet sets make of it, or UNSET."""
        return _evaluate(self.node, names) if self.node is not None else resolve(self.source, names)


@dataclass(frozen=True)
class Stated:
    """One value a line of the snippet gives a name: its value (UNREADABLE when it is not a literal), its line, and
    its form: "assignment", "entry" (a dict's quoted key), "field" (a typed dataclass field) or "argument"
    (argparse)."""

    name: str
    value: Any
    line: int
    form: str = "assignment"


def _expression(source: str) -> ast.expr | None:
    """The expression `source` holds (a trailing comma and comment allowed), or None when it is not one."""
    code = source.strip()
    if not code or len(code) > MAX_CODE_LINE:
        return None
    bare = _without_comment(code)
    # a line ending in a comma is a keyword argument of a call that spans lines ("max_seq_length = max_seq_length,")
    for candidate in (bare[:-1], code) if bare.endswith(",") else (code, bare):
        try:
            node = ast.parse(candidate, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        return None if too_large(node) else node
    return None


def _without_comment(code: str) -> str:
    """The code before a trailing comment: the first # after the last quote (one pass, no backtracking)."""
    last_quote = max(code.rfind("'"), code.rfind('"'))
    cut = code.find("#", last_quote + 1)
    return (code if cut < 0 else code[:cut]).rstrip()


def _value_of(node: ast.expr) -> Any:
    """A literal (or integer arithmetic of literals) as its value; dataclasses' field(default=...) as its default;
    names, or integer arithmetic over names, as a Reference (evaluated against what the snippet sets); anything
    else UNREADABLE."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "field":
        default = next((k.value for k in node.keywords if k.arg == "default"), None)
        return _value_of(default) if default is not None else UNREADABLE
    if _is_arithmetic_of_names(node):
        return Reference(ast.unparse(node), node)
    return literal(ast.unparse(node))


def _is_arithmetic_of_names(node: ast.expr) -> bool:
    """A name or dotted name, or +, -, *, // over names and integers with at least one name in it."""
    def plain(n: ast.expr) -> bool:
        if isinstance(n, (ast.Name, ast.Attribute)):
            return _NAME.fullmatch(ast.unparse(n)) is not None
        if isinstance(n, ast.BinOp):
            return type(n.op) in _INT_OPS and plain(n.left) and plain(n.right)
        return isinstance(n, ast.Constant) and type(n.value) is int

    return plain(node) and any(isinstance(n, (ast.Name, ast.Attribute)) for n in ast.walk(node))


def _evaluate(node: ast.expr, names: dict[str, Any]) -> Any:
    """A name's value, or the integer arithmetic of names and integers; UNSET when a part is not known."""
    def value_of(name: str) -> Any:
        if name in names:
            return names[name]
        return names.get(name.rpartition(".")[2], UNSET) if "." in name else UNSET

    if isinstance(node, (ast.Name, ast.Attribute)):
        return value_of(ast.unparse(node))
    value = int_arithmetic(node, value_of)
    return UNSET if value is UNREADABLE else value


def _assignment(line: str, n: int) -> list[Stated]:
    """What one line assigns (`a = 1`, `a, b = 1, 2`, `a: int = 1`) or gives a dict's quoted key; [] for neither."""
    m = _ASSIGNMENT.match(line)
    if m is None:
        entry = _ENTRY.match(line)
        node = _expression(line[entry.end():]) if entry is not None else None
        return [Stated(entry.group(2), _value_of(node), n, "entry")] if node is not None else []
    node = _expression(line[m.end():])
    if node is None:
        return []
    form = "field" if m.group(2) else "assignment"
    names = [name.strip() for name in m.group(1).split(",")]
    if len(names) == 1:
        return [Stated(names[0], _value_of(node), n, form)]
    if isinstance(node, ast.Tuple) and len(node.elts) == len(names):
        return [Stated(name, _value_of(elt), n, form) for name, elt in zip(names, node.elts)]
    return []


def _argument(call: str) -> tuple[str, Any] | None:
    """(flag name, default) of one `add_argument(...)` call's source ("--batch_size" → batch_size; dest= wins)."""
    try:
        node = ast.parse("f" + call, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(node, ast.Call) or too_large(node):
        return None
    flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    keywords = {k.arg: k.value for k in node.keywords if k.arg}
    dest = keywords.get("dest")
    name = dest.value if isinstance(dest, ast.Constant) and isinstance(dest.value, str) else next(
        (f.lstrip("-").replace("-", "_") for f in flags if f.startswith("--")), None) or next(
        (f for f in flags if not f.startswith("-")), None)
    if not name or "default" not in keywords:
        return None
    return name, _value_of(keywords["default"])


def stated_values(text: str) -> list[Stated]:
    """Every value the snippet's lines give a name, in line order (assignments, fields, argparse defaults)."""
    out: list[Stated] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if len(line) <= MAX_CODE_LINE:
            out.extend(_assignment(line, n))
    out.extend(_arguments(text))
    return sorted(out, key=lambda s: s.line)


def _arguments(text: str) -> list[Stated]:
    """The argparse flags with a default: each add_argument call read within MAX_CALL_SPAN of its name."""
    out: list[Stated] = []
    line, counted = 1, 0
    for m in _ADD_ARGUMENT.finditer(text):
        line += text.count("\n", counted, m.start())
        counted = m.start()
        window = text[m.end() - 1:m.end() - 1 + MAX_CALL_SPAN]
        close = _matching_paren(window, 0)
        found = _argument(window[:close + 1]) if close >= 0 else None
        if found is not None:
            out.append(Stated(found[0], found[1], line, "argument"))
    return out


def named_values(stated: list[Stated]) -> dict[str, Any]:
    """Name -> the value the snippet last gives it, among the readable ones; a name given as another name takes
    that name's value so far (`max_seq_length = max_seq_length` keeps the number set above)."""
    names: dict[str, Any] = {}
    for s in stated:
        value = value_of(s.value, names)
        if value is not UNREADABLE and value is not UNSET:
            names[s.name] = value
    return names


def value_of(value: Any, names: dict[str, Any]) -> Any:
    """A stated value as the snippet makes it: a Reference by the names it uses (or UNSET), anything else as it is."""
    return value.value_in(names) if isinstance(value, Reference) else value


def reference(source: str) -> Reference | None:
    """A value's source as a Reference when it is a name, a dotted name or arithmetic over names (`max_seq_length`,
    `args.batch_size`, `batch_size // micro_batch_size`); None for a literal or anything else."""
    node = _expression(source)
    return Reference(ast.unparse(node), node) if node is not None and _is_arithmetic_of_names(node) else None


def resolve(source: str, names: dict[str, Any]) -> Any:
    """The value of a name or of integer arithmetic over names, by what the snippet sets (`args.batch_size` by its
    flag's name, `Q_batch_size*num_pre_Q` by both), or UNSET."""
    node = _expression(source)
    return _evaluate(node, names) if node is not None else UNSET


UNSET = object()   # a name the snippet never gives a readable value
