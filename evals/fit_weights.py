"""Fit the root-cause weights on labelled reports and measure them by cross-validation grouped by source project.

The ranking adds, per label, weight[rule] x value for every signal the evidence families emit (tools/root_causes).
Here those signals are collected once per case through the real pipeline (assistant/agent.diagnose), and the
weights are fitted as a conditional-logit model: P(label | case) = softmax over the case's candidate labels of
points(label) = discount(label) x sum(weight[rule] x value), the discount the product of the fitted factors (each in
(0, 1]) of the rules that speak against the label. The loss is the negative log of the probability of the
labels the case accepts as primary, plus an L2 pull of every weight towards one shared constant (never towards the
hand-written table, which was written while reading these cases: a prior from it would leak them into every fold).

Folds are grouped by project (a project's reports never sit on both sides of a fold), so the cross-validated figure
says how the ranking does on projects it was not fitted on. The labelled reports' votes (kb/reports.py) and their word
model (kb/report_words.py) are the signals whose data is the dev corpus itself: they are added per fold from the
training projects' reports only, the word model refitted for each (WordReadings). The
figure on the data the weights were fitted on is printed second; the hand-written table's figure on the same cases
(which its author read) third. Calibration: each fold's temperature and top-label map (tools/root_causes/calibration.py)
are fitted on inner held-out splits of its training part, and the answer's probability is compared with how often it is
right on the held-out folds (reliability table).

    python evals/fit_weights.py [--folds 5] [--write] [--json] [--repeats N]

`--repeats N` cross-validates again on N other splits of the projects into folds and prints the median and range:
the split alone moves the headline by about a point, so a change smaller than that is read against the spread.
`--write` stores the weights fitted on every dev case, with the cross-validated figures, in
tools/root_causes/fitted_weights.json (the ranking's default table reads it). Held-out sets (diagnosis_fresh3,
diagnosis_fresh4, heldout_projects) and the validation sets (diagnosis_fresh5 to diagnosis_fresh25) are never read here.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "evals"))

from diagnosis_benchmark import DEV_SETS, LeaveOwnThreadOut, load_cases, request_for  # noqa: E402

from ask_oom.assistant.deciding_facts import CONFIDENT  # noqa: E402 - the product's bar for a stated answer
from ask_oom.tools.root_causes.calibration import Knots, calibrate_top, fit_confidence_map  # noqa: E402
from ask_oom.tools.root_causes.similar_cases import ALSO_VOTE_RULE as ALSO_VOTES, VOTE_RULE as VOTES  # noqa: E402
from ask_oom.tools.root_causes.similar_cases import SIMILAR_CASE_RULES, WORDS_RULE as WORDS  # noqa: E402
from ask_oom.tools.root_causes.similar_cases import also_vote_shares, vote_shares, word_evidence  # noqa: E402
from ask_oom.tools.root_causes.weights import THRESHOLDS  # noqa: E402

FITTED_PATH = REPO / "tools" / "root_causes" / "fitted_weights.json"
PRIOR_WEIGHT = 2.0        # every weight is pulled towards this one constant (the typical size of one piece of evidence)
DISCOUNT_PRIOR = 0.5      # ... and every discount towards halving its cause's points, where no table gives another
L2_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)   # prior strengths tried by an inner grouped split; the best on it is used
STEPS = 200
LEARNING_RATE = 0.08
NULL = "unexplained_points"   # the threshold-table name of the null option's points (tools/root_causes/weights.py)


@dataclass
class CaseSignals:
    """One labelled case as the fitter sees it: per candidate label, its rule values and its discount factor."""

    id: str
    project: str
    accepted: list[str]
    must: list[str]
    features: dict[str, dict[str, float]]   # label -> rule -> summed value
    discount: dict[str, dict[str, int]]     # label -> discount rule -> times it fired (its factor is fitted)
    set_name: str = ""
    # the labelled reports most like this one (project, primary label, similarity), its own thread left out: their
    # votes are added per fold from the training projects only (with_votes), never from the fold held out
    neighbours: list[tuple[str, str, float, tuple[str, ...]]] = field(default_factory=list)   # (project, label, sim, also)
    terms: dict[str, int] = field(default_factory=dict)   # its paste's words, for the word model (WordReadings)
    embedding: list[float] | None = None                  # its paste's sentence embedding, for the word model too


def project_of(case: dict) -> str:
    """The project a report comes from: its repository name without owner or punctuation (renamed repos match)."""
    src = str(case.get("source") or "")
    m = re.search(r"github\.com/[^/]+/([^/#?]+)", src)
    name = m.group(1) if m else str(case.get("project") or src or case.get("id"))
    return re.sub(r"[^a-z0-9]", "", name.lower()) or "unknown"


def collect(cases: list[dict], embedding: bool = False) -> list[CaseSignals]:
    """Every case through the real pipeline once; its signals grouped by label and rule (with `embedding`, its
    paste's sentence embedding too, for a word model that reads it: about 50 ms a case)."""
    from ask_oom.assistant.agent import diagnose
    from ask_oom.kb.index import CaseIndex
    from ask_oom.kb.paste_embedding import paste_embedding
    from ask_oom.kb.report_words import WordModel
    from ask_oom.kb.reports import ReportIndex, load_reports, paste_text, report_terms
    from ask_oom.tools.errors import InputError
    from ask_oom.tools.root_causes.signals import Kind

    index, reports, none, no_words = CaseIndex.load_or_build(None), load_reports(), ReportIndex(), WordModel()
    out = []
    for case in cases:
        request = request_for(case)
        own = LeaveOwnThreadOut(index, case.get("source"))   # a report never retrieves its own thread
        try:   # no labelled-report votes or word model here: they are added per fold (with_votes)
            d = diagnose(request, index=own, reports=none, words=no_words)
        except InputError:
            d = diagnose(request.model_copy(update={"config_text": None, "config_name": None}), index=own,
                         reports=none, words=no_words)
        paste = paste_text(request.log_text, request.config_text)
        terms = report_terms(paste)
        near = reports.neighbours_of_terms(terms, NEIGHBOUR_POOL, skip_source=case.get("source"))
        features: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        discount: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for s in d.signals:
            label = s.label.value
            if s.kind is Kind.discount:
                discount[label][s.name] += 1
            elif s.value:
                features[label][s.name] += s.value
        exp = case["expected"]
        out.append(CaseSignals(str(case.get("id")), project_of(case), list(exp.get("primary_any_of") or []),
                               list(exp.get("top3_must_include") or []),
                               {k: dict(v) for k, v in features.items()}, {k: dict(v) for k, v in discount.items()},
                               case["_set"],
                               [(n.project, n.label, n.similarity, tuple(n.also)) for n in near], terms,
                               paste_embedding(paste) if embedding else None))
    return out


NEIGHBOUR_POOL = 60   # neighbours kept per case, so NEIGHBOURS remain after leaving a fold's projects out
WORD_FOLDS = 5        # a training report's reading comes from the word model fitted without its fifth of the projects


class WordReadings:
    """The word model's (kb/report_words.py) readings of the dev reports, as the product would read each one: fitted
    on the `allowed` projects only, and never on the report's own project. A report outside `allowed` (a held-out
    fold's) is read by the model of all of them; one inside, by the model of the `allowed` projects less its own
    group of WORD_FOLDS (stacking: the weight of the reading is fitted on readings as unseen as a new report's)."""

    def __init__(self, rows: list[CaseSignals], embedding: bool = False):
        """`embedding`: fit and read the word model with the rows' paste embeddings beside their words (the shipped
        model reads the words alone: evals/build_reports.py says why)."""
        if embedding and any(r.embedding is None for r in rows):
            raise ValueError("the word model reads embeddings, but some rows were collected without one")
        self.rows = rows
        self.embedding = embedding
        self.position = {r.id: i for i, r in enumerate(rows)}
        self._cache: dict[frozenset[str] | None, dict[int, dict[str, float]]] = {}

    def reading(self, row: CaseSignals, allowed: set[str] | None) -> dict[str, float]:
        key = frozenset(allowed) if allowed is not None else None
        if key not in self._cache:
            self._cache[key] = self._read(allowed)
        return self._cache[key].get(self.position[row.id], {})

    def _read(self, allowed: set[str] | None) -> dict[int, dict[str, float]]:
        from ask_oom.kb.report_words import fit, unseen_models
        from ask_oom.kb.reports import LabelledReport

        inside = [i for i, r in enumerate(self.rows) if r.accepted and (allowed is None or r.project in allowed)]
        taught = [LabelledReport(id=self.rows[i].id, source="", project=self.rows[i].project,
                                 labels=self.rows[i].accepted, terms=self.rows[i].terms) for i in inside]
        embeddings = {r.id: r.embedding for r in self.rows} if self.embedding else None
        # each inside report: the model without its group of projects
        unseen = unseen_models(taught, WORD_FOLDS, embeddings=embeddings)
        out = {i: unseen[self.rows[i].id].read_terms(self.rows[i].terms, self._embedding(i)).probabilities
               for i in inside}
        outside = sorted(set(range(len(self.rows))) - set(inside))
        if outside:
            model = fit(taught, embeddings=embeddings)
            out.update({i: model.read_terms(self.rows[i].terms, self._embedding(i)).probabilities for i in outside})
        return out

    def _embedding(self, i: int) -> list[float] | None:
        return self.rows[i].embedding if self.embedding else None


def with_votes(row: CaseSignals, allowed: set[str] | None = None, words: WordReadings | None = None) -> CaseSignals:
    """`row` with the votes of its nearest labelled reports (kb.reports.NEIGHBOURS of them) from the `allowed`
    projects (None: all), never its own project, and with the word model's reading from the same projects (when
    `words` is given): as the product weighs them for a report of a new project."""
    from ask_oom.kb.reports import NEIGHBOURS

    voters = [(label, sim, also) for project, label, sim, also in row.neighbours
              if project != row.project and (allowed is None or project in allowed) and sim > 0][:NEIGHBOURS]
    shares = vote_shares((label, sim) for label, sim, _ in voters)
    reading = words.reading(row, allowed) if words is not None else {}
    if not shares and not reading:
        return row
    features = {label: dict(feats) for label, feats in row.features.items()}
    floor = THRESHOLDS["report_words_floor"]
    read = {label: word_evidence(p, floor) for label, p in reading.items() if p > floor}
    for rule, votes in ((VOTES, shares), (ALSO_VOTES, also_vote_shares((also, sim) for _, sim, also in voters)),
                        (WORDS, read)):
        for label, share in votes.items():
            features.setdefault(label, {})
            features[label][rule] = features[label].get(rule, 0.0) + share
    return replace(row, features=features)


def grouped_folds(rows: list[CaseSignals], k: int, seed: int | None = None) -> list[list[int]]:
    """k folds of case indices, whole projects per fold, balanced by size (kb.reports.project_folds); `seed`
    shuffles the order of projects of equal size (None: by name), so repeated runs split the projects differently."""
    from ask_oom.kb.reports import project_folds

    return project_folds([r.project for r in rows], k, seed)


def discount_rules(rows: list[CaseSignals]) -> list[str]:
    """The discount rules that fired on `rows`: each one's factor is fitted beside the support weights."""
    return sorted({name for r in rows for names in r.discount.values() for name in names})


def discount_factor(row: CaseSignals, label: str, weights: dict[str, float]) -> float:
    """The share of its points `label` keeps on `row`: the product of its discount rules' factors (a rule the table
    lacks keeps DISCOUNT_PRIOR)."""
    factor = 1.0
    for name, times in row.discount.get(label, {}).items():
        factor *= weights.get(name, DISCOUNT_PRIOR) ** times
    return factor


class Fitter:
    """The conditional-logit fit over a fixed rule vocabulary (torch on CPU; a few hundred cases fit in a second):
    a positive weight per support rule and a factor in (0, 1] per discount rule."""

    def __init__(self, rules: list[str], prior: dict[str, float] | None = None, discounts: list[str] = ()):
        self.rules = rules
        self.pos = {r: i for i, r in enumerate(rules)}
        self.prior = [float((prior or {}).get(r, PRIOR_WEIGHT)) for r in rules]
        self.discounts = list(discounts)
        self.dpos = {r: i for i, r in enumerate(self.discounts)}
        self.dprior = [float((prior or {}).get(r, DISCOUNT_PRIOR)) for r in self.discounts]

    def _tensors(self, rows: list[CaseSignals]):
        """One padded batch: x[case, label, rule], d[case, label, discount rule] (times fired), which labels each case
        accepts, which exist."""
        import torch

        usable = [r for r in rows if r.features]   # a case whose evidence misses its label teaches the null option
        width = max((len(r.features) for r in usable), default=1)
        x = torch.zeros(len(usable), width, len(self.rules))
        d = torch.zeros(len(usable), width, len(self.discounts))
        ok = torch.zeros(len(usable), width, dtype=torch.bool)
        present = torch.zeros(len(usable), width, dtype=torch.bool)
        for ci, r in enumerate(usable):
            for li, label in enumerate(sorted(r.features)):
                present[ci, li] = True
                ok[ci, li] = label in r.accepted
                for rule, v in r.features[label].items():
                    if rule in self.pos:
                        x[ci, li, self.pos[rule]] = v
                for name, times in r.discount.get(label, {}).items():
                    if name in self.dpos:
                        d[ci, li, self.dpos[name]] = times
        return x, d, ok, present

    def fit(self, rows: list[CaseSignals], l2: float):
        import torch

        x, d, ok, present = self._tensors(rows)
        centre = torch.tensor(self.prior).clamp(min=0.05)
        raw = torch.log(torch.expm1(centre)).clone().requires_grad_(True)
        # a discount's log factor stays below zero (evidence against never raises a cause), pulled towards its prior
        dcentre = torch.log(torch.tensor(self.dprior, dtype=torch.float32).clamp(0.01, 0.99))
        draw = torch.log(torch.expm1(-dcentre)).clone().requires_grad_(True)
        null = torch.tensor(float(PRIOR_WEIGHT), requires_grad=True)   # the points of "none of the causes with evidence"
        opt = torch.optim.Adam([raw, draw, null], lr=LEARNING_RATE)
        neg = torch.tensor(float("-inf"))
        for _ in range(STEPS):
            opt.zero_grad()
            w = torch.nn.functional.softplus(raw)        # weights stay positive: evidence never counts against
            logd = -torch.nn.functional.softplus(draw)
            logits = (x @ w) * torch.exp(d @ logd)
            missed = ~ok.any(1, keepdim=True)          # no candidate is right: "none of these" is the right answer
            right = torch.logsumexp(torch.cat([torch.where(ok, logits, neg),
                                               torch.where(missed, null.expand(len(x), 1), neg)], 1), 1)
            every = torch.logsumexp(torch.cat([torch.where(present, logits, neg), null.expand(len(x), 1)], 1), 1)
            loss = (every - right).mean() + l2 * (((w - centre) ** 2).sum() + ((logd - dcentre) ** 2).sum()) / len(self.rules)
            loss.backward()
            opt.step()
        fitted = {r: float(v) for r, v in zip(self.rules, torch.nn.functional.softplus(raw).detach())}
        fitted.update({r: float(math.exp(-v)) for r, v in
                       zip(self.discounts, torch.nn.functional.softplus(draw).detach().tolist())})
        fitted[NULL] = float(null.detach())
        return fitted


def predict(row: CaseSignals, weights: dict[str, float], default: float = PRIOR_WEIGHT,
            temperature: float = 1.0, confidence: Knots = ()) -> list[tuple[str, float, float]]:
    """(label, points, probability) best first: points as the ranking adds them, probability as the softmax of
    points / temperature, the leading one through the `confidence` map (as the ranking does)."""
    pts = {label: discount_factor(row, label, weights) * sum(weights.get(rule, default) * v for rule, v in feats.items()
                                                             if rule != NULL)
           for label, feats in row.features.items()}
    if not pts:
        return []
    null = weights.get(NULL, 0.0)
    top = max(max(pts.values()), null)
    z = sum(math.exp((p - top) / temperature) for p in pts.values()) + math.exp((null - top) / temperature)
    prob = calibrate_top({label: math.exp((p - top) / temperature) / z for label, p in pts.items()}, confidence)
    return sorted(((label, p, prob[label]) for label, p in pts.items()), key=lambda t: -t[1])


def score(rows: list[CaseSignals], preds: list[list[tuple[str, float, float]]]) -> dict:
    n = len(rows)
    primary = sum(bool(p) and p[0][0] in r.accepted for r, p in zip(rows, preds))
    top3 = top3_any = 0
    for r, p in zip(rows, preds):
        labels = [t[0] for t in p[:3]]
        top3 += bool(labels) and (all(m in labels for m in r.must) if r.must else any(a in labels for a in r.accepted))
        top3_any += any(a in labels for a in r.accepted)
    # top3: the label the case says must be among the three (strict); top3_any: any cause the case accepts is
    return {"cases": n, "primary": primary / n if n else 0.0, "top3": top3 / n if n else 0.0,
            "top3_any": top3_any / n if n else 0.0}


# evidence borrowed from other reports and documented cases (their labels, their words), not read off the paste itself
BORROWED_RULES = frozenset({VOTES, ALSO_VOTES, WORDS, *SIMILAR_CASE_RULES})


def evidence_coverage(rows: list[CaseSignals], preds: list[list[tuple[str, float, float]]]) -> dict:
    """How often the answer is right where an accepted cause has evidence of its own (a rule that read the paste, not
    only the neighbours' labels or words) and where it has none, and the causes most often left without it: what the
    rules do not yet read."""
    groups: dict[str, dict[str, int]] = {"own_evidence": {"cases": 0, "right": 0}, "borrowed_only": {"cases": 0, "right": 0}}
    uncovered: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r, p in zip(rows, preds):
        own = {label for label, feats in r.features.items() if any(rule not in BORROWED_RULES for rule in feats)}
        right = bool(p) and p[0][0] in r.accepted
        group = groups["own_evidence" if own & set(r.accepted) else "borrowed_only"]
        group["cases"] += 1
        group["right"] += right
        if not own & set(r.accepted) and r.accepted:
            uncovered[r.accepted[0]][0] += 1
            uncovered[r.accepted[0]][1] += right
    groups["borrowed_only_by_cause"] = [{"cause": label, "cases": n, "right": k}
                                        for label, (n, k) in sorted(uncovered.items(), key=lambda kv: -kv[1][0])]
    return groups


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


def cross_validate(rows: list[CaseSignals], rules: list[str], k: int, prior: dict | None = None,
                   seed: int | None = None, words: WordReadings | None = None) -> tuple[list, dict]:
    """Held-out predictions for every case, each from weights (and a temperature) chosen and fitted without its fold;
    `seed` picks another split of the projects into folds (grouped_folds)."""
    preds: list = [None] * len(rows)
    chosen = {}
    fitter = Fitter(rules, prior, discount_rules(rows))
    for fi, fold in enumerate(grouped_folds(rows, k, seed)):
        held = set(fold)
        seen = {r.project for i, r in enumerate(rows) if i not in held}
        raw_train = [r for i, r in enumerate(rows) if i not in held]
        l2, temperature, confidence = choose_hyperparameters(raw_train, rules, prior, words)
        chosen[fi] = {"l2": l2, "temperature": temperature, "confidence_knots": len(confidence)}
        w = fitter.fit([with_votes(r, seen, words) for r in raw_train], l2)
        for i in fold:
            preds[i] = predict(with_votes(rows[i], seen, words), w, temperature=temperature, confidence=confidence)
    return preds, chosen


TEMPERATURES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


BLIND_PREFIX = "diagnosis_corpus"   # sets written blind to the code and first measured unseen (their READMEs)


def choose_hyperparameters(train: list[CaseSignals], rules: list[str], prior: dict | None = None,
                           words: WordReadings | None = None) -> tuple[float, float, Knots]:
    """The prior strength whose probabilities are most likely on an inner split by project (3 groups) of the training
    part (a proper score, steadier than counting hits on a few hundred cases), the softmax temperature that makes
    those inner held-out probabilities most likely, and the map from the leading cause's probability at that
    temperature to how often it was right there (calibration.py; calibration, never in-sample).

    `train` comes without votes: each inner split's reports vote only from its own training projects, so an inner
    held-out report is scored as a new project's report is, with no vote from a report of its own inner fold.

    The temperature is calibrated on the blind corpora's cases only: the older sets are the ones the rules were
    written from, and their near-certain answers would make every new report's probability too confident. The map is
    fitted on the same cases."""
    inner = grouped_folds(train, 3)
    fitter = Fitter(rules, prior, discount_rules(train))
    splits = []
    for fold in inner:
        held = set(fold)
        seen = {r.project for i, r in enumerate(train) if i not in held}
        splits.append(([with_votes(r, seen, words) for i, r in enumerate(train) if i not in held],
                       [with_votes(train[i], seen, words) for i in fold]))
    best = None
    for l2 in L2_GRID:
        loglik, inner_preds = 0.0, []
        for fit_rows, held_rows in splits:
            w = fitter.fit(fit_rows, l2)
            for row in held_rows:
                inner_preds.append((row, w))
                loglik -= _nll(row, w, 1.0)
        if best is None or loglik > best[0]:
            best = (loglik, l2, inner_preds)
    _, l2, inner_preds = best

    blind = [(row, w) for row, w in inner_preds if row.set_name.startswith(BLIND_PREFIX)] or inner_preds

    temperature = min(TEMPERATURES, key=lambda t: sum(_nll(row, w, t) for row, w in blind))
    answers = [(p[0][2], p[0][0] in row.accepted) for row, w in blind if (p := predict(row, w, temperature=temperature))]
    return l2, temperature, fit_confidence_map(answers)


def _nll(row: CaseSignals, weights: dict[str, float], temperature: float) -> float:
    """Minus the log of the probability `weights` give the accepted causes of `row` (0 when nothing is proposed)."""
    p = {label: prob for label, _, prob in predict(row, weights, temperature=temperature)}
    return -math.log(max(sum(p.get(a, 0.0) for a in row.accepted), 1e-6)) if p else 0.0


NULL_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def calibrate(rows: list[CaseSignals], weights: dict[str, float]) -> tuple[float, float]:
    """The null option's points and the temperature that make `weights`' probabilities most likely on `rows` (two
    scalars on a grid; the weights themselves stay as they are)."""
    def nll(null: float, t: float) -> float:
        total = 0.0
        for row in rows:
            p = {label: prob for label, _, prob in predict(row, {**weights, NULL: null}, temperature=t)}
            if not p:
                continue
            right = sum(p.get(a, 0.0) for a in row.accepted)
            if not any(a in p for a in row.accepted):   # the evidence missed the label: "none of these" was right
                right = 1.0 - sum(p.values())
            total -= math.log(max(right, 1e-6))
        return total

    return min(((n, t) for n in NULL_GRID for t in TEMPERATURES), key=lambda nt: nll(*nt))


def cross_validate_calibration(rows: list[CaseSignals], weights: dict[str, float], k: int) -> tuple[list, dict]:
    """Held-out predictions of fixed `weights` whose calibration (null points, temperature) is fitted without the fold."""
    preds: list = [None] * len(rows)
    chosen = {}
    for fi, fold in enumerate(grouped_folds(rows, k)):
        held = set(fold)
        null, t = calibrate([r for i, r in enumerate(rows) if i not in held], weights)
        chosen[fi] = {"unexplained_points": null, "temperature": t}
        for i in fold:
            preds[i] = predict(rows[i], {**weights, NULL: null}, temperature=t)
    return preds, chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="store the weights fitted on all dev cases")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--embedding", action="store_true",
                    help="the word model reads the pastes' sentence embeddings beside their words (evals/build_reports.py)")
    ap.add_argument("--repeats", type=int, default=0,
                    help="also cross-validate on this many other splits of the projects into folds and print the "
                         "spread (the fold split alone moves the figure by about a point)")
    ap.add_argument("--calibrate-hand", action="store_true",
                    help="keep the hand-written weights; fit (and cross-validate) only their probabilities' calibration")
    ap.add_argument("--prior", choices=("constant", "hand"), default="constant",
                    help="pull the weights towards one constant (default: no case leaks through the prior) or towards "
                         "the hand-written table (which its author wrote while reading the older dev cases)")
    args = ap.parse_args(argv)

    from ask_oom.tools.root_causes.weights import HAND_WEIGHTS

    cases = load_cases(DEV_SETS)
    rows = collect(cases, embedding=args.embedding)
    hand = dict(HAND_WEIGHTS)
    rules = sorted({rule for r in rows for feats in r.features.values() for rule in feats} | {VOTES, ALSO_VOTES, WORDS})
    words = WordReadings(rows, embedding=args.embedding)
    if args.calibrate_hand:
        return _calibrate_hand([with_votes(r, None, words) for r in rows], hand, args)
    prior = hand if args.prior == "hand" else None
    preds_cv, chosen = cross_validate(rows, rules, args.folds, prior, words=words)
    repeated = [score(rows, cross_validate(rows, rules, args.folds, prior, seed, words)[0])
                for seed in range(1, args.repeats + 1)]
    l2_all, temperature, confidence = choose_hyperparameters(rows, rules, prior, words)
    # the final fit: every other project's reports vote and the word model reads each report unseen, as in the product
    rows = [with_votes(r, None, words) for r in rows]
    fitted = Fitter(rules, prior, discount_rules(rows)).fit(rows, l2_all)
    preds_in = [predict(r, fitted, temperature=temperature, confidence=confidence) for r in rows]
    preds_hand = [predict(r, hand) for r in rows]
    result = {
        "cases": len(rows), "projects": len({r.project for r in rows}), "folds": args.folds,
        "cross_validated": score(rows, preds_cv), "fitted_in_sample": score(rows, preds_in),
        "hand_table_in_sample": score(rows, preds_hand), "per_fold": chosen, "l2_all": l2_all,
        "temperature": temperature, "prior": args.prior,
        "cross_validated_new_corpora": score([r for r in rows if r.set_name.startswith("diagnosis_corpus")],
                                             [p for r, p in zip(rows, preds_cv) if r.set_name.startswith("diagnosis_corpus")]),
        "hand_table_new_corpora": score([r for r in rows if r.set_name.startswith("diagnosis_corpus")],
                                        [p for r, p in zip(rows, preds_hand) if r.set_name.startswith("diagnosis_corpus")]),
        "reliability_cv": reliability(rows, preds_cv), "reliability_hand_in_sample": reliability(rows, preds_hand),
        "repeated_cv": repeated, "evidence_coverage_cv": evidence_coverage(rows, preds_cv),
    }
    confident = [(r, p) for r, p in zip(rows, preds_cv) if p and p[0][2] >= CONFIDENT]
    result["confident_cv"] = {"answers": len(confident),
                              "right": sum(p[0][0] in r.accepted for r, p in confident),
                              "share_of_cases": len(confident) / len(rows) if rows else 0.0}
    if args.write:
        FITTED_PATH.write_text(json.dumps({
            "about": "root-cause weights fitted by evals/fit_weights.py on the dev cases (conditional logit, L2 towards "
                     + ("the hand-written table" if prior else f"{PRIOR_WEIGHT}")
                     + "); rules absent here keep the hand table's weight",
            "cases": len(rows), "projects": result["projects"], "l2": l2_all, "temperature": temperature,
            "prior": args.prior,
            "cross_validated": result["cross_validated"], "reliability_cv": result["reliability_cv"],
            "points": {k: round(v, 4) for k, v in sorted(fitted.items()) if k != NULL},
            "thresholds": {NULL: round(fitted[NULL], 4), "probability_temperature": temperature},
            "confidence_map": [[round(p, 4), round(q, 4)] for p, q in confidence],
        }, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{len(rows)} dev cases from {result['projects']} projects; {args.folds} folds grouped by project\n")
    print(f"{'weights':<44} {'primary':>8} {'top 3':>8} {'top 3, any accepted cause':>26}")
    for name, key in (("fitted, cross-validated by project (headline)", "cross_validated"),
                      ("fitted, on the cases it was fitted on", "fitted_in_sample"),
                      ("hand table, on the cases its author read", "hand_table_in_sample"),
                      ("  new corpora only: fitted, cross-validated", "cross_validated_new_corpora"),
                      ("  new corpora only: hand table", "hand_table_new_corpora")):
        s = result[key]
        print(f"{name:<44} {s['primary']:>8.1%} {s['top3']:>8.1%} {s['top3_any']:>26.1%}")
    if repeated:
        every = [result["cross_validated"], *repeated]
        print(f"\nthe same cross-validation over {len(every)} splits of the projects into folds (the first is the headline's):")
        for key, name in (("primary", "primary"), ("top3", "top 3"), ("top3_any", "top 3, any accepted cause")):
            values = [s[key] for s in every]
            print(f"  {name:<26} median {statistics.median(values):.1%}   min {min(values):.1%}   max {max(values):.1%}")
    print("\nreliability of the answer's probability (cross-validated):")
    print(f"{'band':<10} {'answers':>8} {'right':>6} {'accuracy':>9} {'mean p':>7}")
    _print_bands(result["reliability_cv"])
    print("\nthe hand table's probabilities on the cases its author read (not held out):")
    _print_bands(result["reliability_hand_in_sample"])
    c = result["confident_cv"]
    if c["answers"]:
        print(f"\nconfident (p >= {CONFIDENT}): {c['right']}/{c['answers']} right ({c['right'] / c['answers']:.0%}), "
              f"{c['share_of_cases']:.0%} of the cases")
    _print_coverage(result["evidence_coverage_cv"])
    return 0


def _print_coverage(cov: dict, most: int = 8) -> None:
    print("\naccepted cause with evidence of its own vs only borrowed (neighbours' votes and words, similar cases), "
          "cross-validated:")
    for key, name in (("own_evidence", "own evidence"), ("borrowed_only", "borrowed only")):
        g = cov[key]
        print(f"  {name:<14} {g['cases']:>5} cases  {g['right'] / g['cases'] if g['cases'] else 0:.1%} right")
    print("  causes most often left with borrowed evidence only: " + ", ".join(
        f"{c['cause']} {c['right']}/{c['cases']}" for c in cov["borrowed_only_by_cause"][:most]))


def _calibrate_hand(rows: list[CaseSignals], hand: dict[str, float], args) -> int:
    """The product's table: hand-written weights, probabilities calibrated on the dev cases (folds grouped by project)."""
    preds_cv, chosen = cross_validate_calibration(rows, hand, args.folds)
    null, t = calibrate(rows, hand)
    confident = [(r, p) for r, p in zip(rows, preds_cv) if p and p[0][2] >= CONFIDENT]
    result = {"cases": len(rows), "projects": len({r.project for r in rows}), "accuracy": score(rows, preds_cv),
              "reliability_cv": reliability(rows, preds_cv), "per_fold": chosen,
              "confident_cv": {"answers": len(confident), "right": sum(p[0][0] in r.accepted for r, p in confident)},
              "unexplained_points": null, "temperature": t}
    if args.write:
        data = json.loads(FITTED_PATH.read_text(encoding="utf-8")) if FITTED_PATH.is_file() else {}
        data.pop("points", None)   # the product ranks with the hand table: only its calibration is fitted
        data.update({"about": "calibration of the hand-written root-cause weights, fitted by evals/fit_weights.py "
                              "--calibrate-hand on the dev cases (null option's points and softmax temperature)",
                     "cases": len(rows), "projects": result["projects"],
                     "thresholds": {NULL: null, "probability_temperature": t},
                     "reliability_cv": result["reliability_cv"], "confident_cv": result["confident_cv"]})
        FITTED_PATH.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    a = result["accuracy"]
    print(f"{len(rows)} dev cases from {result['projects']} projects; hand-written weights; calibration fitted on "
          f"{args.folds} folds grouped by project")
    print(f"primary {a['primary']:.1%}, top 3 {a['top3']:.1%} (on the cases the table's author read)")
    print(f"calibration on all cases: unexplained_points {null}, temperature {t}\n")
    print(f"{'band':<10} {'answers':>8} {'right':>6} {'accuracy':>9} {'mean p':>7}")
    _print_bands(result["reliability_cv"])
    c = result["confident_cv"]
    if c["answers"]:
        print(f"\nconfident (p >= {CONFIDENT}): {c['right']}/{c['answers']} right ({c['right'] / c['answers']:.0%})")
    return 0


def _print_bands(bands: list[dict]) -> None:
    """One row per probability band: answers, right, accuracy, mean probability."""
    for b in bands:
        acc = "-" if b["accuracy"] is None else f"{b['accuracy']:.0%}"
        mp = "-" if b["mean_probability"] is None else f"{b['mean_probability']:.2f}"
        print(f"{b['band']:<10} {b['answers']:>8} {b['right']:>6} {acc:>9} {mp:>7}")


if __name__ == "__main__":
    raise SystemExit(main())
