"""The usage of one Nomad allocation: the unit everything else counts."""

from __future__ import annotations

from typing import NamedTuple

# Nomad ClientStatus values (api-docs/allocations) and whether they are final.
CLIENT_STATUSES: dict[str, bool] = {
    "pending": False,
    "running": False,
    "complete": True,
    "failed": True,
    "lost": True,
    "unknown": False,
}

# Nomad ClientStatus -> APEL cloud record Status (the values caso's CloudRecord accepts).
APEL_STATUS: dict[str, str] = {
    "pending": "started",
    "running": "started",
    "complete": "completed",
    "failed": "error",
    "lost": "error",
    "unknown": "unknown",
}

# Status stored for an allocation that Nomad garbage-collected before the
# collector saw it end: it is closed at the last time it was seen running.
GONE = "gone"
APEL_STATUS[GONE] = "unknown"


class Usage(NamedTuple):
    """What one allocation used; all tasks of the allocation summed.

    Times are Unix seconds (UTC). ``start`` is None until a task started;
    ``end`` is None while the allocation runs. A named tuple: a store row
    becomes one without copying field by field.
    """

    alloc_id: str
    namespace: str
    job_id: str
    name: str
    owner: str | None
    node_id: str
    datacenter: str | None
    cpu_millicores: int
    cpu_mhz: int
    memory_mb: int
    disk_mb: int
    gpu_count: int
    gpu_model: str | None
    create: int
    start: int | None
    end: int | None
    status: str
    modify_index: int

    @property
    def cores(self) -> int:
        """Whole cores for APEL's CpuCount (rounded half up, at least 1 when any CPU was reserved)."""
        if self.cpu_millicores <= 0:
            return 0
        return max(1, (self.cpu_millicores + 500) // 1000)

    def wall_seconds(self, now: int) -> int:
        """Seconds between start and end (or ``now`` while running); 0 if never started."""
        if self.start is None:
            return 0
        return max(0, (self.end if self.end is not None else now) - self.start)
