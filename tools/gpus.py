"""GPU facts by name: usable memory of the cards people fine-tune on, so "4x A100 40GB" or an
nvidia-smi line resolves to bytes without a device at hand."""

from __future__ import annotations

import re
import statistics

from pydantic import BaseModel, Field

from .units import GiB, MiB


class GPUSpec(BaseModel):
    """One GPU model: the name users and nvidia-smi print, and the memory torch reports as total capacity."""

    name: str
    memory_bytes: int = Field(description="total capacity as torch.cuda reports it (bytes)")
    vendor: str = "nvidia"
    bf16: bool = True  # False on pre-Ampere cards (V100, T4): bf16 falls back or is unsupported


# Memory is what `torch.cuda.get_device_properties().total_memory` reports (slightly less than the
# marketing size): e.g. an "A100 80GB" shows 79.15 GiB, an "H100 80GB HBM3" 79.18 GiB, a 4090 23.64 GiB.
_CATALOG: list[tuple[tuple[str, ...], GPUSpec]] = [
    (("h200",), GPUSpec(name="H200-141GB", memory_bytes=int(139.8 * GiB))),
    (("h100 nvl", "h100-94", "h100 94"), GPUSpec(name="H100-NVL-94GB", memory_bytes=int(93.1 * GiB))),
    (("h100-96", "h100 96", "gh200"), GPUSpec(name="H100-96GB", memory_bytes=int(94.5 * GiB))),
    # the China-market export variants (A800, H800, H20) are their own products with their own names
    (("h800",), GPUSpec(name="H800-80GB", memory_bytes=int(79.18 * GiB))),
    (("h100",), GPUSpec(name="H100-80GB", memory_bytes=int(79.18 * GiB))),
    (("h20",), GPUSpec(name="H20-96GB", memory_bytes=int(94.5 * GiB))),
    (("a800-40", "a800 40"), GPUSpec(name="A800-40GB", memory_bytes=int(39.39 * GiB))),
    (("a800",), GPUSpec(name="A800-80GB", memory_bytes=int(79.15 * GiB))),
    (("a100-80", "a100 80", "a100-sxm4-80", "a100-pcie-80"), GPUSpec(name="A100-80GB", memory_bytes=int(79.15 * GiB))),
    (("a100",), GPUSpec(name="A100-40GB", memory_bytes=int(39.39 * GiB))),
    (("l40s",), GPUSpec(name="L40S-48GB", memory_bytes=int(44.39 * GiB))),
    (("l40",), GPUSpec(name="L40-48GB", memory_bytes=int(44.39 * GiB))),
    (("l20",), GPUSpec(name="L20-48GB", memory_bytes=int(44.39 * GiB))),
    (("a6000", "rtx 6000 ada", "rtx6000"), GPUSpec(name="RTX-A6000-48GB", memory_bytes=int(47.54 * GiB))),
    (("a40",), GPUSpec(name="A40-48GB", memory_bytes=int(44.35 * GiB))),
    (("5090",), GPUSpec(name="RTX-5090-32GB", memory_bytes=int(31.36 * GiB))),
    (("4090d", "4090 d"), GPUSpec(name="RTX-4090D-24GB", memory_bytes=int(23.64 * GiB))),
    (("4090",), GPUSpec(name="RTX-4090-24GB", memory_bytes=int(23.64 * GiB))),
    (("3090",), GPUSpec(name="RTX-3090-24GB", memory_bytes=int(23.69 * GiB))),
    (("a10g", "a10"), GPUSpec(name="A10-24GB", memory_bytes=int(22.19 * GiB))),
    (("l4",), GPUSpec(name="L4-24GB", memory_bytes=int(22.03 * GiB))),
    (("4080",), GPUSpec(name="RTX-4080-16GB", memory_bytes=int(15.7 * GiB))),
    (("3080",), GPUSpec(name="RTX-3080-10GB", memory_bytes=int(9.77 * GiB))),
    (("v100-32", "v100 32", "v100-sxm2-32"), GPUSpec(name="V100-32GB", memory_bytes=int(31.74 * GiB), bf16=False)),
    (("v100",), GPUSpec(name="V100-16GB", memory_bytes=int(15.77 * GiB), bf16=False)),
    (("t4",), GPUSpec(name="T4-16GB", memory_bytes=int(14.75 * GiB), bf16=False)),
    (("mi300",), GPUSpec(name="MI300X-192GB", memory_bytes=int(191.98 * GiB), vendor="amd")),
    (("mi250",), GPUSpec(name="MI250-64GB", memory_bytes=int(63.98 * GiB), vendor="amd")),
]

# The single cards a run too big for its GPU could move to, smallest first (a hardware suggestion names the first that fits).
_UPGRADES = ("A100-80GB", "H100-80GB", "H100-NVL-94GB", "H200-141GB", "MI300X-192GB")
# The most memory any single GPU in the catalogue has: a request above it cannot be one tensor on one card.
LARGEST_GPU_BYTES = max(spec.memory_bytes for _, spec in _CATALOG)

# Data-centre and workstation GPU models as people write them, longest spelling first so an alternation never stops
# at a prefix (h200 before h20, l40s before l4): the one list every text reader (log cues, the user's words, the
# knowledge-base extractor) matches, each with its own context rules around it. Consumer cards (RTX 3090, 4090 Ti)
# are numbers that need a marker, which each reader adds itself.
DATACENTER_GPU_PATTERN = (r"gh200|h200|h100(?:\s*nvl)?|h800|h20|a100|a800|a6000|a40|a10g|a10|l40s|l40|l20|l4|v100|p100|p40|t4|"
                          r"mi300x|mi300|mi250x|mi250")

_MEM_IN_NAME = re.compile(r"(?<![A-Za-z0-9.])(\d{1,3})\s*G(?:i?B)?\b", re.IGNORECASE)   # not the "10g" of "a10g"


def lookup_gpu(name: str, memory_gib: float | None = None) -> GPUSpec | None:
    """Resolve a GPU name as users or nvidia-smi write it ('A100-SXM4-40GB', '4090', 'H100 80GB HBM3').

    An explicit memory (from the log or the user) wins over the catalogue's; a size written in the
    name picks the matching variant ('A100 80GB' → A100-80GB). Unknown names return None, unless a
    memory is given, in which case a custom spec is built.
    """
    key = " ".join(name.lower().replace("_", " ").split())
    key = key.replace("nvidia ", "").replace("geforce ", "").replace("tesla ", "")
    size = _MEM_IN_NAME.search(key)
    found: GPUSpec | None = None
    for needles, spec in _CATALOG:
        if any(n in key for n in needles):
            found = spec
            if size:  # a size written in the name picks the variant sold with that memory ('A100 80G', 'V100 32GB')
                # ... or, for a size the catalogue does not list for the card (an RTX 3080 16GB laptop part), is the
                # card's memory as written, at the share of it torch reports for the catalogued variant
                found = sized_variant(spec.name, int(size.group(1))) or _resized(spec, int(size.group(1)))
            break
    if found is None and _APPLE.search(key):
        found = _apple_silicon(key, size)
    if found is None and size and _CARD_WORDS.search(key):
        # a card the catalogue does not list, with its size in the name ('RTX 4070 Ti 12GB', '2080Ti 11GB')
        found = nominal_card(name.strip(), int(size.group(1)))
    if memory_gib is not None:
        base = found or GPUSpec(name=name.strip() or "GPU", memory_bytes=0)
        return base.model_copy(update={"memory_bytes": int(memory_gib * GiB)})
    return found


# Apple silicon shares one memory between CPU and GPU; Metal lets the GPU wire about three quarters of it by default
# (MTLDevice.recommendedMaxWorkingSetSize, which MLX and PyTorch MPS use as their limit).
_APPLE = re.compile(r"\bapple\b|\bm[1-5]\s?(?:pro|max|ultra)\b|\bmacbook|\bmac studio\b|\bmac mini\b")
APPLE_GPU_SHARE = 0.75


def _apple_silicon(key: str, size: re.Match | None) -> GPUSpec | None:
    """An Apple-silicon Mac with its unified memory size in the name ('M3 Max 128GB'); None without a size (the same
    chip ships with 36 to 128 GB)."""
    if size is None:
        return None
    chip = re.search(r"m[1-5]\s?(?:pro|max|ultra)?", key)
    label = chip.group(0).upper().replace("PRO", "Pro").replace("MAX", "Max").replace("ULTRA", "Ultra") if chip else "Mac"
    total = int(size.group(1))
    return GPUSpec(name=f"Apple {label} ({total} GB unified)", memory_bytes=int(total * APPLE_GPU_SHARE * GiB),
                   vendor="apple")


_NOMINAL_SIZE = re.compile(r"-(\d{1,3})GB$", re.IGNORECASE)   # the nominal size a catalogue name ends with


def gpu_family(name: str) -> str:
    """The model a catalogue name is a variant of, without its memory: 'A100-80GB' → 'A100', 'RTX-4090-24GB' →
    'RTX-4090', 'V100-16GB' → 'V100' (a name without a size is its own family)."""
    return _NOMINAL_SIZE.sub("", name.strip())


def _nominal_gb(spec: GPUSpec) -> int | None:
    m = _NOMINAL_SIZE.search(spec.name)
    return int(m.group(1)) if m else None


# The share of its nominal size a card reports as total capacity, over the catalogue (about 98.5%): the memory of a
# card known only by its size
REPORTED_SHARE = statistics.median_high(spec.memory_bytes / (_nominal_gb(spec) * GiB)
                                        for _, spec in _CATALOG if _nominal_gb(spec))
# words that make an unknown name a graphics card (a consumer model number, a product line)
_CARD_WORDS = re.compile(r"\b(?:rtx|gtx|titan|quadro|radeon|tesla|gpu)\b|\b[1-9]0[5-9]0(?:\s?ti)?\b")


def nominal_card(name: str, nominal_gb: int) -> GPUSpec:
    """A card the catalogue does not list, known by its nominal size ('RTX 4070 Ti 12GB', "4张24G的卡"): that size at
    the share of it torch reports for the catalogued cards."""
    return GPUSpec(name=name, memory_bytes=int(nominal_gb * REPORTED_SHARE * GiB))


def _resized(spec: GPUSpec, nominal_gb: int) -> GPUSpec:
    """`spec` with another nominal size, at the share of its nominal size the catalogued variant reports."""
    own = _nominal_gb(spec)
    share = spec.memory_bytes / (own * GiB) if own else REPORTED_SHARE
    return spec.model_copy(update={"name": f"{gpu_family(spec.name)}-{nominal_gb}GB",
                                   "memory_bytes": int(nominal_gb * share * GiB)})


def sized_variant(name: str, memory_gib: float) -> GPUSpec | None:
    """The catalogue card of `name`'s family sold with `memory_gib` (nominal GB): ('A100-40GB', 80) → A100-80GB,
    ('V100', 32) → V100-32GB; None when the family has no such variant."""
    family = gpu_family(name).lower()
    want = f"{family}-{int(round(memory_gib))}gb"
    return next((spec for _, spec in _CATALOG if spec.name.lower() == want), None)


def _by_name(name: str) -> GPUSpec:
    return next(spec for _, spec in _CATALOG if spec.name == name)


def larger_gpu(required_bytes: int) -> GPUSpec | None:
    """The smallest data-centre GPU with at least `required_bytes`; None when no single card has that much."""
    return next((spec for spec in map(_by_name, _UPGRADES) if spec.memory_bytes >= required_bytes), None)


def gpu_from_memory(memory_bytes: int, name: str | None = None) -> GPUSpec:
    """A spec for a card known only by the capacity a log printed (e.g. '23.64 GiB total capacity')."""
    if name:
        spec = lookup_gpu(name)
        if spec:
            return spec.model_copy(update={"memory_bytes": memory_bytes})
    return GPUSpec(name=name or f"GPU ({memory_bytes / GiB:.2f} GiB)", memory_bytes=memory_bytes)


# CUDA context + cuBLAS/cuDNN workspaces live outside PyTorch's allocator: ~0.1 GiB measured on an H100
# with torch 2.11 (../shared/calibration cuda_context_bytes = 92 MiB), 300-500 MiB with older CUDA/cuDNN.
CUDA_CONTEXT_BYTES = 500 * MiB


def budget_bytes(capacity_bytes: int, margin: float) -> int:
    """What a run may allocate on a GPU: capacity x margin (room for the allocator) - the CUDA context."""
    return int(capacity_bytes * margin) - CUDA_CONTEXT_BYTES
