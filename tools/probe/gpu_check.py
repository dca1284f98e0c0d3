"""Is the chosen GPU free enough to probe on? Asked through nvidia-smi (read-only: never changes GPU settings)."""

from __future__ import annotations

import shutil
import subprocess

from pydantic import BaseModel

from ..units import MiB


class GPUProcess(BaseModel):
    pid: int
    used_bytes: int
    name: str = ""


def gpu_processes(gpu_index: int) -> list[GPUProcess] | None:
    """Compute processes on GPU `gpu_index`, or None when nvidia-smi is unavailable."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        gpus = subprocess.run([smi, "--query-gpu=index,uuid", "--format=csv,noheader"], capture_output=True, text=True, timeout=15)
        apps = subprocess.run([smi, "--query-compute-apps=gpu_uuid,pid,used_memory,process_name", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    uuid = next((line.split(",")[1].strip() for line in gpus.stdout.splitlines()
                 if line.split(",")[0].strip() == str(gpu_index)), None)
    procs: list[GPUProcess] = []
    for line in apps.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0] == uuid and parts[1].isdigit() and parts[2].isdigit():
            procs.append(GPUProcess(pid=int(parts[1]), used_bytes=int(parts[2]) * MiB, name=parts[3] if len(parts) > 3 else ""))
    return procs


def busy_reason(gpu_index: int, threshold_bytes: int) -> str | None:
    """A one-line reason to refuse the probe when other processes hold more than threshold_bytes, else None."""
    procs = gpu_processes(gpu_index) or []
    used = sum(p.used_bytes for p in procs)
    if used <= threshold_bytes:
        return None
    listed = ", ".join(f"pid {p.pid} {p.name} {p.used_bytes / 2**30:.1f} GiB" for p in procs[:5])
    return (f"GPU {gpu_index} is in use by other processes ({listed}); their {used / 2**30:.1f} GiB would distort the "
            f"measurement — free the GPU, pick another with --gpu-index, or pass --force")
