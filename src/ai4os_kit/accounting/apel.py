"""APEL records from stored usage: cloud records v0.4 and GPU accelerator records.

The record *models* are caso's (``caso.record.CloudRecord`` and
``AcceleratorRecord``): field names come from caso's alias maps and the text
is caso's ``ssm_message`` layout. Building a pydantic model per record costs
~0.25 ms, too slow for a million allocations, so records are rendered from
the store's columns with caso's own field maps, and in every export the first
record of each layout (running or ended, with or without an owner) is also
built through caso's model and compared byte for byte: if a caso upgrade
changes the format, the export stops with an error instead of sending
something EGI's loader would not read.

Message size: at most 1000 records (the default of APEL's own unloader, whose
hard limit is 5000) and at most 512 KiB of record text, so that a message
stays under the 1 MB that ARGO AMS accepts once ``ssmsend`` has signed it and
AMS has base64-encoded it (x 4/3). cASO sends 100 records per message; fewer,
larger messages mean fewer files in the queue and fewer AMS requests.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from caso.record import AcceleratorRecord, CloudRecord, map_cloud_fields

from ai4os_kit import __version__
from ai4os_kit.accounting.model import APEL_STATUS, Usage
from ai4os_kit.accounting.ssmqueue import OutgoingQueue
from ai4os_kit.accounting.store import Store
from ai4os_kit.errors import KitError

CLOUD_HEADER = "APEL-cloud-message: v0.4\n"
ACCELERATOR_TYPE = "APEL-accelerator-message"
ACCELERATOR_VERSION = "0.1"
MAX_RECORDS_PER_MESSAGE = 1000  # APEL's unloader default (its maximum is 5000)
MAX_MESSAGE_BYTES = 512 * 1024  # record text per message: under ARGO AMS's 1 MB once signed and base64-encoded
SYNC_EVERY = 50  # messages queued between two flushes to disk (and cursor moves)
# The store columns each exporter reads (the fewer, the faster: building Python values is the cost).
CLOUD_COLUMNS = ("alloc_id", "namespace", "name", "owner", "datacenter", "cpu_millicores", "memory_mb", "disk_mb",
                 "start_time", "end_time", "status")
GPU_COLUMNS = ("alloc_id", "namespace", "owner", "datacenter", "gpu_count", "gpu_model", "start_time", "end_time")
_USAGE_FIELD = {"start_time": "start", "end_time": "end"}  # store column -> Usage field, where they differ

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


def cloud_renderer(ctx: ExportContext, now: int) -> Callable[..., str | None]:
    """A function of the :data:`CLOUD_COLUMNS` values that renders one record (None: not accounted to EGI).

    It writes what ``render_cloud(cloud_fields(...))`` writes, in the fixed
    sorted order of caso's keys, several times faster (the export's hot path);
    the tests and every export's first record of each layout check it against
    caso's model.
    """
    sites = ctx.site_names
    head = f"CloudComputeService: {ctx.compute_service}\nCloudType: {ctx.cloud_type}\nCpuCount: "
    reserved = ctx.cpu_duration == "reserved"
    status_of = APEL_STATUS
    groups: dict[str, tuple[str, str] | None] = {}  # namespace -> (FQAN, LocalGroupId); None: no VO

    def group(namespace: str) -> tuple[str, str] | None:
        vo = ctx.vos.get(namespace, ctx.default_vo)
        groups[namespace] = None if vo is None else (ctx.fqan_format.format(vo=vo), ascii_text(namespace))
        return groups[namespace]

    def render(alloc_id: str, namespace: str, name: str, owner: str | None, datacenter: str | None,
               millicores: int, memory_mb: int, disk_mb: int, start: int | None, end: int | None,
               status: str) -> str | None:
        site = sites.get(datacenter or "")
        if start is None or site is None:
            return None
        fqan_group = groups[namespace] if namespace in groups else group(namespace)
        if fqan_group is None:
            return None
        wall = (now if end is None else end) - start
        if wall < 0:
            wall = 0
        cores = 0 if millicores <= 0 else ((millicores + 500) // 1000 or 1)
        if owner and not (owner.isascii() and owner.isprintable()):
            owner = ascii_text(owner)
        if not (name.isascii() and name.isprintable()):
            name = ascii_text(name)
        cpu = f"CpuDuration: {wall * cores or 1}\n" if reserved else ""
        user = f"GlobalUserName: {owner}\nLocalGroupId: {fqan_group[1]}\nLocalUserId: {owner}\n" if owner else \
            f"LocalGroupId: {fqan_group[1]}\nLocalUserId: unknown\n"
        return (f"{head}{cores}\n{cpu}Disk: {-(-disk_mb // 1024)}\nEndTime: {end or 0}\nFQAN: {fqan_group[0]}\n"
                f"{user}MachineName: {name}\nMemory: {memory_mb}\nPublicIPCount: 0\nSiteName: {site}\n"
                f"StartTime: {start}\nStatus: {status_of[status]}\nVMUUID: {alloc_id}\nWallDuration: {wall or 1}")

    return render


def cloud_sql(ctx: ExportContext, now: int) -> tuple[str, dict[str, Any]]:
    """SQL over the store's columns that renders what :func:`cloud_renderer` renders, and its parameters.

    Selects ``(text, name, namespace, owner)``: the record text as the
    renderer writes it where the free text fields are printable ASCII (what
    :func:`cloud_text_checker` checks; other rows go through the renderer,
    which drops what APEL would not take), and those fields. One ``printf``
    writes the whole record (one call a row: its text is built once, where a
    ``||`` between pieces copied it again for each piece); printf's ``%s``
    stops at a NUL, but a field with a NUL is not printable, so its row is
    rendered in Python anyway. Sites and VOs are bound parameters; rows
    without a site or a VO must be filtered out by the query (:func:`_filters`).
    """
    def literal(text: str) -> str:  # a constant inside a printf format
        return text.replace("%", "%%")

    params: dict[str, Any] = {"now": now}
    for i, (dc, site) in enumerate(ctx.site_names.items()):
        params[f"dc{i}"], params[f"site{i}"] = dc, site
    for i, (ns, vo) in enumerate(ctx.vos.items()):
        params[f"ns{i}"], params[f"fqan{i}"] = ns, ctx.fqan_format.format(vo=vo)
    params["default_fqan"] = ctx.fqan_format.format(vo=ctx.default_vo) if ctx.default_vo else None
    site = "CASE datacenter " + " ".join(f"WHEN :dc{i} THEN :site{i}" for i in range(len(ctx.site_names))) + " END"
    fqan = "CASE namespace " + " ".join(f"WHEN :ns{i} THEN :fqan{i}" for i in range(len(ctx.vos))) + \
        " ELSE :default_fqan END"
    status = "CASE status " + " ".join(f"WHEN '{nomad}' THEN '{apel}'" for nomad, apel in APEL_STATUS.items()) + " END"
    wall = "MAX(COALESCE(end_time, :now) - start_time, 0)"
    cores = "(CASE WHEN cpu_millicores <= 0 THEN 0 ELSE MAX((cpu_millicores + 500) / 1000, 1) END)"
    reserved = ctx.cpu_duration == "reserved"
    params["record"] = (f"CloudComputeService: {literal(ctx.compute_service)}\nCloudType: {literal(ctx.cloud_type)}\n"
                        f"CpuCount: %d\n{'CpuDuration: %d' + chr(10) if reserved else ''}Disk: %d\nEndTime: %d\n"
                        "FQAN: %s\n%sLocalGroupId: %s\nLocalUserId: %s\nMachineName: %s\nMemory: %d\n"
                        "PublicIPCount: 0\nSiteName: %s\nStartTime: %d\nStatus: %s\nVMUUID: %s\nWallDuration: %d")
    owned = "(owner IS NOT NULL AND owner != '')"
    text = (f"printf(:record, {cores}, {f'MAX({wall} * {cores}, 1), ' if reserved else ''}(disk_mb + 1023) / 1024, "
            f"COALESCE(end_time, 0), {fqan}, CASE WHEN {owned} THEN 'GlobalUserName: ' || owner || char(10) "
            f"ELSE '' END, namespace, CASE WHEN {owned} THEN owner ELSE 'unknown' END, name, memory_mb, {site}, "
            f"start_time, {status}, alloc_id, MAX({wall}, 1))")
    return f"{text}, name, namespace, owner", params


def _printable(text: str | None) -> bool:
    return text is None or (text.isascii() and text.isprintable())


def cloud_text_checker() -> Callable[[str, str, str | None], bool]:
    """Whether a row's free text fields (name, namespace, owner) are printable ASCII, so SQL's text is the record.

    Other rows are rendered in Python (:func:`cloud_renderer` drops what APEL
    would not take). Namespaces and owners repeat: each is checked once.
    """
    seen: dict[str | None, bool] = {}

    def ok(name: str, namespace: str, owner: str | None) -> bool:
        if not (name.isascii() and name.isprintable()):
            return False
        for value in (namespace, owner):
            if value not in seen:
                seen[value] = _printable(value)
            if not seen[value]:
                return False
        return True

    return ok


def render_cloud_usage(usage: Usage, ctx: ExportContext, now: int) -> str | None:
    """``render_cloud(cloud_fields(...))`` of one allocation, through :func:`cloud_renderer`."""
    return cloud_renderer(ctx, now)(*(getattr(usage, _USAGE_FIELD.get(c, c)) for c in CLOUD_COLUMNS))


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


def accelerator_builder(ctx: ExportContext, now: int) -> Callable[..., list[dict[str, Any]]]:
    """A function of the :data:`GPU_COLUMNS` values that builds an allocation's monthly GPU records."""
    sites = ctx.site_names
    fqans: dict[str, str | None] = {}

    def build(alloc_id: str, namespace: str, owner: str | None, datacenter: str | None, gpu_count: int,
              gpu_model: str | None, start: int | None, end: int | None) -> list[dict[str, Any]]:
        site = sites.get(datacenter or "")
        if gpu_count <= 0 or start is None or site is None:
            return []
        if namespace not in fqans:
            vo = ctx.vos.get(namespace, ctx.default_vo)
            fqans[namespace] = None if vo is None else ctx.fqan_format.format(vo=vo)
        fqan = fqans[namespace]
        if fqan is None:
            return []
        if owner and not (owner.isascii() and owner.isprintable()):
            owner = ascii_text(owner)
        model = ascii_text(gpu_model or "unknown")
        out = []
        for year, month, lo, hi in _months(start, now if end is None else end):
            rec: dict[str, Any] = {"SiteName": site, "CloudType": ctx.cloud_type,
                                   "CloudComputeService": ctx.compute_service, "AssociatedRecord": alloc_id}
            if owner:
                rec["GlobalUserName"] = owner
            rec.update(FQAN=fqan, Count=gpu_count, AvailableDuration=hi - lo, MeasurementMonth=month,
                       MeasurementYear=year, AssociatedRecordType="cloud", Type="GPU", Model=model,
                       ActiveDuration=hi - lo)
            out.append(rec)
        return out

    return build


_MONTH_STARTS = [calendar.timegm((1970 + i // 12, i % 12 + 1, 1, 0, 0, 0)) for i in range(12 * 231)]  # to 2200


def _months_fast(start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """:func:`_months` by a search in a table of month starts (a datetime per allocation costs more)."""
    i = bisect.bisect_right(_MONTH_STARTS, start) - 1
    if i < 0 or end >= _MONTH_STARTS[-1]:
        yield from _months(start, end)
        return
    while True:
        first, nxt = _MONTH_STARTS[i], _MONTH_STARTS[i + 1]
        lo, hi = max(start, first), min(end, nxt)
        if hi > lo or (lo == hi == start):
            yield 1970 + i // 12, i % 12 + 1, lo, hi
        if end <= nxt:
            return
        i += 1


def accelerator_text_builder(ctx: ExportContext, now: int) -> Callable[..., list[str]]:
    """A function of the :data:`GPU_COLUMNS` values that writes ``json.dumps`` of each record of
    :func:`accelerator_builder` directly (the export's hot path; the tests and each export's first record
    of each layout check it)."""
    dumps = json.dumps
    heads: dict[tuple[str, str], str | None] = {}  # (datacenter, namespace) -> text up to AssociatedRecord
    fqans: dict[str, str] = {}
    owners: dict[str, str] = {}
    models: dict[str | None, str] = {}
    tail = ', "AssociatedRecordType": "cloud", "Type": "GPU", "Model": '

    def head(datacenter: str, namespace: str) -> str | None:
        site = ctx.site_names.get(datacenter)
        vo = ctx.vos.get(namespace, ctx.default_vo)
        text = None
        if site is not None and vo is not None:
            fqans[namespace] = dumps(ctx.fqan_format.format(vo=vo))
            text = (f'{{"SiteName": {dumps(site)}, "CloudType": {dumps(ctx.cloud_type)}, '
                    f'"CloudComputeService": {dumps(ctx.compute_service)}, "AssociatedRecord": ')
        heads[(datacenter, namespace)] = text
        return text

    def build(alloc_id: str, namespace: str, owner: str | None, datacenter: str | None, gpu_count: int,
              gpu_model: str | None, start: int | None, end: int | None) -> list[str]:
        if gpu_count <= 0 or start is None:
            return []
        key = (datacenter or "", namespace)
        first = heads[key] if key in heads else head(*key)
        if first is None:
            return []
        if owner:
            if owner not in owners:
                clean = ascii_text(owner)
                owners[owner] = f', "GlobalUserName": {dumps(clean)}' if clean else ""
            who = owners[owner]
        else:
            who = ""
        if gpu_model not in models:
            models[gpu_model] = dumps(ascii_text(gpu_model or "unknown"))
        start_of = f"{first}{dumps(alloc_id)}{who}, \"FQAN\": {fqans[namespace]}, \"Count\": {gpu_count}, "
        end_of = f"{tail}{models[gpu_model]}, \"ActiveDuration\": "
        return [f'{start_of}"AvailableDuration": {hi - lo}, "MeasurementMonth": {month}, "MeasurementYear": '
                f'{year}{end_of}{hi - lo}}}' for year, month, lo, hi in _months_fast(start, now if end is None else end)]

    return build


def accelerator_texts(usage: Usage, ctx: ExportContext, now: int) -> list[str]:
    """:func:`accelerator_text_builder` of one allocation."""
    return accelerator_text_builder(ctx, now)(*(getattr(usage, _USAGE_FIELD.get(c, c)) for c in GPU_COLUMNS))


def accelerator_records(usage: Usage, ctx: ExportContext, now: int) -> list[dict[str, Any]]:
    """Monthly GPU accelerator records of one allocation (as caso builds them for GPU flavors)."""
    return accelerator_builder(ctx, now)(*(getattr(usage, _USAGE_FIELD.get(c, c)) for c in GPU_COLUMNS))


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


_ACC_HEAD = json.dumps({"Type": ACCELERATOR_TYPE, "Version": ACCELERATOR_VERSION, "UsageRecords": []})[:-2]


def _accelerator_message_of(encoded: list[str]) -> bytes:
    """:func:`accelerator_message` of records already encoded one by one with ``json.dumps``."""
    return f"{_ACC_HEAD}{', '.join(encoded)}]}}".encode("ascii")


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
    last_change: int = 0  # the highest change number read


def _export(store: Store, queue: OutgoingQueue, cursor_key: str | None,
            rows: Callable[[int], Iterable[tuple[Any, ...]]], build: Callable[[tuple[Any, ...]], list[str]],
            message: Callable[[list[str]], bytes], size: int, max_bytes: int, sync_every: int,
            start: int = 0) -> ExportResult:
    """Records of allocations changed since the cursor (and running ones), in change order.

    ``rows(cursor)`` yields ``(change_seq, ...)`` rows; ``build`` turns one
    into its records (text); ``message`` joins at most ``size`` records of at
    most ``max_bytes`` bytes of text into one message. Every ``sync_every``
    messages the queue is flushed to disk and only then the cursor moves,
    just below the change number of the last queued record (later records of
    that change may still be unqueued); at the end it moves past everything
    read. A crash re-queues at most the records after the last flush (APEL
    keeps the latest record of a VMUUID, so a repeat replaces and never adds).
    Without ``cursor_key`` it reads after the change number ``start`` and moves no cursor.
    """
    result = ExportResult()
    cursor = highest = last = store.meta(cursor_key) if cursor_key else start
    pending: list[str] = []
    pending_bytes = 0
    unsynced = 0

    def flush() -> None:
        nonlocal unsynced, pending_bytes
        if pending:
            result.names.append(queue.add(message(pending), durable=False))
            result.messages += 1
            result.records += len(pending)
            unsynced += 1
            if unsynced >= sync_every:
                queue.sync()
                unsynced = 0
                if cursor_key:
                    store.set_meta(cursor_key, max(cursor, last - 1))
            pending.clear()
            pending_bytes = 0

    for row in rows(cursor):
        seq = row[0]
        if seq > highest:
            highest = seq
        for text in build(row):
            if pending and (len(pending) >= size or pending_bytes + len(text) > max_bytes):
                flush()
            pending.append(text)
            pending_bytes += len(text) + 4  # and its separator
            last = seq
    flush()
    if unsynced:
        queue.sync()
    if cursor_key:
        store.set_meta(cursor_key, highest)
    result.last_change = highest
    return result


def _until(rows: Iterable[tuple[Any, ...]], cursor: int, stop: Callable[[int], bool]) -> Iterator[tuple[Any, ...]]:
    """``rows`` of :meth:`Store.export_select` up to the first changed row whose change number ``stop`` refuses.

    ``stop`` is asked once per change number above ``cursor`` (the changed rows come in change order).
    """
    current = cursor
    for row in rows:
        seq = row[0]
        if seq > current:
            if stop(seq):
                return
            current = seq
        yield row


def _filters(ctx: ExportContext) -> dict[str, Any]:
    """Read only rows of datacenters with an APEL site and, without a default VO, of namespaces with a VO."""
    return {"datacenters": list(ctx.site_names), "namespaces": None if ctx.default_vo else list(ctx.vos)}


def export_cloud(store: Store, queue: OutgoingQueue, ctx: ExportContext, now: int,
                 size: int = MAX_RECORDS_PER_MESSAGE, sync_every: int = SYNC_EVERY,
                 max_bytes: int = MAX_MESSAGE_BYTES, stop: Callable[[int], bool] | None = None,
                 after: int | None = None) -> ExportResult:
    """Queue APEL cloud records for allocations changed since the last export and for running ones.

    The record text is built by SQLite (:func:`cloud_sql`); a row whose text
    fields need cleaning is rendered by :func:`cloud_renderer`. The first
    record of each layout is compared with caso's model.

    Split between two processes (``exporters``): ``stop(change)`` is asked
    before each change number and ends the export before the first it
    refuses (the cursor moves to the last change read); ``after`` exports
    only the allocations changed after that change number (a tail another
    process left), moves no cursor and counts nothing as skipped.
    """
    render = cloud_renderer(ctx, now)
    checked: set[tuple[bool, bool]] = set()
    due = store.count_for_export(store.meta("cursor_apel_cloud")) if after is None else 0
    select, params = cloud_sql(ctx, now)

    text_ok = cloud_text_checker()

    def build(row: tuple[Any, ...]) -> list[str]:
        text = row[1]
        if not text_ok(row[2], row[3], row[4]):  # a field to clean: the Python renderer drops what APEL refuses
            alloc_id = text.rsplit("\nVMUUID: ", 1)[1].split("\n", 1)[0]
            usage = store.get(alloc_id)
            text = render(*(getattr(usage, _USAGE_FIELD.get(c, c)) for c in CLOUD_COLUMNS)) if usage else None
            if text is None:
                return []
        shape = ("\nEndTime: 0\n" in text, "\nGlobalUserName: " in text)  # the record layouts that can differ
        if shape not in checked:
            checked.add(shape)
            alloc_id = text.rsplit("\nVMUUID: ", 1)[1].split("\n", 1)[0]
            usage = store.get(alloc_id)
            ref = caso_cloud_record(usage, ctx, now) if usage is not None else None
            reference = ref.ssm_message() if ref is not None else ""
            if ctx.cpu_duration != "reserved":  # caso always derives one; this record leaves it out
                reference = "\n".join(line for line in reference.split("\n") if not line.startswith("CpuDuration:"))
            _check_against_caso(text, reference, f"APEL cloud record of allocation {alloc_id}")
        return [text]

    def rows(cursor: int) -> Iterable[tuple[Any, ...]]:
        selected = store.export_select(cursor, select, params, running=after is None, **_filters(ctx))
        return selected if stop is None else _until(selected, cursor, stop)

    result = _export(store, queue, "cursor_apel_cloud" if after is None else None, rows, build, cloud_message, size,
                     max_bytes, sync_every, start=after or 0)
    if after is None:
        result.skipped = due - result.records  # not accounted to EGI: no APEL site or no VO
    return result


def export_accelerator(store: Store, queue: OutgoingQueue, ctx: ExportContext, now: int,
                       size: int = MAX_RECORDS_PER_MESSAGE, sync_every: int = SYNC_EVERY,
                       max_bytes: int = MAX_MESSAGE_BYTES) -> ExportResult:
    """Queue monthly GPU accelerator records for GPU allocations changed since the last export or running."""
    records_of = accelerator_builder(ctx, now)
    texts_of = accelerator_text_builder(ctx, now)
    checked: set[bool] = set()
    due = store.count_for_export(store.meta("cursor_apel_gpu"), gpu_only=True)
    exported = 0

    def build(row: tuple[Any, ...]) -> list[str]:
        nonlocal exported
        texts = texts_of(*row[1:])
        if not texts:
            return []
        exported += 1
        shape = '"GlobalUserName": ' in texts[0]
        if shape not in checked:
            checked.add(shape)
            records = records_of(*row[1:])
            _check_against_caso("\n".join(texts), "\n".join(json.dumps(rec) for rec in records),
                                f"APEL accelerator text of allocation {row[1]}")
            _check_against_caso(json.dumps(records[0], separators=(",", ":")),
                                caso_accelerator_record(records[0]).ssm_message(),
                                f"APEL accelerator record of allocation {row[1]}")
        return texts

    result = _export(store, queue, "cursor_apel_gpu",
                     lambda cursor: store.export_rows(cursor, GPU_COLUMNS, gpu_only=True, **_filters(ctx)),
                     build, _accelerator_message_of, size, max_bytes, sync_every)
    result.skipped = due - exported  # not accounted to EGI: no APEL site or no VO
    return result
