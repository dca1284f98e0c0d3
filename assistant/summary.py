"""The diagnosis in one paragraph: what ran out, the most likely cause, the calculator's peak against the budget,
the fixed config and what is still needed. Every number is one a tool produced."""

from __future__ import annotations

from ..tools.labels import ROOT_CAUSES, RootCause
from ..tools.report import KIND_NAMES, OOMReport
from ..tools.report_refinement import observed_peak
from ..tools.units import format_bytes
from .deciding_facts import is_confident, shown_probability
from .diagnosis import Diagnosis
from .texts import tr

NOT_SURE_LISTED = 0.1   # a hypothesis below this probability is not named beside the leading ones


def summary(d: Diagnosis, language: str = "en") -> str:
    """The summary of a diagnosed memory error, its fixed words in `language` (assistant/texts.py)."""
    lang = language
    parts = [_what_ran_out(d.report, lang)]
    if d.root_causes and is_confident(d.root_causes):
        top = d.root_causes[0]
        sure = tr(lang, "sm_sure", p=shown_probability(top.probability)) if top.probability is not None else ""
        parts.append(tr(lang, "sm_likely", sure=sure, label=top.label.replace('_', ' '), meaning=ROOT_CAUSES.get(top.label, '')))
    elif d.root_causes:
        parts.append(_not_sure(d, lang))
    return _join(lang, parts + _verdict_and_fix(d, lang))


def localized_summary(d: Diagnosis, language: str | None = "en") -> str:
    """The diagnosis' summary in `language`: the pipeline's own (English) summary as it is, else the same summary
    written again with that language's fixed words (summary, summary_config_only or summary_no_oom, as the pipeline
    chose: a log-less diagnosis has an empty report)."""
    if (language or "en") == "en":
        return d.summary
    return summary_for(d, d.report.lines > 0 or d.report.is_memory_error, language)


def summary_for(d: Diagnosis, has_log: bool, language: str | None = "en") -> str:
    """The one choice of summary: a config-only one without a log, 'no memory error' for a log without one, else the
    diagnosis' summary; the pipeline writes it in English, a conversation in its language."""
    if not has_log:
        return summary_config_only(d, language)
    if d.status == "no_memory_error":
        return summary_no_oom(d.report, d.root_causes, language)
    return summary(d, language)


def _join(lang: str, parts: list[str]) -> str:
    """Sentences joined as the language writes them: a space in English, nothing in Chinese."""
    return ("" if lang == "zh" else " ").join(parts)


def _not_sure(d: Diagnosis, lang: str = "en") -> str:
    """The leading hypotheses with their probabilities, and the one fact that would separate them."""
    leading = [c for c in d.root_causes[:3] if c.probability is None or c.probability >= NOT_SURE_LISTED]
    names = [f"{c.label.replace('_', ' ')} ({c.probability:.0%})" if c.probability is not None else c.label.replace('_', ' ')
             for c in leading or d.root_causes[:1]]
    said = names[0] if len(names) == 1 else tr(lang, "sm_list").join(names[:-1]) + tr(lang, "sm_or") + names[-1]
    decide = next((q.text for q in d.questions if q.slot == "decide"), None)
    return tr(lang, "sm_not_sure", said=said) + (tr(lang, "sm_decide", decide=decide) if decide else "")


def _verdict_and_fix(d: Diagnosis, lang: str = "en") -> list[str]:
    """The calculator's peak against the budget (and against what the failing run held), the fixed config, and
    what is still needed; the first item is the peak sentence ('' without an estimate)."""
    parts = [""]
    if d.estimate is not None:
        e = d.estimate
        verdict = ""
        if e.budget_bytes:
            fit = (tr(lang, "sm_borderline") if e.verdict == "borderline"
                   else tr(lang, "sm_does_not_fit") if e.fits is False else "")
            verdict = tr(lang, "sm_against", budget=format_bytes(e.budget_bytes)) + (tr(lang, "sm_fit", fit=fit) if fit else "")
        parts[0] = tr(lang, "sm_peak", peak=format_bytes(e.peak_bytes), phase=e.peak_phase.replace('_', ' '), verdict=verdict)
        held = observed_peak(d.report)
        if held and held > e.peak_bytes:
            parts.append(tr(lang, "sm_held", held=format_bytes(held)))
    if d.fixes and d.fixed_config:
        after = d.estimate_after
        fit = ""
        if after is not None:
            fit = tr(lang, "sm_after", peak=format_bytes(after.peak_bytes)) + tr(lang, "sm_after_fits" if d.fits_after else "sm_after_not")
        keys = [f"{c.key} {tr(lang, 'rp_unset') if c.from_value is None else c.from_value}→{c.to_value}" if c.key != "__file__"
                else tr(lang, "sm_new_file", name=d.fixed_deepspeed_name or tr(lang, "sm_deepspeed_file")) for c in d.fixes if c.key]
        actions = sum(1 for c in d.fixes if not c.key)
        listed = ", ".join(keys) or tr(lang, "sm_no_keys")
        extra = tr(lang, "sm_actions", n=actions) if actions else ""
        parts.append(tr(lang, "sm_fixed", listed=listed, extra=extra, fit=fit))
    # the deciding question is asked where the summary says it is not sure (_not_sure): listed again it only repeats
    needed = [q.slot.replace("_", " ") for q in d.questions if q.slot != "decide"]
    if needed:
        parts.append(tr(lang, "sm_need", slots=tr(lang, "sm_list").join(needed)))
    return [p for p in parts if p]


def summary_config_only(d: Diagnosis, language: str = "en") -> str:
    """The summary of a config checked without a log: the calculator's verdict and the fix, if one is needed."""
    lang = language
    parts = [tr(lang, "sm_no_log", name=d.config.name if d.config is not None else tr(lang, "sm_the_setup"))]
    if d.estimate is None:
        parts.append(tr(lang, "sm_not_sized"))
    if d.root_causes:
        top = d.root_causes[0]
        parts.append(tr(lang, "sm_over", label=top.label.replace('_', ' '), meaning=ROOT_CAUSES.get(top.label, '')))
    return _join(lang, parts + _verdict_and_fix(d, lang))


def summary_no_oom(report: OOMReport, causes: list[RootCause], language: str = "en") -> str:
    """The summary of a log without a memory error: what it shows instead."""
    lang = language
    found = []
    if report.exit_signal:
        found.append(tr(lang, "sm_exit", signal=report.exit_signal))
    for e in report.related_errors[:3]:
        found.append(tr(lang, "sm_related", kind=e.kind.replace('_', ' '), line=e.line, message=e.message[:160]))
    head = tr(lang, "sm_no_oom")
    if found:
        head += tr(lang, "sm_found", found=tr(lang, "sm_semicolon").join(found))
    if causes:
        top = causes[0]
        head += tr(lang, "sm_reading", label=top.label.replace('_', ' '), why=top.why[0] if top.why else ROOT_CAUSES.get(top.label, ''))
    return head


def _what_ran_out(r: OOMReport, lang: str = "en") -> str:
    """The first sentence: which memory ran out, where, and the allocation that failed."""
    if r.kind == "host_oom":
        return tr(lang, "sm_host_oom", signal=tr(lang, "sm_total", total=r.exit_signal) if r.exit_signal else "")
    where = tr(lang, "sm_gpu_n", n=r.gpu_index) if r.gpu_index is not None else tr(lang, "sm_the_gpu")
    kind = KIND_NAMES.get(r.kind, r.kind)
    s = tr(lang, "sm_oom_on", kind=kind, where=where)
    if r.gpu_total_bytes:
        s += tr(lang, "sm_total", total=format_bytes(r.gpu_total_bytes))
    if r.requested_bytes:
        s += tr(lang, "sm_failed", requested=format_bytes(r.requested_bytes))
        if r.gpu_free_bytes is not None:
            s += tr(lang, "sm_with_free", free=format_bytes(r.gpu_free_bytes))
    if r.phase != "unknown":
        s += tr(lang, "sm_during", phase=r.phase.replace('_', ' '))
    return s + tr(lang, "end")
