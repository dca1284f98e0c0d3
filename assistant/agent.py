"""The one pipeline: every entry point (diagnose, fix, estimate, probe, the conversation, the LLM tools, the web UI
and the Slack bot) turns its input into a DiagnoseRequest and calls `diagnose`; it only chooses what to compute
(`request.retrieve`, `request.plan`) and what to show.

log → report (parse, refine) → setup (log + config + user, with provenance) → estimate → similar cases → ranked
causes → fix plan (the cases' fixes as hints) → Diagnosis. Every number comes from a tool; what the pipeline lacks
it asks for instead of guessing. Without a log, the causes are what the calculator finds over the budget.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..tools.configs.schema import ConfigDocument, Constraints, FixPlan
from ..tools.errors import InputError
from ..tools.labels import RootCause
from ..tools.memory.schema import MemoryEstimate
from ..tools.report import OOMReport
from ..tools.training_setup import TrainingSetup
from .diagnosis import ConfigInfo, DiagnoseRequest, Diagnosis, SimilarReport

if TYPE_CHECKING:
    from ..tools.memory_trend import MemoryTrend

SIMILAR_K = 5          # cases retrieved; the top ones also lend their fixes to the planner as hints
SHOWN_REPORTS = 5      # labelled public reports listed in the answer (all the voting neighbours weigh in the ranking)
PLAN_MIN_SCORE = 0.2   # causes below this score are listed as alternatives but get no fix of their own
DEFAULT_MARGIN = Constraints().margin
RETRIEVAL_MODE = os.environ.get("ASK_OOM_RETRIEVAL_MODE", "fast")  # fast: no torch / embeddings on the CLI path


def diagnose(request: DiagnoseRequest, *, index: Any = None, settings: Any = None, mode: str | None = None,
             reports: Any = None, words: Any = None) -> Diagnosis:
    """One diagnosis for one request. Bad input raises InputError (the CLI's exit 2); nothing else is raised
    for a tool that cannot help (retrieval, planning): the answer says what is missing instead. `index` is the
    knowledge base, `reports` the labelled reports (kb.reports.ReportIndex) and `words` their word model
    (kb.report_words.WordModel); None loads the shipped ones."""
    from ..tools.log_cues import log_cues
    from ..tools.log_parser import parse_log
    from ..tools.log_parser.lines import scan_window
    from ..tools.memory_trend import failure_trend
    from ..tools.report_refinement import refine_report
    from ..tools.root_causes import rank_root_causes
    from ..tools.root_causes.ranking import collect_signals
    from ..tools.root_causes.scoring import score_signals
    from ..tools.setup_assembly import (adapter_method_named, assemble_setup, eager_attention_from_ranking, gguf_weights,
                                        quantized_weights, workload_named)
    from .questions import assumptions, questions
    from .similar_cases import similar_case
    from .text_facts import text_facts

    has_log = bool(request.log_text.strip())
    doc = _load_config(request)
    notes: list[str] = []
    report, trend, cues = OOMReport(), None, None
    # what the readers of a log's cues and words examine: a long log's two ends (the parser and the memory trend
    # read all of it)
    window = scan_window(request.log_text)
    if has_log:
        cues = log_cues(window, request.config_text)
        refined = refine_report(parse_log(request.log_text), window, cues=cues, doc=doc,
                                truncated=request.log_truncated)
        report, notes = refined.report, list(refined.notes)
        trend = failure_trend(request.log_text, cues.oom_said) if report.is_memory_error else None
    if doc is not None:
        notes.extend(n for n in doc.notes if n not in notes)
    setup = assemble_setup(report, doc, request)
    if has_log:
        # what the log's words add to the setup, in order: stated facts, an adapter method, the workload, the width
        # the weights load in (said in words, or a GGUF engine's)
        setup = adapter_method_named(text_facts(setup, window), cues)
        setup = quantized_weights(workload_named(setup, cues), window)
        setup = gguf_weights(setup, cues)
    margin = request.margin or getattr(settings, "gpu_margin", None) or DEFAULT_MARGIN
    sized = _sized_step(request, report, setup)
    estimate = _estimate(setup, sized, margin, notes)
    dataset = _dataset(request, doc, setup, estimate, margin) if request.dataset is not None else None
    hits = _retrieve(report, setup, index, settings, mode, notes, window, trend) if request.retrieve and has_log else []
    paste = _paste(request) if request.retrieve and has_log else None
    terms = _paste_terms(paste) if paste is not None else None
    near = _neighbours(terms, reports, notes) if terms is not None else []
    reading = _word_reading(paste, terms, words, notes) if paste is not None and terms is not None else None
    held, ranks = _reconcile(request, estimate), _ranks(request) if has_log else None
    signals = collect_signals(report if has_log else None, setup, estimate, hits, trend, cues, held=held, ranks=ranks,
                              neighbours=near, words=reading)
    causes = score_signals(signals)
    eager = eager_attention_from_ranking(setup, causes)
    if eager is not None:  # the evidence says eager attention ran: size it, then rank again with that estimate
        setup = eager
        estimate = _estimate(setup, sized, margin, notes)
        held = _reconcile(request, estimate)
        signals = collect_signals(report if has_log else None, setup, estimate, hits, trend, cues, held=held, ranks=ranks,
                                  neighbours=near, words=reading)
        causes = score_signals(signals)
    similar = [similar_case(h, report, setup) for h in hits]
    config = ConfigInfo(name=doc.name, format=doc.format, framework=doc.framework,
                        deepspeed_name=doc.deepspeed_name) if doc is not None else None
    oom = report.is_memory_error
    if has_log and not oom:
        # no memory error in the log: a plan only for what the calculator finds over the budget
        plan_causes = rank_root_causes(None, setup, estimate)
    else:
        plan_causes = causes
    # Without an OOM in a log, a plan only for a setup the calculator judged over the GPU's (or host's) budget.
    over_budget = _over_budget(estimate, dataset, setup, notes)
    plan = None
    if request.plan and plan_causes and (oom or over_budget):
        plan = _plan(setup, doc, plan_causes, request, margin, hits, notes, report)
    fixes = list(plan.changes) if plan is not None else []
    if has_log and oom and plan is None:
        from ..tools.case_fixes import fixes_from_top_case

        fixes = fixes_from_top_case(hits)
        if fixes:
            notes.append("fixes below come from similar documented cases and are not verified by the calculator: "
                         "answer the questions so ask-oom can size them")
    if plan is not None:
        notes.extend(n for n in plan.notes if n not in notes)
    if has_log and not oom:
        status = "no_memory_error"
    else:
        status = "diagnosed" if estimate is not None else "needs_input"
    d = Diagnosis(
        status=status, config=config, signals=signals, sized=estimate.workload if estimate is not None else None, report=report, setup=setup,
        estimate=estimate, root_causes=causes, similar_cases=similar, fixes=fixes,
        similar_reports=[SimilarReport(id=n.id, source=n.source, cause=n.label, similarity=n.similarity)
                         for n in near[:SHOWN_REPORTS]],
        fixed_config=plan.fixed_config if plan is not None else None,
        fixed_config_format=doc.format if doc is not None and plan is not None and plan.fixed_config else None,
        fixed_deepspeed=plan.fixed_deepspeed if plan is not None else None, diff=plan.diff if plan is not None else "",
        estimate_after=plan.estimate_after if plan is not None else None, fits_after=_verified_fit(plan, setup),
        assumptions=assumptions(setup), questions=questions(report, setup, doc, causes) if has_log else [], notes=notes,
        reconciliation=held, ranks=ranks, dataset=dataset,
    )
    return d.model_copy(update={"summary": _summary(d, has_log)})


def _summary(d: Diagnosis, has_log: bool) -> str:
    from .summary import summary_for

    return summary_for(d, has_log)


def _sized_step(request: DiagnoseRequest, report: OOMReport, setup: TrainingSetup) -> str:
    """The step the calculator sizes: what the user asked for, else the failing step the log shows (an evaluation,
    generation or vLLM step carries no training states), else the workload the config states (eval-only, predict,
    predict with generation), else a training step."""
    from ..tools.report_refinement import estimate_mode

    if request.mode != "auto":
        return request.mode
    if setup.framework == "vllm":
        return "eval"
    if report.phase == "unknown" and report.framework not in ("vllm", "llama.cpp"):
        return setup.workload   # the log says nothing about the step (or there is no log): the config's workload
    return estimate_mode(report)


# ---------------------------------------------------------------------------------------------------
# Stages: each calls one tool and turns what it cannot do into a note instead of an error



def _verified_fit(plan, setup) -> bool | None:
    """Whether the fixed config fits, as far as the calculator could check: None when it had no GPU to check against
    or could not size the model, so no answer claims "does not fit" for a plan nobody could size."""
    if plan is None or not plan.sized or setup is None or setup.gpu is None or setup.model is None:
        return None
    return plan.fits

def _load_config(request: DiagnoseRequest) -> ConfigDocument | None:
    """The user's config, or None when none was given. An unusable one raises InputError, unless the log shows an
    out-of-memory error or the user's words describe one: then what can be read of it is used (a file cut short, a Markdown list of settings) or, when
    nothing can, none of it, and a note says so; the answer stands on the log. An impossible value is an error either
    way (ImpossibleValue names its key and line)."""
    if not request.config_text or not request.config_text.strip():
        return None
    from ..tools.configs import load_config
    from ..tools.configs.partial import read_partial, unreadable
    from ..tools.configs.validation import ImpossibleValue
    from ..tools.described_oom import described_oom
    from ..tools.errors import UnsafeInput
    from ..tools.log_parser import parse_log

    name, extra = request.config_name or "config", request.extra_configs or None
    try:
        return load_config(request.config_text, name, extra)
    except (ImpossibleValue, UnsafeInput):   # the user's to fix, and a refusal for safety is never read in part
        raise
    except InputError as exc:
        if not request.log_text.strip() or not (parse_log(request.log_text).is_memory_error
                                                or described_oom(request.log_text) is not None):
            raise
        try:
            return read_partial(request.config_text, name, extra, reason=str(exc))
        except ImpossibleValue:
            raise
        except InputError:
            return unreadable(request.config_text, name, reason=str(exc))


def _estimate(setup: TrainingSetup, sized: str, margin: float, notes: list[str]) -> MemoryEstimate | None:
    """The calculator's estimate of the sized step; a setup it cannot size is a note."""
    if setup.model is None:
        return None
    from ..tools.memory import estimate_memory

    try:
        return estimate_memory(setup, mode=sized, margin=margin)
    except InputError as exc:
        notes.append(f"memory estimate unavailable: {exc}")
        return None


def _retrieve(report: OOMReport, setup: TrainingSetup, index: Any, settings: Any, mode: str | None,
              notes: list[str], text: str = "", trend: MemoryTrend | None = None) -> list[Any]:
    """The most similar documented cases; a failing index is a note, not an error."""
    try:
        from ..kb.query import build_query
        from .text_facts import prose_lines
        if index is None:
            from ..kb.index import CaseIndex

            index = CaseIndex.load_or_build(settings)
        query = build_query(report, setup, trend)
        if report.requested_bytes is None:
            # a report without the allocator's numbers is mostly the user's words: they say what the case is about
            query = " ; ".join([query, " ".join(prose_lines(text)[:3])[:400]]).strip(" ;")
        return list(index.search(query, k=SIMILAR_K, mode=mode or RETRIEVAL_MODE))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - retrieval is an aid: the diagnosis stands without it
        _aid_failed(notes, "similar cases unavailable", exc)
        return []


def _paste(request: DiagnoseRequest) -> str:
    """The paste (its log, words and config) as the labelled reports were read: its words and its sentence
    embedding are taken from this one text."""
    from ..kb.reports import paste_text

    return paste_text(request.log_text, request.config_text)


def _paste_terms(paste: str) -> dict[str, int]:
    """The paste's words as the labelled reports count them: read once, for the neighbours and the word model alike."""
    from ..kb.reports import report_terms

    return report_terms(paste)


def _neighbours(terms: dict[str, int], reports: Any, notes: list[str]) -> list[Any]:
    """The labelled public reports worded most like the paste; a failure is a note."""
    from ..kb.reports import load_reports

    try:
        if reports is None:
            reports = load_reports()
        return list(reports.neighbours_of_terms(terms))
    except Exception as exc:  # noqa: BLE001 - like retrieval, an aid: the diagnosis stands without it
        _aid_failed(notes, "labelled reports unavailable", exc)
        return []


def _word_reading(paste: str, terms: dict[str, int], words: Any, notes: list[str]) -> Any:
    """The labelled reports' word model's reading of the paste (its words, and its sentence embedding when the model
    reads one); a failure is a note, and without the embedding the words are read alone."""
    from ..kb.report_words import load_words

    try:
        model = words if words is not None else load_words()
    except Exception as exc:  # noqa: BLE001 - like the neighbours, an aid: the diagnosis stands without it
        _aid_failed(notes, "labelled reports' word model unavailable", exc)
        return None
    embedding = None
    if model.reads_embedding:
        try:
            from ..kb.paste_embedding import paste_embedding

            embedding = paste_embedding(paste)
        except Exception as exc:  # noqa: BLE001 - the words alone still read
            _aid_failed(notes, "paste embedding unavailable (the word model read the words alone)", exc)
    try:
        return model.read_terms(terms, embedding)
    except Exception as exc:  # noqa: BLE001
        _aid_failed(notes, "labelled reports' word model unavailable", exc)
        return None


def _plan(setup: TrainingSetup, doc: ConfigDocument | None, causes: list[RootCause], request: DiagnoseRequest,
          margin: float, hits: list[Any], notes: list[str], report: OOMReport) -> FixPlan | None:
    """The planner's fixes under the user's constraints, for the causes strong enough to act on (None without a model)."""
    if setup.model is None:
        return None
    from ..tools.case_fixes import planner_hints
    from ..tools.configs import plan_fixes
    from ..tools.report_refinement import observed_peak

    keep = set(request.keep)
    constraints = Constraints(
        keep_method="full" in keep, keep_seq_len="seq" in keep, keep_batch="batch" in keep,
        no_deepspeed="no-deepspeed" in keep, num_gpus=request.num_gpus, margin=margin,
        observed_peak_bytes=observed_peak(report), observed_oom=report.is_memory_error,
    )
    # Hunches (weak causes, e.g. only a similar case's label) are shown to the user but do not drive the plan.
    planned = [c for i, c in enumerate(causes) if i == 0 or c.score >= PLAN_MIN_SCORE]
    try:
        return plan_fixes(setup, doc, planned, constraints, hints=planner_hints(hits))
    except InputError as exc:
        notes.append(f"no fix plan: {exc}")
        return None
    except Exception as exc:  # noqa: BLE001 - the diagnosis stands without a plan; say why
        _aid_failed(notes, "fix planner failed", exc)
        return None


def _over_budget(estimate: MemoryEstimate | None, dataset: Any, setup: TrainingSetup, notes: list[str]) -> bool:
    """Whether the calculator judged the setup over the GPU's (or the host's) budget; with a dataset whose worst batch
    fits, the step at cutoff_len for every sample never runs, so only the host can still be over."""
    if estimate is None or not (estimate.fits is False or estimate.host_fits is False):
        return False
    v = dataset.verdict if dataset is not None else None
    if v is not None and v.verdict == "fits" and estimate.host_fits is not False:
        notes.append(f"no change needed for this dataset: its worst batch ({v.micro_batch} x {v.worst_length} tokens) "
                     f"fits; the estimate above sizes every sample at the configured {setup.seq_len} tokens")
        return False
    return True


def _reconcile(request: DiagnoseRequest, estimate: MemoryEstimate | None):
    """The snapshots the door read, held against the calculator's components (None without snapshots)."""
    from ..tools.snapshot import reconcile

    return reconcile(request.snapshots, estimate) if request.snapshots else None


def _ranks(request: DiagnoseRequest):
    """Per-rank numbers from a log where several ranks printed an OOM (the snapshots' table wins when given)."""
    from ..tools.snapshot import ranks_from_log

    return None if request.snapshots else ranks_from_log(request.log_text)


def _dataset(request: DiagnoseRequest, doc: ConfigDocument | None, setup: TrainingSetup,
             estimate: MemoryEstimate | None, margin: float):
    """Profile the dataset (the config's entries and length settings) and size its worst batch against the budget.
    A dataset that cannot be read is bad input (InputError), like an unreadable config."""
    from pathlib import Path

    from ..tools.dataset import profile_dataset, worst_case
    from ..tools.root_causes.facts import observed
    from .diagnosis import DatasetReport

    spec = request.dataset
    settings = doc.settings if doc is not None else {}
    names = spec.names or [n.strip() for n in str(settings.get("dataset") or "").split(",") if n.strip()] or None
    tokenizer_dir = spec.tokenizer_dir
    model_path = setup.model_name or ""
    if tokenizer_dir is None and model_path and (Path(model_path) / "tokenizer.json").is_file():
        tokenizer_dir = model_path
    family = setup.model.model_type if setup.model is not None else setup.model_name
    profile = profile_dataset(spec.path, dataset_names=names, tokenizer_dir=tokenizer_dir, model_family=family,
                              cutoff_len=setup.seq_len if observed(setup, "seq_len") else None, packing=setup.packing,
                              image_max_pixels=setup.image_max_pixels)
    verdict = None
    if setup.model is not None:
        budget = estimate.budget_bytes if estimate is not None else None
        verdict = worst_case(profile, setup, margin=margin, budget_bytes=budget, steps=spec.steps)
    return DatasetReport(profile=profile, verdict=verdict)


def _aid_failed(notes: list[str], what: str, exc: Exception) -> None:
    """A tool that only aids the diagnosis failed: say so in the notes (ASK_OOM_DEBUG=1 re-raises instead)."""
    if os.environ.get("ASK_OOM_DEBUG", "") not in ("", "0"):
        raise exc
    notes.append(f"{what} ({type(exc).__name__}: {exc})")
