"""Optional LLM answers: a llama-index FunctionAgent on an OpenAI-compatible endpoint (vLLM, llama.cpp
server, Ollama /v1) that uses the same tools and always gets the deterministic Diagnosis as grounding.

Its answer is shown only if every number in it matches the tools' outputs; otherwise, or when the
endpoint is unreachable or slower than Settings.llm_timeout_s, the deterministic answer stands with a note.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

from pydantic import BaseModel, Field

from .diagnosis import DiagnoseRequest, Diagnosis
from .llm_tools import ToolContext, build_tools, grounding
from .number_check import unmatched_numbers

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 20_000
MAX_HISTORY_TURNS = 6  # earlier turns give the LLM the thread of the conversation; the diagnosis stays the authority

SYSTEM_PROMPT = """You are ask-oom, an assistant for GPU out-of-memory failures in LLM fine-tuning.
You are given a diagnosis computed by deterministic tools (log parser, memory calculator, case search, fix planner).
Answer the user's question from that diagnosis and, when needed, by calling the tools.
Rules: every number you write must come from the diagnosis or a tool result, copied unchanged (GiB as given);
never invent sizes, scores or settings; cite similar cases by id and source; be brief and concrete."""


class LLMOutcome(BaseModel):
    accepted: bool
    text: str | None = None
    note: str = ""
    unmatched: list[str] = Field(default_factory=list, description="numbers in the answer no tool produced")
    tool_calls: list[str] = Field(default_factory=list)
    agent: str = Field(default="function", description="function (the endpoint's tool calling) or react (text tool calls)")


def _make_llm(settings, *, function_calling: bool = True, timeout: float | None = None):
    from llama_index.llms.openai_like import OpenAILike

    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
    return OpenAILike(model=settings.llm_model or "default", api_base=settings.llm_base_url, api_key=key,
                      is_chat_model=True, is_function_calling_model=function_calling,
                      timeout=timeout or settings.llm_timeout_s, max_retries=0, temperature=0.0, reuse_client=False)


def _prompt(question: str, d: Diagnosis, deterministic_markdown: str, extra_facts: dict | None,
            history: list[tuple[str, str]] | None = None) -> str:
    facts = grounding(d)
    if extra_facts:
        facts["extra"] = extra_facts
    earlier = "".join(f"{role}: {text[:500]}\n" for role, text in (history or [])[-MAX_HISTORY_TURNS:])
    return ((f"Conversation so far (shortened):\n{earlier}\n" if earlier else "")
            + f"User question: {question.strip()[:4000] or 'Explain the diagnosis.'}\n\n"
            f"Deterministic diagnosis (JSON, sizes in GiB):\n{json.dumps(facts, ensure_ascii=False, default=str)[:12000]}\n\n"
            f"Deterministic answer shown so far (Markdown):\n{deterministic_markdown[:6000]}")


async def _run_agent(settings, ctx: ToolContext, prompt: str, *, react: bool = False, timeout: float | None = None) -> str:
    """One agent run: FunctionAgent (the endpoint's tool calling) or ReActAgent (tools described in text,
    for servers and models without tool calling)."""
    from llama_index.core.agent.workflow import FunctionAgent, ReActAgent

    timeout = timeout or settings.llm_timeout_s
    cls = ReActAgent if react else FunctionAgent
    agent = cls(tools=build_tools(ctx), llm=_make_llm(settings, function_calling=not react, timeout=timeout),
                system_prompt=SYSTEM_PROMPT, streaming=False, timeout=timeout)
    handler = agent.run(user_msg=prompt)
    result = await asyncio.wait_for(handler, timeout=timeout)
    message = getattr(result, "response", None)   # AgentOutput.response is a ChatMessage
    text = getattr(message, "content", None) if message is not None else None
    return str(text if text is not None else result or "")


def answer_with_llm(settings, question: str, diagnosis: Diagnosis, *, deterministic_markdown: str = "",
                    extra_facts: dict | None = None, request: DiagnoseRequest | None = None, index: Any = None,
                    history: list[tuple[str, str]] | None = None) -> LLMOutcome:
    """Ask the configured LLM; return its answer only when its numbers check out. Never hangs: the call
    runs in a worker thread that is abandoned after the timeout."""
    if not settings.llm_base_url:
        return LLMOutcome(accepted=False, note="")
    ctx = ToolContext(diagnosis=diagnosis, request=request, index=index, settings=settings)
    prompt = _prompt(question, diagnosis, deterministic_markdown, extra_facts, history)
    box, finished = _run_with_deadline(settings, ctx, prompt)
    where = settings.llm_base_url
    if not finished or isinstance(box.get("error"), (asyncio.TimeoutError, TimeoutError)) or _is_timeout(box.get("error")):
        return LLMOutcome(accepted=False, tool_calls=list(ctx.calls),
                          note=f"The LLM at {where} did not answer within {settings.llm_timeout_s:g} s; this is the deterministic answer.")
    if "error" in box:
        exc = box["error"]
        log.info("LLM call failed: %s: %s", type(exc).__name__, exc)
        return LLMOutcome(accepted=False, tool_calls=list(ctx.calls),
                          note=f"The LLM at {where} is unavailable ({type(exc).__name__}); this is the deterministic answer.")
    text = (box.get("text") or "").strip()[:MAX_ANSWER_CHARS]
    if not text:
        return LLMOutcome(accepted=False, tool_calls=list(ctx.calls),
                          note="The LLM returned an empty answer; this is the deterministic answer.")
    sources: list[Any] = [grounding(diagnosis), diagnosis.model_dump(mode="json"), deterministic_markdown, question,
                          extra_facts, *ctx.outputs, *[text for role, text in (history or []) if role == "user"]]
    if request is not None:
        sources.extend([request.config_text or "", request.log_text[-200_000:]])
    bad = unmatched_numbers(text, sources)
    if bad:
        log.info("LLM answer rejected: numbers %s match no tool output", bad[:10])
        return LLMOutcome(accepted=False, unmatched=bad, tool_calls=list(ctx.calls),
                          note=f"The LLM's answer was not shown: {len(bad)} of its numbers do not match the tools' outputs; "
                               "this is the deterministic answer.")
    return LLMOutcome(accepted=True, text=text, tool_calls=list(ctx.calls), agent="react" if box.get("react") else "function")


def _run_with_deadline(settings, ctx: ToolContext, prompt: str) -> tuple[dict[str, Any], bool]:
    """Run the agent in a worker thread, abandoned after Settings.llm_timeout_s (never a hang); falls back to
    ReAct when the endpoint refuses tool calls. Returns what it left (text / react / error) and whether it finished."""
    box: dict[str, Any] = {}
    started = time.monotonic()

    def work() -> None:
        try:
            box["text"] = asyncio.run(_run_agent(settings, ctx, prompt))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller as a note
            left = settings.llm_timeout_s - (time.monotonic() - started)
            if _no_tool_calling(exc) and left > 0.5:
                try:  # the endpoint refuses tool calls: the same tools through ReAct text, in the time left
                    box["text"] = asyncio.run(_run_agent(settings, ctx, prompt, react=True, timeout=left))
                    box["react"] = True
                    return
                except BaseException as exc2:  # noqa: BLE001
                    exc = exc2
            box["error"] = exc

    worker = threading.Thread(target=work, name="ask-oom-llm", daemon=True)
    worker.start()
    worker.join(settings.llm_timeout_s + 1.0)
    return box, not worker.is_alive()


def _no_tool_calling(exc: BaseException) -> bool:
    """The endpoint rejected the request because of its tools (HTTP 400 naming tools / functions)."""
    status = getattr(exc, "status_code", None)
    text = str(exc).lower()
    return status == 400 and any(w in text for w in ("tool", "function"))


def _is_timeout(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    name = type(exc).__name__.lower()
    return "timeout" in name or "timed out" in str(exc).lower()
