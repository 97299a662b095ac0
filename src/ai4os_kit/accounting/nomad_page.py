"""The usages of a whole page of allocation stubs at once: columns computed with numpy.

:func:`~ai4os_kit.accounting.nomad_listing.usage_from_stub` walks one stub's
tasks in Python; over millions of allocations that walk was the collector's
largest cost (~15 µs an allocation). Here a page is taken apart into flat
lists with list comprehensions (one pass per field over the page's tasks and
task states), every task time of the page is checked and converted by numpy
from one joined string, and the per-allocation sums and minimum/maximum are
segment reductions over the tasks of each allocation. The result is the
store's columns for the page, equal value for value to what the per-stub path
and the reference parser compute; whatever either of them would handle
differently (an id not in canonical form, a status it does not know, a task
time not in Nomad's UTC form, a number too large for exact float arithmetic)
is left to them: its position is returned as declined.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from ai4os_kit.accounting.model import CLIENT_STATUSES
from ai4os_kit.accounting.nomad_listing import _CANONICAL_UUID, AllocStub, _gpus
from ai4os_kit.accounting.nomad_parse import NodeInfo

_HEX = np.zeros(256, bool)
_HEX[np.frombuffer(b"0123456789abcdefABCDEF", np.uint8)] = True
_UUID_HEX = np.ones(36, bool)
_UUID_HEX[[8, 13, 18, 23]] = False  # where the hyphens are
_EXACT = 1 << 43  # 1000 * x stays below 2**53, where float64 holds every integer (as Python's int / float does)
_NS = 1_000_000_000
# 'YYYY-MM-DDTHH:MM:SS': where the digits are, and the separators between them
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_SEPARATORS = np.array([4, 7, 10, 13, 16])
_SEPARATOR_CHARS = np.frombuffer(b"--T::", np.uint8)
_ZERO_DAY = np.frombuffer(b"0001-01-01", np.uint8)  # Go's zero time: "not yet"
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
# digit values of _DIGITS -> year, month, day, hour, minute, second
_FIELD_WEIGHTS = np.zeros((14, 6), np.float32)
for _field, (_first, _weights) in enumerate(((0, (1000, 100, 10, 1)), (4, (10, 1)), (6, (10, 1)), (8, (10, 1)),
                                             (10, (10, 1)), (12, (10, 1)))):
    _FIELD_WEIGHTS[_first:_first + len(_weights), _field] = _weights
_TIME_LIMITS = np.array([24, 60, 60], np.int32)
_TIME_WEIGHTS = np.array([3600, 60, 1], np.int64)


def _epoch_days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of valid proleptic Gregorian dates (years >= 1)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def task_times(values: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(present, good, epoch seconds) of Nomad task times, or None where the page must go stub by stub.

    Present: neither empty nor Go's zero time. Good: in Nomad's UTC form
    ('YYYY-MM-DDTHH:MM:SS', optional fraction, 'Z') with a valid date and time,
    read as the reference parser reads it (the fraction dropped). A present
    time that is not good leaves its allocation to the reference.
    """
    count = len(values)
    texts = values if None not in values else [v or "" for v in values]
    lengths = np.array(list(map(len, texts)), np.int64) if count else np.zeros(0, np.int64)
    joined = "".join(texts)
    if not joined.isascii():
        return None
    if not joined:
        return np.zeros(count, bool), np.zeros(count, bool), np.zeros(count, np.int64)
    buf = np.frombuffer(joined.encode("ascii"), np.uint8)
    some = lengths > 0
    width = int(lengths.max())
    if width >= 20 and len(buf) == width * int(some.sum()):  # all of one length (Nomad's): a matrix, no gather
        rows = buf.reshape(-1, width)
        head, last = rows[:, :20], rows[:, width - 1]
        size = np.full(len(rows), 20)
    else:
        kept = lengths[some]
        starts = np.cumsum(kept) - kept
        head = buf[np.minimum(starts[:, None] + np.arange(20), len(buf) - 1)]  # the first 20 characters
        last = buf[starts + kept - 1]
        size = np.minimum(kept, 20)
    digits = head[:, _DIGITS] - np.uint8(48)  # a character below '0' wraps around past 9
    # year, month, day, hour, minute, second (exact in float32: below 2**24)
    fields = (digits.astype(np.float32) @ _FIELD_WEIGHTS).astype(np.int32)
    year, month, day = fields[:, 0], fields[:, 1], fields[:, 2]
    digits_ok = digits <= 9
    separators_ok = head[:, _SEPARATORS] == _SEPARATOR_CHARS
    date_ok = digits_ok[:, :8].all(axis=1) & separators_ok[:, :2].all(axis=1) & (size >= 10)
    zero = date_ok & (year == 1) & (month == 1) & (day == 1)  # '0001-01-01': Go's zero time
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + (leap & (month == 2))
    good = (date_ok & ~zero & (size >= 20) & (last == ord("Z")) & ((head[:, 19] == ord(".")) | (head[:, 19] == ord("Z")))
            & digits_ok[:, 8:].all(axis=1) & separators_ok[:, 2:].all(axis=1)
            & (year >= 1) & month_ok & (day >= 1) & (day <= days) & (fields[:, 3:] < _TIME_LIMITS).all(axis=1))
    seconds = _epoch_days(np.where(good, year, 1970).astype(np.int64), np.where(good, month, 1),
                          np.where(good, day, 1)) * 86400 + fields[:, 3:] @ _TIME_WEIGHTS
    present = np.zeros(count, bool)
    present[some] = ~zero
    good_all = np.zeros(count, bool)
    good_all[some] = good
    epoch = np.zeros(count, np.int64)
    epoch[some] = seconds
    return present, good_all, epoch


def _uuid_rows(joined: str) -> bool:
    """Whether ASCII text of 36-character ids holds only ids in the canonical UUID form (8-4-4-4-12 hex digits)."""
    rows = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(-1, 36)
    return bool(_HEX[rows[:, _UUID_HEX]].all() and (rows[:, ~_UUID_HEX] == ord("-")).all())


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(allocations with at least one item, offset of each one's first item) of items laid out allocation by allocation."""
    has = counts > 0
    return has, (np.cumsum(counts) - counts)[has]


def _gpu_usage(device_lists: Sequence[list[Any]], node: NodeInfo | None) -> tuple[int, str | None]:
    """(GPU count, model) of one allocation from its tasks' device lists, as the per-stub path computes them."""
    gpus: list[tuple[str, int]] | None = None
    for devices in device_lists:
        gpus = _gpus(devices, node, gpus)
    count = sum(c for _, c in gpus) if gpus else 0
    models = sorted({model for model, c in gpus if model and c}) if count and gpus else []
    return count, " + ".join(models) if models else None


_BIG, _SMALL = np.iinfo(np.int64).max, np.iinfo(np.int64).min
_FINAL = {status: int(final) for status, final in CLIENT_STATUSES.items()}


class PageParts(NamedTuple):
    """What a page's columns are made of before its nodes and owners are known.

    Computed from the typed stubs alone (:func:`page_parts`), so a process
    that only has the page's bytes can compute it (``page_decoder``), and
    picklable. Lists hold one value per allocation; the task arrays one value
    per task, allocation by allocation (``task_counts`` tasks each).
    ``devices`` holds, for the allocations with devices, their position and
    their tasks' device lists. ``declined`` marks what the per-stub path or the
    reference must decide.
    """

    ids: list[str]
    namespaces: list[str]
    job_ids: list[str]
    names: list[str]
    node_ids: list[str]
    statuses: list[str | None]
    create: list[int]
    start: list[int | None]
    end: list[int | None]
    disk: list[int]
    modify_index: list[int]
    declined: np.ndarray
    task_counts: np.ndarray
    shares: np.ndarray
    reserved: np.ndarray
    memory: np.ndarray
    devices: list[tuple[int, list[list[Any]]]]

    def take(self, keep: Sequence[int]) -> "PageParts":
        """The parts of the allocations at the positions ``keep`` (ascending), in that order."""
        positions = np.asarray(keep, np.int64)
        task_mask = np.repeat(np.isin(np.arange(len(self.ids)), positions), self.task_counts)
        renumber = {old: new for new, old in enumerate(keep)}
        lists = [[column[i] for i in keep] for column in self[:11]]
        return PageParts(*lists, self.declined[positions], self.task_counts[positions],  # type: ignore[arg-type]
                         self.shares[task_mask], self.reserved[task_mask], self.memory[task_mask],
                         [(renumber[i], d) for i, d in self.devices if i in renumber])


def page_columns(stubs: Sequence[AllocStub], nodes: Sequence[NodeInfo | None],
                 owners: Sequence[Any]) -> tuple[list[list[Any]], list[int]] | None:
    """The store's columns (``Usage`` field order) of a page's usages, and the positions declined.

    ``owners`` holds the owner of each stub's job; a stub whose owner is not a
    string (no owner in the job listing) is declined: the caller reads it in
    full. Declined positions hold placeholders. None: the page as a whole is
    outside what is computed here exactly (the caller goes stub by stub).
    """
    parts = page_parts(stubs)
    return finish_columns(parts, nodes, owners) if parts is not None else None


def page_parts(stubs: Sequence[AllocStub]) -> PageParts | None:
    """:class:`PageParts` of a page of typed stubs; None: the page must go stub by stub (see :func:`page_columns`)."""
    try:
        return _page_parts(stubs)
    except OverflowError:  # an integer beyond int64: Python's integers, stub by stub
        return None


def _ints(values: list[Any]) -> np.ndarray:
    return np.array(values, np.int64) if values else np.zeros(0, np.int64)


def _page_parts(stubs: Sequence[AllocStub]) -> PageParts | None:
    n = len(stubs)
    ids = [s.ID for s in stubs]
    statuses = [s.ClientStatus for s in stubs]
    finals = [_FINAL.get(s, 2) for s in statuses]  # type: ignore[arg-type]  # 2: not a status the fast path knows
    declined = np.array(finals, np.int8) == 2
    joined_ids = "".join(ids)
    if len(joined_ids) != 36 * n or not joined_ids.isascii() or not _uuid_rows(joined_ids):
        declined |= np.array([not _CANONICAL_UUID.fullmatch(i) for i in ids], bool)
    final = np.array(finals, np.int8) == 1

    # task times: every start and finish of the page in one array (the starts first)
    state_maps = [s.TaskStates for s in stubs]
    if None in state_maps:
        state_maps = [sm or {} for sm in state_maps]
    states = [state for sm in state_maps for state in sm.values()]
    times = task_times([t.StartedAt or "" for t in states] + [t.FinishedAt or "" for t in states])
    if times is None:
        return None
    present, good, epoch = times
    m = len(states)
    start = np.full(n, _BIG, np.int64)
    last = np.full(n, _SMALL, np.int64)
    has_state, state_at = _segments(_ints(list(map(len, state_maps))))
    if m:
        bad = present & ~good
        if bad.any():
            declined[has_state] |= np.logical_or.reduceat(bad[:m], state_at) | np.logical_or.reduceat(bad[m:], state_at)
        start[has_state] = np.minimum.reduceat(np.where(good[:m], epoch[:m], _BIG), state_at)
        last[has_state] = np.maximum.reduceat(np.where(good[m:], epoch[m:], _SMALL), state_at)
    started = start != _BIG
    ended = final & started
    modify = _ints([s.ModifyTime // _NS for s in stubs]) if ended.any() else np.zeros(n, np.int64)
    end = np.maximum(np.where(last != _SMALL, last, modify), start)

    # resources: every task of the page, allocation by allocation
    allocated = [s.AllocatedResources for s in stubs]
    if None in allocated:
        declined |= np.array([a is None for a in allocated], bool) & started  # the reference names the field
    task_maps = [a.Tasks if a is not None and a.Tasks else {} for a in allocated]
    tasks = [t for tm in task_maps for t in tm.values()]
    task_counts = _ints(list(map(len, task_maps)))
    k = len(tasks)
    cpus = [t.Cpu for t in tasks]
    if None in cpus:
        shares = _ints([c.CpuShares if c is not None else 0 for c in cpus])
        reserved = _ints([len(c.ReservedCores) if c is not None and c.ReservedCores else 0 for c in cpus])
    else:
        shares = _ints([c.CpuShares for c in cpus])
        reserved = _ints([len(r) if r else 0 for r in [c.ReservedCores for c in cpus]])
    memories = [t.Memory for t in tasks]
    memory = _ints([mem.MemoryMB if mem is not None else 0 for mem in memories] if None in memories else
                   [mem.MemoryMB for mem in memories])
    if k and (int(shares.max()) >= _EXACT or int(memory.max()) >= _EXACT or int(task_counts.max()) > 1000):
        return None  # beyond float64's exact integers: the per-stub path keeps Python's integers
    devices: list[tuple[int, list[list[Any]]]] = []
    if k and any(t.Devices for t in tasks):
        devices = [(i, lists) for i, tm in enumerate(task_maps) if (lists := [t.Devices for t in tm.values() if t.Devices])]

    start_at = start.tolist()
    for i in np.flatnonzero(~started).tolist():
        start_at[i] = None
    end_at: list[int | None] = [None] * n
    if ended.any():
        end_at = end.tolist()
        for i in np.flatnonzero(~ended).tolist():
            end_at[i] = None
    namespaces = [s.Namespace for s in stubs]
    if None in namespaces or "" in namespaces:
        namespaces = [ns or "default" for ns in namespaces]
    return PageParts(ids, namespaces, [s.JobID for s in stubs], [s.Name for s in stubs], [s.NodeID for s in stubs],
                     statuses, [s.CreateTime // _NS for s in stubs], start_at, end_at,
                     [a.Shared.DiskMB if a is not None and a.Shared is not None else 0 for a in allocated],
                     [s.ModifyIndex for s in stubs], declined, task_counts, shares, reserved, memory, devices)


def finish_columns(parts: PageParts, nodes: Sequence[NodeInfo | None],
                   owners: Sequence[Any]) -> tuple[list[list[Any]], list[int]] | None:
    """The store's columns and the positions declined (see :func:`page_columns`) of a page's parts."""
    n = len(parts.ids)
    declined = parts.declined
    if set(map(type, owners)) != {str}:
        declined = declined | np.array([type(o) is not str for o in owners], bool)
    shares, reserved, task_counts = parts.shares, parts.reserved, parts.task_counts
    per_core = np.array([(node.mhz_per_core or 0.0) if node is not None else 0.0 for node in nodes], np.float64)
    task_per_core = np.repeat(per_core, task_counts)
    convert = (reserved == 0) & (shares > 0) & (task_per_core != 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        converted = np.where(convert, np.rint(1000 * shares / np.where(convert, task_per_core, 1.0)), 0.0)
    if not (np.abs(converted) < 2.0 ** 53).all():
        return None
    task_milli = np.where(reserved > 0, 1000 * reserved, converted.astype(np.int64))
    millicores, mhz, memory_mb = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    has_task, task_at = _segments(task_counts)
    if len(shares):
        millicores[has_task] = np.add.reduceat(task_milli, task_at)
        mhz[has_task] = np.add.reduceat(shares, task_at)
        memory_mb[has_task] = np.add.reduceat(parts.memory, task_at)
    gpu_count: list[int] = [0] * n
    gpu_model: list[str | None] = [None] * n
    for i, device_lists in parts.devices:
        gpu_count[i], gpu_model[i] = _gpu_usage(device_lists, nodes[i])
    columns = [parts.ids, parts.namespaces, parts.job_ids, parts.names, list(owners), parts.node_ids,
               [node.datacenter if node is not None else None for node in nodes],
               millicores.tolist(), mhz.tolist(), memory_mb.tolist(), parts.disk, gpu_count, gpu_model,
               parts.create, parts.start, parts.end, parts.statuses, parts.modify_index]
    return columns, np.flatnonzero(declined).tolist()
