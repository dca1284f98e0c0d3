"""Fit the root-cause weights on labelled reports and measure them by cross-validation grouped by source project.

The ranking adds, per label, weight[rule] x value for every signal the evidence families emit (tools/root_causes).
Here those signals are collected once per case through the real pipeline (assistant/agent.diagnose), and the
weights are fitted as a conditional-logit model: P(label | case) = softmax over the case's candidate labels of
points(label) = discount(label) x sum(weight[rule] x value). The loss is the negative log of the probability of the
labels the case accepts as primary, plus an L2 pull of every weight towards one shared constant (never towards the
hand-written table, which was written while reading these cases: a prior from it would leak them into every fold).

Folds are grouped by project (a project's reports never sit on both sides of a fold), so the cross-validated figure
says how the ranking does on projects it was not fitted on. The figure on the data the weights were fitted on is
printed second; the hand-written table's figure on the same cases (which its author read) third. Calibration: the
softmax probability of the answer is compared with how often it is right, on the held-out folds (reliability table).

    python evals/fit_weights.py [--folds 5] [--write] [--json]

`--write` stores the weights fitted on every dev case, with the cross-validated figures, in
tools/root_causes/fitted_weights.json (the ranking's default table reads it). Held-out sets (diagnosis_fresh3,
diagnosis_fresh4, heldout_projects) are never read here.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "evals"))

from diagnosis_benchmark import DEV_SETS, load_cases, request_for  # noqa: E402

FITTED_PATH = REPO / "tools" / "root_causes" / "fitted_weights.json"
PRIOR_WEIGHT = 2.0        # every weight is pulled towards this one constant (the typical size of one piece of evidence)
L2_GRID = (0.03, 0.1, 0.3)   # prior strengths tried by an inner grouped split; the best on it is used
STEPS = 200
LEARNING_RATE = 0.08
CONFIDENT = 0.8           # the bar: among answers at this probability or more, at least 90% right


@dataclass
class CaseSignals:
    """One labelled case as the fitter sees it: per candidate label, its rule values and its discount factor."""

    id: str
    project: str
    accepted: list[str]
    must: list[str]
    features: dict[str, dict[str, float]]   # label -> rule -> summed value
    discount: dict[str, float]              # label -> product of discount weights (fixed, not fitted)


def project_of(case: dict) -> str:
    """The project a report comes from: its repository name without owner or punctuation (renamed repos match)."""
    src = str(case.get("source") or "")
    m = re.search(r"github\.com/[^/]+/([^/#?]+)", src)
    name = m.group(1) if m else str(case.get("project") or src or case.get("id"))
    return re.sub(r"[^a-z0-9]", "", name.lower()) or "unknown"


def collect(cases: list[dict]) -> list[CaseSignals]:
    """Every case through the real pipeline once; its signals grouped by label and rule."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.kb.index import CaseIndex
    from ask_oom.tools.errors import InputError
    from ask_oom.tools.root_causes.signals import Kind
    from ask_oom.tools.root_causes.weights import DEFAULT_WEIGHTS

    index = CaseIndex.load_or_build(None)
    out = []
    for case in cases:
        request = request_for(case)
        try:
            d = diagnose(request, index=index)
        except InputError:
            d = diagnose(request.model_copy(update={"config_text": None, "config_name": None}), index=index)
        features: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        discount: dict[str, float] = defaultdict(lambda: 1.0)
        for s in d.signals:
            label = s.label.value
            if s.kind is Kind.discount:
                discount[label] *= DEFAULT_WEIGHTS.points[s.name]
            elif s.value:
                features[label][s.name] += s.value
        exp = case["expected"]
        out.append(CaseSignals(str(case.get("id")), project_of(case), list(exp.get("primary_any_of") or []),
                               list(exp.get("top3_must_include") or []),
                               {k: dict(v) for k, v in features.items()}, dict(discount)))
    return out


def grouped_folds(rows: list[CaseSignals], k: int) -> list[list[int]]:
    """k folds of case indices, whole projects per fold, balanced by size (largest projects placed first)."""
    by_project: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_project[r.project].append(i)
    folds: list[list[int]] = [[] for _ in range(k)]
    for _, idx in sorted(by_project.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        min(folds, key=len).extend(idx)
    return [f for f in folds if f]


class Fitter:
    """The conditional-logit fit over a fixed rule vocabulary (torch on CPU; a few hundred cases fit in a second)."""

    def __init__(self, rules: list[str]):
        self.rules = rules
        self.pos = {r: i for i, r in enumerate(rules)}

    def _tensors(self, rows: list[CaseSignals]):
        """One padded batch: x[case, label, rule] (discount applied), which labels each case accepts, which exist."""
        import torch

        usable = [r for r in rows if r.features and any(label in r.accepted for label in r.features)]
        width = max((len(r.features) for r in usable), default=1)
        x = torch.zeros(len(usable), width, len(self.rules))
        ok = torch.zeros(len(usable), width, dtype=torch.bool)
        present = torch.zeros(len(usable), width, dtype=torch.bool)
        for ci, r in enumerate(usable):
            for li, label in enumerate(sorted(r.features)):
                present[ci, li] = True
                ok[ci, li] = label in r.accepted
                for rule, v in r.features[label].items():
                    if rule in self.pos:
                        x[ci, li, self.pos[rule]] = v * r.discount.get(label, 1.0)
        return x, ok, present

    def fit(self, rows: list[CaseSignals], l2: float):
        import torch

        x, ok, present = self._tensors(rows)
        raw = torch.full((len(self.rules),), math.log(math.expm1(PRIOR_WEIGHT)), requires_grad=True)
        opt = torch.optim.Adam([raw], lr=LEARNING_RATE)
        neg = torch.tensor(float("-inf"))
        for _ in range(STEPS):
            opt.zero_grad()
            w = torch.nn.functional.softplus(raw)        # weights stay positive: evidence never counts against
            logits = x @ w
            right = torch.logsumexp(torch.where(ok, logits, neg), 1)
            every = torch.logsumexp(torch.where(present, logits, neg), 1)
            loss = (every - right).mean() + l2 * ((w - PRIOR_WEIGHT) ** 2).sum() / len(self.rules)
            loss.backward()
            opt.step()
        return {r: float(v) for r, v in zip(self.rules, torch.nn.functional.softplus(raw).detach())}


def predict(row: CaseSignals, weights: dict[str, float], default: float = PRIOR_WEIGHT) -> list[tuple[str, float, float]]:
    """(label, points, probability) best first: points as the ranking adds them, probability as the softmax."""
    pts = {label: row.discount.get(label, 1.0) * sum(weights.get(rule, default) * v for rule, v in feats.items())
           for label, feats in row.features.items()}
    if not pts:
        return []
    top = max(pts.values())
    z = sum(math.exp(p - top) for p in pts.values())
    return sorted(((label, p, math.exp(p - top) / z) for label, p in pts.items()), key=lambda t: -t[1])


def score(rows: list[CaseSignals], preds: list[list[tuple[str, float, float]]]) -> dict:
    n = len(rows)
    primary = sum(bool(p) and p[0][0] in r.accepted for r, p in zip(rows, preds))
    top3 = 0
    for r, p in zip(rows, preds):
        labels = [t[0] for t in p[:3]]
        top3 += bool(labels) and (all(m in labels for m in r.must) if r.must else any(a in labels for a in r.accepted))
    return {"cases": n, "primary": primary / n if n else 0.0, "top3": top3 / n if n else 0.0}


def reliability(rows: list[CaseSignals], preds: list[list[tuple[str, float, float]]]) -> list[dict]:
    """How often the answer is right, per band of its probability (the answers' own confidence)."""
    bands = [(0.0, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 0.9), (0.9, 1.01)]
    out = []
    for lo, hi in bands:
        sel = [(r, p) for r, p in zip(rows, preds) if p and lo <= p[0][2] < hi]
        right = sum(p[0][0] in r.accepted for r, p in sel)
        out.append({"band": f"{lo:.1f}-{min(hi, 1.0):.1f}", "answers": len(sel),
                    "right": right, "accuracy": right / len(sel) if sel else None,
                    "mean_probability": sum(p[0][2] for _, p in sel) / len(sel) if sel else None})
    return out


def cross_validate(rows: list[CaseSignals], rules: list[str], k: int) -> tuple[list, dict]:
    """Held-out predictions for every case (each from weights fitted without its fold), and the L2 chosen per fold."""
    preds: list = [None] * len(rows)
    chosen = {}
    fitter = Fitter(rules)
    for fi, fold in enumerate(grouped_folds(rows, k)):
        held = set(fold)
        train = [r for i, r in enumerate(rows) if i not in held]
        l2 = _choose_l2(train, rules)
        chosen[fi] = l2
        w = fitter.fit(train, l2)
        for i in fold:
            preds[i] = predict(rows[i], w)
    return preds, chosen


def _choose_l2(train: list[CaseSignals], rules: list[str]) -> float:
    """The prior strength that does best on an inner split by project (3 groups) of the training part."""
    if len(train) < 30:
        return L2_GRID[-1]
    inner = grouped_folds(train, 3)
    fitter = Fitter(rules)
    best = (-1.0, L2_GRID[-1])
    for l2 in L2_GRID:
        hits = 0
        for fold in inner:
            held = set(fold)
            w = fitter.fit([r for i, r in enumerate(train) if i not in held], l2)
            hits += sum(bool(p := predict(train[i], w)) and p[0][0] in train[i].accepted for i in fold)
        best = max(best, (hits, l2))
    return best[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="store the weights fitted on all dev cases")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from ask_oom.tools.root_causes.weights import WEIGHTS

    cases = load_cases(DEV_SETS)
    rows = collect(cases)
    hand = dict(WEIGHTS)
    rules = sorted({rule for r in rows for feats in r.features.values() for rule in feats})
    preds_cv, chosen = cross_validate(rows, rules, args.folds)
    l2_all = _choose_l2(rows, rules)
    fitted = Fitter(rules).fit(rows, l2_all)
    preds_in = [predict(r, fitted) for r in rows]
    preds_hand = [predict(r, hand) for r in rows]
    result = {
        "cases": len(rows), "projects": len({r.project for r in rows}), "folds": args.folds,
        "cross_validated": score(rows, preds_cv), "fitted_in_sample": score(rows, preds_in),
        "hand_table_in_sample": score(rows, preds_hand), "l2_per_fold": chosen, "l2_all": l2_all,
        "reliability_cv": reliability(rows, preds_cv),
    }
    confident = [(r, p) for r, p in zip(rows, preds_cv) if p and p[0][2] >= CONFIDENT]
    result["confident_cv"] = {"answers": len(confident),
                              "right": sum(p[0][0] in r.accepted for r, p in confident),
                              "share_of_cases": len(confident) / len(rows) if rows else 0.0}
    if args.write:
        FITTED_PATH.write_text(json.dumps({
            "about": "root-cause weights fitted by evals/fit_weights.py on the dev cases (conditional logit, L2 towards "
                     f"{PRIOR_WEIGHT}); rules absent here keep the hand table's weight",
            "cases": len(rows), "projects": result["projects"], "l2": l2_all,
            "cross_validated": result["cross_validated"], "reliability_cv": result["reliability_cv"],
            "points": {k: round(v, 4) for k, v in sorted(fitted.items())},
        }, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{len(rows)} dev cases from {result['projects']} projects; {args.folds} folds grouped by project\n")
    print(f"{'weights':<44} {'primary':>8} {'top 3':>8}")
    for name, key in (("fitted, cross-validated by project (headline)", "cross_validated"),
                      ("fitted, on the cases it was fitted on", "fitted_in_sample"),
                      ("hand table, on the cases its author read", "hand_table_in_sample")):
        s = result[key]
        print(f"{name:<44} {s['primary']:>8.1%} {s['top3']:>8.1%}")
    print("\nreliability of the answer's probability (cross-validated):")
    print(f"{'band':<10} {'answers':>8} {'right':>6} {'accuracy':>9} {'mean p':>7}")
    for b in result["reliability_cv"]:
        acc = "-" if b["accuracy"] is None else f"{b['accuracy']:.0%}"
        mp = "-" if b["mean_probability"] is None else f"{b['mean_probability']:.2f}"
        print(f"{b['band']:<10} {b['answers']:>8} {b['right']:>6} {acc:>9} {mp:>7}")
    c = result["confident_cv"]
    if c["answers"]:
        print(f"\nconfident (p >= {CONFIDENT}): {c['right']}/{c['answers']} right ({c['right'] / c['answers']:.0%}), "
              f"{c['share_of_cases']:.0%} of the cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
