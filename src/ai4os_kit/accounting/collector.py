"""One collector run: Nomad → store.

Each run streams Nomad's allocation listing page by page, with each
allocation's resources and task states (``nomad_listing``), so that nothing
but a page is held in memory and no allocation needs a request of its own.
The per-allocation cursor is the stored ``ModifyIndex``: an allocation is
parsed and written only when its index moved past the stored one. Owners
come from the job listing (job meta, as PAPI writes it); an allocation whose
job has no owner there, or is not listed, is read in full
(``/v1/allocation/:id``: task group meta, device requests). Rows are upserted
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
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import msgspec

from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.nomad_client import NomadSource
from ai4os_kit.accounting.nomad_listing import MISSING, AllocStub, as_stub, usage_from_stub
from ai4os_kit.accounting.nomad_parse import MalformedAllocation, NodeInfo, parse_allocation, parse_node
from ai4os_kit.accounting.store import Store

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


def _node(source: NomadSource, store: Store, cache: dict[str, NodeInfo | None], node_id: str) -> NodeInfo | None:
    if node_id not in cache:
        doc = source.node(node_id) if node_id else None
        if doc is not None:
            info = parse_node(doc)
            store.put_nodes([info])
            cache[node_id] = info
        else:  # node purged from Nomad: use what the store remembers
            cache[node_id] = store.node(node_id)
    return cache[node_id]


class _Run:
    """State of one collector run."""

    def __init__(self, source: NomadSource, store: Store, owner_key: str) -> None:
        self.source, self.store, self.owner_key = source, store, owner_key
        self.owners = source.job_owners(owner_key)
        self.nodes: dict[str, NodeInfo | None] = {}

    def node(self, node_id: str) -> NodeInfo | None:
        return self.nodes[node_id] if node_id in self.nodes else _node(self.source, self.store, self.nodes, node_id)

    def usages(self, stubs: list[Any], result: RunResult) -> list[tuple[str, Usage | None]]:
        """(id, usage) of each changed allocation of a page; usage None: it vanished before its full read."""
        if all(type(s) is AllocStub for s in stubs):  # the usual page: typed stubs, the fast path
            owners = self.owners.lookup([(s.Namespace or "default", s.JobID) for s in stubs])
            nodes, out = self.nodes, []
            for stub, owner in zip(stubs, owners):
                node = nodes[stub.NodeID] if stub.NodeID in nodes else self.node(stub.NodeID)
                usage = usage_from_stub(stub, node, owner) if owner is not None and owner is not MISSING else None
                out.append((stub.ID, usage) if usage is not None else self._slow(stub, stub, owner, result))
            return [u for u in out if u is not None]
        typed = [s if isinstance(s, AllocStub) else as_stub(s) for s in stubs]
        keys = [(t.Namespace or "default", t.JobID) if t is not None else _job_key(s) for s, t in zip(stubs, typed)]
        done = [self._slow(stub, fast, owner, result) for stub, fast, owner in zip(stubs, typed, self.owners.lookup(keys))]
        return [u for u in done if u is not None]

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
            clock: Callable[[], float] = time.time) -> RunResult:
    """Bring the store up to date with Nomad; returns counts and per-allocation problems."""
    result = RunResult()
    pages = source.allocation_pages()
    first = next(pages, None)  # fails first if Nomad cannot be reached: "listing allocations failed"
    run = _Run(source, store, owner_key)
    compare = store.count() > 0  # an empty store (a first run) has no index to compare with
    store.begin_bulk()
    collecting = gc.isenabled()
    gc.disable()  # a run makes millions of short-lived acyclic objects: cycle collection would only cost time
    try:
        _read_listing(run, store, itertools.chain([first] if first else [], pages), compare, result, clock)
    finally:
        if collecting:
            gc.enable()
        store.end_bulk()
    return result


def _read_listing(run: _Run, store: Store, pages: Iterator[tuple[list[Any], int]], compare: bool,
                  result: RunResult, clock: Callable[[], float]) -> None:
    """Read the listing page by page: touch open allocations seen, parse the changed ones, commit in batches."""
    open_before = store.open_ids()
    seen_open: set[str] = set()
    batch: list[Usage] = []
    vanished: list[str] = []
    now = 0
    committed = time.monotonic()
    for stubs, index in pages:
        if not now:  # the first page: Nomad's index and the time of this run
            now = int(clock())
            result.nomad_index = index
            previous = store.meta("nomad_index")
            if index and index < previous:
                LOG.warning("Nomad's index went back from %d to %d (cluster restored?); reading every allocation",
                            previous, index)
                compare = False
        result.listed += len(stubs)
        typed = all(type(s) is AllocStub for s in stubs)
        ids = [s.ID for s in stubs] if typed else [_field(s, "ID") for s in stubs]
        page_open = [a for a in ids if a in open_before] if open_before else []
        if page_open:
            seen_open.update(page_open)
            store.touch(page_open, now)
        if compare:
            known = store.modify_indexes_of([a for a in ids if isinstance(a, str)])
            changed = [s for s, a in zip(stubs, ids)
                       if not isinstance(modify := _field(s, "ModifyIndex"), int) or modify > known.get(a, -1)]
        else:
            changed = stubs
        result.fetched += len(changed)
        for alloc_id, usage in run.usages(changed, result):
            if usage is None:
                vanished.append(alloc_id)
            else:
                batch.append(usage)
        if len(batch) >= COMMIT_ROWS or time.monotonic() - committed >= COMMIT_SECONDS:
            result.written += store.upsert(batch, now)
            batch = []
            committed = time.monotonic()
    now = now or int(clock())
    result.written += store.upsert(batch, now)
    gone = (open_before - seen_open) | (set(vanished) & open_before)
    result.gone = store.close_gone(sorted(gone))
    store.set_meta("nomad_index", result.nomad_index)
    store.set_meta("last_run", now)
