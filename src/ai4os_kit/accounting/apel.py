"""APEL records from stored usage: cloud records v0.4 and GPU accelerator records.

The record *models* are caso's (``caso.record.CloudRecord`` and
``AcceleratorRecord``): field names come from caso's alias maps and the text
is caso's ``ssm_message`` layout. Building a pydantic model per record costs
~0.25 ms, too slow for a million allocations, so records are rendered from
plain data with caso's own field maps, and in every export the first record
of each layout (running or ended, with or without an owner) is also built
through caso's model and compared byte for byte: if a caso upgrade changes
the format, the export stops with an error instead of sending something
EGI's loader would not read.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from caso.record import AcceleratorRecord, CloudRecord, map_accelerator_fields, map_cloud_fields

from ai4os_kit import __version__
from ai4os_kit.accounting.model import APEL_STATUS, Usage
from ai4os_kit.accounting.ssmqueue import OutgoingQueue
from ai4os_kit.accounting.store import Store
from ai4os_kit.errors import KitError

CLOUD_HEADER = "APEL-cloud-message: v0.4\n"
ACCELERATOR_TYPE = "APEL-accelerator-message"
ACCELERATOR_VERSION = "0.1"
MAX_RECORDS_PER_MESSAGE = 100  # as caso's [ssm] max_size default (GGUS ticket 143436)
SYNC_EVERY = 200  # messages queued between two flushes to disk (and cursor moves)

# Accelerator record keys in the order caso's model serialises them.
_ACC_ORDER = [map_accelerator_fields(f) for f in AcceleratorRecord.model_fields if f != "version"] + \
             [map_accelerator_fields(f) for f in AcceleratorRecord.model_computed_fields]
_PRINTABLE = {c for c in range(0x20, 0x7F)}
# caso's cloud field names (its map_cloud_fields), looked up once: it rebuilds a dict on every call.
_CLOUD_KEYS = {name: map_cloud_fields(name) for name in (
    "uuid", "site_name", "name", "user_id", "user_dn", "group_id", "fqan", "status", "start_time_epoch",
    "end_time_epoch", "wall_duration", "cpu_duration", "cpu_count", "memory", "disk", "public_ip_count",
    "compute_service", "cloud_type")}
_CLOUD_ORDER = sorted(_CLOUD_KEYS.values())  # caso's ssm_message sorts the lines; the key set is fixed


@dataclass(frozen=True)
class ExportContext:
    """What the records say about the platform (from the accounting config)."""

    site_names: dict[str, str]          # Nomad datacenter -> APEL/GOCDB SiteName
    vos: dict[str, str]                 # Nomad namespace -> VO name
    compute_service: str
    fqan_format: str = "/{vo}/Role=NULL/Capability=NULL"
    cloud_type: str = f"ai4os-kit/{__version__} (Nomad)"
    cpu_duration: str = "reserved"      # reserved: CpuCount x WallDuration as caso does; omit: leave it out
    default_vo: str | None = None       # VO for namespaces not in ``vos``; None: such allocations are skipped


def ascii_text(value: str) -> str:
    """What APEL accepts in a text field: printable ASCII, no newlines (caso also drops non-ASCII)."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(ch for ch in value if ord(ch) in _PRINTABLE)


def _vo(usage: Usage, ctx: ExportContext) -> str | None:
    return ctx.vos.get(usage.namespace, ctx.default_vo)


def cloud_fields(usage: Usage, ctx: ExportContext, now: int) -> dict[str, Any] | None:
    """APEL cloud record fields (caso names) for one allocation, or None if it is not accounted to EGI."""
    site = ctx.site_names.get(usage.datacenter or "")
    vo = _vo(usage, ctx)
    if usage.start is None or site is None or vo is None:
        return None
    wall = usage.wall_seconds(now)
    owner = (ascii_text(usage.owner) or None) if usage.owner else None
    values: dict[str, Any] = {
        "uuid": usage.alloc_id,
        "site_name": site,
        "name": ascii_text(usage.name),
        "user_id": owner or "unknown",
        "user_dn": owner,
        "group_id": ascii_text(usage.namespace),
        "fqan": ctx.fqan_format.format(vo=vo),
        "status": APEL_STATUS[usage.status],
        "start_time_epoch": usage.start,
        "end_time_epoch": usage.end or 0,
        "wall_duration": wall,
        "cpu_duration": wall * usage.cores if ctx.cpu_duration == "reserved" else None,
        "cpu_count": usage.cores,
        "memory": usage.memory_mb,
        "disk": -(-usage.disk_mb // 1024),  # GB, rounded up as flavors are
        "public_ip_count": 0,
        "compute_service": ctx.compute_service,
        "cloud_type": ctx.cloud_type,
    }
    return {_CLOUD_KEYS[k]: v for k, v in values.items() if v is not None}


def render_cloud(fields: dict[str, Any]) -> str:
    """One record in caso's ``CloudRecord.ssm_message`` layout: ``Key: value`` lines, sorted by key."""
    lines = []
    for key in _CLOUD_ORDER:
        if key in fields:
            value = fields[key]
            if value == 0 and (key == "CpuDuration" or key == "WallDuration"):
                value = 1  # caso reports at least one second
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def render_cloud_usage(usage: Usage, ctx: ExportContext, now: int) -> str | None:
    """``render_cloud(cloud_fields(...))`` in one step, several times faster (the export's hot path).

    Lines in the fixed sorted order of caso's keys; the tests and every
    message's first record check it against caso's model.
    """
    site = ctx.site_names.get(usage.datacenter or "")
    vo = ctx.vos.get(usage.namespace, ctx.default_vo)
    start = usage.start
    if start is None or site is None or vo is None:
        return None
    end = usage.end
    wall = max(0, (end if end is not None else now) - start)
    cores = usage.cores
    owner = (ascii_text(usage.owner) or None) if usage.owner else None
    out = f"CloudComputeService: {ctx.compute_service}\nCloudType: {ctx.cloud_type}\nCpuCount: {cores}\n"
    if ctx.cpu_duration == "reserved":
        out += f"CpuDuration: {wall * cores or 1}\n"
    out += f"Disk: {-(-usage.disk_mb // 1024)}\nEndTime: {end or 0}\nFQAN: {ctx.fqan_format.format(vo=vo)}\n"
    if owner is not None:
        out += f"GlobalUserName: {owner}\n"
    return (f"{out}LocalGroupId: {ascii_text(usage.namespace)}\nLocalUserId: {owner or 'unknown'}\n"
            f"MachineName: {ascii_text(usage.name)}\nMemory: {usage.memory_mb}\nPublicIPCount: 0\n"
            f"SiteName: {site}\nStartTime: {start}\nStatus: {APEL_STATUS[usage.status]}\n"
            f"VMUUID: {usage.alloc_id}\nWallDuration: {wall or 1}")


def caso_cloud_record(usage: Usage, ctx: ExportContext, now: int) -> CloudRecord | None:
    """The same record built through caso's model (the reference)."""
    fields = cloud_fields(usage, ctx, now)
    if fields is None:
        return None
    utc = dt.timezone.utc
    rec = CloudRecord(
        uuid=uuid.UUID(usage.alloc_id), site_name=fields["SiteName"], name=fields["MachineName"],
        user_id=fields["LocalUserId"], user_dn=fields.get("GlobalUserName"), group_id=fields["LocalGroupId"],
        fqan=fields["FQAN"], status=fields["Status"], cpu_count=fields["CpuCount"], memory=fields["Memory"],
        disk=fields["Disk"], compute_service=fields["CloudComputeService"], cloud_type=fields["CloudType"],
        start_time=dt.datetime.fromtimestamp(usage.start or 0, utc),
        end_time=dt.datetime.fromtimestamp(usage.end, utc) if usage.end else None,
    )
    rec.wall_duration = fields["WallDuration"]
    if "CpuDuration" in fields:
        rec.cpu_duration = fields["CpuDuration"]
    return rec


def cloud_message(entries: list[str]) -> bytes:
    """An APEL cloud message: the v0.4 header, records separated by ``%%`` lines."""
    return (CLOUD_HEADER + "\n%%\n".join(entries) + "\n").encode("ascii")


def _months(start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(year, month, seconds from, seconds to) for each calendar month (UTC) that [start, end) touches."""
    day = dt.datetime.fromtimestamp(start, dt.timezone.utc)
    year, month = day.year, day.month
    while True:
        first = calendar.timegm((year, month, 1, 0, 0, 0))
        year2, month2 = (year + 1, 1) if month == 12 else (year, month + 1)
        nxt = calendar.timegm((year2, month2, 1, 0, 0, 0))
        lo, hi = max(start, first), min(end, nxt)
        if hi > lo or (lo == hi == start):
            yield year, month, lo, hi
        if end <= nxt:
            return
        year, month = year2, month2


def accelerator_records(usage: Usage, ctx: ExportContext, now: int) -> list[dict[str, Any]]:
    """Monthly GPU accelerator records of one allocation (as caso builds them for GPU flavors)."""
    if usage.gpu_count <= 0:
        return []
    fields = cloud_fields(usage, ctx, now)
    if fields is None:
        return []
    end = usage.end if usage.end is not None else now
    out = []
    for year, month, lo, hi in _months(usage.start or 0, end):
        values = {
            "SiteName": fields["SiteName"],
            "CloudType": fields["CloudType"],
            "CloudComputeService": fields["CloudComputeService"],
            "AssociatedRecord": usage.alloc_id,
            "GlobalUserName": fields.get("GlobalUserName"),
            "FQAN": fields["FQAN"],
            "Count": usage.gpu_count,
            "AvailableDuration": hi - lo,
            "MeasurementMonth": month,
            "MeasurementYear": year,
            "AssociatedRecordType": "cloud",
            "Type": "GPU",
            "Model": ascii_text(usage.gpu_model or "unknown"),
            "ActiveDuration": hi - lo,
        }
        out.append({k: values[k] for k in _ACC_ORDER if values.get(k) is not None})
    return out


def caso_accelerator_record(rec: dict[str, Any]) -> AcceleratorRecord:
    """The same accelerator record built through caso's model (the reference)."""
    return AcceleratorRecord(
        uuid=uuid.UUID(rec["AssociatedRecord"]), site_name=rec["SiteName"], cloud_type=rec["CloudType"],
        compute_service=rec["CloudComputeService"], user_dn=rec.get("GlobalUserName"), fqan=rec["FQAN"],
        count=rec["Count"], available_duration=rec["AvailableDuration"], measurement_month=rec["MeasurementMonth"],
        measurement_year=rec["MeasurementYear"], accelerator_type=rec["Type"], model=rec["Model"])


def accelerator_message(records: list[dict[str, Any]]) -> bytes:
    """An APEL accelerator message (JSON, as caso's SSM messenger writes it)."""
    return json.dumps({"Type": ACCELERATOR_TYPE, "Version": ACCELERATOR_VERSION,
                       "UsageRecords": records}).encode("ascii")


def _check_against_caso(ours: str, reference: str, what: str) -> None:
    if ours != reference:
        raise KitError(f"{what}: the record rendered here differs from caso's model "
                       f"(caso upgraded?):\n--- ours\n{ours}\n--- caso\n{reference}\n"
                       "nothing was queued; pin caso to a tested version or update ai4os_kit.accounting.apel")


@dataclass
class ExportResult:
    records: int = 0
    messages: int = 0
    skipped: int = 0
    names: list[str] = field(default_factory=list)


def _export(store: Store, queue: OutgoingQueue, cursor_key: str, build: Any, render: Any,
            size: int, sync_every: int, gpu_only: bool = False) -> ExportResult:
    """Records changed since the cursor (and running ones), ``size`` per message, in change order.

    Every ``sync_every`` messages the queue is flushed to disk and only then
    the cursor moves, just below the change number of the last queued record
    (later records of that change may still be unqueued); at the end it moves
    past everything read. A crash re-queues at most the records after the
    last flush (APEL keeps the latest record of a VMUUID, so a repeat
    replaces and never adds).
    """
    result = ExportResult()
    cursor = store.meta(cursor_key)
    highest = cursor
    pending: list[tuple[int, Any]] = []
    unsynced = 0

    def flush() -> None:
        nonlocal unsynced
        if pending:
            result.names.append(queue.add(render([rec for _, rec in pending]), durable=False))
            result.messages += 1
            result.records += len(pending)
            unsynced += 1
            if unsynced >= sync_every:
                queue.sync()
                unsynced = 0
                store.set_meta(cursor_key, max(cursor, pending[-1][0] - 1))
            pending.clear()

    for seq, usage in store.iter_for_export(cursor, gpu_only=gpu_only):
        highest = max(highest, seq)
        records = build(usage)
        if not records:
            result.skipped += 1
            continue
        for rec in records:
            pending.append((seq, rec))
            if len(pending) >= size:
                flush()
    flush()
    if unsynced:
        queue.sync()
    store.set_meta(cursor_key, highest)
    return result


def export_cloud(store: Store, queue: OutgoingQueue, ctx: ExportContext, now: int,
                 size: int = MAX_RECORDS_PER_MESSAGE, sync_every: int = SYNC_EVERY) -> ExportResult:
    """Queue APEL cloud records for allocations changed since the last export and for running ones."""
    def build(usage: Usage) -> list[tuple[Usage, str]]:
        text = render_cloud_usage(usage, ctx, now)
        return [] if text is None else [(usage, text)]

    checked: set[tuple[bool, bool]] = set()

    def render(batch: list[tuple[Usage, str]]) -> bytes:
        usage, text = batch[0]
        shape = (usage.end is None, usage.owner is None)  # the record layouts that can differ
        if shape in checked:
            return cloud_message([t for _, t in batch])
        checked.add(shape)
        ref = caso_cloud_record(usage, ctx, now)
        reference = ref.ssm_message() if ref is not None else ""
        if ctx.cpu_duration != "reserved":  # caso always derives one; this record leaves it out
            reference = "\n".join(line for line in reference.split("\n") if not line.startswith("CpuDuration:"))
        _check_against_caso(text, reference, f"APEL cloud record of allocation {usage.alloc_id}")
        return cloud_message([t for _, t in batch])

    return _export(store, queue, "cursor_apel_cloud", build, render, size, sync_every)


def export_accelerator(store: Store, queue: OutgoingQueue, ctx: ExportContext, now: int,
                       size: int = MAX_RECORDS_PER_MESSAGE, sync_every: int = SYNC_EVERY) -> ExportResult:
    """Queue monthly GPU accelerator records for GPU allocations changed since the last export or running."""

    def build(usage: Usage) -> list[dict[str, Any]]:
        return accelerator_records(usage, ctx, now)

    checked: set[bool] = set()

    def render(batch: list[dict[str, Any]]) -> bytes:
        shape = "GlobalUserName" in batch[0]
        if shape in checked:
            return accelerator_message(batch)
        checked.add(shape)
        reference = caso_accelerator_record(batch[0]).ssm_message()
        _check_against_caso(json.dumps(batch[0], separators=(",", ":")), reference,
                            f"APEL accelerator record of allocation {batch[0]['AssociatedRecord']}")
        return accelerator_message(batch)

    return _export(store, queue, "cursor_apel_gpu", build, render, size, sync_every, gpu_only=True)
