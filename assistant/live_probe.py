"""The conversation's live probe: real training steps of the (fixed) config on this host's GPU, with the
measured peak put beside the calculator's estimate."""

from __future__ import annotations

import logging

from ..tools.units import format_bytes
from .diagnosis import Diagnosis
from .message_parts import is_deepspeed_config, referenced_deepspeed
from .session import SessionState
from .what_if import agent_request

log = logging.getLogger(__name__)

PROBE_TRIAL_TIMEOUT_S = 300.0   # one probe step set; the whole probe is bounded too (never a hang)
PROBE_TOTAL_TIMEOUT_S = 600.0


def run_live_probe(state: SessionState, device: str | None, margin: float) -> str:
    """Run real training steps of the (fixed) config on `device` and put the measurement beside the estimate
    (stored in the session's diagnosis); returns the answer in Markdown. The state must hold a diagnosis."""
    d = state.diagnosis
    if device is None:
        return ("No CUDA device on this server, so no live probe here. On the GPU host you train on, run "
                "`ask-oom probe --config <fixed config> --model-config config.json` to measure the peak.")
    if device.startswith("cuda"):
        from ..tools.probe.gpu_check import busy_reason
        from ..tools.units import GiB

        reason = busy_reason(int(device.split(":")[1]) if ":" in device else 0, threshold_bytes=GiB)
        if reason:
            return f"Live probe not started: {reason}"
    setup, estimate, what = _probe_setup(state, d, margin)
    hf_config = _hf_config(state, setup)
    if hf_config is None:
        return ("The live probe needs the model's config.json (the registry has no entry for "
                f"{setup.model_name or 'this model'}): paste or attach it.")
    from ..tools.probe.runner import run_probe
    from ..tools.probe.schema import ProbeSpec, Trial

    image_px = int(setup.image_max_pixels ** 0.5) if setup.image_max_pixels and setup.model and setup.model.vision else None
    spec = ProbeSpec(hf_config=hf_config, device=device, method=setup.method, precision=setup.precision,
                     lora_rank=setup.lora_rank, lora_targets=setup.lora_targets, optimizer=setup.optimizer,
                     gradient_checkpointing=setup.gradient_checkpointing, attn_implementation=setup.attn_implementation,
                     freeze_vision_tower=setup.freeze_vision_tower, freeze_projector=setup.freeze_projector,
                     image_px=image_px, steps=2)
    estimate_peak = estimate.peak_bytes if estimate is not None else None
    result = run_probe(spec, Trial(micro_batch=setup.micro_batch, seq_len=setup.seq_len), margin=margin,
                       trial_timeout_s=PROBE_TRIAL_TIMEOUT_S, total_timeout_s=PROBE_TOTAL_TIMEOUT_S,
                       estimate_peak_bytes=estimate_peak)
    state.diagnosis = d.model_copy(update={"probe": result.model_dump(mode="json")})
    return _probe_markdown(result, what)


def _probe_setup(state: SessionState, d: Diagnosis, margin: float):
    """(setup, estimate, what) the user would run next: the pipeline on the fixed config when there is one, else
    the diagnosed setup."""
    if not d.fixed_config:
        return d.setup, d.estimate, "the current setup"
    try:
        from .agent import diagnose

        req, _ = agent_request(state)
        extras = dict(req.extra_configs)
        if d.fixed_deepspeed:
            name = referenced_deepspeed(d.fixed_config) or next((n for n, t in extras.items() if is_deepspeed_config(n, t)), None)
            if name:
                extras[name] = d.fixed_deepspeed
        fixed = diagnose(req.model_copy(update={"config_text": d.fixed_config, "extra_configs": extras, "margin": margin,
                                                "retrieve": False, "plan": False}))
        return fixed.setup, fixed.estimate, "the fixed config"
    except Exception:  # noqa: BLE001 - fall back to the diagnosed setup, said in the answer
        log.info("could not assemble the fixed setup for the probe", exc_info=True)
        return d.setup, d.estimate, "the current setup (the fixed config could not be read back)"


def _hf_config(state: SessionState, setup) -> dict | None:
    """The model's config.json: what the user pasted, else the built-in registry's copy."""
    import json

    if state.request.model_config_json:
        try:
            data = json.loads(state.request.model_config_json)
            if isinstance(data, dict) and "model_type" in data:
                return data
        except ValueError:
            pass
    if setup.model_name:
        try:
            from ..tools.memory.registry import registry_config

            cfg = registry_config(setup.model_name)
            return dict(cfg) if cfg else None
        except Exception:  # noqa: BLE001 - unknown to the registry
            return None
    return None


def _probe_markdown(result, what: str) -> str:
    """The probe's measurement (or why none) beside the calculator's estimate."""
    lines = [f"**Live probe** of {what} on {result.device_name or 'the device'}:"]
    if result.error:
        return lines[0] + f" failed — {result.error}"
    main = result.main
    if main is None:
        return lines[0] + " no trial ran."
    verdict = {"ok": "ran", "oom": "ran out of memory", "error": "failed", "timeout": "timed out"}[main.result]
    lines.append(f"- micro-batch {main.micro_batch}, seq len {main.seq_len}: {verdict}"
                 + (f"; peak allocated {format_bytes(main.peak_allocated_bytes)}, reserved {format_bytes(main.peak_reserved_bytes)}"
                    if main.peak_allocated_bytes else "")
                 + (" — fits within the margin." if main.fits_margin else " — does not fit within the margin." if main.result == "ok" else "."))
    if main.error and main.result != "ok":
        lines.append(f"- {main.error[:300]}")
    if result.estimate_peak_bytes:
        err = f" ({result.estimate_error:+.1%} vs measured)" if result.estimate_error is not None else ""
        lines.append(f"- calculator's estimate: {format_bytes(result.estimate_peak_bytes)}{err}")
    return "\n".join(lines)
