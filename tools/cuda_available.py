"""Whether this host has a usable CUDA device, asked without initialising CUDA in this process."""

from __future__ import annotations

import shutil
import subprocess


def cuda_available() -> bool:
    """True when nvidia-smi lists a GPU (or torch sees one). Never raises, never touches the GPU's settings."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and "GPU" in out.stdout:
                return True
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - torch missing or broken means no usable CUDA here
        return False
