"""One snapshot's compact, serializable summary: totals, held bytes per component, the top allocation sites.

No raw blocks are kept (a snapshot can hold millions); this is what the pipeline, the renderers and the
reconciliation with the calculator read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .attribution import FRAGMENTATION, UNATTRIBUTED, AllocationSite, Attribution, ComponentHeld
from .reader import Snapshot


class SnapshotSummary(BaseModel):
    """What one rank's snapshot shows at the OOM (or at the snapshot when no OOM was recorded)."""

    name: str = Field(description="the file name or label the snapshot came with")
    rank: int | None = None
    device: int = 0
    at: Literal["oom", "snapshot"] = Field(
        default="snapshot",
        description="oom: the state rolled back to the recorded OOM; snapshot: the segments as saved")
    allocated_bytes: int = Field(default=0, description="blocks allocated to tensors")
    held_bytes: int = Field(default=0, description="blocks allocated or waiting to be freed on another stream")
    reserved_bytes: int = Field(default=0, description="segments the caching allocator holds (cudaMalloc'd)")
    fragmentation_bytes: int = Field(default=0, description="reserved but held by no block")
    requested_bytes: int | None = Field(default=None, description="the failing request (the OOM action's size)")
    device_free_bytes: int | None = Field(default=None, description="what CUDA reported free at the OOM")
    device_total_bytes: int | None = None
    request_site: str | None = Field(default=None, description="the frame that made the failing request")
    request_component: str | None = None
    frames_recorded: bool = False
    components: list[ComponentHeld] = Field(
        default_factory=list, description="held bytes per component; fragmentation and unattributed included, "
        "so they sum to reserved_bytes")
    top_sites: list[AllocationSite] = Field(default_factory=list)
    allocator_settings: dict[str, Any] = Field(default_factory=dict)
    n_segments: int = 0
    n_blocks: int = 0
    other_devices: list[int] = Field(default_factory=list, description="devices in the file not summarised here")
    notes: list[str] = Field(default_factory=list)

    def held(self, component: str) -> int:
        """Bytes held by one component (0 when none)."""
        return sum(c.bytes for c in self.components if c.name == component)

    def top_component(self) -> str | None:
        """The component holding the most, preferring a named one over fragmentation/unattributed."""
        named = [c for c in self.components if c.name not in (FRAGMENTATION, UNATTRIBUTED) and c.bytes > 0]
        pool = named or [c for c in self.components if c.bytes > 0]
        return max(pool, key=lambda c: c.bytes).name if pool else None


def summarize(snapshot: Snapshot, attribution: Attribution, *, name: str, rank: int | None) -> SnapshotSummary:
    """The summary of one attributed snapshot."""
    dev = attribution.device
    segments = [s for s in snapshot.segments if s.device == dev]
    return SnapshotSummary(
        name=name, rank=rank, device=dev, at=attribution.at, allocated_bytes=attribution.allocated_bytes,
        held_bytes=attribution.held_bytes, reserved_bytes=attribution.reserved_bytes,
        fragmentation_bytes=attribution.get(FRAGMENTATION), requested_bytes=attribution.requested_bytes,
        device_free_bytes=attribution.device_free_bytes, device_total_bytes=attribution.device_total_bytes,
        request_site=attribution.request_site, request_component=attribution.request_component,
        frames_recorded=attribution.frames_recorded, components=attribution.components,
        top_sites=attribution.top_sites, allocator_settings=snapshot.allocator_settings,
        n_segments=len(segments), n_blocks=sum(len(s.blocks) for s in segments),
        other_devices=[d for d in snapshot.devices() if d != dev], notes=attribution.notes)
