"""The probe's parent side: start the worker process, send trials with wall-clock limits, collect results.

The worker (tools/probe/worker.py) holds the model; a trial that runs past its limit kills the worker
(the GPU memory goes with it) and is reported as a timeout.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .schema import ProbeResult, ProbeSpec, Trial, TrialResult
from .search import bracket_search
from .worker import PREFIX


class ProbeError(RuntimeError):
    """The probe could not run (worker failed to start or build the model)."""


class ProbeWorker:
    """A running worker process with the model built; use as a context manager."""

    def __init__(self, spec: ProbeSpec, *, build_timeout_s: float = 600.0, env: dict | None = None):
        self.spec = spec
        self.build_timeout_s = build_timeout_s
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []

    def __enter__(self) -> "ProbeWorker":
        self.proc = subprocess.Popen([sys.executable, "-m", "ask_oom.tools.probe.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env, bufsize=1)
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        self._send(self.spec.model_dump_json())
        event = self._next_event(self.build_timeout_s)
        if event is None:
            self.close()
            raise ProbeError(f"the probe worker did not start: {self.stderr_tail()}")
        if event.get("event") == "build_failed":
            self.close()
            raise ProbeError("out of memory while building the model: " + event.get("error", ""))
        self.ready = event
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def trial(self, trial: Trial, timeout_s: float) -> TrialResult:
        if self.proc is None or self.proc.poll() is not None:
            return TrialResult(micro_batch=trial.micro_batch, seq_len=trial.seq_len, result="error",
                               error="probe worker is not running: " + self.stderr_tail())
        self._send(trial.model_dump_json())
        event = self._next_event(timeout_s)
        if event is None:
            timed_out = self.proc.poll() is None
            self.close()
            return TrialResult(micro_batch=trial.micro_batch, seq_len=trial.seq_len, result="timeout" if timed_out else "error",
                               error=f"no answer within {timeout_s:.0f} s" if timed_out else "worker died: " + self.stderr_tail())
        event.pop("event", None)
        result = TrialResult.model_validate(event)
        if result.result == "oom" and result.error:
            from ..log_parser import parse_log

            result.oom_report = parse_log(result.error)
        return result

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self._send("")
                self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.proc = None

    def stderr_tail(self, n: int = 5) -> str:
        lines = [ln for ln in self._stderr if ln.strip()]
        return " | ".join(lines[-n:]) or "no output"

    def _send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _pump_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                self._lines.put(line[len(PREFIX):])
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())
            del self._stderr[:-200]

    def _next_event(self, timeout_s: float) -> dict | None:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return None if line is None else json.loads(line)


def fits_with_margin(result: TrialResult, total_bytes: int | None, margin: float) -> bool:
    """A trial fits when it ran and, on a GPU, its peak reservation stays within margin x capacity."""
    if result.result != "ok":
        return False
    if total_bytes is None or result.peak_reserved_bytes is None:
        return True
    return result.peak_reserved_bytes <= margin * total_bytes


def run_probe(spec: ProbeSpec, trial: Trial, *, find_max: str | None = None, start_guess: int | None = None,
              margin: float = 0.9, trial_timeout_s: float = 300.0, total_timeout_s: float = 1200.0,
              estimate_peak_bytes: int | None = None, record_path: Path | None = None, record_meta: dict | None = None,
              worker_env: dict | None = None, on_event: Callable[[str], None] | None = None) -> ProbeResult:
    """Run the configured step (and, with find_max, the bracketing search) and report the measurements.

    `on_event` receives one line per stage (model built, trial started/finished) for progress display.
    """
    say = on_event or (lambda _msg: None)
    started = time.monotonic()
    result = ProbeResult(find_max=find_max, estimate_peak_bytes=estimate_peak_bytes)
    try:
        say("starting the probe worker and building the model")
        with ProbeWorker(spec, build_timeout_s=min(600.0, total_timeout_s), env=worker_env) as worker:
            ready = worker.ready
            say(f"model built in {ready.get('build_seconds') or 0:.1f} s on {ready.get('device_name')}")
            for key in ("device_name", "gpu_total_bytes", "cuda_context_bytes", "n_params", "n_trainable",
                        "after_load_bytes", "build_seconds", "versions"):
                setattr(result, key, ready.get(key))
            total = result.gpu_total_bytes

            def run_one(t: Trial) -> TrialResult:
                left = total_timeout_s - (time.monotonic() - started)
                if left <= 0:
                    r = TrialResult(micro_batch=t.micro_batch, seq_len=t.seq_len, result="timeout", error="overall time limit reached")
                else:
                    say(f"trial {len(result.trials) + 1}: micro-batch {t.micro_batch}, seq {t.seq_len}")
                    r = worker.trial(t, min(trial_timeout_s, left))
                r.fits_margin = fits_with_margin(r, total, margin)
                result.trials.append(r)
                _record(record_path, spec, r, result, record_meta)
                return r

            main = run_one(trial)
            if find_max:
                def fits(v: int) -> bool:
                    if (find_max == "batch" and v == trial.micro_batch) or (find_max == "seq" and v == trial.seq_len):
                        return bool(main.fits_margin)
                    t = Trial(micro_batch=v, seq_len=trial.seq_len) if find_max == "batch" else Trial(micro_batch=trial.micro_batch, seq_len=v)
                    return bool(run_one(t).fits_margin)

                base = trial.micro_batch if find_max == "batch" else trial.seq_len
                result.max_fitting, _ = bracket_search(fits, start_guess or base, lo=1 if find_max == "batch" else 64,
                                                       granularity=1 if find_max == "batch" else 64,
                                                       hi=4096 if find_max == "batch" else 1 << 20)
    except ProbeError as exc:
        result.error = str(exc)
        return result
    main = result.main
    if main and main.peak_allocated_bytes and estimate_peak_bytes:
        result.estimate_error = (estimate_peak_bytes - main.peak_allocated_bytes) / main.peak_allocated_bytes
    if main and main.peak_reserved_bytes and result.gpu_total_bytes:
        result.headroom_bytes = int(margin * result.gpu_total_bytes) - main.peak_reserved_bytes
    return result


def _record(path: Path | None, spec: ProbeSpec, trial: TrialResult, result: ProbeResult, meta: dict | None) -> None:
    """One JSON line per trial, in the calibration set's schema, for the calculator's benchmark."""
    if path is None:
        return
    row = {**(meta or {}), "architecture": spec.hf_config, "method": spec.method, "precision": spec.precision,
           "gradient_checkpointing": spec.gradient_checkpointing, "attn_implementation": spec.attn_implementation,
           "lora_r": spec.lora_rank, "optimizer": spec.optimizer, "image_px": spec.image_px,
           "micro_batch": trial.micro_batch, "seq_len": trial.seq_len, "result": trial.result,
           "n_params": result.n_params, "n_trainable": result.n_trainable, "after_load_bytes": result.after_load_bytes,
           "peak_allocated_bytes": trial.peak_allocated_bytes, "peak_reserved_bytes": trial.peak_reserved_bytes,
           "cuda_context_bytes": result.cuda_context_bytes, "gpu_total_bytes": result.gpu_total_bytes,
           "step_seconds": (sorted(trial.step_seconds)[len(trial.step_seconds) // 2] if trial.step_seconds else None),
           "gpu": result.device_name, **result.versions, "source": "ask-oom probe", "recorded_at": time.time()}
    if trial.result == "oom":
        row["oom_message"] = trial.error
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
