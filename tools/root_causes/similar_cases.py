"""Votes of the retrieved similar cases: their labels as weak evidence, decaying with rank."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from ..labels import Label
from .signals import Signal, support
from .weights import CITED_REPORTS, THRESHOLDS, Thresholds

_MECHANISM_FACETS = {"phase", "modality"}  # kb.facets facets that tell how memory was spent
_GITHUB_THREAD = re.compile(r"github\.com/([^/\s]+/[^/\s]+)/(?:issues|pull|discussions)/(\d+)")


def similar_case_votes(hits: Iterable[Any], th: Thresholds = THRESHOLDS) -> list[Signal]:
    """Labels of the retrieved cases: weak evidence, decaying with rank (value 1 / rank, the first rank 1).

    A case's first label fires `similar_case_primary`, its next ones `similar_case_secondary` at a fraction of the
    value. A label that is not in the vocabulary raises (KB cases are validated when they load)."""
    out: list[Signal] = []
    for rank, hit in enumerate(list(hits)[:int(th["similar_cases_counted"])]):
        case = getattr(hit, "case", hit)
        labels = list(getattr(case, "root_causes", []) or [])
        cid = getattr(case, "id", "?")
        value = 1 / (rank + 1)
        shared = set(getattr(hit, "matched_facets", None) or [])
        if hasattr(hit, "matched_facets") and not shared & _MECHANISM_FACETS:
            # Sharing only the error kind, framework or method makes a case a neighbour in wording, not in mechanism.
            value *= th["wording_only_case_scale"]
        for i, label in enumerate(labels[:int(th["similar_case_labels_counted"])]):
            reason = f"similar documented case {cid} had {label.replace('_', ' ')}"
            if i == 0:
                out.append(support(Label(label), SIMILAR_CASE_RULES[0], reason, value))
            else:
                out.append(support(Label(label), SIMILAR_CASE_RULES[1], reason, value / th["secondary_label_divisor"]))
    return out


# the rules of a documented case's first label and of its next ones
SIMILAR_CASE_RULES = ("similar_case_primary", "similar_case_secondary")


VOTE_RULE = "labelled_report_votes"
ALSO_VOTE_RULE = "labelled_report_votes_also"   # the causes a neighbour's thread accepts after its first


def vote_shares(votes: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Each cause's share of the summed similarity of the reports that vote (only positive similarities count)."""
    return also_vote_shares(([label], sim) for label, sim in votes)


def also_vote_shares(votes: Iterable[tuple[Iterable[str], float]]) -> dict[str, float]:
    """Each cause's share of the voters' summed similarity, every cause a voter names counting its similarity once:
    a thread that settled "weights, or the load itself" speaks for both (vote_shares: one cause a voter)."""
    near = [(list(dict.fromkeys(labels)), sim) for labels, sim in votes if sim > 0]
    total = sum(sim for _, sim in near)
    summed: dict[str, float] = {}
    for labels, sim in near:
        for label in labels:
            summed[label] = summed.get(label, 0.0) + sim
    return {label: s / total for label, s in summed.items()} if total > 0 else {}


def labelled_report_votes(neighbours: Iterable[Any]) -> list[Signal]:
    """The causes of the labelled public reports worded most like this one (kb/reports.py), each as its share of
    their summed similarity: "3 of the 5 most alike reports were a KV cache that did not fit" is what an engineer
    who has read many threads brings; the causes their threads accept after the first vote under their own rule.
    Each report is cited by its source."""
    near = [n for n in neighbours if n.similarity > 0]
    out: list[Signal] = []
    for rule, named, verb in ((VOTE_RULE, lambda n: [n.label], "had"), (ALSO_VOTE_RULE, lambda n: n.also, "also accepted")):
        for label, share in also_vote_shares((named(n), n.similarity) for n in near).items():
            group = [n for n in near if label in named(n)]
            cited = ", ".join(_thread(n.source) for n in group[:CITED_REPORTS])
            out.append(support(Label(label), rule,
                               f"{len(group)} of the {len(near)} labelled public reports most like this one {verb} "
                               f"{label.replace('_', ' ')} ({cited})", share))
    return out


WORDS_RULE = "labelled_report_words"


def word_evidence(probability: float, floor: float) -> float:
    """The weight of a word-model probability as evidence: its log-ratio to the floor, ln(p / floor), 0 at or under
    it. Added to a cause's points with a fitted weight w, the reading multiplies the cause's odds by (p / floor) ** w,
    a product of experts (a probability's ratio, not its difference, is what it says: 0.2 against 0.02 is as strong as
    0.9 against 0.09). Cross-validated by project against the probability itself (with the word model at C = 3): an
    accepted cause in the top 3 +1.0 and +1.1 points on two splits, primary unchanged, more answers confident at the
    same reliability."""
    return math.log(probability / floor) if probability > floor else 0.0


def labelled_report_words(reading: Any, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """The word model's reading of the paste (kb/report_words.py), each cause above `report_words_floor` at its
    word_evidence: what the words of every labelled report, weighed against every cause, say of this one."""
    if reading is None:
        return []
    floor = th["report_words_floor"]
    return [support(Label(label), WORDS_RULE,
                    f"a word model fitted on {reading.reports} labelled public reports reads this paste as "
                    f"{label.replace('_', ' ')} (p = {p:.2f}{_words(reading.words.get(label))})", word_evidence(p, floor))
            for label, p in sorted(reading.probabilities.items(), key=lambda kv: -kv[1]) if p > floor]


def _words(words: list[str] | None) -> str:
    """The words that speak most for a cause, as the reading quotes them."""
    return "; its words: " + ", ".join(f'"{w}"' for w in words) if words else ""


def _thread(source: str) -> str:
    """owner/repo#n for a GitHub issue, pull request or discussion, else the address as given."""
    m = _GITHUB_THREAD.search(source)
    return f"{m.group(1)}#{m.group(2)}" if m else source
