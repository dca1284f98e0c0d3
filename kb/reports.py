"""Labelled public reports as neighbours: the dev corpus's reports (evals/data, never a held-out or validation set),
each with its source thread and the cause its thread settled, indexed so a new paste finds the reports worded most
like it. Their causes are one piece of evidence among the others (similar_cases.labelled_report_votes): engineers
read a report the way they remember ones like it.

TF-IDF over words (sublinear term frequency, smoothed idf, L2-normalised; Salton & Buckley 1988) with cosine
similarity, in pure Python over an inverted index: a warm lookup touches only the reports that share a word.
`evals/build_reports.py` writes kb/reports.json from the dev sets; a test keeps the file equal to a fresh build.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, PrivateAttr

from .cases import thread_key

REPORTS_PATH = Path(__file__).resolve().parent / "reports.json"
MAX_TEXT = 20_000          # characters of a paste read for its words (of a long log, its two ends: paste_text)
NEIGHBOURS = 10            # reports that vote: cross-validated by project, 8 to 16 do alike (3: -1 point, 20: -1)
MIN_DF = 2                 # a word in one report only tells nothing about likeness
# words of three letters or more (identifiers split at punctuation), and runs of Chinese characters
_TOKEN = re.compile(r"[A-Za-z_]{3,}|[\u4e00-\u9fff]{2,}")


def paste_text(log_text: str, config_text: str | None) -> str:
    """What the labelled reports are compared on: the pasted log (with the user's words), then the config. Of a log
    longer than MAX_TEXT, its first and last MAX_TEXT / 4 characters (the launch and the words above, the error and
    the words below; its middle is a long run's progress), so the config after it is read too."""
    each_end = MAX_TEXT // 4
    if len(log_text) > MAX_TEXT:
        log_text = log_text[:each_end] + "\n" + log_text[-each_end:]
    return log_text + "\n" + (config_text or "")


def report_terms(text: str) -> dict[str, int]:
    """Term counts of a paste (lower-cased words; Chinese as overlapping character pairs), from its first MAX_TEXT
    characters. Chinese is written without spaces, so a run of characters is a phrase, not a word: two reports share
    "显存不足" only through its pairs 显存, 存不, 不足 (the CJK bigrams of Lucene's CJKAnalyzer). Cross-validated by
    project, pairs rather than whole runs: +1.2 points primary."""
    counts: Counter[str] = Counter()
    for m in _TOKEN.finditer(text[:MAX_TEXT]):
        token = m.group(0)
        if token[0] < "\u4e00":
            counts[token.lower()] += 1
        else:
            counts.update(token[i:i + 2] for i in range(len(token) - 1))
    return dict(counts)


def project_folds(projects: list[str], k: int, seed: int | None = None) -> list[list[int]]:
    """k folds of the positions in `projects`, whole projects per fold, balanced by size (largest projects placed
    first, each into the smallest fold). `seed` shuffles the order of projects of equal size (None: by name), so
    repeated runs split the projects differently."""
    by_project: dict[str, list[int]] = defaultdict(list)
    for i, project in enumerate(projects):
        by_project[project].append(i)
    tie = {name: random.Random(f"{seed}:{name}").random() for name in by_project} if seed is not None else {}
    folds: list[list[int]] = [[] for _ in range(k)]
    for _, idx in sorted(by_project.items(), key=lambda kv: (-len(kv[1]), tie.get(kv[0], 0.0), kv[0])):
        min(folds, key=len).extend(idx)
    return [f for f in folds if f]


def smoothed_idf(documents: Iterable[dict[str, int]]) -> dict[str, float]:
    """scikit-learn's smoothed idf, ln((1 + n) / (1 + df)) + 1, of the words in MIN_DF or more of the documents."""
    df: Counter[str] = Counter()
    n = 0
    for terms in documents:
        df.update(terms.keys())
        n += 1
    return {t: math.log((1 + n) / (1 + d)) + 1 for t, d in df.items() if d >= MIN_DF}


def tfidf_vector(terms: dict[str, int], idf: dict[str, float]) -> dict[str, float]:
    """Sublinear term frequency times idf, L2-normalised (words without an idf are left out)."""
    vec = {t: (1 + math.log(c)) * idf[t] for t, c in terms.items() if t in idf and c > 0}
    norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
    return {t: w / norm for t, w in vec.items()}


class LabelledReport(BaseModel):
    """One public report: where it was discussed, the cause its thread settled (first the primary), its words."""

    id: str
    source: str
    project: str = Field(description="the repository's name, lower-cased without punctuation (renamed repos match)")
    labels: list[str] = Field(min_length=1, description="causes the thread accepts, the primary first")
    terms: dict[str, int]


class Neighbour(BaseModel):
    """A labelled report like the paste, with how alike (cosine similarity, 0 to 1)."""

    id: str
    source: str
    project: str
    label: str
    similarity: float
    also: list[str] = Field(default_factory=list, description="the other causes its thread accepts, in its order")


class ReportIndex(BaseModel):
    """The labelled reports and their TF-IDF vectors (built on load, not stored)."""

    reports: list[LabelledReport] = Field(default_factory=list)
    _idf: dict[str, float] = PrivateAttr(default_factory=dict)
    _postings: dict[str, list[tuple[int, float]]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, _context) -> None:
        self._idf = smoothed_idf(r.terms for r in self.reports)
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for i, r in enumerate(self.reports):
            vec = tfidf_vector(r.terms, self._idf)
            for t, w in vec.items():
                postings[t].append((i, w))
        self._postings = dict(postings)

    def neighbours(self, text: str, k: int = NEIGHBOURS, *, skip_source: str | None = None,
                   skip_projects: frozenset[str] | set[str] = frozenset()) -> list[Neighbour]:
        """The k reports most like `text`, best first; `skip_source` leaves a report's own thread out (a report is
        never its own neighbour) and `skip_projects` whole projects (cross-validation by project)."""
        return self.neighbours_of_terms(report_terms(text), k, skip_source=skip_source, skip_projects=skip_projects)

    def neighbours_of_terms(self, terms: dict[str, int], k: int = NEIGHBOURS, *, skip_source: str | None = None,
                            skip_projects: frozenset[str] | set[str] = frozenset()) -> list[Neighbour]:
        """As `neighbours`, from a paste's term counts (report_terms), when the word model reads the same ones."""
        query = tfidf_vector(terms, self._idf)
        scores: dict[int, float] = defaultdict(float)
        for t, w in query.items():
            for i, dw in self._postings.get(t, ()):
                scores[i] += w * dw
        own = thread_key(skip_source) if skip_source else None
        out: list[Neighbour] = []
        for i, s in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
            r = self.reports[i]
            if (own and thread_key(r.source) == own) or r.project in skip_projects:
                continue
            out.append(Neighbour(id=r.id, source=r.source, project=r.project, label=r.labels[0], similarity=round(s, 6),
                                 also=r.labels[1:]))
            if len(out) == k:
                break
        return out

    def dump(self, path: Path = REPORTS_PATH) -> None:
        """Write the reports as sorted, one-line-per-report JSON (a stable diff when the corpus grows)."""
        rows = [json.dumps(r.model_dump(), ensure_ascii=False, sort_keys=True) for r in sorted(self.reports, key=lambda r: r.id)]
        path.write_text('{"reports": [\n' + ",\n".join(rows) + "\n]}\n", encoding="utf-8")


class LeaveOwnReportOut:
    """The labelled reports as one report sees them when it is measured: its own thread is never its neighbour."""

    def __init__(self, index: ReportIndex, source: str | None):
        self.index, self.source = index, source

    def neighbours(self, text: str, k: int = NEIGHBOURS) -> list[Neighbour]:
        return self.index.neighbours(text, k, skip_source=self.source)

    def neighbours_of_terms(self, terms: dict[str, int], k: int = NEIGHBOURS) -> list[Neighbour]:
        return self.index.neighbours_of_terms(terms, k, skip_source=self.source)


@lru_cache(maxsize=1)
def load_reports(path: Path = REPORTS_PATH) -> ReportIndex:
    """The shipped labelled reports (an empty index when the file is absent: the evidence is then simply missing)."""
    if not path.is_file():
        return ReportIndex()
    return ReportIndex.model_validate(json.loads(path.read_text(encoding="utf-8")))
