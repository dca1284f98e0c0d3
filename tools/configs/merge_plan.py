"""Fix plan for merging a LoRA adapter into its base model / exporting it (`swift export --merge_lora true`,
`llamafactory-cli export`): the merge holds the whole base model in its dtype and no training state, so it
fits on the GPUs when the weights, spread by device_map, do; otherwise it runs on the CPU (host RAM) instead."""

from __future__ import annotations

from typing import Any

from ..gpus import CUDA_CONTEXT_BYTES
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .schema import ConfigChange, ConfigDocument, Constraints, FixPlan

# where each framework says which device merges: (key, value that keeps the merge off the GPU)
_DEVICE_KEYS = {"swift": ("device_map", "cpu"), "llamafactory": ("export_device", "cpu")}
_DEFAULT_DEVICE = {"swift": "auto", "llamafactory": "cpu"}   # ms-swift device_map None → auto; LF ExportArguments.export_device


def merge_weight_bytes(setup: TrainingSetup) -> int:
    """Bytes of the base model in bf16/fp16: the merge loads it whole (the adapter adds <1%)."""
    from ..memory import count_params

    # weights = parameters x 2 bytes (bf16/fp16 checkpoints, as exported)
    return count_params(setup.model).total * 2


def plan_merge(setup: TrainingSetup, doc: ConfigDocument, constraints: Constraints, failed_loading: bool = False) -> FixPlan:
    """Keep the merge on the GPUs when the weights fit there and loading them did not already fail; else move it
    to the CPU, checked against host RAM."""
    framework = doc.framework or "swift"
    key, cpu_value = _DEVICE_KEYS.get(framework, ("device_map", "cpu"))
    current = str(_setting(doc.settings, key) or _DEFAULT_DEVICE.get(framework, "auto")).lower()
    if setup.model is None:
        return FixPlan(notes=["sizing the merge needs the base model: give its name or config.json"])
    weights = merge_weight_bytes(setup)
    notes = [f"the merge loads the base model whole: {format_bytes(weights)} of weights, no optimizer or activations"]
    host_ok = setup.host_ram_bytes is None or setup.host_ram_bytes >= weights * 1.1
    if current == "cpu":
        notes.append(f"the merge already runs on the CPU: it needs about {format_bytes(weights)} of host RAM")
        return FixPlan(fits=host_ok, notes=notes)
    gpus = constraints.num_gpus or setup.num_gpus or 1
    if setup.gpu is not None:
        per_gpu = weights // gpus   # device_map auto spreads the layers evenly over the visible GPUs
        budget = int(setup.gpu.memory_bytes * constraints.margin) - CUDA_CONTEXT_BYTES
        if per_gpu <= budget and not (constraints.observed_oom or failed_loading):
            notes.append(f"{format_bytes(per_gpu)} per GPU over {gpus} x {setup.gpu.name} fits the {format_bytes(budget)} budget")
            return FixPlan(fits=True, notes=notes)
        if per_gpu <= budget:
            notes.append(f"the calculator puts {format_bytes(per_gpu)} per GPU under the budget, but loading for the merge "
                         "ran out of memory (merges often upcast to fp32 or keep a copy): merge on the CPU")
    change = ConfigChange(
        key=key if _setting(doc.settings, key) is None else _written_key(doc.settings, key), from_value=current,
        to_value=cpu_value, tier=4, bytes_saved=weights // gpus,
        rationale="merge on the CPU: merging is a few matrix additions per layer, fast enough on the CPU, and it needs "
                  f"no GPU memory (host RAM: about {format_bytes(weights)})")
    if not host_ok:
        notes.append(f"host RAM ({format_bytes(setup.host_ram_bytes)}) is below the {format_bytes(weights)} the CPU merge needs: "
                     "add swap or merge on a machine with more RAM")
    return FixPlan(changes=[change], fits=host_ok, notes=notes)


def _setting(settings: dict[str, Any], key: str) -> Any:
    return next((v for k, v in settings.items() if k.replace("-", "_") == key), None)


def _written_key(settings: dict[str, Any], key: str) -> str:
    return next(k for k in settings if k.replace("-", "_") == key)
