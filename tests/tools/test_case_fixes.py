"""Retrieved cases' documented fixes as typed changes: planner hints from the top cases, or the top case's own fixes
attributed to it, on the real knowledge base."""

from __future__ import annotations

from types import SimpleNamespace

from ask_oom.kb.cases import load_cases
from ask_oom.tools.case_fixes import HINT_CASES, fixes_from_top_case, planner_hints


def hits_with_fixes():
    cases = [c for c in load_cases() if any(f.key or f.action for f in c.fixes)]
    assert len(cases) > HINT_CASES
    return [SimpleNamespace(case=c) for c in cases]


def test_hints_come_from_the_top_cases_only_and_keep_confirmation():
    hits = hits_with_fixes()
    hints = planner_hints(hits)
    top_ids = {h.case.id for h in hits[:HINT_CASES]}
    expected = sum(1 for h in hits[:HINT_CASES] for f in h.case.fixes if f.key or f.action)
    assert len(hints) == expected
    for change in hints:
        assert set(change.confirmed_by) <= top_ids
        assert change.action is None or change.key is None  # a key change or an action, never both
    confirmed = [f for h in hits[:HINT_CASES] for f in h.case.fixes if f.confirmed and (f.key or f.action)]
    assert sum(1 for c in hints if c.confirmed_by) == len(confirmed)


def test_top_case_fixes_are_attributed_to_it():
    hits = hits_with_fixes()
    top = hits[0].case
    fixes = fixes_from_top_case(hits)
    assert 1 <= len(fixes) <= 4
    assert all(c.rationale.endswith(f"(from case {top.id})") for c in fixes)
    assert fixes_from_top_case([]) == []
