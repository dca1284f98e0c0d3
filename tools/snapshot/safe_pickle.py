"""Read a memory snapshot's bytes as plain data without ever running code.

`torch.cuda.memory._dump_snapshot` writes a pickle of dicts, lists, tuples, strings, numbers, bools and None. A pickle
can also name any importable callable and call it, so the bytes are scanned opcode by opcode first (anything that can
build an object is refused, whatever it names), then loaded by an unpickler whose `find_class` refuses everything.
A snapshot converted to JSON (some tools do) is read as JSON; a gzip-compressed file is decompressed within the limit.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import zlib
from typing import Any

from ..errors import InputError, UnsafeInput

MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024  # a snapshot with 100k history entries and deep stacks is a few hundred MiB
_DEEP = "nested too deeply"
_NAME_SCAN = 1 << 20  # a STACK_GLOBAL this far in is refused without re-reading the pickle for its names

# Opcodes that build objects other than plain containers and scalars (or fetch them from outside the pickle).
# GLOBAL/STACK_GLOBAL/INST name a callable; OBJ/NEWOBJ/NEWOBJ_EX/REDUCE call one; BUILD calls __setstate__;
# EXT1/2/4 name one through the copyreg registry; PERSID/BINPERSID ask the loader for an outside object;
# NEXT_BUFFER/READONLY_BUFFER take out-of-band buffers.
REFUSED_OPCODES = frozenset({
    "GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE", "BUILD", "EXT1", "EXT2", "EXT4",
    "PERSID", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER",
})
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                         "SHORT_BINSTRING"})
_WHY = {
    "OBJ": "call a class (OBJ)", "NEWOBJ": "create an object with __new__ (NEWOBJ)",
    "NEWOBJ_EX": "create an object with __new__ (NEWOBJ_EX)", "REDUCE": "call a function (REDUCE)",
    "BUILD": "set an object's state (BUILD)", "EXT1": "fetch a registered extension object (EXT1)",
    "EXT2": "fetch a registered extension object (EXT2)", "EXT4": "fetch a registered extension object (EXT4)",
    "PERSID": "load an outside object (PERSID)", "BINPERSID": "load an outside object (BINPERSID)",
    "NEXT_BUFFER": "read an out-of-band buffer", "READONLY_BUFFER": "read an out-of-band buffer",
}
_PLAIN = "a memory snapshot holds only plain data"


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that can build nothing but plain containers and scalars (the second line of defence)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="replace")
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafeInput(f"snapshot {self._name}: refused: the pickle asks to build a "
                          f"'{_clean(module)}.{_clean(name)}' object; {_PLAIN}")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeInput(f"snapshot {self._name}: refused: the pickle asks for an outside object; {_PLAIN}")


# How far each opcode reaches, from pickletools' own opcode table: > 0 a fixed width (the opcode byte included);
# else one of the codes below. Unknown bytes stay _UNKNOWN.
_UNKNOWN, _NEWLINE, _LEN1, _LEN4, _LEN4S, _LEN8, _REFUSED, _STOP = 0, -1, -2, -3, -4, -5, -6, -7
_LAYOUT = {pickletools.UP_TO_NEWLINE: _NEWLINE, pickletools.TAKEN_FROM_ARGUMENT1: _LEN1,
           pickletools.TAKEN_FROM_ARGUMENT4: _LEN4S, pickletools.TAKEN_FROM_ARGUMENT4U: _LEN4,
           pickletools.TAKEN_FROM_ARGUMENT8U: _LEN8}
_REACH = [_UNKNOWN] * 256
_NAMES: dict[int, str] = {}
for _op in pickletools.opcodes:
    _code = ord(_op.code)
    _NAMES[_code] = _op.name
    _n = _op.arg.n if _op.arg is not None else 0
    _REACH[_code] = (_REFUSED if _op.name in REFUSED_OPCODES else _STOP if _op.name == "STOP"
                     else 1 + _n if _n >= 0 else _LAYOUT[_n])


def _clean(text: str) -> str:
    """A name from the pickle as one short printable line."""
    return "".join(c if c.isprintable() else "?" for c in str(text)[:100])


def _refusal(data: bytes, pos: int, op: str, name: str) -> UnsafeInput:
    """The one-line refusal for the opcode at `pos`, naming the object it would build (pickletools.genops re-reads
    the pickle up to there to find the names a STACK_GLOBAL takes from the stack)."""
    if op in ("GLOBAL", "INST"):
        end1 = data.find(b"\n", pos + 1)
        end2 = data.find(b"\n", end1 + 1) if end1 != -1 else -1
        module = _clean(data[pos + 1:end1].decode("utf-8", "replace")) if end1 != -1 else "?"
        attr = _clean(data[end1 + 1:end2].decode("utf-8", "replace")) if end2 != -1 else "?"
        what = f"build a '{module}.{attr}' object"
    elif op == "STACK_GLOBAL":
        recent: list[str] = []
        try:
            for opcode, arg, _at in pickletools.genops(io.BytesIO(data[:pos] if pos <= _NAME_SCAN else b"")):
                if opcode.name in _STRING_OPS:
                    recent = (recent + [_clean(arg)])[-2:]
        except Exception:  # noqa: BLE001 - the prefix ends without STOP: the names were read by then
            pass
        what = f"build a '{'.'.join(recent)}' object" if len(recent) == 2 else "build an object"
    else:
        what = _WHY[op]
    return UnsafeInput(f"snapshot {name}: refused: the pickle asks to {what}; {_PLAIN}")


def check_opcodes(data: bytes, *, name: str) -> None:
    """Refuse a pickle that could build anything but plain data: one pass over its opcodes, laid out as pickletools'
    opcode table says (the walk pickletools.genops makes, without decoding the arguments); nothing is executed."""
    reach, pos, n = _REACH, 0, len(data)
    while pos < n:
        k = reach[data[pos]]
        if k > 0:
            pos += k
            continue
        if k == _LEN1:
            if pos + 1 >= n:
                break
            pos += 2 + data[pos + 1]
        elif k == _LEN4 or k == _LEN4S:
            length = int.from_bytes(data[pos + 1:pos + 5], "little", signed=k == _LEN4S)
            if length < 0 or pos + 5 > n:
                raise InputError(f"snapshot {name}: not a readable pickle (a bad length at byte {pos})")
            pos += 5 + length
        elif k == _LEN8:
            if pos + 9 > n:
                break
            pos += 9 + int.from_bytes(data[pos + 1:pos + 9], "little")
        elif k == _NEWLINE:
            end = data.find(b"\n", pos + 1)
            if end == -1:
                break
            pos = end + 1
        elif k == _STOP:
            return
        elif k == _REFUSED:
            raise _refusal(data, pos, _NAMES[data[pos]], name)
        else:
            raise InputError(f"snapshot {name}: not a readable pickle (an unknown opcode {data[pos]:#04x} at byte "
                             f"{pos}: corrupt, or not a pickle)")
    raise InputError(f"snapshot {name}: not a readable pickle (truncated: it ends before its STOP opcode)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _gunzip(data: bytes, name: str) -> bytes:
    """A gzip-compressed snapshot, decompressed to at most MAX_SNAPSHOT_BYTES."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, MAX_SNAPSHOT_BYTES + 1)
    except zlib.error as exc:
        raise InputError(f"snapshot {name}: a corrupt gzip file ({_first_line(exc)})") from None
    if len(out) > MAX_SNAPSHOT_BYTES or d.unconsumed_tail:
        raise UnsafeInput(f"snapshot {name}: refused: it decompresses to more than {MAX_SNAPSHOT_BYTES >> 20} MiB")
    return out


def _load_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise UnsafeInput(f"snapshot {name}: refused: the JSON is {_DEEP}") from None
    except ValueError as exc:
        raise InputError(f"snapshot {name}: not valid JSON ({_first_line(exc)})") from None


def load_plain(data: bytes | bytearray | memoryview | str, *, name: str) -> Any:
    """The plain data in a snapshot file (pickle, JSON, or either gzip-compressed); InputError with one line when
    the input is too large, not a snapshot file, or asks for anything but plain data."""
    if isinstance(data, str):
        if len(data) > MAX_SNAPSHOT_BYTES:
            raise UnsafeInput(f"snapshot {name}: refused: larger than {MAX_SNAPSHOT_BYTES >> 20} MiB")
        stripped = data.lstrip("\ufeff \t\r\n")
        if stripped[:1] in ("{", "["):
            return _load_json(stripped, name)
        raise InputError(f"snapshot {name}: text that is not JSON; pass a pickle snapshot as bytes")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"snapshot {name}: expected the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise UnsafeInput(f"snapshot {name}: refused: larger than {MAX_SNAPSHOT_BYTES >> 20} MiB "
                          f"({len(data) >> 20} MiB); record fewer history entries (max_entries)")
    if not data.strip():
        raise InputError(f"snapshot {name}: the file is empty")
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, name)
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"{", b"["):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"snapshot {name}: neither a pickle nor UTF-8 JSON") from None
        return _load_json(text, name)
    check_opcodes(data, name=name)
    try:
        return _PlainUnpickler(data, name).load()
    except UnsafeInput:
        raise
    except RecursionError:
        raise UnsafeInput(f"snapshot {name}: refused: the pickle is {_DEEP}") from None
    except MemoryError:
        raise UnsafeInput(f"snapshot {name}: refused: the pickle needs more memory than this machine has") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad input, shown as one line
        raise InputError(f"snapshot {name}: not a readable pickle ({_first_line(exc)})") from None
