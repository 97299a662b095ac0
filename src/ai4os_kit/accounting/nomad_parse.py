"""Turn Nomad API documents (allocation, node) into :class:`Usage` rows.

Pure functions: no I/O. Shapes follow Nomad's HTTP API documentation
(``/v1/allocation/:id`` and ``/v1/node/:id``). Anything that does not fit
raises :class:`MalformedAllocation` naming the allocation and the field.
"""

from __future__ import annotations

import calendar
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from ai4os_kit.accounting.model import CLIENT_STATUSES, Usage
from ai4os_kit.errors import KitError

_ZERO_TIME_PREFIX = "0001-01-01"
_UTC_PREFIX = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_VENDOR_NAMES = {"nvidia": "NVIDIA", "amd": "AMD", "intel": "Intel"}


class MalformedAllocation(KitError):
    """Nomad returned an allocation the collector cannot account."""

    def __init__(self, alloc_id: str, field: str, problem: str) -> None:
        self.alloc_id = alloc_id
        self.field = field
        self.problem = problem
        super().__init__(
            f"allocation {alloc_id}: field {field}: {problem}; the allocation was not recorded "
            "and is retried on the next run (check the Nomad version against docs/accounting.md)"
        )


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What accounting needs from a Nomad node."""

    node_id: str
    name: str
    datacenter: str
    mhz_per_core: float | None
    # (vendor, type, name, instance ids) per device group
    devices: tuple[tuple[str, str, str, tuple[str, ...]], ...]


def parse_node(doc: Mapping[str, Any]) -> NodeInfo:
    """Read id, datacenter, CPU MHz per core and device groups of a node."""
    resources = doc.get("NodeResources") or {}
    cpu = resources.get("Cpu") or {}
    mhz: float | None = None
    shares, cores = cpu.get("CpuShares"), cpu.get("TotalCpuCores")
    if isinstance(shares, int) and isinstance(cores, int) and cores > 0:
        mhz = shares / cores
    else:
        freq = (doc.get("Attributes") or {}).get("cpu.frequency")
        if isinstance(freq, str) and freq.isdigit() and int(freq) > 0:
            mhz = float(freq)
    groups = []
    for group in resources.get("Devices") or []:
        ids = tuple(str(i.get("ID")) for i in group.get("Instances") or [])
        groups.append((str(group.get("Vendor", "")), str(group.get("Type", "")), str(group.get("Name", "")), ids))
    return NodeInfo(str(doc.get("ID", "")), str(doc.get("Name", "")), str(doc.get("Datacenter", "")),
                    mhz, tuple(groups))


def _epoch_from_rfc3339(value: Any, alloc_id: str, field: str) -> int | None:
    """Nomad task times: RFC 3339 with nanoseconds; the zero time means 'not yet'."""
    if value is None or value == "" or (isinstance(value, str) and value.startswith(_ZERO_TIME_PREFIX)):
        return None
    if not isinstance(value, str):
        raise MalformedAllocation(alloc_id, field, f"expected an RFC 3339 time string, got {value!r}")
    if len(value) >= 20 and value[-1] == "Z" and value[19] in ".Z" and _UTC_PREFIX.fullmatch(value, 0, 19):
        # the shape Nomad writes (UTC, 'Z'): read the fields directly, several times faster
        fields = (int(value[0:4]), int(value[5:7]), int(value[8:10]),
                  int(value[11:13]), int(value[14:16]), int(value[17:19]))
        if 1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60 and fields[5] < 61:
            return calendar.timegm(fields)
        raise MalformedAllocation(alloc_id, field, f"not an RFC 3339 time: {value!r}")
    text = value
    if "." in text:  # trim nanoseconds to microseconds, keep the zone
        head, frac = text.split(".", 1)
        digits = len(frac) - len(frac.lstrip("0123456789"))
        text = head + "." + frac[:min(digits, 6)].ljust(1, "0") + frac[digits:]
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedAllocation(alloc_id, field, f"not an RFC 3339 time: {value!r}") from None
    if stamp.tzinfo is None:
        raise MalformedAllocation(alloc_id, field, f"time without a zone: {value!r}")
    return int(stamp.timestamp())


def _int(doc: Mapping[str, Any], key: str, alloc_id: str, field: str, default: int | None = None) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedAllocation(alloc_id, field, f"expected a non-negative integer, got {value!r}")
    return value


def _mapping(value: Any, alloc_id: str, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedAllocation(alloc_id, field, f"expected an object, got {type(value).__name__}")
    return value


def _alloc_id(doc: Mapping[str, Any]) -> str:
    raw = doc.get("ID")
    if not isinstance(raw, str):
        raise MalformedAllocation(repr(raw), "ID", "missing or not a string")
    try:
        uuid.UUID(raw)
    except ValueError:
        raise MalformedAllocation(raw, "ID", "not a UUID (APEL's VMUUID must be one)") from None
    return raw


def _times(doc: Mapping[str, Any], alloc_id: str, final: bool) -> tuple[int, int | None, int | None]:
    create = _int(doc, "CreateTime", alloc_id, "CreateTime") // 1_000_000_000
    states = doc.get("TaskStates") or {}
    _mapping(states, alloc_id, "TaskStates")
    starts: list[int] = []
    ends: list[int] = []
    for task, state in sorted(states.items()):
        state = _mapping(state, alloc_id, f"TaskStates.{task}")
        started = _epoch_from_rfc3339(state.get("StartedAt"), alloc_id, f"TaskStates.{task}.StartedAt")
        finished = _epoch_from_rfc3339(state.get("FinishedAt"), alloc_id, f"TaskStates.{task}.FinishedAt")
        if started is not None:
            starts.append(started)
        if finished is not None:
            ends.append(finished)
    start = min(starts) if starts else None
    end: int | None = None
    if final and start is not None:
        modify = _int(doc, "ModifyTime", alloc_id, "ModifyTime", default=0) // 1_000_000_000
        end = max(ends) if ends else max(modify, start)
        end = max(end, start)
    return create, start, end


def _task_cpu(res: Mapping[str, Any], alloc_id: str, field: str, mhz_per_core: float | None) -> tuple[int, int]:
    """(millicores, MHz) reserved by one task: reserved cores count whole, MHz convert at the node's clock."""
    cpu = _mapping(res.get("Cpu") or {}, alloc_id, f"{field}.Cpu")
    shares = _int(cpu, "CpuShares", alloc_id, f"{field}.Cpu.CpuShares", default=0)
    reserved = cpu.get("ReservedCores") or []
    if not isinstance(reserved, list):
        raise MalformedAllocation(alloc_id, f"{field}.Cpu.ReservedCores", f"expected a list, got {reserved!r}")
    if reserved:
        return 1000 * len(reserved), shares
    if shares and mhz_per_core:
        return int(round(1000 * shares / mhz_per_core)), shares
    return 0, shares


def _gpu_name(vendor: str, name: str) -> str:
    pretty = _VENDOR_NAMES.get(vendor.lower(), vendor)
    if not pretty or name.lower().startswith(pretty.lower()):
        return name
    return f"{pretty} {name}".strip()


def _task_gpus(res: Mapping[str, Any], alloc_id: str, field: str, node: NodeInfo | None) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    devices = res.get("Devices") or []
    if not isinstance(devices, list):
        raise MalformedAllocation(alloc_id, f"{field}.Devices", f"expected a list, got {devices!r}")
    for i, dev in enumerate(devices):
        dev = _mapping(dev, alloc_id, f"{field}.Devices[{i}]")
        if dev.get("Type") != "gpu":
            continue
        ids = dev.get("DeviceIDs") or []
        if not isinstance(ids, list):
            raise MalformedAllocation(alloc_id, f"{field}.Devices[{i}].DeviceIDs", f"expected a list, got {ids!r}")
        vendor, name = str(dev.get("Vendor", "")), str(dev.get("Name", ""))
        if node is not None:  # the node's device group holding these instances names the model
            for g_vendor, g_type, g_name, g_ids in node.devices:
                if g_type == "gpu" and set(map(str, ids)) <= set(g_ids):
                    vendor, name = g_vendor, g_name
                    break
        out.append((_gpu_name(vendor, name), len(ids)))
    return out


def _requested_gpus(doc: Mapping[str, Any], alloc_id: str) -> list[tuple[str, int]]:
    """GPU device requests of the allocation's task group (``nvidia/gpu[/model]`` with Count)."""
    job = doc.get("Job") or {}
    out: list[tuple[str, int]] = []
    for group in job.get("TaskGroups") or []:
        if group.get("Name") != doc.get("TaskGroup"):
            continue
        for task in group.get("Tasks") or []:
            for req in ((task.get("Resources") or {}).get("Devices")) or []:
                parts = str(req.get("Name", "")).split("/")
                if "gpu" not in parts[:2]:
                    continue
                count = req.get("Count", 1)
                if not isinstance(count, int) or count < 0:
                    raise MalformedAllocation(alloc_id, f"Job.TaskGroups.{group.get('Name')}.Tasks."
                                              f"{task.get('Name')}.Resources.Devices.Count", f"bad count {count!r}")
                vendor = parts[0] if len(parts) > 1 and parts[1] == "gpu" else ""
                model = parts[2] if len(parts) > 2 else ""
                out.append((_gpu_name(vendor, model) if model else "", count))
    return out


def _owner(doc: Mapping[str, Any], owner_key: str) -> str | None:
    job = doc.get("Job") or {}
    for group in job.get("TaskGroups") or []:
        if group.get("Name") == doc.get("TaskGroup") and (group.get("Meta") or {}).get(owner_key):
            return str(group["Meta"][owner_key])
    value = (job.get("Meta") or {}).get(owner_key)
    return str(value) if value else None


def parse_allocation(doc: Mapping[str, Any], node: NodeInfo | None, owner_key: str = "owner") -> Usage:
    """Usage of one allocation (a ``/v1/allocation/:id`` document), all tasks summed."""
    alloc_id = _alloc_id(doc)
    status = doc.get("ClientStatus")
    if status not in CLIENT_STATUSES:
        raise MalformedAllocation(alloc_id, "ClientStatus", f"unknown status {status!r}")
    namespace = doc.get("Namespace") or "default"
    if not isinstance(namespace, str):
        raise MalformedAllocation(alloc_id, "Namespace", f"expected a string, got {namespace!r}")
    create, start, end = _times(doc, alloc_id, CLIENT_STATUSES[status])
    resources = doc.get("AllocatedResources")
    if resources is None:
        if start is not None:
            raise MalformedAllocation(alloc_id, "AllocatedResources", "missing on an allocation that ran")
        resources = {}
    resources = _mapping(resources, alloc_id, "AllocatedResources")
    tasks = _mapping(resources.get("Tasks") or {}, alloc_id, "AllocatedResources.Tasks")
    millicores = mhz = memory = 0
    gpus: list[tuple[str, int]] = []
    mhz_per_core = node.mhz_per_core if node else None
    for task, res in sorted(tasks.items()):
        field = f"AllocatedResources.Tasks.{task}"
        res = _mapping(res, alloc_id, field)
        t_milli, t_mhz = _task_cpu(res, alloc_id, field, mhz_per_core)
        millicores += t_milli
        mhz += t_mhz
        memory += _int(_mapping(res.get("Memory") or {}, alloc_id, f"{field}.Memory"), "MemoryMB",
                       alloc_id, f"{field}.Memory.MemoryMB", default=0)
        gpus += _task_gpus(res, alloc_id, field, node)
    if not any(count for _, count in gpus):
        requested = _requested_gpus(doc, alloc_id)
        if any(count for _, count in requested) and node is not None:
            node_models = sorted({_gpu_name(v, n) for v, t, n, _ in node.devices if t == "gpu"})
            requested = [(m or (node_models[0] if len(node_models) == 1 else ""), c) for m, c in requested]
        gpus = requested
    shared = _mapping(resources.get("Shared") or {}, alloc_id, "AllocatedResources.Shared")
    disk = _int(shared, "DiskMB", alloc_id, "AllocatedResources.Shared.DiskMB", default=0)
    gpu_count = sum(count for _, count in gpus)
    models = sorted({model for model, count in gpus if model and count})
    return Usage(
        alloc_id=alloc_id,
        namespace=namespace,
        job_id=str(doc.get("JobID", "")),
        name=str(doc.get("Name", "")),
        owner=_owner(doc, owner_key),
        node_id=str(doc.get("NodeID", "")),
        datacenter=node.datacenter if node else None,
        cpu_millicores=millicores,
        cpu_mhz=mhz,
        memory_mb=memory,
        disk_mb=disk,
        gpu_count=gpu_count,
        gpu_model=" + ".join(models) if models else None,
        create=create,
        start=start,
        end=end,
        status=status,
        modify_index=_int(doc, "ModifyIndex", alloc_id, "ModifyIndex"),
    )
