"""Conversation turn latency, warm (index loaded, session store on disk): the five seed scenarios played as
log → config → "I have 4x A100 40GB" → "what if cutoff_len is 2048?" → "why?" → "show the diff again",
each turn timed; medians over several runs, plus 20 sessions at once from threads.

    .venv/bin/python evals/conversation_latency.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SEEDS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "seeds"
FOLLOW_UPS = ["I have 4x A100 40GB", "what if cutoff_len is 2048?", "why?", "show the diff again"]


def _configs(seed: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(seed.iterdir()) if p.suffix in (".yaml", ".sh", ".json") and p.name != "expected.json"}


def play(conv, sid: str, seed: Path, timings: dict[str, list[float]]) -> None:
    turns = [("log", (seed / "train.log").read_text(), None), ("config", "", _configs(seed))]
    turns += [(text, text, None) for text in FOLLOW_UPS]
    for label, message, files in turns:
        t0 = time.perf_counter()
        conv.handle(sid, message, files=files)
        timings[label].append(time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from ask_oom.assistant.conversation import Conversation
    from ask_oom.assistant.session import SessionStore
    from ask_oom.assistant.settings import Settings
    from ask_oom.kb.index import CaseIndex

    seeds = sorted(p for p in SEEDS.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory() as tmp:
        conv = Conversation(SessionStore(Path(tmp) / "s.db"), Settings(llm_base_url=None), index=CaseIndex.load_or_build())
        play(conv, "warm-up", seeds[0], defaultdict(list))
        timings: dict[str, list[float]] = defaultdict(list)
        for run in range(args.runs):
            for seed in seeds:
                play(conv, f"r{run}-{seed.name}", seed, timings)
        print(f"{'turn':<32} {'median ms':>9} {'p90 ms':>7} {'n':>4}")
        for label, values in timings.items():
            values.sort()
            p90 = values[int(0.9 * (len(values) - 1))]
            print(f"{label:<32} {statistics.median(values) * 1e3:>9.1f} {p90 * 1e3:>7.1f} {len(values):>4}")

        walls = []
        for run in range(max(1, args.runs // 2)):
            errors: list[BaseException] = []

            def user(n: int) -> None:
                try:
                    play(conv, f"c{run}-{n}", seeds[n % len(seeds)], defaultdict(list))
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            threads = [threading.Thread(target=user, args=(n,)) for n in range(20)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            walls.append(time.perf_counter() - t0)
            if errors:
                print(f"concurrent run failed: {errors[0]!r}")
                return 1
        print(f"\n20 concurrent sessions x {2 + len(FOLLOW_UPS)} turns: median wall {statistics.median(walls):.2f} s "
              f"over {len(walls)} runs ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
