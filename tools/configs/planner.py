"""plan_fixes: the fewest, least invasive changes that bring the calculator's peak under the budget.

Search: candidates are tried cheapest first (tier, minus a bonus when they address a diagnosed
cause, plus a penalty for new dependencies); each is applied at the mildest strength that fits,
else at the strength that saves the most; once it fits, changes that are no longer needed are
dropped and the rest relaxed to their mildest fitting strength. Causes that are not a budget
problem (versions, allocator, other processes, host RAM) become actions."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..gpus import CUDA_CONTEXT_BYTES, larger_gpu
from ..labels import RootCause
from ..memory.schema import MemoryEstimate
from ..training_setup import TrainingSetup
from ..units import GiB, format_bytes
from .actions import actions_for_causes, as_action
from .candidates import Candidate, Catalogue, Option
from .rewrite import apply_changes, unified_diff
from .schema import ConfigChange, ConfigDocument, Constraints, FixPlan

_MIN_SAVING_FRACTION = 0.01   # a change that saves < 1% of the peak is not worth the user's trouble
_PRIMARY_BONUS = 1.5          # fixing the diagnosed primary cause outranks a cheaper generic change by one tier
_CAUSE_BONUS = 0.5
_HINT_BONUS = 0.25
_MIN_CAUSE_SCORE = 0.2        # causes ranked below this are hunches, not diagnoses: they earn no bonus
_MIN_CAUSE_PROBABILITY = 0.05  # ... and so are causes the ranking gives less than this chance of being the primary one
_UNDIAGNOSED_PENALTY = 3.0   # fixes for causes nobody diagnosed come after every diagnosed one (still tried)
_GAP_PERSISTS = {"memory_growth", "fragmentation", "other_process"}   # misses a budget fix does not remove


class _Scorer:
    """Wraps the calculator: estimates and the fit test (budget, calibration to the observed peak, host RAM)."""

    def __init__(self, setup: TrainingSetup, constraints: Constraints, mode: str, host_limit: int | None):
        self.constraints = constraints
        self.mode = mode
        self.host_limit = host_limit
        self.available = False
        self._fn = None
        try:
            from ..memory import estimate_memory  # written in parallel; absent until it lands
            self._fn = estimate_memory
            self.available = setup.model is not None and setup.gpu is not None
        except ImportError:
            self.available = False
        self.factor = 1.0
        self.before: MemoryEstimate | None = None
        if self.available:
            try:
                self.before = self.estimate(setup)
            except InputError:
                self.available = False
        if self.before is not None and constraints.observed_peak_bytes and self.before.peak_bytes > 0:
            # the failing run really held this much: keep the calculator's miss as extra headroom
            self.factor = max(1.0, constraints.observed_peak_bytes / self.before.peak_bytes)

    def estimate(self, setup: TrainingSetup) -> MemoryEstimate:
        return self._fn(setup, mode=self.mode, margin=self.constraints.margin)

    def need(self, est: MemoryEstimate, primary_fixed: bool = False) -> float:
        """What the GPU must hold: the band's upper edge (a plan "fits" only when that does), and the observed miss
        unless the failing mechanism was fixed."""
        return max(est.band_upper_bytes or est.peak_bytes, est.peak_bytes * (1.0 if primary_fixed else self.factor))

    def fits(self, est: MemoryEstimate, primary_fixed: bool = False) -> bool:
        """Under the budget (the band's upper edge, with the observed miss unless the failing mechanism was fixed) and
        the host limit."""
        budget = est.budget_bytes
        if budget is None:
            return False
        if self.need(est, primary_fixed) > budget:
            return False
        if est.host_fits is False:
            return False
        if self.host_limit is not None and est.host_bytes > self.host_limit:
            return False
        return True

    def load(self, est: MemoryEstimate, primary_fixed: bool = False) -> float:
        """How far over (>1) or under (<1) the limits an estimate is: the search minimises it."""
        gpu = self.need(est, primary_fixed) / max(est.budget_bytes or 1, 1)
        host = est.host_bytes / self.host_limit if self.host_limit else 0.0
        return max(gpu, host)


def _apply_option(setup: TrainingSetup, opt: Option) -> TrainingSetup:
    s = setup
    for k, v in opt.setup_update.items():
        s = s.with_fact(k, v, "derived", f"planned fix: {opt.label}")
    return s


def _cost(c: Candidate, primary: str | None, labels: set[str], hinted: set[str]) -> float:
    cost = c.tier + c.extra_cost
    if primary and primary in c.addresses:
        cost -= _PRIMARY_BONUS
    elif labels & set(c.addresses):
        cost -= _CAUSE_BONUS
    elif c.name not in hinted and labels:
        cost += _UNDIAGNOSED_PENALTY
    if c.name in hinted:
        cost -= _HINT_BONUS
    return cost


def _hinted(hints: list[ConfigChange] | None, catalogue: list[Candidate]) -> dict[str, list[str]]:
    """Candidates the knowledge base's fixes point at (by key), with the case ids that confirm them."""
    key_to_candidate = {
        "per_device_train_batch_size": "micro_batch", "gradient_accumulation_steps": "micro_batch", "cutoff_len": "seq_len",
        "max_seq_length": "seq_len", "model_max_length": "seq_len", "flash_attn": "attention", "attn_implementation": "attention",
        "freeze_vision_tower": "freeze_vision", "freeze_multi_modal_projector": "freeze_vision", "image_max_pixels": "image_pixels",
        "deepspeed": "zero", "zero_optimization.stage": "zero", "finetuning_type": "lora", "quantization_bit": "qlora", "bits": "qlora",
        "load_in_4bit": "qlora", "gradient_checkpointing": "gradient_checkpointing", "disable_gradient_checkpointing": "gradient_checkpointing",
        "enable_liger_kernel": "liger", "use_liger_kernel": "liger", "eval_accumulation_steps": "eval_memory",
        "per_device_eval_batch_size": "eval_memory", "offload_optimizer": "offload", "max_new_tokens": "generation",
        "num_beams": "generation",
    }
    out: dict[str, list[str]] = {}
    for h in hints or []:
        name = key_to_candidate.get(h.key or "")
        if name:
            out.setdefault(name, []).extend(h.confirmed_by)
    return out


def plan_fixes(setup: TrainingSetup, doc: ConfigDocument | None, causes: list[RootCause], constraints: Constraints,
               hints: list[ConfigChange] | None = None) -> FixPlan:
    """The least invasive set of changes that fits, the rewritten config, and before/after estimates."""
    if constraints.num_gpus is not None:
        setup = setup.with_fact("num_gpus", constraints.num_gpus, "user", "constraint: number of GPUs")
    if doc is not None and doc.framework == "llama.cpp":   # ggml inference: its levers, unverified
        from .llama_cpp_plan import plan_llama_cpp

        return _with_rewrite(plan_llama_cpp(doc, causes), doc)
    if doc is not None and doc.framework == "vllm":   # an inference server: weights + KV cache, not training states
        from .vllm_plan import plan_vllm

        return _with_rewrite(plan_vllm(setup, doc, constraints), doc)
    if doc is not None and (doc.launcher or {}).get("task") == "merge":   # adapter merge / export: weights only
        from .merge_plan import plan_merge

        failed = any(c.label in ("model_load_oom", "weights_exceed_gpu") for c in causes[:1])
        return _with_rewrite(plan_merge(setup, doc, constraints, failed_loading=failed), doc)
    if doc is not None and doc.format == "python":
        # A pasted snippet holds only some calls: first look for a fix made of settings it has a place for, so the
        # user gets their own code back fixed; else the plan says where each setting goes.
        placed = _plan_training(setup, doc, causes, constraints, hints, placeable_only=True)
        if placed.fits and placed.fixed_config is not None:
            return placed
    return _plan_training(setup, doc, causes, constraints, hints, placeable_only=False)


def _plan_training(setup: TrainingSetup, doc: ConfigDocument | None, causes: list[RootCause], constraints: Constraints,
                   hints: list[ConfigChange] | None, placeable_only: bool) -> FixPlan:
    """plan_fixes for a training run; with `placeable_only`, only options whose edits land in `doc` are tried."""
    labels = {c.label for c in causes if c.score >= _MIN_CAUSE_SCORE} or {c.label for c in causes[:1]}
    primary = causes[0].label if causes else None
    # an evaluation-only / predict / generate config sizes its own workload; a training config's evaluation OOM the eval step
    mode = setup.workload if setup.workload != "train" else ("eval" if primary == "eval_accumulation" else "train")
    host_limit = setup.host_ram_bytes
    notes: list[str] = []
    scorer = _Scorer(setup, constraints, mode, None)
    roomy_host = host_limit is not None and scorer.before is not None and host_limit >= 2 * scorer.before.host_bytes
    # the host's RAM binds the plan only when the diagnosis says the host ran out, not when its cause is a hunch that
    # only a similar report's vote raised (a probability near 0 beside a GPU error)
    host_said = any(c.label == "offload_host_ram" and c.score >= _MIN_CAUSE_SCORE
                    and (c.probability is None or c.probability >= _MIN_CAUSE_PROBABILITY) for c in causes)
    if roomy_host and host_said:
        notes.append(f"the host has {format_bytes(host_limit)} of RAM, far above the {format_bytes(scorer.before.host_bytes)} "
                     "the run needs at its start: what filled it grew during the run, which a smaller setting does not fix")
    elif host_said and scorer.before is not None and scorer.before.host_bytes:
        # the run was killed for host RAM: whatever it needed did not fit (even if the calculator thinks the
        # stated RAM suffices: buffers, per-rank copies and workers come on top), so the plan must need less
        observed_limit = int(scorer.before.host_bytes * 0.9)
        if host_limit is None or observed_limit < host_limit:
            notes.append(f"the run was killed for host RAM: the fixed run must need less host memory than the failing one "
                         f"({format_bytes(scorer.before.host_bytes)} by the calculator)")
            host_limit = observed_limit
    scorer.host_limit = host_limit

    catalogue = Catalogue(setup, doc, constraints)
    candidates = catalogue.all()
    hinted = _hinted(hints, candidates)
    for c in candidates:
        c.confirmed_by = sorted(set(hinted.get(c.name, [])))
    order = sorted(candidates, key=lambda c: (_cost(c, primary, labels, set(hinted)), c.tier))
    actions = actions_for_causes([c for c in causes if c.score >= _MIN_CAUSE_SCORE] or causes[:1], setup)
    actions += [as_action(h) for h in (hints or []) if h.key is None and h.action and h.confirmed_by
                and all(h.action != a.action for a in actions)]

    if not scorer.available:
        return _plan_unverified(setup, doc, causes, order, actions, notes, scorer, hints)

    before = scorer.before
    current = setup
    chosen: list[tuple[Candidate, list[Option], int]] = []   # candidate, its options, index applied
    est = before
    def fixes_primary(cands) -> bool:
        # the calculator's miss (observed - estimated) sits in the mechanism that failed; fixing that
        # mechanism removes it, except for growth/fragmentation/other processes, which persist
        return primary is not None and primary not in _GAP_PERSISTS and any(primary in c.addresses for c in cands)

    if not scorer.fits(before):
        for cand in order:
            fp = fixes_primary([c for c, _, _ in chosen] + [cand])
            was = fixes_primary([c for c, _, _ in chosen])
            options = cand.options(current)
            if not options:
                continue
            scored = []
            for i, opt in enumerate(options):
                if placeable_only and not _placeable(doc, opt):
                    continue
                try:
                    e = scorer.estimate(_apply_option(current, opt))
                except InputError:
                    continue
                scored.append((i, opt, e))
            if not scored:
                continue
            fitting = [x for x in scored if scorer.fits(x[2], fp)]
            if fitting:
                i, opt, e = fitting[0]
            else:
                i, opt, e = min(scored, key=lambda x: scorer.load(x[2], fp))
                if scorer.load(e, fp) > scorer.load(est, was) * (1 - _MIN_SAVING_FRACTION):
                    continue
            current = _apply_option(current, opt)
            est = e
            chosen.append((cand, options, i))
            if scorer.fits(est, fp):
                break
    elif constraints.observed_oom and primary is not None and primary not in _GAP_PERSISTS:
        # the calculator says it fits, yet the run ran out: act on the diagnosed mechanism anyway,
        # with its mildest change that lowers the peak by a tenth
        picked = _primary_nudge(setup, order, primary, scorer)
        if picked is not None:
            cand, options, i, e = picked
            chosen.append((cand, options, i))
            current, est = _apply_option(setup, options[i]), e
            notes.append(f"the calculator puts the original run under the budget, yet it ran out of memory: this change targets "
                         f"the diagnosed {primary}; the numbers cannot confirm the margin it buys")
    fits = scorer.fits(est, fixes_primary([c for c, _, _ in chosen]))
    if fits and chosen and not scorer.fits(before):
        chosen, current, est = _minimise(setup, chosen, scorer, fixes_primary, primary)
    if primary == "vision_tokens" and (capped := _image_cap(order, chosen, current, doc, placeable_only, scorer)):
        chosen.append(capped[0])
        current, est = capped[1], capped[2]
        fits = scorer.fits(est, True)
        notes.append("the images' real size is what the visual tokens follow, and only a cap bounds it whatever the data "
                     "holds: the plan sets one (the calculator sizes one image per sample at the cap)")
    if scorer.factor > 1.0:
        held = f"the failing run held {format_bytes(constraints.observed_peak_bytes)}, {scorer.factor:.2f}x the calculator's {format_bytes(before.peak_bytes)}"
        if fixes_primary([c for c, _, _ in chosen]):
            notes.append(f"{held}: the difference is put down to the diagnosed {primary}, which the plan fixes")
        else:
            notes.append(f"{held}: the plan keeps that extra under the budget")

    changes: list[ConfigChange] = []
    prev = before
    state = setup
    for cand, options, i in chosen:
        opt = options[i]
        state = _apply_option(state, opt)
        e = scorer.estimate(state)
        saved = prev.peak_bytes - e.peak_bytes
        host_saved = prev.host_bytes - e.host_bytes
        for n, ch in enumerate(opt.changes):
            update: dict[str, Any] = {"confirmed_by": cand.confirmed_by, "bytes_saved": saved if n == 0 and saved > 0 else None}
            if n == 0 and abs(host_saved) >= GiB:
                update["rationale"] = (f"{ch.rationale}; host RAM {format_bytes(prev.host_bytes)} -> {format_bytes(e.host_bytes)}")
            if n == 0 and primary in cand.addresses and causes[0].why:
                update["rationale"] = update.get("rationale", ch.rationale) + f" (the diagnosed cause: {causes[0].why[0]})"
            if n == 0 and saved < 0:
                update["rationale"] = (update.get("rationale", ch.rationale) + f"; GPU peak +{format_bytes(-saved)}")
            changes.append(ch.model_copy(update=update))
        prev = e
    changes = _dedupe(changes) + actions

    if not fits:
        notes += _nothing_fits(setup, current, est, scorer)
    elif host_limit is None and est.host_bytes > max(before.host_bytes, 0) and est.host_bytes > 32 * GiB:
        notes.append(f"the fixed run needs {format_bytes(est.host_bytes)} of host RAM for offloaded states: "
                     "check the machine has it (give --host-ram to verify)")
    if any(c.changes_results for c in changes):
        notes += sorted({_results_note(c) for c in changes if c.changes_results})
    plan = FixPlan(changes=changes, fits=fits, estimate_before=before, estimate_after=est, notes=notes)
    return _with_rewrite(plan, doc)


def _image_cap(order: list[Candidate], chosen: list, current: TrainingSetup, doc: ConfigDocument | None,
               placeable_only: bool, scorer: _Scorer):
    """Visual tokens diagnosed and no image cap among the changes: the mildest cap at most half the current one (the
    processor's own limit when none is set), as (chosen entry, setup, estimate); None when the config has no place."""
    if any(c.name == "image_pixels" for c, _, _ in chosen):
        return None
    cand = next((c for c in order if c.name == "image_pixels"), None)
    options = cand.options(current) if cand is not None else []
    was = current.image_max_pixels   # the cap in force; unset, the options start below the processor's own
    for i, opt in enumerate(options):
        if placeable_only and not _placeable(doc, opt):
            continue
        if was and opt.setup_update["image_max_pixels"] > was // 2:
            continue   # the run already failed at this cap: halve the visual tokens at least
        try:
            capped = _apply_option(current, opt)
            return (cand, options, i), capped, scorer.estimate(capped)
        except InputError:
            continue
    return None


def _primary_nudge(setup: TrainingSetup, order: list[Candidate], primary: str, scorer: _Scorer):
    """The cheapest candidate for the primary cause at its mildest strength that saves >= 10% of the peak."""
    base = scorer.before.peak_bytes
    for cand in order:
        if primary not in cand.addresses:
            continue
        options = cand.options(setup)
        for i, opt in enumerate(options):
            try:
                e = scorer.estimate(_apply_option(setup, opt))
            except InputError:
                continue
            if e.peak_bytes <= 0.9 * base:
                return cand, options, i, e
    return None


def _minimise(setup: TrainingSetup, chosen: list, scorer: _Scorer, fixes_primary, primary: str | None = None):
    """Drop changes that are no longer needed (most invasive first), then relax each to its mildest fitting strength."""
    def build(items):
        s = setup
        for _, options, i in items:
            s = _apply_option(s, options[i])
        return s

    def ok(items) -> bool:
        return scorer.fits(scorer.estimate(build(items)), fixes_primary([c for c, _, _ in items]))

    items = list(chosen)
    for idx in range(len(items) - 1, -1, -1):
        cand = items[idx][0]
        if cand.tier == 1 and primary in cand.addresses:
            continue   # the diagnosed cause keeps its free fix even if other changes could compensate for it
        trial = items[:idx] + items[idx + 1:]
        if ok(trial):
            items = trial
    for idx in range(len(items)):
        cand, options, i = items[idx]
        for j in range(0, i):
            trial = items[:idx] + [(cand, options, j)] + items[idx + 1:]
            if ok(trial):
                items = trial
                break
    final = build(items)
    return items, final, scorer.estimate(final)


def _dedupe(changes: list[ConfigChange]) -> list[ConfigChange]:
    """One change per key (the last wins, keeping the first 'from'), one per action."""
    by_key: dict[tuple[str, str], ConfigChange] = {}
    out: list[ConfigChange] = []
    for ch in changes:
        if ch.key is None:
            if all(ch.action != o.action for o in out if o.key is None):
                out.append(ch)
            continue
        k = (ch.target, ch.key)
        if k in by_key:
            first = by_key[k]
            merged = ch.model_copy(update={"from_value": first.from_value,
                                           "bytes_saved": (first.bytes_saved or 0) + (ch.bytes_saved or 0) or None})
            out[out.index(first)] = merged
            by_key[k] = merged
        else:
            by_key[k] = ch
            out.append(ch)
    return [c for c in out if c.key is None or c.from_value != c.to_value]


def _results_note(ch: ConfigChange) -> str:
    if ch.tier == 5:
        return f"{ch.key} {ch.from_value} -> {ch.to_value} changes the data: longer samples are truncated (check how many of yours exceed it)"
    return "the method change (LoRA/QLoRA) changes what is trained: results differ from the original run; compare on your eval set"


def _nothing_fits(setup: TrainingSetup, closest: TrainingSetup, est: MemoryEstimate, scorer: _Scorer) -> list[str]:
    """Say plainly that nothing fits, which limit binds (GPU or host RAM), how close the best option gets,
    and what hardware would do."""
    notes = []
    budget = est.budget_bytes or 0
    need = int(scorer.need(est))   # the band's upper edge (and the observed miss): what "fits" is judged on
    gpu_over = need > budget
    host_limit = scorer.host_limit
    host_over = est.host_fits is False or (host_limit is not None and est.host_bytes > host_limit)
    if gpu_over:
        notes.append(f"nothing fits: the closest option peaks at up to {format_bytes(need)} per GPU, over the {format_bytes(budget)} budget "
                     f"by {format_bytes(need - budget)}")
    if host_over:
        limit = f" (limit {format_bytes(host_limit)})" if host_limit is not None else ""
        lead = "nothing fits: " if not gpu_over else ""
        notes.append(f"{lead}host RAM binds: the closest option needs {format_bytes(est.host_bytes)} of host memory{limit}")
        notes.append(f"hardware: a machine with more than {format_bytes(est.host_bytes)} of RAM would hold the offloaded states")
    if gpu_over:
        required = int(need / scorer.constraints.margin + CUDA_CONTEXT_BYTES)
        gpu = larger_gpu(required)
        if gpu is not None:
            notes.append(f"hardware: a GPU with at least {required / GiB:.0f} GiB (e.g. {gpu.name}) would fit the closest option")
        else:
            notes.append(f"hardware: the closest option needs {required / GiB:.0f} GiB per GPU, more than any single GPU: shard across more GPUs")
    if closest.method in ("full", "freeze") and not scorer.constraints.no_deepspeed:
        # more GPUs of this kind: ZeRO-3 shards the states, so offload (and its host RAM) may not be needed at all
        for n in (2, 4, 8, 16, 32, 64, 128):
            if n <= closest.num_gpus:
                continue
            found = None
            for off in ((False, False), (True, False), (True, True)):
                trial = closest.model_copy(update={"num_gpus": n, "zero_stage": 3, "offload_optimizer": off[0], "offload_param": off[1]})
                try:
                    e = scorer.estimate(trial)
                except InputError:
                    break
                if scorer.fits(e):
                    found = (e, off)
                    break
            if found:
                e, off = found
                how = "without offload" if not off[0] else "with optimizer offload" if not off[1] else "with full offload"
                notes.append(f"hardware: ZeRO-3 over {n} GPUs of this kind {how} peaks at {format_bytes(e.peak_bytes)} per GPU, which fits")
                break
    return notes


def _plan_unverified(setup, doc, causes, order, actions, notes, scorer, hints=None) -> FixPlan:
    """No calculator for this setup (model or GPU unknown): one cheapest fix per diagnosed cause, plus the
    confirmed fixes of similar cases for keys this config has; the fit is unverified."""
    changes: list[ConfigChange] = []
    current = setup
    top = causes[0].score if causes else 0.0
    labels = [c.label for c in causes if c.score >= 0.5 * top][:3]
    used: set[str] = set()
    for label in labels:
        for cand in order:
            if label not in cand.addresses or cand.name in used:
                continue
            if cand.tier >= 4 and any(c.tier >= 4 for c in order if c.name in used):
                continue   # unsized, one structural change at most (sharding, shorter data or another method)
            options = cand.options(current)
            if not options:
                continue
            opt = options[min(len(options) - 1, max(0, len(options) // 2 - 1))]   # a middle strength
            current = _apply_option(current, opt)
            for ch in opt.changes:
                changes.append(ch.model_copy(update={"confirmed_by": cand.confirmed_by}))
            used.add(cand.name)
            break
    settings = doc.settings if doc is not None else {}
    for h in hints or []:
        if not (h.key and h.confirmed_by and h.key in settings and isinstance(h.to_value, (int, float, str, bool))):
            continue
        if any(c.key == h.key for c in changes) or settings[h.key] == h.to_value:
            continue
        changes.append(ConfigChange(key=h.key, from_value=settings[h.key], to_value=h.to_value, tier=h.tier,
                                    rationale=f"{h.rationale} (fixed the similar case {', '.join(h.confirmed_by)})".strip(),
                                    confirmed_by=h.confirmed_by, changes_results=h.changes_results))
    why = "model architecture" if setup.model is None else "GPU" if setup.gpu is None else "calculator"
    notes = notes + [f"fit unverified: the {why} is unknown, so the calculator could not check these changes "
                     "(give --model-config config.json and --gpu to verify)"]
    plan = FixPlan(changes=_dedupe(changes) + actions, fits=False, notes=notes)
    plan = _with_rewrite(plan, doc)
    return plan


def _placeable(doc: ConfigDocument | None, opt: Option) -> bool:
    """Can every edit of `opt` be written into `doc` (a snippet may lack the call a setting belongs to)?"""
    edits = [c for c in opt.changes if c.key is not None and c.target in ("config", "deepspeed")]
    if doc is None or not edits:
        return True
    try:
        apply_changes(doc, edits)
    except InputError:
        return False
    return True


def _with_rewrite(plan: FixPlan, doc: ConfigDocument | None) -> FixPlan:
    if doc is None or not doc.readable:   # nothing of the config was read: nothing to rewrite, nothing to say twice
        return plan
    edits = [c for c in plan.changes if c.key is not None and c.target in ("config", "deepspeed")]
    try:
        new_text, new_ds = apply_changes(doc, edits)
    except InputError as exc:
        plan.notes.append(f"could not rewrite {doc.name}: {exc}")
        return plan
    plan.fixed_config = new_text
    plan.fixed_deepspeed = new_ds
    diff = unified_diff(doc.text, new_text, doc.name)
    if new_ds is not None:
        renamed = next((c.to_value for c in edits if c.key == "deepspeed" and isinstance(c.to_value, str)), None)
        old_ds = doc.deepspeed_text or ""
        diff += unified_diff(old_ds, new_ds, renamed if not old_ds and renamed else doc.deepspeed_name or "ds_config.json")
    plan.diff = diff
    return plan
