"""Follow-up parser accuracy on a held-out set of English and Chinese messages (evals/data/intents_heldout.jsonl,
phrasings not used by the unit tests), and the parser's speed.

    .venv/bin/python evals/intents_accuracy.py          # per-intent tables, misses, median time per message

A message counts as correct when its main intent matches and every labelled slot has the labelled value.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
# set a tuned the parser (its misses were fixed, generically); set b was written afterwards and scored once
SETS = ("intents_heldout.jsonl", "intents_heldout_b.jsonl")


def main() -> int:
    for name in sys.argv[1:] or SETS:
        print(f"== {name}")
        score(DATA_DIR / name)
        print()
    return 0


def score(path: Path) -> None:
    from ask_oom.assistant.intents import parse_followups

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # intent → [n, intent ok, intent+slots ok]
    misses = []
    for row in rows:
        got = parse_followups(row["text"])
        main = got[0]
        stats = per[row["intent"]]
        stats[0] += 1
        if main.name == row["intent"]:
            stats[1] += 1
            if all(main.slots.get(k) == v for k, v in row["slots"].items()):
                stats[2] += 1
                continue
        misses.append((row["text"], row["intent"], row["slots"], [(i.name, i.slots) for i in got]))

    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for row in rows:
            parse_followups(row["text"])
        times.append((time.perf_counter() - t0) / len(rows))

    print(f"{'intent':<18} {'n':>3} {'intent acc':>10} {'+ slots':>8}")
    total = [0, 0, 0]
    for name in sorted(per):
        n, ok, full = per[name]
        total = [total[0] + n, total[1] + ok, total[2] + full]
        print(f"{name:<18} {n:>3} {ok / n:>10.0%} {full / n:>8.0%}")
    print(f"{'ALL':<18} {total[0]:>3} {total[1] / total[0]:>10.0%} {total[2] / total[0]:>8.0%}")
    print(f"\nmedian parse time: {statistics.median(times) * 1e6:.0f} µs per message (5 runs over {len(rows)} messages)")
    if misses:
        print("\nmisses:")
        for text, want, slots, got in misses:
            print(f"  {text!r}: want {want} {slots}, got {got}")


if __name__ == "__main__":
    sys.exit(main())
