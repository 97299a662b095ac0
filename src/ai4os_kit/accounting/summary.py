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

A run does not read every allocation again (:func:`from_store`): the store
keeps the sums of the allocations that had ended by an earlier run (a
*base*, with the change number and the time it was taken at), and a run reads
only what changed since, what is still open and what had not ended by then.
An allocation of the base that changes afterwards leaves its old values for
the next run to take out (the store's triggers). The collector's first run
into an empty store sums the rows as it writes them (:class:`BulkFold`), so
that no run reads the whole store back.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Sequence, cast

import numpy as np
from ai4os_kit.accounting.files import atomic_write
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.timeslices import DAY, iso_day
from ai4os_kit.errors import KitError

if TYPE_CHECKING:
    from ai4os_kit.accounting.store import Store

LOG = logging.getLogger(__name__)
RESOURCES = ("cpu_num", "cpu_MHz", "memory_MB", "disk_MB", "gpu_num")
SCALE = (1000, 1, 1, 1, 1)  # sums are kept in whole units: CPU in millicores
TIMESERIES = ("date",) + RESOURCES + ("queued", "running")
USERS = ("owner",) + RESOURCES
NO_OWNER = "unknown"
WIDTH = len(RESOURCES) + 2  # a day: resource-seconds, then queued and running allocation-seconds
_NAMESPACE, _OWNER = 1, 4  # store columns (Usage fields) the summaries read
_CREATE, _STARTED_ENDED = 13, (14, 15)  # create (always set), start and end (None: not yet)
_AMOUNTS = (7, 8, 9, 10, 11)  # cpu_millicores, cpu_mhz, memory_mb, disk_mb, gpu_count


class Rows(NamedTuple):
    """Allocations as numpy columns: times in Unix seconds (-1: none), the amounts, and who.

    ``owner`` is a code per row into ``pairs``, the (namespace, owner or '')
    of the rows: summing per code costs less than per string.
    """

    create: Any
    start: Any
    end: Any
    amounts: Any  # rows x RESOURCES, in whole units (CPU in millicores)
    owner: Any
    pairs: list[tuple[str, str]]

    def take(self, keep: Any) -> "Rows":
        return Rows(self.create[keep], self.start[keep], self.end[keep], self.amounts[keep], self.owner[keep],
                    self.pairs)

    def settled(self, now: int) -> Any:
        """The rows whose share no longer depends on ``now``: ended by then, and started (if at all) by then."""
        return (self.end >= 0) & (self.end <= now) & (self.start <= now)

    @classmethod
    def from_chunk(cls, numbers: list[tuple[int, ...]], keys: list[tuple[str]]) -> "Rows":
        """Rows as :meth:`Store.summary_chunks` reads them: eight integers a row, and ``namespace NUL owner``."""
        distinct = list(set(keys))  # indexed by code
        owner = np.fromiter(map({k: i for i, k in enumerate(distinct)}.__getitem__, keys), np.int64, len(keys))
        pairs = [cast(tuple[str, str], tuple(k.split("\0", 1))) for (k,) in distinct]
        num = np.fromiter(itertools.chain.from_iterable(numbers), np.int64, 8 * len(numbers)).reshape(len(numbers), 8)
        return cls(num[:, 0], num[:, 1], num[:, 2], num[:, 3:], owner, pairs)

    @classmethod
    def from_pages(cls, pages: Sequence[Sequence[list[Any]]],
                   codes: dict[tuple[str, str | None], int]) -> tuple["Rows", Any]:
        """Rows of the collector's pages of store columns (a list per ``Usage`` field), and which have an end.

        Start and end are None where unset (-1 in the rows; the second value
        says which rows have an end). ``codes`` numbers each (namespace,
        owner) and gains those not in it yet; ``pairs`` is left empty (see
        :meth:`concat`).
        """
        n = sum(len(p[0]) for p in pages)

        def column(j: int) -> Iterable[Any]:  # read once, straight into numpy (no list of the pages' values)
            return itertools.chain.from_iterable(p[j] for p in pages)

        def owners() -> Iterable[tuple[str, str | None]]:
            return zip(column(_NAMESPACE), column(_OWNER))

        found = list(map(codes.get, owners()))  # nearly always all known: a dict read, no new code counted
        if None in found:
            found = [code if code is not None else codes.setdefault(key, len(codes))
                     for code, key in zip(found, owners())]
        owner = np.array(found, np.int64)
        create = np.fromiter(column(_CREATE), np.int64, n)
        floats = [np.fromiter(column(j), np.float64, n) for j in _STARTED_ENDED]  # None: NaN
        ended = ~np.isnan(floats[1])
        start, end = (np.nan_to_num(f, nan=-1).astype(np.int64) for f in floats)
        amounts = np.empty((n, len(_AMOUNTS)), np.int64)
        for k, j in enumerate(_AMOUNTS):
            amounts[:, k] = np.fromiter(column(j), np.int64, n)
        return cls(create, start, end, amounts, owner, []), ended

    @classmethod
    def concat(cls, parts: list["Rows"], codes: dict[tuple[str, str | None], int]) -> "Rows":
        """Rows of :meth:`from_pages` (numbered by the same ``codes``) as one, with their ``pairs``."""
        def joined(name: str) -> Any:
            return np.concatenate([getattr(part, name) for part in parts])

        pairs = [(namespace, who or "") for namespace, who in codes]
        return cls(joined("create"), joined("start"), joined("end"), joined("amounts"), joined("owner"), pairs)


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
        # namespace -> owner -> allocations that ran (what tells, between runs, when an owner has none left)
        self.ran: dict[str, dict[str, int]] = defaultdict(dict)
        # namespace -> day -> per-day sums of interval ends, until :meth:`finish` turns them into ``daily``
        self._ends: dict[str, dict[int, list[int]]] = defaultdict(dict)

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
                who = u.owner or NO_OWNER
                row = self.users[u.namespace].setdefault(who, [0] * len(RESOURCES))
                for j, amount in enumerate(amounts):
                    row[j] += amount * secs
                self.ran[u.namespace][who] = self.ran[u.namespace].get(who, 0) + 1
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
        """Add every allocation of the store (read in chunks of plain integer columns, summed with numpy)."""
        for numbers, keys in store.summary_chunks(self.CHUNK):
            self.add_rows(Rows.from_chunk(numbers, keys), now)
        return self.finish()

    CHUNK = 100_000
    RUN_COLUMNS = list(range(len(RESOURCES))) + [len(RESOURCES) + 1]  # the resources, then "running"
    QUEUE_COLUMNS = [len(RESOURCES)]  # "queued"

    def add_rows(self, rows: Rows, now: int) -> None:
        """Add the sums of ``rows`` (the per-day ones once :meth:`finish` is called; the other methods call it).

        No interval is walked day by day: per namespace and UTC day the
        amounts (W) and the amounts times the seconds past midnight (R) of the
        interval ends falling on that day are summed. An interval [lo, hi)
        with amount w uses, on day d, w * (clamp(hi - d, 0, DAY) - clamp(lo - d,
        0, DAY)); summed over intervals that is DAY * (W of the days after d)
        + R(d), for the ends minus the same for the starts.
        """
        if not len(rows.create):
            return
        ends = self._ends
        pairs = rows.pairs
        names = sorted({n for n, _ in pairs})
        ns = np.array([names.index(n) for n, _ in pairs], dtype=np.int64)[rows.owner]
        create, start = rows.create, rows.start
        started = start >= 0
        end = np.minimum(np.where(rows.end >= 0, rows.end, now), now)
        queued_end = np.minimum(np.where(started, start, end), now)
        ran = np.flatnonzero(started & (end > start))
        waited = np.flatnonzero(queued_end > create)
        amounts = rows.amounts[ran]
        run_weights = [amounts[:, j] for j in range(len(RESOURCES))] + [None]  # None: one per allocation
        for at, sign, keep, weights, columns in ((end, 1, ran, run_weights, self.RUN_COLUMNS),
                                                 (start, -1, ran, run_weights, self.RUN_COLUMNS),
                                                 (queued_end, 1, waited, [None], self.QUEUE_COLUMNS),
                                                 (create, -1, waited, [None], self.QUEUE_COLUMNS)):
            if not len(keep):
                continue
            x = at[keep]
            day = x // DAY
            first, span = int(day.min()), int(day.max() - day.min()) + 1
            bins = ns[keep] * span + (day - first)
            past = x - day * DAY  # seconds past midnight
            del x, day
            sums = _exact_sums(bins, itertools.chain(weights, (past if w is None else w * past for w in weights)),
                               len(names) * span)
            width = len(columns)
            for b, values in sums.items():
                row = ends[names[b // span]].setdefault((first + b % span) * DAY, [0] * (2 * WIDTH))
                for j, column in enumerate(columns):
                    row[column] += sign * values[j]
                    row[WIDTH + column] += sign * values[width + j]
        # per owner: resource-seconds of the allocations that ran, and how many ran
        if len(ran):
            secs = (end - start)[ran]
            weighted = itertools.chain((w * secs for w in run_weights[:-1]), [None])
            for code, values in _exact_sums(rows.owner[ran], weighted, len(pairs)).items():
                namespace, who = pairs[code]
                who = who or NO_OWNER
                row = self.users[namespace].setdefault(who, [0] * len(RESOURCES))
                for j, value in enumerate(values[:-1]):
                    row[j] += value
                counts = self.ran[namespace]
                counts[who] = counts.get(who, 0) + values[-1]

    def finish(self) -> "Summaries":
        """Turn the per-day sums of interval ends (:meth:`add_rows`) into what each day used, and add it."""
        ends, self._ends = self._ends, defaultdict(dict)
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

    # -- kept between runs (the store's summary base)
    def merge(self, other: "Summaries", sign: int = 1) -> "Summaries":
        """Add (``sign`` 1) or take away (-1) the sums of ``other``; a day or owner left with nothing goes."""
        self.finish()
        other.finish()
        for namespace, by_day in other.daily.items():
            days = self.daily[namespace]
            for day, values in by_day.items():
                row = days.setdefault(day, [0] * WIDTH)
                for j, value in enumerate(values):
                    row[j] += sign * value
                if not any(row):
                    del days[day]
        for namespace, counts in other.ran.items():
            mine, users, theirs = self.ran[namespace], self.users[namespace], other.users.get(namespace, {})
            for who, count in counts.items():
                row = users.setdefault(who, [0] * len(RESOURCES))
                for j, value in enumerate(theirs[who]):
                    row[j] += sign * value
                mine[who] = mine.get(who, 0) + sign * count
                if not mine[who]:
                    del mine[who], users[who]
        for table in (self.daily, self.users, self.ran):
            for namespace in [n for n, rows in table.items() if not rows]:
                del table[namespace]
        return self

    def to_json(self) -> str:
        self.finish()
        return json.dumps({"daily": self.daily, "users": self.users, "ran": self.ran}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Summaries":
        data = json.loads(text)
        out = cls()
        for namespace, by_day in data["daily"].items():
            out.daily[namespace] = {int(day): row for day, row in by_day.items()}
        for namespace, by_owner in data["users"].items():
            out.users[namespace] = dict(by_owner)
        for namespace, counts in data["ran"].items():
            out.ran[namespace] = dict(counts)
        return out

    def tables(self, namespace: str) -> dict[str, list[list[object]]]:
        """The three PAPI tables of one namespace (header row first)."""
        self.finish()
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
        self.finish()
        return sorted(set(self.daily) | set(self.users))


def from_store(store: "Store", now: int, keep: bool = True) -> Summaries:
    """Every allocation's sums: the base the store keeps, plus what changed since, less what changed in it.

    The base holds the sums of allocations that had ended by an earlier
    run; their share no longer depends on the time. A run reads only the
    rows changed since (every row on the first run), the open ones and those
    whose end was still ahead, and (``keep``) stores the base moved on by
    what had ended now. Should the clock be behind the base's time, every
    row is read and nothing kept.
    """
    kept, fresh, late, retracted = Summaries(), Summaries(), Summaries(), Summaries()
    with store.summary_snapshot() as snapshot:
        base = snapshot.base()
        behind = base is not None and base[1] > now  # a clock set back: every row read, nothing kept
        cursor = 0
        if base is not None and not behind:
            cursor, kept = base[0], Summaries.from_json(base[2])
            for numbers, keys in snapshot.retracted(Summaries.CHUNK):
                retracted.add_rows(Rows.from_chunk(numbers, keys), now)
        for numbers, keys in snapshot.chunks(cursor, Summaries.CHUNK):
            rows = Rows.from_chunk(numbers, keys)
            done = rows.settled(now)
            fresh.add_rows(rows.take(done), now)
            late.add_rows(rows.take(~done), now)
        last_retracted, pending = snapshot.last_retracted(), snapshot.pending(cursor, now)
        change_seq = snapshot.change_seq()
    kept.merge(fresh).merge(retracted, -1)
    if keep and not behind and not store.save_summary_base(kept.to_json(), change_seq, now, pending, last_retracted):
        LOG.info("the accounting store changed while the summaries read it; the next run keeps their base")
    return kept.merge(late)


class BulkFold:
    """The summaries' base of a first run, summed from the columns the collector writes (no second read).

    Only for rows each written once into an empty store (the collector's bulk
    load): :meth:`add` takes each batch as it is written, at the run's time,
    and :meth:`save` stores the base once the load is complete.
    """

    HOLD = 100_000  # rows held (as numpy columns, 72 bytes a row) and summed at once: a sum costs per day and owner

    def __init__(self) -> None:
        self.now = 0
        self.summaries = Summaries()
        self.pending: list[str] = []
        self.codes: dict[tuple[str, str | None], int] = {}
        self.held: list[Rows] = []
        self.held_rows = 0

    def add(self, pages: Sequence[Sequence[list[Any]]], now: int) -> None:
        pages = [p for p in pages if p and p[0]]
        if not pages:
            return
        self.now = now
        rows, ended = Rows.from_pages(pages, self.codes)
        done = rows.settled(now)
        self.held.append(rows.take(done))
        self.held_rows += len(self.held[-1].create)
        if self.held_rows >= self.HOLD:
            self._sum()
        late = ended & ~done
        if late.any():
            ids = list(itertools.chain.from_iterable(p[0] for p in pages))
            self.pending += [ids[i] for i in np.flatnonzero(late).tolist()]

    def _sum(self) -> None:
        if self.held:
            self.summaries.add_rows(Rows.concat(self.held, self.codes), self.now)
        self.held, self.held_rows = [], 0

    def save(self, store: "Store") -> bool:
        """Keep the base, every row of the store having been added here (False: nothing added, or kept)."""
        if not self.now:
            return False
        self._sum()
        return store.save_summary_base(self.summaries.to_json(), store.meta("change_seq"), self.now, self.pending, 0)


def _exact_sums(bins: Any, columns: Iterable[Any], size: int) -> dict[int, list[int]]:
    """Per bin (0 <= bin < size) that has rows: the exact sums of each column over its rows, as Python ints.

    A column is an integer array, or None for a column of ones (the rows
    counted); columns may be made as they are asked for, so that one at a
    time is held. Sums are taken with ``np.bincount`` (float64) over as many
    rows at a time as keep every partial sum below 2**53, where float64
    holds integers exactly (all rows at once for any real usage), then added
    up as Python ints; a value that is not below 2**53 itself is summed
    with Python's integers.
    """
    if not len(bins):
        return {}
    counts = np.bincount(bins, minlength=size)
    present = np.flatnonzero(counts)
    table: list[list[int]] = []
    for values in columns:
        if values is None:
            table.append(counts[present].tolist())
            continue
        biggest = max(1, int(values.max()), -int(values.min()))
        if biggest >= 1 << 53:
            sums = dict.fromkeys(present.tolist(), 0)
            for b, value in zip(bins.tolist(), values.tolist()):
                sums[b] += value
            table.append(list(sums.values()))
            continue
        step = (1 << 53) // biggest
        column = [0] * len(present)
        for lo in range(0, len(bins), step):
            part = np.bincount(bins[lo:lo + step], weights=values[lo:lo + step], minlength=size)
            column = [a + b for a, b in zip(column, part[present].astype(np.int64).tolist())]
        table.append(column)
    return dict(zip(present.tolist(), map(list, zip(*table))))


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
