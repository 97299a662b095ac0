"""One collector run: Nomad → store.

Each run streams Nomad's allocation listing page by page, with each
allocation's resources and task states (``nomad_listing``), so that nothing
but a page is held in memory and no allocation needs a request of its own.
The per-allocation cursor is the stored ``ModifyIndex``: an allocation is
parsed and written only when its index moved past the stored one. Owners
come from the job listing (job meta, as PAPI writes it); an allocation whose
job has no owner there, or is not listed, is read in full
(``/v1/allocation/:id``: task group meta, device requests). Past the first
pages of a long listing, a second process decodes most pages
(``page_decoder``) while this one looks up owners and nodes and stores the
pages before them; it takes most pages of a long job listing apart too. Rows are upserted
in committed batches (``COMMIT_ROWS`` allocations, or what was read in
``COMMIT_SECONDS``). A crash loses at most the uncommitted batch, which the
next run reads again (the stored index did not move). Large batches matter on
a first run over a big cluster: a commit costs about as much for 200 rows as
for 50,000, as it rewrites every page of the allocation-id index that the
batch touched. Allocations that were open in the store but are gone from a
*complete* listing were garbage-collected by Nomad: they are closed at the
last time they were seen. Run it more often than Nomad's GC thresholds
(docs/accounting.md) and nothing is lost.
"""

from __future__ import annotations

import gc
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import msgspec

from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.nomad_client import NomadSource
from ai4os_kit.accounting.nomad_listing import MISSING, AllocStub, as_stub, usage_from_stub
from ai4os_kit.accounting.nomad_page import PageParts, finish_columns, page_columns
from ai4os_kit.accounting.nomad_parse import MalformedAllocation, NodeInfo, parse_allocation, parse_node
from ai4os_kit.accounting.page_decoder import ListingPage, PageDecoder
from ai4os_kit.accounting.store import Store
from ai4os_kit.accounting.summary import BulkFold

LOG = logging.getLogger(__name__)
COMMIT_ROWS = 50_000
COMMIT_SECONDS = 30.0


@dataclass
class RunResult:
    listed: int = 0
    fetched: int = 0
    written: int = 0
    gone: int = 0
    nomad_index: int = 0
    problems: list[MalformedAllocation] = field(default_factory=list)
    decoder_cpu: float = 0.0  # CPU seconds of the process that decoded pages (page_decoder; 0: none started)
    decoder_peak_mb: float = 0.0  # its peak resident memory


class _StoreThread:
    """The store driven from a thread of its own during a run: a batch is written while the next one is read.

    SQLite does its part of a write (``sqlite3_step``) without holding
    Python's GIL, so writing a batch runs on the second core while this
    thread decodes the following pages. Calls run in the order they are made,
    one at a time: a call waits for the write in flight (and raises its
    error) before it runs, so nothing reads or writes past a failed batch.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="accounting-store")
        self._writing: Future[int] | None = None

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        """Run a store method on the store's thread and wait for its result."""
        self.wait()
        return self._pool.submit(method, *args).result()

    def write(self, method: Callable[..., int], *args: Any) -> int:
        """Start a write after the one in flight; returns the rows changed by the one in flight (0 if none)."""
        done = self.wait()
        self._writing = self._pool.submit(method, *args)
        return done

    def wait(self) -> int:
        """Wait for the write in flight; rows it changed."""
        writing, self._writing = self._writing, None
        return writing.result() if writing is not None else 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _node(source: NomadSource, store: _StoreThread, cache: dict[str, NodeInfo | None],
          node_id: str) -> NodeInfo | None:
    if node_id not in cache:
        doc = source.node(node_id) if node_id else None
        if doc is not None:
            info = parse_node(doc)
            store.call(store.store.put_nodes, [info])
            cache[node_id] = info
        else:  # node purged from Nomad: use what the store remembers
            cache[node_id] = store.call(store.store.node, node_id)
    return cache[node_id]


class _Run:
    """State of one collector run."""

    def __init__(self, source: NomadSource, store: _StoreThread, owner_key: str, decoder: PageDecoder) -> None:
        self.source, self.store, self.owner_key = source, store, owner_key
        self.owners = source.job_owners(owner_key, decoder.job_pages(source.job_bodies(), owner_key))
        self.nodes: dict[str, NodeInfo | None] = {}

    def node(self, node_id: str) -> NodeInfo | None:
        return self.nodes[node_id] if node_id in self.nodes else _node(self.source, self.store, self.nodes, node_id)

    def parts(self, parts: PageParts, page: ListingPage, keep: list[int] | None,
              result: RunResult) -> tuple[list[list[Any]] | None, list[str]]:
        """:meth:`page` of a page whose parts the decoding process computed (``keep``: the changed positions).

        Owners and nodes are looked up here; a page with an allocation that
        must go stub by stub is decoded here and goes through :meth:`page`.
        """
        if not parts.ids:
            return None, []
        owners = self.owners.lookup(list(zip(parts.namespaces, parts.job_ids)))
        known = self.nodes
        nodes = [known[n] if n in known else self.node(n) for n in parts.node_ids]
        done = finish_columns(parts, nodes, owners)
        if done is not None and not done[1]:
            return done[0], []
        stubs = page.stubs()
        return self.page(stubs if keep is None else [stubs[i] for i in keep], result)

    def page(self, stubs: list[Any], result: RunResult) -> tuple[list[list[Any]] | None, list[str]]:
        """The changed allocations of a page as store columns (None: none to write), and those that vanished.

        A page of typed stubs is computed column by column (``nomad_page``);
        what that declines, and every stub of a page it cannot take, goes
        through the per-stub fast path or the reference parser.
        """
        pairs: list[tuple[str, Usage | None] | None]
        if all(type(s) is AllocStub for s in stubs):  # the usual page: typed stubs
            owners = self.owners.lookup([(s.Namespace or "default", s.JobID) for s in stubs])
            known = self.nodes
            nodes = [known[s.NodeID] if s.NodeID in known else self.node(s.NodeID) for s in stubs]
            done = page_columns(stubs, nodes, owners)
            if done is not None and not done[1]:
                return done[0], []
            if done is not None:
                declined = set(done[1])
                pairs = [self._slow(stub, stub, owner, result) if i in declined else (stub.ID, row)
                         for i, (stub, owner, row) in enumerate(zip(stubs, owners, zip(*done[0])))]
            else:
                pairs = [self._fast(stub, node, owner, result) for stub, node, owner in zip(stubs, nodes, owners)]
        else:
            typed = [s if isinstance(s, AllocStub) else as_stub(s) for s in stubs]
            keys = [(t.Namespace or "default", t.JobID) if t is not None else _job_key(s)
                    for s, t in zip(stubs, typed)]
            pairs = [self._slow(stub, fast, owner, result)
                     for stub, fast, owner in zip(stubs, typed, self.owners.lookup(keys))]
        rows = [row for pair in pairs if pair is not None and (row := pair[1]) is not None]
        vanished = [pair[0] for pair in pairs if pair is not None and pair[1] is None]
        return ([list(column) for column in zip(*rows)] if rows else None), vanished

    def _fast(self, stub: AllocStub, node: NodeInfo | None, owner: Any,
              result: RunResult) -> tuple[str, Usage | None] | None:
        usage = usage_from_stub(stub, node, owner) if owner is not None and owner is not MISSING else None
        return (stub.ID, usage) if usage is not None else self._slow(stub, stub, owner, result)

    def _slow(self, stub: Any, fast: AllocStub | None, owner: Any,
              result: RunResult) -> tuple[str, Usage | None] | None:
        """An allocation the fast path leaves: a full read, or the reference parser; None: a problem (recorded)."""
        alloc_id = fast.ID if fast is not None else stub.get("ID") if isinstance(stub, dict) else None
        if not isinstance(alloc_id, str):
            result.problems.append(MalformedAllocation(repr(alloc_id), "ID", "missing in the allocation list"))
            return None
        try:
            if owner is MISSING or owner is None:  # the job's meta has no owner or the job is not listed
                doc = self.source.allocation(alloc_id, str(_field(stub, "Namespace") or "default"))
                if doc is None:
                    return alloc_id, None
                return alloc_id, parse_allocation(doc, self.node(str(doc.get("NodeID") or "")), self.owner_key)
            node = self.node(fast.NodeID if fast is not None else str(_field(stub, "NodeID") or ""))
            usage = usage_from_stub(fast, node, owner) if fast is not None else None
            if usage is None:  # the reference parser decides (and names a malformed field)
                doc = stub if isinstance(stub, dict) else msgspec.to_builtins(stub)
                usage = parse_allocation(doc, node, self.owner_key)._replace(owner=owner)
            return alloc_id, usage
        except MalformedAllocation as problem:
            LOG.error("%s", problem)
            result.problems.append(problem)
            return None


def _job_key(doc: Any) -> tuple[str, str]:
    """(namespace, job id) of an allocation that is not a typed stub ('' where it has no usable one)."""
    if not isinstance(doc, dict):
        return "", ""
    namespace, job = doc.get("Namespace") or "default", doc.get("JobID")
    return (namespace, job) if isinstance(namespace, str) and isinstance(job, str) else ("", "")


def _field(stub: Any, name: str) -> Any:
    return stub.get(name) if isinstance(stub, dict) else getattr(stub, name, None)


def collect(source: NomadSource, store: Store, owner_key: str = "owner",
            clock: Callable[[], float] = time.time, inline_pages: int | None = None) -> RunResult:
    """Bring the store up to date with Nomad; returns counts and per-allocation problems.

    Pages past the first ``inline_pages`` (default ``page_decoder.INLINE_PAGES``) are decoded in a second process.
    """
    result = RunResult()
    with PageDecoder(source.allocation_bodies(), source.decode_allocation_page, inline_pages) as decoder:
        _collect(source, store, owner_key, clock, decoder, result)
    result.decoder_cpu, result.decoder_peak_mb = decoder.cpu, decoder.peak_mb
    return result


def _collect(source: NomadSource, store: Store, owner_key: str, clock: Callable[[], float],
             decoder: PageDecoder, result: RunResult) -> None:
    decoder.start()  # fails first if Nomad cannot be reached: "listing allocations failed"
    compare = store.count() > 0  # an empty store (a first run) has no index to compare with
    fold = BulkFold() if store.begin_bulk() else None  # each row is written once: summed as it is written
    collecting = gc.isenabled()
    gc.disable()  # a run makes millions of short-lived acyclic objects: cycle collection would only cost time
    db = _StoreThread(store)
    run: _Run | None = None
    try:
        run = _Run(source, db, owner_key, decoder)
        _read_listing(run, db, iter(decoder), compare, result, clock, fold)  # after the job listing: one pipe
        decoder.close()  # done: its memory is back before the id index is built
    finally:
        run = None  # so is the owner index's (12 bytes a job)
        try:
            db.wait()
        finally:
            db.close()
            if collecting:
                gc.enable()
            whole = store.end_bulk()
    if fold is not None and whole:  # the summaries' base, as the next run would have read it from the store
        fold.save(store)


def _read_listing(run: _Run, db: _StoreThread, pages: Iterator[ListingPage], compare: bool,
                  result: RunResult, clock: Callable[[], float], fold: BulkFold | None = None) -> None:
    """Read the listing page by page: touch open allocations seen, parse the changed ones, commit in batches."""
    store = db.store
    open_before = db.call(store.open_ids)
    seen_open: set[str] = set()
    batch: list[list[list[Any]]] = []  # pages of columns
    batch_rows = 0
    vanished: list[str] = []
    now = 0
    committed = time.monotonic()
    for page in pages:
        index = page.index
        if not now:  # the first page: Nomad's index and the time of this run
            now = int(clock())
            result.nomad_index = index
            previous = db.call(store.meta, "nomad_index")
            if index and index < previous:
                LOG.warning("Nomad's index went back from %d to %d (cluster restored?); reading every allocation",
                            previous, index)
                compare = False
        parts = page.parts
        if parts is not None:
            ids: list[Any] = parts.ids
            stubs: list[Any] = []
        else:
            stubs = page.stubs()
            typed = all(type(s) is AllocStub for s in stubs)
            ids = [s.ID for s in stubs] if typed else [_field(s, "ID") for s in stubs]
        result.listed += len(ids)
        page_open = [a for a in ids if a in open_before] if open_before else []
        if page_open:
            seen_open.update(page_open)
            db.call(store.touch, page_open, now)
        keep: list[int] | None = None
        if compare:
            known = db.call(store.modify_indexes_of, [a for a in ids if isinstance(a, str)])
            modifies = parts.modify_index if parts is not None else [_field(s, "ModifyIndex") for s in stubs]
            keep = [i for i, (a, modify) in enumerate(zip(ids, modifies))
                    if not isinstance(modify, int) or modify > known.get(a, -1)]
        result.fetched += len(ids) if keep is None else len(keep)
        if parts is not None:
            if keep is not None and len(keep) < len(ids):
                parts = parts.take(keep)
            columns, gone_early = run.parts(parts, page, keep, result)
        else:
            columns, gone_early = run.page(stubs if keep is None else [stubs[i] for i in keep], result)
        vanished += gone_early
        if columns is not None:
            batch.append(columns)
            batch_rows += len(columns[0])
        if batch_rows >= COMMIT_ROWS or time.monotonic() - committed >= COMMIT_SECONDS:
            if fold is not None:
                fold.add(batch, now)
            result.written += db.write(store.upsert_columns, batch, now)
            batch, batch_rows = [], 0
            committed = time.monotonic()
    now = now or int(clock())
    if fold is not None:
        fold.add(batch, now)
    result.written += db.write(store.upsert_columns, batch, now) + db.wait()
    gone = (open_before - seen_open) | (set(vanished) & open_before)
    result.gone = db.call(store.close_gone, sorted(gone))
    db.call(store.set_meta, "nomad_index", result.nomad_index)
    db.call(store.set_meta, "last_run", now)
