"""Calibration benchmark: the memory calculator against real H100 peaks (../shared/calibration).

For every row: predicted vs measured `peak_allocated_bytes`, the signed error, and the error band. Then the headline,
leave-one-family-out beside the all-rows fit: every constant fitted to the measurements is fitted without the family and
tested on it. The point estimate fits no constant (each byte is a mechanism: tools/memory/activations.py, estimator.py),
so its held-out errors are its all-rows errors; the fitted constants are the band's widths (tools/memory/band.py), fitted
here by one rule (worst residual + 0.5%, rounded up to 0.5%) and checked for coverage on the family left out, with and
without the unseen-family widening. OOM rows must be predicted not to fit; no row whose measured peak exceeds a budget
may be called "fits". Speed: the median over several timing runs of one estimate per row.
Run: .venv/bin/python evals/calibration_benchmark.py [path/to/gpu_peaks.jsonl] [--json] [--repeat N]
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

from ask_oom.tools.gpus import GPUSpec
from ask_oom.tools.memory import estimate_memory
from ask_oom.tools.memory.band import CALIBRATED_OVER, CALIBRATED_UNDER, UNSEEN_FAMILY
from ask_oom.tools.memory.calibration import row_family, row_to_setup
from ask_oom.tools.units import GiB

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "calibration" / "gpu_peaks.jsonl"
ALLOWANCE_PCT = 0.5   # added to the worst residual before rounding up to the next 0.5%


def fitted_width(errors_pct: list[float], side: str) -> float:
    """Band width (fraction) from signed errors: the worst under- (side 'under') or over-prediction + 0.5%, rounded up."""
    worst = max([-e for e in errors_pct] if side == "under" else list(errors_pct), default=0.0)
    return math.ceil((max(worst, 0.0) + ALLOWANCE_PCT) * 2) / 2 / 100


def _card(row: dict) -> GPUSpec:
    return GPUSpec(name=row.get("gpu", "H100"), memory_bytes=int(row.get("gpu_total_bytes") or 79.18 * GiB))


def _timed_estimate(setup, mode: str, repeat: int):
    times = []
    est = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        est = estimate_memory(setup, mode=mode, margin=1.0)
        times.append((time.perf_counter() - t0) * 1000)
    return est, statistics.median(times)


def evaluate(path: Path, repeat: int = 5) -> dict:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = []
    for r in rows:
        setup, mode = row_to_setup(r)
        est, ms = _timed_estimate(setup.model_copy(update={"gpu": _card(r)}), mode, repeat)
        item = {"model": r["model"], "family": row_family(r), "method": r["method"], "gc": r.get("gradient_checkpointing"),
                "attn": r.get("attn_implementation"), "b": r["micro_batch"], "s": r["seq_len"], "result": r["result"],
                "predicted": est.peak_bytes, "phase": est.peak_phase, "lower": est.band_lower_bytes,
                "upper": est.band_upper_bytes, "verdict": est.verdict, "ms": ms,
                "n_params_ok": r.get("n_params") in (None, est.n_params) or r["method"] == "qlora"}
        if r["result"] == "ok":
            m = r["peak_allocated_bytes"]
            item.update(measured=m, error_pct=100.0 * (est.peak_bytes - m) / m, in_band=est.band_lower_bytes <= m <= est.band_upper_bytes)
            # the budget just under the measured peak: the run would not have fitted, so it must not be called "fits"
            tight = estimate_memory(setup.model_copy(update={"gpu": GPUSpec(name="budget", memory_bytes=m - 1)}),
                                    mode=mode, margin=1.0)
            item["fits_when_it_did_not"] = tight.fits is True and (tight.budget_bytes or 0) < m
        else:
            item.update(measured=None, error_pct=None, in_band=None, predicted_fits=est.fits, fits_when_it_did_not=est.fits is True)
        results.append(item)
    ok = [x for x in results if x["error_pct"] is not None]
    errs = [x["error_pct"] for x in ok]
    summary = {
        "rows": len(results),
        "median_abs_error_pct": statistics.median(abs(e) for e in errs),
        "max_abs_error_pct": max(abs(e) for e in errs),
        "worst_under_prediction_pct": min(min(errs), 0.0),
        "oom_rows_predicted_not_to_fit": all(x.get("predicted_fits") is False for x in results if x["result"] != "ok"),
        "rows_in_band": sum(1 for x in ok if x["in_band"]),
        "called_fits_when_it_did_not": sum(1 for x in results if x["fits_when_it_did_not"]),
        "band_fit_all_rows": {"under": fitted_width(errs, "under"), "over": fitted_width(errs, "over")},
        "band_in_code": {"under": CALIBRATED_UNDER, "over": CALIBRATED_OVER},
        "median_ms_per_estimate": statistics.median(x["ms"] for x in results),
        "max_ms_per_estimate": max(x["ms"] for x in results),
    }
    summary["lofo"] = leave_one_family_out(ok)
    return {"results": results, "summary": summary}


def leave_one_family_out(ok: list[dict]) -> dict:
    """Per family: the band fitted on the other families, tested on this one (seen, and widened as an unseen family)."""
    per_family = {}
    held_out_errors: list[float] = []
    for fam in sorted({x["family"] for x in ok}):
        train = [x["error_pct"] for x in ok if x["family"] != fam]
        test = [x for x in ok if x["family"] == fam]
        under, over = fitted_width(train, "under"), fitted_width(train, "over")
        covered = sum(1 for x in test if x["predicted"] * (1 - over) <= x["measured"] <= x["predicted"] * (1 + under))
        covered_unseen = sum(1 for x in test if x["measured"] <= x["predicted"] * (1 + under + UNSEEN_FAMILY))
        e = [x["error_pct"] for x in test]
        held_out_errors += e
        per_family[fam] = {"rows": len(test), "fitted_under": under, "fitted_over": over,
                           "median_abs_error_pct": statistics.median(abs(v) for v in e),
                           "max_abs_error_pct": max(abs(v) for v in e), "worst_under_pct": min(min(e), 0.0),
                           "covered": covered, "covered_as_unseen": covered_unseen}
    return {"families": per_family,
            "median_abs_error_pct": statistics.median(abs(v) for v in held_out_errors),
            "max_abs_error_pct": max(abs(v) for v in held_out_errors),
            "worst_under_prediction_pct": min(min(held_out_errors), 0.0)}


def main(argv: list[str]) -> int:
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 5
    args = [a for i, a in enumerate(argv) if not a.startswith("--") and not (i and argv[i - 1] == "--repeat")]
    path = Path(args[0]) if args else DEFAULT
    out = evaluate(path, repeat)
    if "--json" in argv:
        print(json.dumps(out, indent=1))
        return 0
    print("| model | family | method | GC | attn | b x s | phase | predicted GiB | band GiB | measured GiB | error |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for x in out["results"]:
        meas = f"{x['measured'] / GiB:.2f}" if x["measured"] else "OOM"
        err = f"{x['error_pct']:+.1f}%" if x["error_pct"] is not None else ("not fit: ok" if x["predicted_fits"] is False else "FITS (wrong)")
        band = f"{x['lower'] / GiB:.2f}-{x['upper'] / GiB:.2f}"
        print(f"| {x['model']} | {x['family']} | {x['method']} | {'y' if x['gc'] else 'n'} | {x['attn']} | {x['b']}x{x['s']} "
              f"| {x['phase']} | {x['predicted'] / GiB:.2f} | {band} | {meas} | {err} |")
    s = out["summary"]
    lofo = s["lofo"]
    print()
    print("| fit | median abs err | max abs err | worst under |")
    print("|---|---:|---:|---:|")
    print(f"| all rows | {s['median_abs_error_pct']:.2f}% | {s['max_abs_error_pct']:.2f}% | {s['worst_under_prediction_pct']:.2f}% |")
    print(f"| leave-one-family-out | {lofo['median_abs_error_pct']:.2f}% | {lofo['max_abs_error_pct']:.2f}% "
          f"| {lofo['worst_under_prediction_pct']:.2f}% |")
    print()
    print("| held-out family | rows | band fitted without it | median abs err | worst under | in band | in band as unseen |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for fam, f in lofo["families"].items():
        print(f"| {fam} | {f['rows']} | -{100 * f['fitted_over']:.1f}% / +{100 * f['fitted_under']:.1f}% "
              f"| {f['median_abs_error_pct']:.2f}% | {f['worst_under_pct']:.2f}% | {f['covered']}/{f['rows']} "
              f"| {f['covered_as_unseen']}/{f['rows']} |")
    fit = s["band_fit_all_rows"]
    print()
    print(f"rows: {s['rows']}  band fitted on all rows: -{100 * fit['over']:.1f}% / +{100 * fit['under']:.1f}% "
          f"(in code: -{100 * s['band_in_code']['over']:.1f}% / +{100 * s['band_in_code']['under']:.1f}%)  "
          f"rows in band: {s['rows_in_band']}/{sum(1 for x in out['results'] if x['measured'])}  "
          f"called fits when it did not: {s['called_fits_when_it_did_not']}  "
          f"OOM rows predicted not to fit: {s['oom_rows_predicted_not_to_fit']}")
    print(f"speed: median {s['median_ms_per_estimate']:.2f} ms, max {s['max_ms_per_estimate']:.2f} ms per estimate "
          f"(median of {repeat} runs each)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
