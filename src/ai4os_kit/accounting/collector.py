"""One collector run: Nomad → store.

Per-allocation cursor: the stored ``ModifyIndex``. Each run lists every
allocation stub (cheap, paged), reads in full only the allocations whose
ModifyIndex moved past the stored one, and upserts them in committed
batches (``COMMIT_ROWS`` allocations, or what was read in ``COMMIT_SECONDS``).
A crash loses at most the uncommitted batch, which the next run reads again
(the stored index did not move). Large batches matter on a first run over a
big cluster: a commit costs about as much for 200 rows as for 50,000, as it
rewrites every page of the allocation-id index that the batch touched. Allocations that were open in
the store but are gone from a *complete* listing were garbage-collected by
Nomad: they are closed at the last time they were seen. Run it more often
than Nomad's GC thresholds (docs/accounting.md) and nothing is lost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.nomad_client import NomadSource
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


def collect(source: NomadSource, store: Store, owner_key: str = "owner",
            clock: Callable[[], float] = time.time) -> RunResult:
    """Bring the store up to date with Nomad; returns counts and per-allocation problems."""
    result = RunResult()
    stubs, result.nomad_index = source.list_allocations()
    now = int(clock())
    result.listed = len(stubs)
    previous = store.meta("nomad_index")
    if result.nomad_index and result.nomad_index < previous:
        LOG.warning("Nomad's index went back from %d to %d (cluster restored?); reading every allocation",
                    previous, result.nomad_index)
        known: dict[str, int] = {}
    else:
        known = store.modify_indexes()
    present: set[str] = set()
    todo: list[dict[str, Any]] = []
    for stub in stubs:
        alloc_id = stub.get("ID")
        if not isinstance(alloc_id, str):
            result.problems.append(MalformedAllocation(repr(alloc_id), "ID", "missing in the allocation list"))
            continue
        present.add(alloc_id)
        index = stub.get("ModifyIndex")
        if not isinstance(index, int) or index > known.get(alloc_id, -1):
            todo.append(stub)
    store.touch(present & set(known), now)

    nodes: dict[str, NodeInfo | None] = {}
    batch: list[Usage] = []
    vanished: list[str] = []
    committed = time.monotonic()
    for stub in todo:
        doc = source.allocation(stub["ID"], str(stub.get("Namespace") or "default"))
        result.fetched += 1
        if doc is None:  # garbage-collected between the listing and this read
            vanished.append(stub["ID"])
            continue
        try:
            batch.append(parse_allocation(doc, _node(source, store, nodes, str(doc.get("NodeID") or "")), owner_key))
        except MalformedAllocation as problem:
            LOG.error("%s", problem)
            result.problems.append(problem)
        if len(batch) >= COMMIT_ROWS or (batch and time.monotonic() - committed >= COMMIT_SECONDS):
            result.written += store.upsert(batch, now)
            batch = []
            committed = time.monotonic()
    result.written += store.upsert(batch, now)
    gone = (store.open_ids() - present) | (set(vanished) & store.open_ids())
    result.gone = store.close_gone(sorted(gone))
    store.set_meta("nomad_index", result.nomad_index)
    store.set_meta("last_run", now)
    return result
