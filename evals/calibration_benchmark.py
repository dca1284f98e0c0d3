"""Calibration benchmark: the memory calculator against real H100 peaks (../shared/calibration).

For every row: predicted vs measured `peak_allocated_bytes` and the error; then the median |error|,
the max |error| and the worst under-prediction; OOM rows must be predicted not to fit on the card.
Run: .venv/bin/python evals/calibration_benchmark.py [path/to/gpu_peaks.jsonl] [--json]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from ask_oom.tools.gpus import GPUSpec
from ask_oom.tools.memory import estimate_memory
from ask_oom.tools.memory.calibration import row_to_setup
from ask_oom.tools.units import GiB

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "calibration" / "gpu_peaks.jsonl"


def evaluate(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = []
    for r in rows:
        setup, mode = row_to_setup(r)
        card = GPUSpec(name=r.get("gpu", "H100"), memory_bytes=int(r.get("gpu_total_bytes") or 79.18 * GiB))
        est = estimate_memory(setup.model_copy(update={"gpu": card}), mode=mode, margin=1.0)
        item = {"model": r["model"], "method": r["method"], "gc": r.get("gradient_checkpointing"),
                "attn": r.get("attn_implementation"), "b": r["micro_batch"], "s": r["seq_len"],
                "result": r["result"], "predicted": est.peak_bytes, "phase": est.peak_phase,
                "n_params_ok": r.get("n_params") in (None, est.n_params) or r["method"] == "qlora"}
        if r["result"] == "ok":
            m = r["peak_allocated_bytes"]
            item.update(measured=m, error_pct=100.0 * (est.peak_bytes - m) / m)
        else:
            item.update(measured=None, error_pct=None, predicted_fits=est.fits)
        results.append(item)
    errs = [x["error_pct"] for x in results if x["error_pct"] is not None]
    summary = {
        "rows": len(results),
        "median_abs_error_pct": statistics.median(abs(e) for e in errs),
        "max_abs_error_pct": max(abs(e) for e in errs),
        "worst_under_prediction_pct": min(min(errs), 0.0),
        "oom_rows_predicted_not_to_fit": all(x.get("predicted_fits") is False for x in results if x["result"] != "ok"),
    }
    return {"results": results, "summary": summary}


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    path = Path(args[0]) if args else DEFAULT
    out = evaluate(path)
    if "--json" in argv:
        print(json.dumps(out, indent=1))
        return 0
    print(f"| model | method | GC | attn | b x s | phase | predicted GiB | measured GiB | error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in out["results"]:
        meas = f"{x['measured'] / GiB:.2f}" if x["measured"] else "OOM"
        err = f"{x['error_pct']:+.1f}%" if x["error_pct"] is not None else ("not fit: ok" if x["predicted_fits"] is False else "FITS (wrong)")
        print(f"| {x['model']} | {x['method']} | {'y' if x['gc'] else 'n'} | {x['attn']} | {x['b']}x{x['s']} | {x['phase']} "
              f"| {x['predicted'] / GiB:.2f} | {meas} | {err} |")
    s = out["summary"]
    print()
    print(f"rows: {s['rows']}  median |err|: {s['median_abs_error_pct']:.2f}%  max |err|: {s['max_abs_error_pct']:.2f}%  "
          f"worst under-prediction: {s['worst_under_prediction_pct']:.2f}%  OOM rows predicted not to fit: {s['oom_rows_predicted_not_to_fit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
