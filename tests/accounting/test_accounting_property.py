"""Property: across collector crashes/restarts and Nomad's garbage collection, no allocation is lost or counted twice.

Nomad is the recorded-response TEST DOUBLE (nomad_double.py), driven through
random histories: allocations are created, started, finished and
garbage-collected while the collector and the APEL exporter run, crash
part-way (the double fails after N requests; the queue fails after N
messages) and restart with a fresh store connection, as after a kill.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from unittest.mock import patch

import pytest

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from apel_queue import queued_records
from nomad_double import NomadDouble, fixture

from ai4os_kit.accounting import apel, collector, page_decoder
from ai4os_kit.accounting.collector import collect
from ai4os_kit.accounting.nomad_client import NomadSettings, NomadSource
from ai4os_kit.accounting.ssmqueue import OutgoingQueue
from ai4os_kit.accounting.store import Store
from ai4os_kit.accounting.summary import Summaries, from_store
from ai4os_kit.errors import KitError

CTX = apel.ExportContext(site_names={"ifca": "IFCA-LCG2"}, vos={"ai4eosc": "vo.ai4eosc.eu", "imagine": "vo.imagine-ai.eu"},
                         compute_service="AI4OS Nomad")
TEMPLATES = {True: ("allocation-gpu-running.json", "node-gpu.json"), False: ("allocation-cpu-complete.json", "node-cpu.json")}


@dataclass
class Truth:
    create: int
    start: int | None = None
    end: int | None = None
    status: str = "pending"
    in_nomad: bool = True


class CrashingQueue(OutgoingQueue):
    """The real queue, made to fail after N messages (fault injection, like the exporter being killed)."""

    def __init__(self, path: Path, fail_after: int) -> None:
        super().__init__(path)
        self.left = fail_after

    def add(self, message: bytes, durable: bool = True) -> str:
        if self.left <= 0:
            raise KitError("injected crash of the exporter")
        self.left -= 1
        return super().add(message, durable)


# Histories: batches of allocations are created; a "step" lets time pass and, chosen by bit masks over
# the allocations, starts pending ones, ends running ones and garbage-collects ended ones (several at
# once, so that GC before the collector saw the end is common); the collector and the exporter run,
# sometimes crashing part-way.
ops = st.lists(st.one_of(
    st.tuples(st.just("create"), st.integers(1, 4), st.booleans(), st.sampled_from(["ai4eosc", "imagine"])),
    st.tuples(st.just("step"), st.integers(0, 90_000), st.integers(0, 2**12), st.integers(0, 2**12),
              st.integers(0, 2**12), st.integers(0, 2**12)),
    st.tuples(st.just("collect"), st.none() | st.integers(0, 10)),
    st.tuples(st.just("export"), st.none() | st.integers(0, 2)),
), max_size=25)


def _chosen(truth: dict[str, "Truth"], bits: int, want: Any) -> list[str]:
    ids = sorted(a for a, t in truth.items() if t.in_nomad and want(t))
    return [a for i, a in enumerate(ids) if bits >> (i % 12) & 1]


@pytest.fixture(scope="module")
def shared_double() -> Iterator[NomadDouble]:
    """One TEST DOUBLE server for all examples (reset per example): starting a server per example is slow."""
    with NomadDouble(page_size=4) as double:
        yield double


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(history=ops)
# the stories that matter, always run besides the random ones:
@example(history=[("create", 3, False, "ai4eosc"), ("step", 60, 4095, 0, 0, 0), ("collect", None),
                  ("step", 3600, 0, 4095, 0, 0), ("step", 60, 0, 0, 0, 4095), ("collect", None)])  # GC before end seen
@example(history=[("create", 4, True, "imagine"), ("step", 60, 4095, 0, 0, 0), ("collect", 2),
                  ("step", 7200, 0, 5, 1, 0), ("collect", 5), ("step", 60, 0, 0, 0, 4095), ("export", 1),
                  ("collect", None), ("export", None)])  # crashes mid-run, then GC
@example(history=[("create", 5, False, "ai4eosc"), ("step", 60, 4095, 0, 0, 0), ("collect", None),
                  ("export", 0), ("export", 1), ("step", 86400, 0, 4095, 0, 0), ("collect", 3), ("export", 1),
                  ("step", 10, 0, 0, 0, 4095), ("collect", None)])  # exporter crashes between messages
def test_crashes_restarts_and_gc_lose_nothing_and_count_nothing_twice(shared_double: NomadDouble,
                                                                      history: list[tuple[Any, ...]]) -> None:
    work = Path(tempfile.mkdtemp(prefix="acct-prop-"))
    try:
        with patch.object(collector, "COMMIT_ROWS", 2):  # commits part-way through a run, so crashes hit between
            _history(shared_double, history, work)
    finally:
        shutil.rmtree(work)


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(history=ops)
@example(history=[("create", 4, True, "imagine"), ("step", 60, 4095, 0, 0, 0), ("collect", 2),
                  ("step", 7200, 0, 5, 1, 0), ("collect", 5), ("step", 60, 0, 0, 0, 4095), ("export", 1),
                  ("collect", None), ("export", None)])  # crashes mid-run, then GC
def test_the_same_with_the_decoding_process(shared_double: NomadDouble, history: list[tuple[Any, ...]]) -> None:
    """The histories above with every page but each third decoded in the collector's second process (page_decoder)."""
    work = Path(tempfile.mkdtemp(prefix="acct-prop-"))
    try:
        with patch.object(collector, "COMMIT_ROWS", 2), patch.object(page_decoder, "INLINE_PAGES", 0), \
                patch.object(page_decoder, "_cpus", lambda: 2):
            _history(shared_double, history, work)
    finally:
        shutil.rmtree(work)


def _history(double: NomadDouble, history: list[tuple[Any, ...]], work: Path) -> None:
    db, queue_dir = work / "acct.sqlite", work / "outgoing"
    now = 1772000000
    truth: dict[str, Truth] = {}
    seen: set[str] = set()           # present in Nomad during a collector run that completed
    seen_final: set[str] = set()     # present with its final state during a completed run
    double.reset()
    for node in ("node-gpu.json", "node-cpu.json"):
        double.add_node(fixture(node))
    source = NomadSource(NomadSettings(address=double.address, timeout=5))

    def run_collect(crash_after: int | None) -> None:
        double.fail_after = None if crash_after is None else double.requests + crash_after
        try:
            with Store(db) as store:  # a fresh connection each run: a restart
                collect(source, store, clock=lambda: now)
            present = {a for a, t in truth.items() if t.in_nomad}
            seen.update(present)
            seen_final.update(a for a in present if truth[a].end is not None)
        except KitError:
            pass  # crashed part-way; the next run must make up for it
        finally:
            double.fail_after = None

    def run_export(crash_after: int | None) -> None:
        try:
            with Store(db) as store:
                queue = OutgoingQueue(queue_dir) if crash_after is None else CrashingQueue(queue_dir, crash_after)
                from_store(store, now)  # the summaries' base moves on with every run
                apel.export_cloud(store, queue, CTX, now, size=2, sync_every=1)
                apel.export_accelerator(store, queue, CTX, now, size=2, sync_every=1)
        except KitError:
            pass

    for op in history:
        if op[0] == "create":
            template, node = TEMPLATES[op[2]]
            for _ in range(op[1]):
                alloc = double.create(fixture(template), now, namespace=op[3], node=fixture(node))
                truth[alloc] = Truth(create=now)
        elif op[0] == "step":
            _, secs, start_bits, end_bits, fail_bits, gc_bits = op
            for alloc in _chosen(truth, gc_bits, lambda t: t.end is not None):
                double.garbage_collect(alloc)  # Nomad only collects terminal allocations
                truth[alloc].in_nomad = False
            now += secs
            for alloc in _chosen(truth, end_bits, lambda t: t.status == "running"):
                failed = bool(fail_bits >> (hash(alloc) % 12) & 1)
                double.finish(alloc, now, failed=failed)
                truth[alloc].end, truth[alloc].status = now, "failed" if failed else "complete"
            for alloc in _chosen(truth, start_bits, lambda t: t.status == "pending"):
                double.start(alloc, now)
                truth[alloc].start, truth[alloc].status = now, "running"
        elif op[0] == "collect":
            run_collect(op[1])
        elif op[0] == "export":
            run_export(op[1])
    run_collect(None)
    run_export(None)
    with Store(db) as store:  # once caught up, a further run reads and writes nothing
        again = collect(source, store, clock=lambda: now)
    assert (again.fetched, again.written, again.gone) == (0, 0, 0)

    with Store(db) as store:
        stored = {u.alloc_id: u for u in store.iter_all()}
        read_whole = Summaries().add_store(store, now)
        kept = from_store(store, now)  # the base kept by the runs above, and what changed since
        # not lost: everything a completed run saw is stored, once (the id is the key)
        assert seen <= set(stored) <= set(truth)
        for alloc, usage in stored.items():
            real = truth[alloc]
            if alloc in seen_final or real.in_nomad:
                assert (usage.start, usage.end) == (real.start, real.end), alloc
                assert usage.status == real.status
            else:  # garbage-collected before its end was seen: closed early, never late
                assert usage.status in ("gone", real.status)
                assert usage.start in (None, real.start)
                if usage.start is not None:
                    assert real.end is not None and usage.end is not None and usage.start <= usage.end <= real.end

    # the queue: after APEL's rule (the latest record of a VMUUID wins) every started allocation has
    # exactly its stored record — none missing, none extra, wall time counted once
    latest: dict[str, dict[str, str]] = {}
    cloud_records, gpu_records = queued_records(queue_dir)
    for record in cloud_records:
        latest[record["VMUUID"]] = record
    started = {a: u for a, u in stored.items() if u.start is not None}
    assert set(latest) == set(started)
    for alloc, usage in started.items():
        if usage.end is not None:
            expected = apel.cloud_fields(usage, CTX, now)
            assert expected is not None
            assert latest[alloc] == {k: str(v if v != 0 or k not in ("WallDuration", "CpuDuration") else 1)
                                     for k, v in expected.items()}
    total_queue = sum(int(r["WallDuration"]) for a, r in latest.items() if started[a].end is not None)
    # (caso reports at least one second of wall time, so an allocation that ended as it started counts 1 s)
    total_store = sum(max(1, u.wall_seconds(now)) for u in started.values() if u.end is not None)
    summary = Summaries().add_all(stored.values(), now)
    assert (summary.daily, summary.users) == (read_whole.daily, read_whole.users) == (kept.daily, kept.users)
    total_summary = sum(row[-1] for days in summary.daily.values() for row in days.values())
    assert total_queue == total_store
    # GPU records: the latest per (allocation, month) add up to each ended GPU allocation's wall time x GPUs
    months: dict[tuple[str, int, int], dict[str, Any]] = {}
    for rec in gpu_records:
        months[(rec["AssociatedRecord"], rec["MeasurementYear"], rec["MeasurementMonth"])] = rec
    assert {key[0] for key in months} == {a for a, u in started.items() if u.gpu_count}
    for alloc, usage in started.items():
        if usage.gpu_count and usage.end is not None:
            mine = [r for key, r in months.items() if key[0] == alloc]
            assert sum(r["AvailableDuration"] * r["Count"] for r in mine) == usage.wall_seconds(now) * usage.gpu_count
    assert total_summary == sum(u.wall_seconds(now) for u in started.values())
