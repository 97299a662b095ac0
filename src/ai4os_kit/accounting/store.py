"""The collector's durable store (SQLite, WAL).

One row per allocation, keyed by the allocation id: writing the same
allocation again (a re-run, a restart after a crash) replaces it and never
adds a second row. A row is only replaced by a document with an equal or
newer Nomad ``ModifyIndex``, so a stale read cannot undo a newer one.
Exporters keep their own cursor over ``change_seq`` (a counter bumped on
every change) in the ``meta`` table.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ai4os_kit.accounting.model import GONE, Usage
from ai4os_kit.accounting.nomad_parse import NodeInfo
from ai4os_kit.errors import KitError

SCHEMA_VERSION = 1  # rows in insertion order, a unique index on the id: random ids stay cheap to insert
CACHE = -131072  # SQLite page cache, KiB (negative): 128 MiB
BULK_CACHE = -32768  # during a first run's bulk load: 32 MiB
# What SQLite's sorter keeps in memory per sorted run while it builds the id index. Smaller runs sort in the CPU's
# caches (5M ids, 4 threads: 1-8 MiB 3.1-3.2 s and 5-45 MB more resident; 16 MiB 3.5-3.8 s, 92-96 MB; 32 MiB
# 3.9-4.1 s, 176-192 MB; 128 MiB 4.9-5.0 s, 434 MB).
SORT_CACHE = -8192
READ_CACHE = -8192  # the exporters' read connection: 8 MiB (it reads in index order once; the OS caches the file)
ROWS_PER_STATEMENT = 500  # rows of one multi-row INSERT (a listing page), within SQLite's variable limit
ID_INDEX = "allocations_id"  # the unique index on alloc_id (stores made before it was named have SQLite's own)
SORT_THREADS = 4  # SQLite's helper threads building the id index (10M ids on 2 cores: 0 9.5 s, 1 7.8 s, 2 6.7 s, 4 6.2 s;
# with SORT_CACHE, 5M ids: 1 3.3-3.4 s, 2 3.3-3.5 s, 4 3.1 s, 8 3.3-3.4 s)

_COLUMNS = ("alloc_id", "namespace", "job_id", "name", "owner", "node_id", "datacenter", "cpu_millicores",
            "cpu_mhz", "memory_mb", "disk_mb", "gpu_count", "gpu_model", "create_time", "start_time",
            "end_time", "status", "modify_index")

# The PAPI summaries kept between runs (summary.py): ``summary_base`` holds the sums of every allocation
# row that was *folded*: changed at or before its ``cursor`` (a change number) and ended (and started, if
# at all) by its ``at``, the time of the run that folded it. Rows that had ended but not by then are
# named in ``summary_pending`` and read again. A folded row that is changed or deleted leaves its old
# values in ``summary_retract`` (the triggers), for the next run to take out of the base.
_SUMMED = ("create_time, start_time, end_time, cpu_millicores, cpu_mhz, memory_mb, disk_mb, gpu_count, "
           "namespace, owner")
_FOLDED = ("OLD.end_time IS NOT NULL AND OLD.change_seq <= (SELECT cursor FROM summary_base) "
           "AND OLD.alloc_id NOT IN (SELECT alloc_id FROM summary_pending)")
_RETRACT = (f"INSERT INTO summary_retract ({_SUMMED}) VALUES "
            f"({', '.join('OLD.' + c for c in _SUMMED.split(', '))});")
_SUMMARY_NUMBERS = ("create_time, COALESCE(start_time, -1), COALESCE(end_time, -1), cpu_millicores, cpu_mhz, "
                    "memory_mb, disk_mb, gpu_count")
_SUMMARY_KEY = "namespace || char(0) || COALESCE(owner, '')"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS allocations (
    alloc_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT,
    node_id TEXT NOT NULL,
    datacenter TEXT,
    cpu_millicores INTEGER NOT NULL,
    cpu_mhz INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    disk_mb INTEGER NOT NULL,
    gpu_count INTEGER NOT NULL,
    gpu_model TEXT,
    create_time INTEGER NOT NULL,
    start_time INTEGER,
    end_time INTEGER,
    status TEXT NOT NULL,
    modify_index INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    change_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS allocations_change ON allocations(change_seq);
CREATE INDEX IF NOT EXISTS allocations_open ON allocations(end_time) WHERE end_time IS NULL;
CREATE INDEX IF NOT EXISTS allocations_gpu_change ON allocations(change_seq) WHERE gpu_count > 0;
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    datacenter TEXT NOT NULL,
    mhz_per_core REAL,
    devices TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('schema', {SCHEMA_VERSION});
CREATE TABLE IF NOT EXISTS summary_base (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    cursor INTEGER NOT NULL,
    at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS summary_pending (alloc_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS summary_retract (
    create_time INTEGER NOT NULL,
    start_time INTEGER,
    end_time INTEGER,
    cpu_millicores INTEGER NOT NULL,
    cpu_mhz INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    disk_mb INTEGER NOT NULL,
    gpu_count INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    owner TEXT
);
CREATE TRIGGER IF NOT EXISTS allocations_summary_update
AFTER UPDATE OF {_SUMMED}, change_seq ON allocations
WHEN {_FOLDED} BEGIN {_RETRACT} END;
CREATE TRIGGER IF NOT EXISTS allocations_summary_delete
AFTER DELETE ON allocations
WHEN {_FOLDED} BEGIN {_RETRACT} END;
INSERT OR IGNORE INTO meta VALUES ('change_seq', 0);
"""

_INSERT_HEAD = f"INSERT INTO allocations ({', '.join(_COLUMNS)}, last_seen, change_seq) VALUES "
_ROW = "(" + ", ".join("?" * (len(_COLUMNS) + 2)) + ")"
_ON_CONFLICT = f"""
ON CONFLICT(alloc_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])},
    last_seen = excluded.last_seen,
    change_seq = excluded.change_seq
WHERE excluded.modify_index > allocations.modify_index
   OR (excluded.modify_index = allocations.modify_index AND allocations.status = '{GONE}')
"""
_INSERT = _INSERT_HEAD + _ROW
_UPSERT = _INSERT + _ON_CONFLICT


assert Usage._fields == ("alloc_id", "namespace", "job_id", "name", "owner", "node_id", "datacenter",
                         "cpu_millicores", "cpu_mhz", "memory_mb", "disk_mb", "gpu_count", "gpu_model", "create",
                         "start", "end", "status", "modify_index"), "columns and Usage fields must line up"
_usage = Usage._make


class Store:
    """SQLite store of allocation usage. Use as a context manager."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the collector writes from a thread of its own (one thread at a time, see collector._StoreThread)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # a commit survives a crash of the process; fsync at checkpoints
            self.db.execute(f"PRAGMA cache_size={CACHE}")  # 128 MiB: the allocation-id index of a million rows fits
            # Checkpoint once the WAL holds 64 MiB, not 4 MiB: an index page that successive commits rewrite is
            # copied into the database once per checkpoint, not once per commit (-20 % wall time on a million rows).
            self.db.execute("PRAGMA wal_autocheckpoint=16384")
            self.db.executescript(_SCHEMA)
            self._reader: sqlite3.Connection | None = None  # see _read_db
            self._bulk = False
            self._statements: dict[tuple[bool, int], str] = {}
            limit = self.db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._rows_per_statement = max(1, min(ROWS_PER_STATEMENT, limit // (len(_COLUMNS) + 2)))
            self.ensure_id_index()
        except (OSError, sqlite3.Error) as exc:
            raise KitError(f"cannot open the accounting store {self.path}: {exc}; "
                           "check the path (store: in the accounting config) and its permissions") from None
        schema = self.meta("schema")
        if schema != SCHEMA_VERSION:
            raise KitError(f"accounting store {self.path} has schema {schema}, this kit writes {SCHEMA_VERSION}")

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.db.close()

    def _read_db(self) -> sqlite3.Connection:
        """A second, read-only connection for the exporters' long reads.

        The exporters read every row changed since their cursor once, in
        index order: a large page cache only holds what is never read again
        (the store's connection keeps 128 MiB for the collector's upserts).
        Reading on a connection of its own with a small cache, their reads
        cost little memory; the cursor writes go through the store's
        connection and commit at each flush (WAL: readers and a writer do
        not block each other).
        """
        if self._reader is None:
            try:
                self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._reader.execute("PRAGMA query_only=1")
                self._reader.execute(f"PRAGMA cache_size={READ_CACHE}")
            except sqlite3.Error as exc:
                raise KitError(f"cannot read the accounting store {self.path}: {exc}") from None
        return self._reader

    # -- meta / cursors
    def meta(self, key: str, default: int = 0) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def set_meta(self, key: str, value: int) -> None:
        self.db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (key, value))

    # -- the id index and bulk loading
    def _has_index(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone() \
            is not None

    def ensure_id_index(self) -> bool:
        """Create the unique index on alloc_id if it is missing (a new store, or a bulk load that was cut short).

        Should a bulk load have written an allocation twice, the row with the
        newest ModifyIndex stays (True: rows were dropped).
        """
        if self._has_index(ID_INDEX) or self._has_index("sqlite_autoindex_allocations_1"):
            return False
        # SQLite's sorter sorts and merges in threads of its own when allowed (SORT_THREADS), runs of SORT_CACHE
        cache = self.db.execute("PRAGMA cache_size").fetchone()[0]
        self.db.execute(f"PRAGMA threads={SORT_THREADS}")
        self.db.execute(f"PRAGMA cache_size={SORT_CACHE}")
        try:
            self.db.execute(f"CREATE UNIQUE INDEX {ID_INDEX} ON allocations(alloc_id)")
        except sqlite3.IntegrityError:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM allocations WHERE rowid IN (SELECT rowid FROM (SELECT rowid, row_number() "
                            "OVER (PARTITION BY alloc_id ORDER BY modify_index DESC, rowid DESC) AS n "
                            "FROM allocations) WHERE n > 1)")
            self.db.execute("COMMIT")
            self.db.execute(f"CREATE UNIQUE INDEX {ID_INDEX} ON allocations(alloc_id)")
            return True
        finally:
            self.db.execute("PRAGMA threads=0")
            self.db.execute(f"PRAGMA cache_size={cache}")
        return False

    def begin_bulk(self) -> bool:
        """Into an empty store, write without the id index and build it at :meth:`end_bulk`; False if not possible.

        Allocations arrive in Nomad's listing order, not in id order: into an
        index of millions of random ids every insert lands on another page, and
        every commit writes each page it touched again. Building the index at the
        end is one sort. Each allocation must be written once until then (one
        listing lists it once); a run cut short leaves the index to be built
        when the store is next opened.
        """
        if self.count() or not self._has_index(ID_INDEX):
            return False
        self.db.execute(f"DROP INDEX {ID_INDEX}")
        self.db.execute(f"PRAGMA cache_size={BULK_CACHE}")  # appending needs little (the index sort: SORT_CACHE)
        self._bulk = True
        return True

    def end_bulk(self) -> bool:
        """Build the id index after a bulk load; False if the load had written an allocation twice (one kept)."""
        if not self._bulk:
            return True
        self._bulk = False
        dropped = self.ensure_id_index()  # SQLite's sorter spills its sorted runs to a temporary file
        self.db.execute(f"PRAGMA cache_size={CACHE}")
        return not dropped

    # -- writes
    def upsert(self, usages: Iterable[Usage], seen_at: int) -> int:
        """Write usages in one transaction (one change number); returns how many rows changed.

        The rows are streamed into one ``executemany``: a large batch costs one
        commit, and a commit is what costs most (every index page the batch
        touched is written to the WAL once per commit).
        """
        rows = usages if isinstance(usages, list) else list(usages)
        if not rows:
            return 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            seq = self.meta("change_seq") + 1
            extra = (seen_at, seq)
            before = self.db.total_changes
            self.db.executemany(_INSERT if self._bulk else _UPSERT, (r + extra for r in rows))
            changed = self.db.total_changes - before
            self.set_meta("change_seq", seq)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return changed

    def upsert_columns(self, pages: Sequence[Sequence[list[Any]]], seen_at: int) -> int:
        """:meth:`upsert` of rows given as columns (a list per column, in ``Usage`` field order), page by page.

        Each page goes to SQLite as multi-row ``INSERT ... VALUES`` statements
        whose parameters are laid out by slice assignment from the columns:
        no tuple per row, and SQLite's step (which runs without Python's GIL)
        does a page at a time.
        """
        if not any(columns and columns[0] for columns in pages):
            return 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            seq = self.meta("change_seq") + 1
            before = self.db.total_changes
            for columns in pages:
                self._write_columns(columns, seen_at, seq)
            changed = self.db.total_changes - before
            self.set_meta("change_seq", seq)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return changed

    def _write_columns(self, columns: Sequence[list[Any]], seen_at: int, seq: int) -> None:
        width = len(_COLUMNS) + 2
        total = len(columns[0])
        for lo in range(0, total, self._rows_per_statement):
            count = min(self._rows_per_statement, total - lo)
            params: list[Any] = [seen_at] * (count * width)
            if lo or count < total:
                for j, column in enumerate(columns):
                    params[j::width] = column[lo:lo + count]
            else:
                for j, column in enumerate(columns):
                    params[j::width] = column
            params[width - 1::width] = [seq] * count
            self.db.execute(self._statement(count), params)

    def _statement(self, count: int) -> str:
        """The INSERT (bulk load) or upsert of ``count`` rows (kept for the sizes in use: a page and the last one)."""
        key = (self._bulk, count)
        if key not in self._statements:
            if len(self._statements) > 8:
                self._statements.clear()
            self._statements[key] = _INSERT_HEAD + ",".join([_ROW] * count) + ("" if self._bulk else _ON_CONFLICT)
        return self._statements[key]

    def touch(self, alloc_ids: Iterable[str], seen_at: int) -> None:
        """Record that these allocations were still present in Nomad at ``seen_at`` (what closing a gone one reads)."""
        ids = [(seen_at, a) for a in alloc_ids]
        if ids:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("UPDATE allocations SET last_seen = ? WHERE alloc_id = ?", ids)
            self.db.execute("COMMIT")

    def close_gone(self, alloc_ids: Iterable[str]) -> int:
        """Close open allocations that Nomad garbage-collected: end at the last time they were seen."""
        ids = [(a,) for a in alloc_ids]
        if not ids:
            return 0
        self.db.execute("BEGIN IMMEDIATE")
        seq = self.meta("change_seq") + 1
        before = self.db.total_changes
        self.db.executemany(
            f"UPDATE allocations SET status = '{GONE}', change_seq = {seq}, "
            "end_time = CASE WHEN start_time IS NULL THEN NULL ELSE MAX(start_time, last_seen) END "
            "WHERE alloc_id = ? AND end_time IS NULL AND status != 'gone'", ids)
        changed = self.db.total_changes - before
        self.set_meta("change_seq", seq)
        self.db.execute("COMMIT")
        return changed

    def put_nodes(self, nodes: Iterable[NodeInfo]) -> None:
        rows = [(n.node_id, n.name, n.datacenter, n.mhz_per_core, json.dumps(n.devices)) for n in nodes]
        if rows:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT INTO nodes VALUES (?, ?, ?, ?, ?) ON CONFLICT(node_id) DO UPDATE SET "
                                "name = excluded.name, datacenter = excluded.datacenter, "
                                "mhz_per_core = excluded.mhz_per_core, devices = excluded.devices", rows)
            self.db.execute("COMMIT")

    # -- reads
    def node(self, node_id: str) -> NodeInfo | None:
        row = self.db.execute("SELECT * FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
        if row is None:
            return None
        devices = tuple((v, t, n, tuple(ids)) for v, t, n, ids in json.loads(row[4]))
        return NodeInfo(row[0], row[1], row[2], row[3], devices)

    def modify_indexes(self) -> dict[str, int]:
        """Allocation id -> stored ModifyIndex (the per-allocation cursor)."""
        return dict(self.db.execute("SELECT alloc_id, modify_index FROM allocations"))

    def modify_indexes_of(self, alloc_ids: list[str]) -> dict[str, int]:
        """Stored ModifyIndex of those of ``alloc_ids`` that are stored (one page of a listing)."""
        if not alloc_ids:
            return {}
        return dict(self.db.execute("SELECT alloc_id, modify_index FROM allocations WHERE alloc_id IN "
                                    "(SELECT value FROM json_each(?))", (json.dumps(alloc_ids),)))

    def open_ids(self) -> set[str]:
        """Allocations not yet ended (and not closed as gone)."""
        return {r[0] for r in self.db.execute("SELECT alloc_id FROM allocations WHERE end_time IS NULL "
                                              "AND status != 'gone'")}

    def get(self, alloc_id: str) -> Usage | None:
        row = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM allocations WHERE alloc_id = ?",
                              (alloc_id,)).fetchone()
        return _usage(row) if row else None

    def last_change(self) -> int:
        """The highest change number of any allocation (0: none)."""
        return int(self._read_db().execute("SELECT COALESCE(MAX(change_seq), 0) FROM allocations").fetchone()[0])

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM allocations").fetchone()[0])

    def iter_all(self, batch: int = 10_000) -> Iterator[Usage]:
        cur = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM allocations ORDER BY alloc_id")
        while rows := cur.fetchmany(batch):
            yield from map(_usage, rows)

    def summary_chunks(self, size: int = 100_000) -> Iterator[tuple[list[tuple[int, ...]], list[tuple[str]]]]:
        """All rows in chunks: (create, start|-1, end|-1, millicores, MHz, memory, disk, GPUs) and (owner key,).

        The owner key is ``namespace NUL owner`` (owner '' when unknown): one string a row costs half of two.
        """
        with self.summary_snapshot() as snapshot:
            yield from snapshot.chunks(0, size)

    @contextmanager
    def summary_snapshot(self) -> Iterator["SummarySnapshot"]:
        """What the summaries read, in one read transaction (one snapshot of the store)."""
        db = self._read_db()
        db.execute("BEGIN")
        try:
            yield SummarySnapshot(db)
        finally:
            db.execute("COMMIT")

    def save_summary_base(self, data: str, cursor: int, at: int, pending: Iterable[str], retracted: int) -> bool:
        """Keep the summaries' base (see ``_FOLDED``); False, and nothing kept, if the store changed since ``cursor``.

        ``cursor`` is the change number the base was read at, ``retracted``
        the last row of ``summary_retract`` it took out (both from a
        :meth:`summary_snapshot`); a write after that snapshot would fall
        between the two and is left for the next run to fold.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            last = self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM summary_retract").fetchone()[0]
            if self.meta("change_seq") != cursor or last != retracted:
                self.db.execute("ROLLBACK")
                return False
            self.db.execute("DELETE FROM summary_retract")
            self.db.execute("DELETE FROM summary_pending")
            self.db.executemany("INSERT INTO summary_pending VALUES (?)", ((a,) for a in pending))
            self.db.execute("INSERT OR REPLACE INTO summary_base VALUES (0, ?, ?, ?)", (cursor, at, data))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return True

    def month_totals(self, lo: int, hi: int, now: int) -> dict[tuple[str, str], list[float]]:
        """Allocations, core-seconds and GPU-seconds inside [lo, hi) per (namespace, datacenter), in SQL."""
        cur = self._read_db().execute(
            "SELECT namespace, COALESCE(datacenter, ''), COUNT(*), SUM(cpu_millicores * secs) / 1000.0, "
            "SUM(gpu_count * secs) FROM (SELECT namespace, datacenter, cpu_millicores, gpu_count, "
            "MIN(COALESCE(end_time, :now), :hi, :now) - MAX(start_time, :lo) AS secs FROM allocations "
            "WHERE start_time IS NOT NULL AND start_time < :hi AND (end_time IS NULL OR end_time > :lo)) "
            "WHERE secs > 0 GROUP BY 1, 2", {"lo": lo, "hi": hi, "now": now})
        return {(ns, dc): [count, core, gpu] for ns, dc, count, core, gpu in cur}

    def iter_for_export(self, cursor: int, batch: int = 10_000, gpu_only: bool = False) -> Iterator[tuple[int, Usage]]:
        """(change_seq, usage) of started allocations changed after ``cursor`` or still running (see export_rows)."""
        for row in self.export_rows(cursor, _COLUMNS, gpu_only=gpu_only, batch=batch):
            yield row[0], _usage(row[1:])

    def export_rows(self, cursor: int, columns: Sequence[str], gpu_only: bool = False,
                    datacenters: Iterable[str] | None = None, namespaces: Iterable[str] | None = None,
                    batch: int = 10_000) -> Iterator[tuple[Any, ...]]:
        """``(change_seq, *columns)`` of the started allocations an exporter must (re)send.

        First the running allocations that did not change since ``cursor`` (their
        wall time grows: they are sent on every run), then those changed after
        ``cursor`` in change order (rows of one change in insertion order), so an
        exporter can move its cursor just below the last change it queued.
        Optional filters keep to GPU allocations, to datacenters and to namespaces
        (only what can be exported is read: reading a row costs more than a test).
        """
        unknown = [c for c in columns if c not in _COLUMNS]
        if unknown:
            raise ValueError(f"not a column of the store: {unknown}")
        return self.export_select(cursor, ", ".join(columns), {}, gpu_only, datacenters, namespaces, batch)

    def export_select(self, cursor: int, select: str, params: dict[str, Any], gpu_only: bool = False,
                      datacenters: Iterable[str] | None = None, namespaces: Iterable[str] | None = None,
                      batch: int = 10_000, running: bool = True) -> Iterator[tuple[Any, ...]]:
        """:meth:`export_rows` with SQL expressions over the allocation's columns (and ``params``) to select.

        An exporter that builds its text in SQL reads one string a row instead of a dozen Python values.
        ``running=False`` leaves out the running allocations that did not change since ``cursor``.
        """
        where, filters = self._export_filter(gpu_only, datacenters, namespaces)
        head = f"SELECT change_seq, {select} FROM allocations"
        queries = [f"{head} WHERE change_seq > :cursor{where} ORDER BY change_seq, rowid"]
        if running:
            queries.insert(0, f"{head} WHERE end_time IS NULL AND change_seq <= :cursor{where}")
        for query in queries:
            cur = self._read_db().execute(query, {"cursor": cursor, **filters, **params})
            while rows := cur.fetchmany(batch):
                yield from rows

    def count_for_export(self, cursor: int, gpu_only: bool = False) -> int:
        """How many allocations :meth:`export_rows` yields without the datacenter and namespace filters."""
        where, params = self._export_filter(gpu_only, None, None)
        # the two parts that export_select reads, counted apart: one condition with OR made SQLite collect the
        # rowids of both indexes in memory to drop doubles (240 MB at ten million allocations)
        return int(self._read_db().execute(
            f"SELECT (SELECT COUNT(*) FROM allocations WHERE end_time IS NULL AND change_seq <= :cursor{where}) + "
            f"(SELECT COUNT(*) FROM allocations WHERE change_seq > :cursor{where})",
            {"cursor": cursor, **params}).fetchone()[0])

    @staticmethod
    def _export_filter(gpu_only: bool, datacenters: Iterable[str] | None,
                       namespaces: Iterable[str] | None) -> tuple[str, dict[str, str]]:
        where = " AND start_time IS NOT NULL"
        params: dict[str, str] = {}
        if gpu_only:
            where += " AND gpu_count > 0"
        if datacenters is not None:
            where += " AND datacenter IN (SELECT value FROM json_each(:datacenters))"
            params["datacenters"] = json.dumps(sorted(datacenters))
        if namespaces is not None:
            where += " AND namespace IN (SELECT value FROM json_each(:namespaces))"
            params["namespaces"] = json.dumps(sorted(namespaces))
        return where, params


class SummarySnapshot:
    """Reads of the PAPI summaries inside one read transaction (:meth:`Store.summary_snapshot`).

    Rows come as chunks of plain integer rows and their owner keys, read from
    two cursors in step (the same query, the same row order): numpy takes
    rows of integers whole, much faster than rows mixing in strings.
    """

    # what changed since the base's cursor, what is still open, what had not ended by the base's time
    # (where, order): in the order of the index each is read through (by rowid, SQLite scans the table instead)
    _SINCE = (("change_seq > :cursor", "change_seq, rowid"),
              ("end_time IS NULL AND change_seq <= :cursor", "rowid"),
              ("alloc_id IN (SELECT alloc_id FROM summary_pending) AND end_time IS NOT NULL AND change_seq <= :cursor",
               "rowid"))

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def base(self) -> tuple[int, int, str] | None:
        """(cursor, at, data) of the kept base, None if there is none."""
        row = self.db.execute("SELECT cursor, at, data FROM summary_base").fetchone()
        return (int(row[0]), int(row[1]), str(row[2])) if row else None

    def change_seq(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()[0])

    def chunks(self, cursor: int, size: int) -> Iterator[tuple[list[tuple[int, ...]], list[tuple[str]]]]:
        """Rows not in a base kept at ``cursor`` (0: every row), in chunks of (integers, owner keys)."""
        for where, order in (("1", "rowid"),) if cursor == 0 else self._SINCE:
            yield from self._rows("allocations", where, order, {"cursor": cursor}, size)

    def retracted(self, size: int) -> Iterator[tuple[list[tuple[int, ...]], list[tuple[str]]]]:
        """The old values of folded rows changed or deleted since (``summary_retract``), in chunks."""
        yield from self._rows("summary_retract", "1", "rowid", {}, size)

    def last_retracted(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM summary_retract").fetchone()[0])

    def pending(self, cursor: int, now: int) -> list[str]:
        """Of the rows :meth:`chunks` reads, those that have an end but had not ended (or started) by ``now``."""
        late = ("end_time IS NOT NULL AND NOT "
                "(end_time >= 0 AND end_time <= :now AND COALESCE(start_time, -1) <= :now)")  # summary.Rows.settled
        wheres = ("1",) if cursor == 0 else (self._SINCE[0][0], self._SINCE[2][0])
        return [a for where in wheres for (a,) in self.db.execute(
            f"SELECT alloc_id FROM allocations WHERE ({where}) AND {late}", {"cursor": cursor, "now": now})]

    def _rows(self, table: str, where: str, order: str, params: dict[str, int],
              size: int) -> Iterator[tuple[list[tuple[int, ...]], list[tuple[str]]]]:
        numbers = self.db.execute(f"SELECT {_SUMMARY_NUMBERS} FROM {table} WHERE {where} ORDER BY {order}", params)
        keys = self.db.execute(f"SELECT {_SUMMARY_KEY} FROM {table} WHERE {where} ORDER BY {order}", params)
        while rows := numbers.fetchmany(size):
            yield rows, keys.fetchmany(size)
