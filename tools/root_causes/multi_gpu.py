"""How the run spreads over several GPUs: an uneven split, DataParallel on one launcher, a device_map."""

from __future__ import annotations

from ..labels import Label
from ..log_cues import LogCues
from ..report import OOMReport
from ..training_setup import TrainingSetup
from ..units import format_bytes
from .facts import launched_distributed, observed
from .signals import Signal, support
from .weights import LISTED_ITEMS, QUOTE_MEDIUM, THRESHOLDS, Thresholds


def multi_gpu_spread(report: OOMReport, setup: TrainingSetup | None, th: Thresholds = THRESHOLDS) -> list[Signal]:
    """An nvidia-smi table with several GPUs: the failing one full while the others hold little."""
    gpus = report.gpus
    total = report.gpu_total_bytes
    if len(gpus) < 2 or not total:
        return []
    idx = report.gpu_index if report.gpu_index is not None else 0
    oom_used = report.process_used_bytes or report.torch_allocated_bytes
    others = [g for g in gpus if g.index is not None and g.index != idx and g.used_bytes is not None]
    distributed = launched_distributed(report) or \
        (setup is not None and setup.num_gpus > 1 and observed(setup, "num_gpus") and setup.zero_stage > 0)
    if oom_used and others and all(g.used_bytes < th["idle_gpu_share"] * oom_used for g in others):
        names = ", ".join(f"GPU {g.index} {format_bytes(g.used_bytes)}" for g in others)
        return [support(Label.multi_gpu_imbalance, "uneven_spread_distributed" if distributed else "uneven_spread",
                        f"GPU {idx} ran out with {format_bytes(oom_used)} in use while the other GPUs "
                        f"hold little ({names}): the model is not spread over the {len(gpus)} GPUs")]
    if not distributed:
        return [support(Label.multi_gpu_imbalance, "many_gpus_one_process",
                        f"{len(gpus)} GPUs are visible but the run is a single process: "
                        f"everything lands on GPU {idx} unless device_map splits the model")]
    return []


def single_process_many_gpus(report: OOMReport, setup: TrainingSetup | None) -> list[Signal]:
    """Several GPUs, started with plain `python`: HF Trainer then wraps the model in nn.DataParallel, which
    gathers every replica's outputs (and the loss) on GPU 0."""
    if len(report.gpus) >= 2 or setup is None or setup.num_gpus < 2 or not observed(setup, "num_gpus"):
        return []  # with an nvidia-smi table, multi_gpu_spread reads the real spread
    if report.launcher != "python" or report.ranks or setup.zero_stage > 0 or setup.fsdp:
        return []
    if report.phase in ("generation", "model_loading"):
        return []   # the Trainer wraps DataParallel for its steps; a script that loads or generates splits by device_map
    return [support(Label.multi_gpu_imbalance, "dataparallel_launch",
                    f"{setup.num_gpus} GPUs but a plain `python` launch: DataParallel keeps the "
                    "master copy and gathers outputs on GPU 0 (use torchrun for DDP)")]


def device_map_split(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None) -> list[Signal]:
    """One process spreading the layers over several GPUs (accelerate device_map): the split is rarely even."""
    if cues is None or cues.device_map is None:
        return []
    gpus = max(len(report.gpus), report.gpu_count or 0, setup.num_gpus if setup is not None and observed(setup, "num_gpus") else 0)
    distributed = launched_distributed(report)
    if gpus < 2 or distributed:
        return []
    idx = report.gpu_index
    # accelerate fills GPUs in order and GPU 0 also holds the embeddings, the inputs and generate's outputs
    # (its docs offer balanced_low_0 for this); the failing GPU shows where the split was uneven.
    where = f"GPU {idx}" if idx is not None else "one GPU"
    return [support(Label.multi_gpu_imbalance, "device_map_first_gpu" if idx in (0, None) else "device_map_split",
                    f"{cues.device_map.text[:QUOTE_MEDIUM]} splits the model over {gpus} GPUs in one process and {where} "
                    "ran out: the split is uneven (set max_memory per GPU or balanced_low_0)")]


def imbalance_said(cues: LogCues | None) -> list[Signal]:
    """The user's words say one GPU fills faster than the others (an uneven device_map, rank 0 gathering, an uneven
    pipeline split): the spread the log does not print."""
    if cues is None or cues.imbalance is None:
        return []
    return [support(Label.multi_gpu_imbalance, "imbalance_said",
                    f"the report says one GPU holds more than the others (line {cues.imbalance.line}: "
                    f"{cues.imbalance.text[:QUOTE_MEDIUM]})")]


def mixed_gpu_models(report: OOMReport, setup: TrainingSetup | None, cues: LogCues | None) -> list[Signal]:
    """GPUs of different models in one run: data-parallel replicas, tensor-parallel shards and even pipeline splits
    give every GPU the same share, so the smallest card decides what fits."""
    if cues is None or len(cues.gpu_models) < 2:
        return []
    gpus = max(len(report.gpus), report.gpu_count or 0, len(report.ranks), setup.num_gpus if setup is not None else 0)
    if gpus < 2:
        return []   # one GPU at a time: the names are machines tried one after another ("fails on H100 and V100")
    names = " and ".join(cues.gpu_models[:LISTED_ITEMS])
    return [support(Label.multi_gpu_imbalance, "mixed_gpu_models",
                    f"the run mixes GPU models ({names}): an even split gives each the same share, "
                    "so the smallest card runs out first (uneven splits: a max_memory map per GPU, or "
                    "leave the smaller card out)")]
