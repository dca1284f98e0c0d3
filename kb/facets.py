"""Structured facets of cases and queries: framework, method, modality, error kind, phase.

Filters (`--framework llamafactory`) keep only matching cases; in the fast path, facets a query names
(e.g. "framework llamafactory", "phase evaluation") also add a small bonus to cases that share them.
"""

from __future__ import annotations

import re

from .schema import Case

FILTER_KEYS = ("framework", "modality", "method")

# Words in a query → (facet, value). Values follow the Case schema's vocabulary.
_QUERY_FACETS: list[tuple[str, str, str]] = [
    (r"llama[-_ ]?factory|llamafactory", "framework", "llamafactory"),
    (r"\baxolotl\b", "framework", "axolotl"),
    (r"\bunsloth\b", "framework", "unsloth"),
    (r"\btorchtune\b|\btune run\b", "framework", "torchtune"),
    (r"\bvllm\b", "framework", "vllm"),
    (r"\bms[-_]?swift\b|\bswift\b", "framework", "swift"),
    (r"\btrl\b|sfttrainer|dpotrainer|grpotrainer", "framework", "trl"),
    (r"\bhf_trainer\b|transformers trainer|\btrainer\b", "framework", "hf_trainer"),
    (r"\bllava\b", "framework", "llava"),
    (r"\bqlora\b|4[- ]?bit|load_in_4bit|bnb_4bit", "method", "qlora"),
    (r"\blora\b(?!.*\bqlora\b)", "method", "lora"),
    (r"full fine[- ]?tun|full[- ]parameter|finetuning_type[ =:]+full|\bmethod full\b|全量微调|全参数?微调", "method", "full"),
    (r"\bfreeze\b.*\bfinetuning_type\b|finetuning_type[ =:]+freeze", "method", "freeze"),
    (r"\binference\b|\bvllm\b|推理", "method", "inference"),
    (r"vision|\bvl\b|-vl\b|llava|qwen2(\.5)?-vl|internvl|minicpm-v|multimodal|多模态|image|视觉", "modality", "vision-language"),
    (r"\bmoe\b|mixtral|experts|deepseek-v[23]|qwen\d?(\.\d)?-\d+b-a\d+b|-a\d+b\b|混合专家", "modality", "moe"),
    (r"cuda_oom|cuda out of memory|outofmemoryerror|显存不足|显存溢出", "error_kind", "cuda_oom"),
    (r"host_oom|\bkilled\b|sigkill|cannot allocate memory|host ram|cpu ram|cpu内存|主机内存", "error_kind", "host_oom"),
    (r"cublas_alloc|cublas_status_alloc_failed", "error_kind", "cublas_alloc"),
    (r"related_error", "error_kind", "related_error"),
    (r"phase evaluation|\bevaluat|\beval\b|predict|评估", "phase", "evaluation"),
    (r"phase model_loading|model_loading|loading checkpoint|from_pretrained|加载", "phase", "model_loading"),
    (r"phase generation|\bgenerat|推理", "phase", "generation"),
    (r"phase lora_merge|lora_merge|merge_and_unload|合并", "phase", "lora_merge"),
    (r"phase optimizer_step|optimizer_step|optimizer\.step", "phase", "optimizer_step"),
    (r"phase backward|\bbackward\b", "phase", "backward"),
]
_COMPILED = [(re.compile(p, re.IGNORECASE), facet, value) for p, facet, value in _QUERY_FACETS]

FACET_WEIGHTS = {"framework": 0.10, "method": 0.08, "modality": 0.08, "error_kind": 0.10, "phase": 0.12}


def query_facets(query: str) -> dict[str, set[str]]:
    """Facet values a query names (a query may name several values of one facet)."""
    found: dict[str, set[str]] = {}
    for rx, facet, value in _COMPILED:
        if rx.search(query):
            found.setdefault(facet, set()).add(value)
    return found


def case_facets(case: Case) -> dict[str, set[str]]:
    """The same facets read from a case's structured fields."""
    modality = {case.model.modality}
    if case.model.modality == "vision-language-moe":
        modality = {"vision-language", "moe", "vision-language-moe"}
    phase = {case.symptom.phase} if case.symptom.phase else set()
    if case.symptom.phase in ("train", "training", "forward"):
        phase |= {"forward", "backward"}
    return {
        "framework": {case.framework},
        "method": {case.method} | ({"lora"} if case.method == "qlora" else set()),
        "modality": modality,
        "error_kind": {case.symptom.error_kind},
        "phase": phase,
    }


def facet_bonus(query_f: dict[str, set[str]], case_f: dict[str, set[str]]) -> float:
    """Sum of the weights of facets the query names and the case shares."""
    return sum(FACET_WEIGHTS[f] for f, vals in query_f.items() if vals & case_f.get(f, set()))


def matches_filters(case: Case, filters: dict | None) -> bool:
    """True when the case has every filter value (framework / modality / method; a list means any of)."""
    if not filters:
        return True
    cf = case_facets(case)
    for key, want in filters.items():
        if want in (None, "", []):
            continue
        if key not in FILTER_KEYS:
            raise ValueError(f"unknown filter '{key}': use one of {', '.join(FILTER_KEYS)}")
        wanted = {str(w).lower() for w in (want if isinstance(want, (list, tuple, set)) else [want])}
        if not wanted & {v.lower() for v in cf[key]}:
            return False
    return True
