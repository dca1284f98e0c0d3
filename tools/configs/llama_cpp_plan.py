"""Fix plan for a llama.cpp command (llama-cli, llama-server, llama-mtmd-cli and the per-model VLM CLIs): inference
only, so no training lever applies. ggml sizes its compute buffer from the graph it builds (context, batch, and for a
vision model the image's patches), which the calculator does not model: the plan names the llama.cpp levers for the
diagnosed cause and says the fit is not verified."""

from __future__ import annotations

from typing import Any

from ..labels import RootCause
from .schema import ConfigChange, ConfigDocument, FixPlan

_CTX_KEYS = ("c", "ctx-size", "ctx_size")
_NGL_KEYS = ("ngl", "n-gpu-layers", "gpu-layers", "n_gpu_layers")


def plan_llama_cpp(doc: ConfigDocument, causes: list[RootCause]) -> FixPlan:
    """Levers of a llama.cpp run for the top causes; unverified (ggml's buffers are not sized here)."""
    s = doc.settings
    labels = [c.label for c in causes[:3]]
    changes: list[ConfigChange] = []
    if "vision_tokens" in labels:
        changes.append(_action("downscale the image before passing it (e.g. at most 1024 px on its long side)",
                               "the vision encoder turns every patch of the image into a token and attends over all of "
                               "them: its compute buffer grows with the square of the pixel count; -c and -b do not "
                               "change it"))
    ctx_key = next((k for k in _CTX_KEYS if k in s), None)
    ctx = _int(s.get(ctx_key)) if ctx_key else None
    if any(l in labels for l in ("seq_len_too_long", "generation_kv_cache")) and ctx and ctx > 2048:
        changes.append(ConfigChange(key=ctx_key, from_value=ctx, to_value=ctx // 2, tier=5,
                                    rationale="the KV cache and the compute buffer grow with the context length"))
    if any(l in labels for l in ("weights_exceed_gpu", "model_load_oom")):
        ngl_key = next((k for k in _NGL_KEYS if k in s), None)
        changes.append(_action(f"offload fewer layers to the GPU ({'-' + ngl_key if ngl_key else '-ngl'} N below the "
                               "model's layer count) or use a smaller quantization",
                               "the layers kept on the GPU hold their weights there; the rest run on the CPU"))
    return FixPlan(changes=changes, fits=False, sized=False,
                   notes=["llama.cpp: the calculator does not size ggml's compute buffers, so these changes are not "
                          "verified; re-run and read the buffer sizes it prints"])


def _action(action: str, why: str) -> ConfigChange:
    return ConfigChange(key=None, action=action, rationale=why, tier=3)


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
