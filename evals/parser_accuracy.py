"""Parser accuracy: field-level agreement with the labelled corpus (tests/fixtures/logs/*.expected.json),
which must be 100%, and with the numbers in ../shared/dev-cases/*.yaml `expected.parse` (real reports).

    .venv/bin/python evals/parser_accuracy.py            # both tables; exit 1 if the corpus is below 100%

Expected sizes may be written as the log prints them ("23.64 GiB"): a value then matches when it is within
half of the last printed digit (what the printed figure can tell), otherwise sizes must be exact integers.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "fixtures" / "logs"
DEV_CASES = REPO.parent / "shared" / "dev-cases"
GiB = 1 << 30

SIZE_FIELDS = {"requested_bytes", "gpu_total_bytes", "gpu_free_bytes", "process_used_bytes", "torch_allocated_bytes",
               "torch_reserved_bytes", "torch_reserved_unallocated_bytes"}


def _size_matches(expected, actual) -> bool:
    """An expected size given as printed text ('1.74 GiB') matches within half its last digit."""
    from ask_oom.tools.units import parse_size

    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, int):
        return expected == actual
    target = parse_size(expected)
    if target is None:
        raise ValueError(f"bad expected size {expected!r}")
    number, unit = expected.split()[0], expected.split()[-1]
    decimals = len(number.split(".")[1]) if "." in number else 0
    half_digit = parse_size(f"1 {unit}") * 0.5 * 10 ** (-decimals)
    return abs(actual - target) <= half_digit + 1


def compare(expected: dict, report) -> list[tuple[str, bool, str]]:
    """(field, ok, detail) for every labelled field of one log."""
    out = []
    for field, want in expected.items():
        if field in SIZE_FIELDS:
            got = getattr(report, field)
            out.append((field, _size_matches(want, got), f"want {want!r} got {got!r}"))
        elif field in ("versions", "training_args"):
            got_map = getattr(report, field)
            for key, value in want.items():
                got = got_map.get(key)
                got = got.value if hasattr(got, "value") else got
                out.append((f"{field}.{key}", got == value, f"want {value!r} got {got!r}"))
        elif field == "related_errors":
            got = sorted({e.kind for e in report.related_errors})
            out.append((field, got == sorted(want), f"want {sorted(want)} got {got}"))
        elif field == "other_processes":
            got = [(p.pid, p.bytes) for p in report.other_processes]
            ok = len(got) == len(want) and all(
                g[0] == w["pid"] and _size_matches(w["bytes"], g[1]) for g, w in zip(got, want))
            out.append((field, ok, f"want {want} got {got}"))
        elif field == "gpus":
            for w in want:
                match = next((g for g in report.gpus if g.index == w.get("index")), None)
                ok = match is not None and all(
                    _size_matches(v, getattr(match, k)) if k.endswith("bytes") else getattr(match, k) == v
                    for k, v in w.items())
                out.append((f"gpus[{w.get('index')}]", ok, f"want {w} got {match}"))
        elif field == "evidence_lines":
            for fact, line in want.items():
                lines = [e.line for e in report.evidence if e.fact == fact]
                out.append((f"evidence.{fact}", line in lines, f"want line {line} got {lines}"))
        else:
            got = getattr(report, field)
            out.append((field, got == want, f"want {want!r} got {got!r}"))
    return out


def evaluate_corpus(corpus: Path = CORPUS) -> dict:
    """Per-field counts and the failures over every labelled log in the corpus."""
    from ask_oom.tools.log_parser import parse_log

    per_field: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    failures = []
    logs = sorted(corpus.glob("*.expected.json"))
    for path in logs:
        name = path.name.removesuffix(".expected.json")
        label = json.loads(path.read_text(encoding="utf-8"))
        report = parse_log((corpus / f"{name}.log").read_bytes())
        for field, ok, detail in compare(label["expected"], report):
            group = field.split(".")[0].split("[")[0]
            per_field[group][0] += 1
            per_field[group][1] += ok
            if not ok:
                failures.append((name, field, detail))
    checked = sum(v[0] for v in per_field.values())
    correct = sum(v[1] for v in per_field.values())
    return {"logs": len(logs), "per_field": dict(per_field), "checked": checked, "correct": correct,
            "failures": failures}


_DEV_FIELDS = {"requested_gib": "requested_bytes", "total_gib": "gpu_total_bytes", "free_gib": "gpu_free_bytes",
               "torch_allocated_gib": "torch_allocated_bytes", "reserved_unallocated_gib": "torch_reserved_unallocated_bytes",
               "gpu_index": "gpu_index"}


def evaluate_dev_cases(cases_dir: Path = DEV_CASES) -> list[dict]:
    """Numbers parsed from each real report's log vs its expected.parse (GiB rounded as the labels are)."""
    from ruamel.yaml import YAML

    from ask_oom.tools.log_parser import parse_log

    yaml = YAML(typ="safe")
    rows = []
    for path in sorted(cases_dir.glob("*.yaml")):
        case = yaml.load(path.read_text(encoding="utf-8"))
        expected = (case.get("expected") or {}).get("parse") or {}
        report = parse_log(case.get("log") or "")
        misses = []
        for key, want in expected.items():
            got = getattr(report, _DEV_FIELDS[key])
            if key == "gpu_index":
                ok = got == want
            else:  # labels are GiB with 3-4 significant digits (MiB / 1024)
                ok = got is not None and abs(got / GiB - want) <= max(0.005 * abs(want), 0.0005)
            if not ok:
                misses.append(f"{key}: want {want} got {None if got is None else round(got / GiB, 5)}")
        rows.append({"id": case.get("id", path.stem), "kind": report.kind, "phase": report.phase,
                     "fields": len(expected), "correct": len(expected) - len(misses), "misses": misses})
    return rows


def main() -> int:
    result = evaluate_corpus()
    print(f"## Parser field accuracy on the labelled corpus ({result['logs']} logs)\n")
    print("| field | checked | correct | accuracy |")
    print("|---|---:|---:|---:|")
    for field, (n, ok) in sorted(result["per_field"].items()):
        print(f"| {field} | {n} | {ok} | {100 * ok / n:.1f}% |")
    total = result["checked"]
    print(f"| **all** | {total} | {result['correct']} | {100 * result['correct'] / max(total, 1):.1f}% |")
    for name, field, detail in result["failures"]:
        print(f"- FAIL {name} {field}: {detail}")
    if DEV_CASES.is_dir():
        rows = evaluate_dev_cases()
        print(f"\n## Parsed numbers vs ../shared/dev-cases expected.parse ({len(rows)} real reports)\n")
        print("| case | kind | phase | fields | correct | misses |")
        print("|---|---|---|---:|---:|---|")
        for r in rows:
            print(f"| {r['id']} | {r['kind']} | {r['phase']} | {r['fields']} | {r['correct']} | {'; '.join(r['misses'])} |")
        n = sum(r["fields"] for r in rows)
        ok = sum(r["correct"] for r in rows)
        print(f"| **all** | | | {n} | {ok} | {100 * ok / max(n, 1):.1f}% |")
    return 0 if result["correct"] == total and total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
