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
from typing import Iterable

from ai4os_kit.accounting.files import atomic_write
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.timeslices import DAY, days, iso_day
from ai4os_kit.errors import KitError

RESOURCES = ("cpu_num", "cpu_MHz", "memory_MB", "disk_MB", "gpu_num")
TIMESERIES = ("date",) + RESOURCES + ("queued", "running")
USERS = ("owner",) + RESOURCES
NO_OWNER = "unknown"


def _amounts(u: Usage) -> tuple[float, ...]:
    return (u.cpu_millicores / 1000, float(u.cpu_mhz), float(u.memory_mb), float(u.disk_mb), float(u.gpu_count))


class Summaries:
    """Accumulates resource-seconds per namespace, per day and per owner."""

    def __init__(self) -> None:
        # namespace -> day -> [resource seconds..., queued seconds, running seconds]
        self.daily: dict[str, dict[int, list[float]]] = defaultdict(dict)
        # namespace -> owner -> [resource seconds...]
        self.users: dict[str, dict[str, list[float]]] = defaultdict(dict)

    def add(self, u: Usage, now: int) -> None:
        ns_days = self.daily[u.namespace]
        size = len(RESOURCES) + 2
        queued_end = u.start if u.start is not None else (u.end if u.end is not None else now)
        for day, secs in days(u.create, min(queued_end, now)):
            ns_days.setdefault(day, [0.0] * size)[len(RESOURCES)] += secs
        if u.start is None:
            return
        amounts = _amounts(u)
        total = 0
        end = min(u.end if u.end is not None else now, now)
        for day, secs in days(u.start, end):
            row = ns_days.setdefault(day, [0.0] * size)
            for i, amount in enumerate(amounts):
                row[i] += amount * secs
            row[-1] += secs
            total += secs
        owner = self.users[u.namespace].setdefault(u.owner or NO_OWNER, [0.0] * len(RESOURCES))
        for i, amount in enumerate(amounts):
            owner[i] += amount * total

    def add_all(self, usages: Iterable[Usage], now: int) -> "Summaries":
        for u in usages:
            self.add(u, now)
        return self

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
