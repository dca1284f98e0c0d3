"""Optional LLM structured extraction: an OpenAI-compatible chat completion (vLLM, llama.cpp server, Ollama /v1)
returns the case as JSON; it fills only what the deterministic rules left empty, and is validated against `Case`.

The rules' facts (numbers, keys, labels) are never overwritten: the LLM writes the words (title, outcome,
rationales, symptom message) and adds facts the rules missed. Any failure leaves the deterministic draft as is.
"""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from ..tools.labels import ROOT_CAUSES
from .schema import Case, CaseFix

MAX_PROMPT_DOC_CHARS = 12_000

SYSTEM_PROMPT = """You turn an article about a GPU out-of-memory problem in LLM fine-tuning into one knowledge-base case.
Answer with ONE JSON object that follows this JSON schema, in English, facts only, in your own words:
{schema}
Root-cause labels (primary first) must come from: {labels}.
Fixes are typed changes: key (the framework's own config key), from, to; or an action (e.g. "pin transformers==4.33.0"),
each with a one-sentence rationale and confirmed=true only if the article says it worked.
Keep numbers exactly as the article gives them. Use null for facts the article does not state."""


class LLMExtractionError(RuntimeError):
    """The endpoint failed, timed out, or answered with something that is not a valid case."""


def _chat(settings, messages: list[dict]) -> str:
    import httpx

    url = settings.llm_base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if getattr(settings, "llm_api_key", None):
        headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
    body = {"model": settings.llm_model or "default", "messages": messages, "temperature": 0,
            "response_format": {"type": "json_object"}}
    try:
        resp = httpx.post(url, json=body, headers=headers, timeout=settings.llm_timeout_s)
        resp.raise_for_status()
        return resp.json()["choices"][0]["message"]["content"] or ""
    except httpx.HTTPStatusError as exc:
        raise LLMExtractionError(f"LLM endpoint answered HTTP {exc.response.status_code}") from None
    except httpx.HTTPError as exc:
        raise LLMExtractionError(f"LLM endpoint unreachable ({type(exc).__name__})") from None
    except (KeyError, IndexError, TypeError, ValueError):
        raise LLMExtractionError("LLM endpoint answered without choices[0].message.content") from None


def parse_json_object(content: str) -> dict:
    """The first JSON object in a reply (tolerates ```json fences and text around it)."""
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", content.strip())
    start = text.find("{")
    if start < 0:
        raise LLMExtractionError("LLM reply holds no JSON object")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise LLMExtractionError(f"LLM reply is not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise LLMExtractionError("LLM reply is not a JSON object")
    return obj


def _empty(v) -> bool:
    return v is None or v == "" or v == [] or v == {} or v == "unknown"


def merge(draft: Case, proposed: dict) -> Case:
    """The draft with empty fields filled from the LLM's proposal; rule-extracted facts win on conflicts."""
    base = draft.model_dump(mode="json", by_alias=True)
    for key in ("title", "outcome", "launcher"):
        value = proposed.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        # cases are written in English: the LLM's title replaces a non-English article title
        if _empty(base.get(key)) or (key == "title" and draft.language != "en"):
            base[key] = value.strip()
    for part in ("model", "hardware", "symptom", "versions", "settings"):
        sub = proposed.get(part)
        if isinstance(sub, dict):
            for k, v in sub.items():
                if _empty(base[part].get(k)) and not _empty(v):
                    base[part][k] = v
    if draft.framework == "other" and isinstance(proposed.get("framework"), str):
        base["framework"] = proposed["framework"]
    labels = [lb for lb in proposed.get("root_causes") or [] if lb in ROOT_CAUSES]
    if base["root_causes"] == ["not_oom"] and labels:
        base["root_causes"] = labels
    else:
        base["root_causes"] += [lb for lb in labels if lb not in base["root_causes"]][:3]
    fixes = base["fixes"]
    by_key = {(f.get("key"), f.get("action")): f for f in fixes}
    for raw in proposed.get("fixes") or []:
        try:
            fix = CaseFix.model_validate(raw).model_dump(mode="json", by_alias=True)
        except ValidationError:
            continue
        twin = by_key.get((fix["key"], fix["action"])) or next(
            (f for f in fixes if fix["key"] and f.get("key") == fix["key"]), None)
        if twin is not None:
            if twin["rationale"].startswith("[source:") or "[source:" in twin["rationale"]:
                twin["rationale"] = fix["rationale"]  # the LLM's explanation replaces the quoted clause
            twin["confirmed"] = twin["confirmed"] or fix["confirmed"]
        else:
            fixes.append(fix)
    related = [e for e in proposed.get("related_errors") or [] if isinstance(e, str)]
    base["related_errors"] += [e for e in related if e not in base["related_errors"]][:4]
    try:
        return Case.model_validate(base)
    except ValidationError as exc:
        raise LLMExtractionError(f"merged case is invalid: {exc.errors()[0]['msg']}") from None


def llm_fill(draft: Case, document_text: str, settings) -> Case:
    """Ask the configured LLM for the case and merge it into the deterministic draft."""
    schema = json.dumps(Case.model_json_schema(by_alias=True), separators=(",", ":"))
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT.format(schema=schema, labels=", ".join(ROOT_CAUSES))},
        {"role": "user", "content": "Article:\n" + document_text[:MAX_PROMPT_DOC_CHARS]
         + "\n\nFacts already extracted by rules (keep them):\n"
         + draft.model_dump_json(by_alias=True, exclude_none=True)},
    ]
    return merge(draft, parse_json_object(_chat(settings, messages)))
