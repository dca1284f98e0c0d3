"""Follow-up state benchmark: does a follow-up message change the conversation's public state exactly as it should?

    .venv/bin/python evals/followup_state.py                 # score every row once, then time the set (3 runs in all)
    .venv/bin/python evals/followup_state.py --runs 1 --limit 40
    .venv/bin/python evals/followup_state.py --only fu-zh-012 --verbose

Data: evals/data/followups/messages.jsonl (how it was written: evals/data/followups/README.md). For each row:

1. a fresh session (in a temporary session store) whose first turn attaches the fixed OOM log
   ui/examples/moe-llava-phi2.log, so there is a diagnosis;
2. the row's `context` (the state before the message). `ask_oom.ui.cmd_chat.chat_turn` takes no state, so the
   context is sent as short plain English stating messages (one per piece: hardware, host RAM, each constraint, the
   what-if), built from the context by `context_messages`; the public state after them is the BASELINE. Whether the
   baseline shows the context is reported apart ("context not reproduced"), and never changes the score: a row is
   scored against the baseline it actually got;
3. the row's `message`; the public state after it is scored.

A row is EXACT when every key in `expect` has the expected value in the new state (GiB floats within 0.5 GiB;
`keep` compared as a set; `what_if` as a mapping, numbers compared as numbers), every other state key equals the
baseline, and `last_intent` equals the row's `intent`. The table gives n and exact % by language and by intent, the
overall exact %, the misses (message, expected, got) and the median time per follow-up message (the scored turn
only, over every run: the first run scores, the others only time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "evals" / "data" / "followups" / "messages.jsonl"
LOG = REPO / "ui" / "examples" / "moe-llava-phi2.log"

STATE_KEYS = ("gpus", "nodes", "gpu_memory_gib", "gpu_name", "host_ram_gib", "what_if", "keep")  # + last_intent
FLOAT_KEYS = {"gpu_memory_gib", "host_ram_gib"}
GIB_TOLERANCE = 0.5
TARGET_EXACT = 95.0

# how a context piece is said in the stating messages (plain English; never the row's own wording)
_KEEP_PHRASES = {
    "seq_len": "Please keep the sequence length as it is.",
    "batch": "Please keep the per-device batch size as it is.",
    "effective_batch": "Please keep the global (effective) batch size as it is.",
    "full_finetuning": "It has to stay full fine-tuning, no LoRA.",
    "deepspeed": "We cannot change anything about DeepSpeed.",
    "model": "The model has to stay the same.",
}
_WHAT_IF_WORDS = {
    "per_device_train_batch_size": lambda v: f"per_device_train_batch_size {v}",
    "gradient_accumulation_steps": lambda v: f"gradient_accumulation_steps {v}",
    "cutoff_len": lambda v: f"cutoff_len {v}",
    "zero_stage": lambda v: f"ZeRO stage {v}",
    "gradient_checkpointing": lambda v: "gradient checkpointing on" if v else "gradient checkpointing off",
    "finetuning_type": lambda v: f"finetuning_type {v}",
    "lora_rank": lambda v: f"lora_rank {v}",
    "quantization_bit": lambda v: f"{v}-bit quantization",
    "offload": lambda v: {"optimizer": "optimizer offload to CPU", "all": "offloading optimizer and parameters to CPU",
                          "none": "no offload"}[v],
}


def load_rows(path: Path = DATA) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def context_messages(ctx: dict[str, Any]) -> list[str]:
    """The stating messages that put a row's context into a fresh session (empty context: none)."""
    out: list[str] = []
    gpus, nodes, name, mem = ctx.get("gpus"), ctx.get("nodes"), ctx.get("gpu_name"), ctx.get("gpu_memory_gib")
    card = _card_words(name) if name else None
    size = f" with {mem:g} GB each" if mem is not None and not name else ""
    if gpus is not None:
        gpu_words = " ".join(w for w in (str(gpus), card, "GPU" if gpus == 1 else "GPUs") if w)
        where = f"{nodes} nodes with {gpu_words} per node" if nodes is not None else gpu_words
        out.append(f"We have {where}{size}.")
    else:
        if nodes is not None:
            out.append(f"We have {nodes} nodes.")
        if card or mem is not None:
            out.append(f"Our GPUs are {card}." if card else f"Each GPU has {mem:g} GB of memory.")
    if ctx.get("host_ram_gib") is not None:
        out.append(f"The machine has {ctx['host_ram_gib']:g} GB of RAM.")
    for word in ctx.get("keep") or []:
        out.append(_KEEP_PHRASES[word])
    if ctx.get("what_if"):
        out.append("What if " + " and ".join(_WHAT_IF_WORDS[k](v) for k, v in ctx["what_if"].items()) + "?")
    return out


def _card_words(name: str) -> str:
    """A canonical card name as people write it: 'RTX-4090-24GB' -> 'RTX 4090 24GB', 'A100-80GB' -> 'A100 80GB'."""
    return name.replace("-", " ")


def same(key: str, got: Any, want: Any) -> bool:
    """One state key compared the way the benchmark scores it."""
    if want is None or got is None:
        return want is None and got is None
    if key in FLOAT_KEYS:
        return isinstance(got, (int, float)) and abs(float(got) - float(want)) <= GIB_TOLERANCE
    if key == "keep":
        return set(got or []) == set(want or [])
    if key == "what_if":
        got, want = dict(got or {}), dict(want or {})
        return got.keys() == want.keys() and all(_same_value(got[k], want[k]) for k in want)
    return _same_value(got, want)


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return float(got) == float(want)
    if isinstance(want, str) and isinstance(got, str):
        return got.strip().lower() == want.strip().lower()
    return got == want


def _norm(state: dict[str, Any] | None) -> dict[str, Any]:
    state = dict(state or {})
    out = {k: state.get(k) for k in STATE_KEYS}
    out["what_if"] = dict(out["what_if"] or {})
    out["keep"] = list(out["keep"] or [])
    out["last_intent"] = state.get("last_intent")
    return out


def score_row(row: dict[str, Any], baseline: dict[str, Any], new: dict[str, Any]) -> tuple[bool, list[str]]:
    """(exact, the reasons it is not)."""
    why: list[str] = []
    for key, want in row["expect"].items():
        if not same(key, new.get(key), want):
            why.append(f"{key}: want {want!r}, got {new.get(key)!r}")
    for key in STATE_KEYS:
        if key not in row["expect"] and not same(key, new.get(key), baseline.get(key)):
            why.append(f"{key} changed: {baseline.get(key)!r} -> {new.get(key)!r}")
    if new.get("last_intent") != row["intent"]:
        why.append(f"last_intent: want {row['intent']!r}, got {new.get('last_intent')!r}")
    return not why, why


def context_reproduced(row: dict[str, Any], baseline: dict[str, Any]) -> bool:
    return all(same(k, baseline.get(k), v) for k, v in row["context"].items())


class Runner:
    def __init__(self, store_dir: Path):
        from ask_oom.ui.cmd_chat import chat_turn

        self.chat_turn = chat_turn
        self.store_dir = store_dir

    def turn(self, session: str | None, message: str, attachments: list[Path] | None = None) -> dict[str, Any]:
        out = self.chat_turn(self.store_dir, session, message, attachments or [])
        if out.get("error"):
            raise RuntimeError(f"chat_turn error: {out['error']}")
        return out

    def run_row(self, row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], float]:
        """(baseline state, new state, seconds of the scored turn)."""
        first = self.turn(None, "", [LOG])
        if first.get("diagnosis") is None:
            raise RuntimeError("the log turn gave no diagnosis")
        sid = first["session"]
        state = first["state"]
        for text in context_messages(row["context"]):
            state = self.turn(sid, text)["state"]
        baseline = _norm(state)
        t0 = time.perf_counter()
        out = self.turn(sid, row["message"])
        dt = time.perf_counter() - t0
        return baseline, _norm(out["state"]), dt


def _pct(ok: int, n: int) -> str:
    return f"{100.0 * ok / n:5.1f}" if n else "  -  "


def _short(state: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """What a got-state says: the keys that differ from the baseline, and last_intent."""
    out = {k: state.get(k) for k in STATE_KEYS if not same(k, state.get(k), baseline.get(k))}
    out["last_intent"] = state.get("last_intent")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--runs", type=int, default=3, help="passes over the set: the first scores, all time (default 3)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N rows (0: all)")
    ap.add_argument("--only", action="append", default=[], metavar="ID", help="only this row (repeatable)")
    ap.add_argument("--verbose", action="store_true", help="print every row's baseline and new state")
    ap.add_argument("--json-out", type=Path, help="also write the per-row results here")
    args = ap.parse_args(argv)

    rows = load_rows(args.data)
    if args.only:
        rows = [r for r in rows if r["id"] in set(args.only)]
    if args.limit:
        rows = rows[: args.limit]
    if not rows:
        print("no rows", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="ask-oom-followups-") as tmp:
        runner = Runner(Path(tmp))
        results: list[dict[str, Any]] = []
        times: list[float] = []
        t_start = time.perf_counter()
        for i, row in enumerate(rows):
            try:
                baseline, new, dt = runner.run_row(row)
                exact, why = score_row(row, baseline, new)
                err = None
            except Exception as exc:  # a crash is a miss, reported as such
                baseline, new, dt, exact, why, err = {}, {}, None, False, [f"error: {exc!r}"], repr(exc)
            if dt is not None:
                times.append(dt)
            results.append({"row": row, "baseline": baseline, "new": new, "exact": exact, "why": why, "error": err,
                            "context_ok": context_reproduced(row, baseline) if not err else False})
            if args.verbose:
                print(json.dumps({"id": row["id"], "exact": exact, "baseline": baseline, "new": new, "why": why},
                                 ensure_ascii=False))
            if (i + 1) % 25 == 0:
                print(f"  scored {i + 1}/{len(rows)} ({time.perf_counter() - t_start:.0f}s)", file=sys.stderr)
        for run in range(1, max(args.runs, 1)):
            for row in rows:
                try:
                    times.append(runner.run_row(row)[2])
                except Exception:
                    pass
            print(f"  timing run {run + 1}/{args.runs} done ({time.perf_counter() - t_start:.0f}s)", file=sys.stderr)

    report(results, times, args.runs)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


def report(results: list[dict[str, Any]], times: list[float], runs: int) -> None:
    by_lang: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_intent: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    nochange = [0, 0]
    for r in results:
        row = r["row"]
        for bucket in (by_lang[row["lang"]], by_intent[row["intent"]]) + ((nochange,) if not row["expect"] else ()):
            bucket[0] += 1
            bucket[1] += int(r["exact"])
    n = len(results)
    ok = sum(int(r["exact"]) for r in results)

    print(f"\n{'language':<12} {'n':>4} {'exact %':>8}")
    for lang in sorted(by_lang):
        print(f"{lang:<12} {by_lang[lang][0]:>4} {_pct(by_lang[lang][1], by_lang[lang][0]):>8}")
    print(f"\n{'intent':<12} {'n':>4} {'exact %':>8}")
    for intent in sorted(by_intent):
        print(f"{intent:<12} {by_intent[intent][0]:>4} {_pct(by_intent[intent][1], by_intent[intent][0]):>8}")
    print(f"{'(no change)':<12} {nochange[0]:>4} {_pct(nochange[1], nochange[0]):>8}")
    print(f"\noverall exact: {ok}/{n} = {_pct(ok, n).strip()}%  (target >= {TARGET_EXACT:g}%)")
    bad_ctx = [r for r in results if r["row"]["context"] and not r["context_ok"]]
    with_ctx = sum(1 for r in results if r["row"]["context"])
    print(f"context reproduced by the stating messages: {with_ctx - len(bad_ctx)}/{with_ctx} rows with a context")
    if times:
        print(f"time per follow-up message: median {statistics.median(times) * 1000:.1f} ms, "
              f"p90 {sorted(times)[int(0.9 * (len(times) - 1))] * 1000:.1f} ms over {len(times)} turns ({runs} run(s))")

    misses = [r for r in results if not r["exact"]]
    print(f"\nmisses ({len(misses)}):")
    for r in misses:
        row = r["row"]
        want = dict(row["expect"], last_intent=row["intent"])
        got = {"error": r["error"]} if r["error"] else _short(r["new"], r["baseline"])
        ctx = "" if not row["context"] or r["context_ok"] else "  [context not reproduced]"
        print(f"- {row['id']} {row['message']!r}{ctx}\n    expected {json.dumps(want, ensure_ascii=False)}"
              f"\n    got      {json.dumps(got, ensure_ascii=False)}")
    if bad_ctx:
        print(f"\ncontext not reproduced ({len(bad_ctx)}):")
        for r in bad_ctx:
            print(f"- {r['row']['id']} context {json.dumps(r['row']['context'], ensure_ascii=False)} -> baseline "
                  f"{json.dumps({k: r['baseline'].get(k) for k in r['row']['context']}, ensure_ascii=False)}")


if __name__ == "__main__":
    sys.exit(main())
