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
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ai4os_kit.accounting.files import atomic_write
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.timeslices import DAY, iso_day
from ai4os_kit.errors import KitError

RESOURCES = ("cpu_num", "cpu_MHz", "memory_MB", "disk_MB", "gpu_num")
TIMESERIES = ("date",) + RESOURCES + ("queued", "running")
USERS = ("owner",) + RESOURCES
NO_OWNER = "unknown"


class Summaries:
    """Accumulates resource-seconds per namespace and UTC day, and per namespace and owner.

    Allocations are taken in chunks and split at day boundaries with numpy,
    so a million allocations take seconds and little memory.
    """

    CHUNK = 100_000

    def __init__(self) -> None:
        # namespace -> day (Unix seconds) -> [resource seconds..., queued seconds, running seconds]
        self.daily: dict[str, dict[int, list[float]]] = defaultdict(dict)
        # namespace -> owner -> [resource seconds...]
        self.users: dict[str, dict[str, list[float]]] = defaultdict(dict)

    def add_all(self, usages: Iterable[Usage], now: int) -> "Summaries":
        """Add allocations (Usage rows)."""
        return self.add_rows(((u.namespace, u.owner, u.create, -1 if u.start is None else u.start,
                               -1 if u.end is None else u.end, u.cpu_millicores, u.cpu_mhz, u.memory_mb,
                               u.disk_mb, u.gpu_count) for u in usages), now)

    def add_rows(self, rows: Iterable[tuple[Any, ...]], now: int) -> "Summaries":
        """Add rows shaped like :meth:`Store.iter_summary_rows` (start/end -1 when unknown)."""
        chunk: list[tuple[Any, ...]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= self.CHUNK:
                self._add_chunk(chunk, now)
                chunk = []
        if chunk:
            self._add_chunk(chunk, now)
        return self

    def _add_chunk(self, chunk: list[tuple[Any, ...]], now: int) -> None:
        names = sorted({row[0] for row in chunk})
        ns_index = {n: i for i, n in enumerate(names)}
        ns = np.fromiter((ns_index[row[0]] for row in chunk), np.int64, len(chunk))
        numbers = np.array([row[2:] for row in chunk], dtype=np.int64).reshape(len(chunk), 8)
        create, start, end = numbers[:, 0], numbers[:, 1], numbers[:, 2]
        started = start >= 0
        end = np.minimum(np.where(end >= 0, end, now), now)
        amounts = numbers[:, 3:].astype(np.float64)
        amounts[:, 0] /= 1000  # millicores -> cores
        # queued: created until started (or until it ended / now, if it never started)
        queued_end = np.minimum(np.where(started, start, end), now)
        self._daily(names, ns, create, queued_end, None, len(RESOURCES))
        run_end = np.where(started, end, start)
        self._daily(names, ns[started], start[started], run_end[started], amounts[started], len(RESOURCES) + 1)
        # per owner: resource-seconds over the whole life
        secs = (np.maximum(run_end - start, 0) * started).astype(np.float64)
        owners: dict[tuple[str, str], int] = {}
        codes = np.fromiter((owners.setdefault((row[0], row[1] or NO_OWNER), len(owners)) for row in chunk),
                            np.int64, len(chunk))
        totals = [np.bincount(codes, weights=amounts[:, j] * secs, minlength=len(owners))
                  for j in range(len(RESOURCES))]
        ran = np.bincount(codes, weights=secs, minlength=len(owners))
        for (namespace, owner), code in owners.items():
            if ran[code] > 0:
                row = self.users[namespace].setdefault(owner, [0.0] * len(RESOURCES))
                for j, column in enumerate(totals):
                    row[j] += float(column[code])

    def _daily(self, names: list[str], ns: Any, lo: Any, hi: Any, amounts: Any, count_column: int) -> None:
        """Add seconds (and amount x seconds) of the intervals [lo, hi) to their UTC days."""
        keep = hi > lo
        ns, lo, hi = ns[keep], lo[keep], hi[keep]
        amounts = amounts[keep] if amounts is not None else None
        day = lo - lo % DAY
        size = len(RESOURCES) + 2
        while len(lo):
            part = np.minimum(hi, day + DAY) - np.maximum(lo, day)
            key = ns * (1 << 40) + day  # one bin per (namespace, day)
            keys, inverse = np.unique(key, return_inverse=True)
            count = np.bincount(inverse, weights=part)
            sums = [np.bincount(inverse, weights=amounts[:, j] * part) for j in range(len(RESOURCES))] \
                if amounts is not None else []
            for k, packed in enumerate(keys.tolist()):
                row = self.daily[names[packed >> 40]].setdefault(packed & ((1 << 40) - 1), [0.0] * size)
                row[count_column] += float(count[k])
                for j, column in enumerate(sums):
                    row[j] += float(column[k])
            day = day + DAY
            more = hi > day
            ns, lo, hi, day = ns[more], lo[more], hi[more], day[more]
            amounts = amounts[more] if amounts is not None else None

    def tables(self, namespace: str) -> dict[str, list[list[object]]]:
        """The three PAPI tables of one namespace (header row first)."""
        ns_days = self.daily.get(namespace, {})
        series: list[list[object]] = [list(TIMESERIES)]
        if ns_days:
            first, last = min(ns_days), max(ns_days)
            zero = [0.0] * (len(RESOURCES) + 2)
            for day in range(first, last + DAY, DAY):
                series.append([iso_day(day)] + [round(v / DAY) for v in ns_days.get(day, zero)])
        users: list[list[object]] = [list(USERS)]
        totals = [0.0] * len(RESOURCES)
        for owner, values in sorted(self.users.get(namespace, {}).items()):
            users.append([owner] + [round(v / DAY) for v in values])
            totals = [a + b for a, b in zip(totals, values)]
        full: list[list[object]] = [list(RESOURCES), [round(v / DAY) for v in totals]]
        return {"timeseries": series, "users-agg": users, "full-agg": full}

    def namespaces(self) -> list[str]:
        return sorted(set(self.daily) | set(self.users))


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
