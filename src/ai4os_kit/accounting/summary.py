"""Usage summaries as the CSV files PAPI's statistics endpoint reads.

PAPI (``/v1/stats/deployments``) loads ``<ACCOUNTING_PTH>/summaries/
<namespace>-{timeseries,users-agg,full-agg}.csv`` (``;``-separated; every
column but ``date`` and ``owner`` an integer). Values here are exact, from
allocation intervals rather than periodic snapshots:

- timeseries: per UTC day, the mean of what was in use over the day
  (cpu_num, cpu_MHz, memory_MB, disk_MB, gpu_num) and the mean number of
  allocations ``queued`` (created, not yet started) and ``running``;
- users-agg: per owner, resource-days (e.g. gpu_num 3 = three GPU-days);
- full-agg: the namespace total of users-agg.

Sums are kept as exact integers (resource-seconds, CPU in millicores) and only
divided by a day when the tables are written.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from ai4os_kit.accounting.files import atomic_write
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.timeslices import DAY, iso_day
from ai4os_kit.errors import KitError

if TYPE_CHECKING:
    from ai4os_kit.accounting.store import Store

RESOURCES = ("cpu_num", "cpu_MHz", "memory_MB", "disk_MB", "gpu_num")
SCALE = (1000, 1, 1, 1, 1)  # sums are kept in whole units: CPU in millicores
TIMESERIES = ("date",) + RESOURCES + ("queued", "running")
USERS = ("owner",) + RESOURCES
NO_OWNER = "unknown"
WIDTH = len(RESOURCES) + 2  # a day: resource-seconds, then queued and running allocation-seconds


class Summaries:
    """Resource-seconds per namespace and UTC day, and per namespace and owner, as exact integers.

    :meth:`add_store` sums the store's columns with numpy (a million
    allocations take a few seconds); :meth:`add_all` is the plain reference,
    one allocation and one day at a time. Both give the same integers.
    """

    def __init__(self) -> None:
        # namespace -> day (Unix seconds) -> [resource-seconds..., queued seconds, running seconds]
        self.daily: dict[str, dict[int, list[int]]] = defaultdict(dict)
        # namespace -> owner -> [resource-seconds...]
        self.users: dict[str, dict[str, list[int]]] = defaultdict(dict)

    # -- the reference
    def add_all(self, usages: Iterable[Usage], now: int) -> "Summaries":
        """Add allocations one by one, splitting their intervals at UTC midnight."""
        for u in usages:
            end = min(now if u.end is None else u.end, now)
            queued_end = min(end if u.start is None else u.start, now)
            self._add_interval(u.namespace, u.create, queued_end, [0] * len(RESOURCES), len(RESOURCES))
            if u.start is None:
                continue
            amounts = [u.cpu_millicores, u.cpu_mhz, u.memory_mb, u.disk_mb, u.gpu_count]
            self._add_interval(u.namespace, u.start, end, amounts, len(RESOURCES) + 1)
            secs = max(end - u.start, 0)
            if secs > 0:
                row = self.users[u.namespace].setdefault(u.owner or NO_OWNER, [0] * len(RESOURCES))
                for j, amount in enumerate(amounts):
                    row[j] += amount * secs
        return self

    def _add_interval(self, namespace: str, lo: int, hi: int, amounts: list[int], count_column: int) -> None:
        day = lo - lo % DAY
        while hi > lo:
            part = min(hi, day + DAY) - lo
            row = self.daily[namespace].setdefault(day, [0] * WIDTH)
            row[count_column] += part
            for j, amount in enumerate(amounts):
                row[j] += amount * part
            day += DAY
            lo = day

    # -- the fast path
    def add_store(self, store: "Store", now: int) -> "Summaries":
        """Add every allocation of the store, in chunks of plain integer columns summed with numpy.

        No interval is walked day by day: per namespace and UTC day the
        amounts (W) and the amounts times the seconds past midnight (R) of the
        interval ends falling on that day are summed. An interval [lo, hi)
        with amount w uses, on day d, w * (clamp(hi - d, 0, DAY) - clamp(lo - d,
        0, DAY)); summed over intervals that is DAY * (W of the days after d)
        + R(d), for the ends minus the same for the starts.
        """
        ends: dict[str, dict[int, list[int]]] = defaultdict(dict)
        for numbers, keys in store.summary_chunks(self.CHUNK):
            self._add_chunk(numbers, keys, now, ends)
        for namespace, by_day in ends.items():
            days = self.daily[namespace]
            later = [0] * WIDTH  # W summed over the days after the current one
            for day in range(max(by_day), min(by_day) - DAY, -DAY):
                found = by_day.get(day)
                values = [DAY * w + (found[WIDTH + j] if found else 0) for j, w in enumerate(later)]
                if any(values):
                    row = days.setdefault(day, [0] * WIDTH)
                    for j, value in enumerate(values):
                        row[j] += value
                if found:
                    later = [w + found[j] for j, w in enumerate(later)]
        return self

    CHUNK = 100_000
    RUN_COLUMNS = list(range(len(RESOURCES))) + [len(RESOURCES) + 1]  # the resources, then "running"
    QUEUE_COLUMNS = [len(RESOURCES)]  # "queued"

    def _add_chunk(self, numbers: list[tuple[int, ...]], keys: list[tuple[str]], now: int,
                   ends: dict[str, dict[int, list[int]]]) -> None:
        distinct = list(set(keys))  # (namespace NUL owner,), indexed by code
        owner = np.fromiter(map({k: i for i, k in enumerate(distinct)}.__getitem__, keys), np.int64, len(keys))
        pairs = [tuple(k.split("\0", 1)) for (k,) in distinct]  # (namespace, owner)
        names = sorted({n for n, _ in pairs})
        ns = np.array([names.index(n) for n, _ in pairs], dtype=np.int64)[owner]
        num = np.fromiter(itertools.chain.from_iterable(numbers), np.int64, 8 * len(numbers)).reshape(len(numbers), 8)
        create, start, end, amounts = num[:, 0], num[:, 1], num[:, 2], num[:, 3:]
        started = start >= 0
        end = np.minimum(np.where(end >= 0, end, now), now)
        queued_end = np.minimum(np.where(started, start, end), now)
        ran = started & (end > start)
        waited = queued_end > create
        run_weights = np.concatenate([amounts[ran], np.ones((int(ran.sum()), 1), np.int64)], axis=1)
        queue_weights = np.ones((int(waited.sum()), 1), np.int64)
        for at, sign, keep, weights, columns in ((end, 1, ran, run_weights, self.RUN_COLUMNS),
                                                 (start, -1, ran, run_weights, self.RUN_COLUMNS),
                                                 (queued_end, 1, waited, queue_weights, self.QUEUE_COLUMNS),
                                                 (create, -1, waited, queue_weights, self.QUEUE_COLUMNS)):
            if not len(weights):
                continue
            x = at[keep]
            day = x // DAY
            first, span = int(day.min()), int(day.max() - day.min()) + 1
            bins = ns[keep] * span + (day - first)
            sums = _exact_sums(bins, np.concatenate([weights, weights * (x - day * DAY)[:, None]], axis=1),
                               len(names) * span)
            width = len(columns)
            for b, values in sums.items():
                row = ends[names[b // span]].setdefault((first + b % span) * DAY, [0] * (2 * WIDTH))
                for j, column in enumerate(columns):
                    row[column] += sign * values[j]
                    row[WIDTH + column] += sign * values[width + j]
        # per owner: resource-seconds of the allocations that ran
        if ran.any():
            secs = (end - start)[ran]
            for code, values in _exact_sums(owner[ran], amounts[ran] * secs[:, None], len(pairs)).items():
                namespace, who = pairs[code]
                row = self.users[namespace].setdefault(who or NO_OWNER, [0] * len(RESOURCES))
                for j, value in enumerate(values):
                    row[j] += value

    def tables(self, namespace: str) -> dict[str, list[list[object]]]:
        """The three PAPI tables of one namespace (header row first)."""
        ns_days = self.daily.get(namespace, {})
        per_day = SCALE + (1, 1)
        series: list[list[object]] = [list(TIMESERIES)]
        if ns_days:
            first, last = min(ns_days), max(ns_days)
            zero = [0] * WIDTH
            for day in range(first, last + DAY, DAY):
                series.append([iso_day(day)] + [round(v / (k * DAY)) for v, k in zip(ns_days.get(day, zero), per_day)])
        users: list[list[object]] = [list(USERS)]
        totals = [0] * len(RESOURCES)
        for owner, values in sorted(self.users.get(namespace, {}).items()):
            users.append([owner] + [round(v / (k * DAY)) for v, k in zip(values, SCALE)])
            totals = [a + b for a, b in zip(totals, values)]
        full: list[list[object]] = [list(RESOURCES), [round(v / (k * DAY)) for v, k in zip(totals, SCALE)]]
        return {"timeseries": series, "users-agg": users, "full-agg": full}

    def namespaces(self) -> list[str]:
        return sorted(set(self.daily) | set(self.users))


def _exact_sums(bins: Any, values: Any, size: int) -> dict[int, list[int]]:
    """Per bin (0 <= bin < size) that has rows: the exact sums of the columns of its rows, as Python ints.

    Sums are taken with ``np.bincount`` (float64) over as many rows at a time
    as keep every partial sum below 2**53, where float64 holds integers exactly
    (all rows at once for any real usage), then added up as Python ints.
    """
    out: dict[int, list[int]] = {}
    if not len(bins):
        return out
    biggest = max(1, int(values.max()), -int(values.min()))
    step = max(1, (1 << 53) // biggest)
    width = values.shape[1]
    for lo in range(0, len(bins), step):
        part_bins, part = bins[lo:lo + step], values[lo:lo + step]
        sums = np.empty((size, width), np.int64)
        for j in range(width):
            sums[:, j] = np.bincount(part_bins, weights=part[:, j], minlength=size)
        for b in np.flatnonzero(np.bincount(part_bins, minlength=size)).tolist():
            row = out.setdefault(b, [0] * width)
            for j, value in enumerate(sums[b].tolist()):
                row[j] += value
    return out


def write_summaries(summaries: Summaries, out_dir: Path, namespaces: Iterable[str] = ()) -> list[Path]:
    """Write ``<namespace>-{timeseries,users-agg,full-agg}.csv``; each file replaced atomically."""
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for namespace in sorted(set(summaries.namespaces()) | set(namespaces)):
            for name, rows in summaries.tables(namespace).items():
                buf = io.StringIO()
                csv.writer(buf, delimiter=";", lineterminator="\n").writerows(rows)
                path = out_dir / f"{namespace}-{name}.csv"
                atomic_write(path, buf.getvalue())
                written.append(path)
    except OSError as exc:
        raise KitError(f"cannot write the usage summaries to {out_dir}: {exc.strerror or exc}; "
                       "check summaries_dir in the accounting config (free space, permissions)") from None
    return written
