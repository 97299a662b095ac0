"""The collector with its decoding process (page_decoder) against the collector in one process.

Nomad is the recorded-response TEST DOUBLE (nomad_double.py, three allocations a page). ``inline_pages=0``
hands every page but each third (``page_decoder.EVERY``) to the spawned decoding process, a large
``inline_pages`` none: both runs must leave the same store, results and errors.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from nomad_double import NomadDouble, fixture

from ai4os_kit.accounting import page_decoder
from ai4os_kit.accounting.collector import RunResult, collect
from ai4os_kit.accounting.nomad_client import NomadSettings, NomadSource
from ai4os_kit.accounting.nomad_listing import MISSING
from ai4os_kit.accounting.procstat import peak_mb
from ai4os_kit.accounting.store import Store
from ai4os_kit.errors import KitError

NOW = 1775000000
IN_ONE_PROCESS = 10**6


def _source(double: NomadDouble) -> NomadSource:
    return NomadSource(NomadSettings(address=double.address, timeout=5))


def _cluster(double: NomadDouble) -> list[str]:
    """Allocations of every kind the collector treats apart, on six pages of three (in id order).

    With ``inline_pages=0`` pages 2 and 5 are decoded in the collector, the others in the process.
    """
    double.add_node(fixture("node-gpu.json"))
    double.add_node(fixture("node-cpu.json"))
    gpu, cpu = fixture("allocation-gpu-running.json"), fixture("allocation-cpu-complete.json")
    ids = []
    for i in range(16):
        alloc = double.create(gpu if i % 4 == 0 else cpu, 1772233200 + 60 * i, namespace="imagine" if i % 3 else None,
                              alloc_id=f"{i:08x}-0a1b-4c2d-8e3f-0123456789ab")
        if i % 2:
            double.start(alloc, 1772233300 + 60 * i)
        if i % 5 == 1:
            double.finish(alloc, 1772240000 + 60 * i, failed=i == 11)
        ids.append(alloc)
    for odd in (2, 7):  # a task time with an offset, on a page of each process: the reference parser decides
        next(iter(double.allocs[ids[odd]]["TaskStates"].values()))["StartedAt"] = "2026-02-27T23:00:05+01:00"
    doc = double.allocs[ids[4]]  # a job without an owner in the job listing: read in full (owner from the group)
    doc["JobID"] = "no-owner-job"
    doc["Job"] = dict(doc["Job"], ID="no-owner-job", Meta={},
                      TaskGroups=[dict(group, Meta={"owner": "group-owner@egi.eu"}) for group in doc["Job"]["TaskGroups"]])
    doc = double.allocs[ids[9]]  # a value of an unexpected type: its page is read as plain JSON, the allocation named
    next(iter(doc["AllocatedResources"]["Tasks"].values()))["Cpu"]["CpuShares"] = "100"
    return ids


def _rows(store: Store) -> list[tuple[Any, ...]]:
    return list(store.db.execute("SELECT * FROM allocations ORDER BY alloc_id"))


def _summary(result: RunResult) -> tuple[Any, ...]:
    return result.listed, result.fetched, result.written, result.gone, [str(p) for p in result.problems]


def test_the_decoding_process_stores_what_one_process_stores(nomad_double: NomadDouble, tmp_path: Path) -> None:
    ids = _cluster(nomad_double)
    with Store(tmp_path / "two.sqlite") as two, Store(tmp_path / "one.sqlite") as one:
        runs = []
        for step in range(3):
            if step == 1:  # changes: the second runs compare indexes and take the changed allocations of a page
                nomad_double.start(ids[0], NOW - 500)
                nomad_double.finish(ids[3], NOW - 400)
                nomad_double.garbage_collect(ids[13])
                nomad_double.create(fixture("allocation-cpu-complete.json"), NOW - 300)
            with_process = collect(_source(nomad_double), two, clock=lambda: NOW, inline_pages=0)
            without = collect(_source(nomad_double), one, clock=lambda: NOW, inline_pages=IN_ONE_PROCESS)
            assert _summary(with_process) == _summary(without)
            assert _rows(two) == _rows(one)
            runs.append((with_process, without))
    first, second, third = (with_process for with_process, _ in runs)
    assert first.listed == 16 and first.written == 15
    assert len(first.problems) == 1 and "Cpu.CpuShares: expected a non-negative integer" in str(first.problems[0])
    assert second.fetched == 4 and third.fetched == 1  # two changed, one new and the malformed one; then that one
    assert all(w.decoder_cpu > 0 and 0 < w.decoder_peak_mb < 400 for w in (first, second, third))
    assert all(o.decoder_cpu == 0 for _, o in runs)  # one process: none started
    with Store(tmp_path / "two.sqlite") as store:
        odd = store.get(ids[4])
        assert odd is not None and odd.owner == "group-owner@egi.eu"  # read in full, in the run with the process


def _segments() -> set[str]:
    return {p.name for p in Path("/dev/shm").iterdir()} if Path("/dev/shm").is_dir() else set()


@pytest.fixture
def made_segments(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the shared memory the decoding processes of this test were given (other tests running
    beside it make their own, so /dev/shm as a whole is not compared)."""
    names: list[str] = []
    real_init = page_decoder._Worker.__init__

    def init(self: page_decoder._Worker) -> None:
        real_init(self)
        if self.shared is not None:
            names.append(self.shared.name)

    monkeypatch.setattr(page_decoder._Worker, "__init__", init)
    return names


@pytest.mark.parametrize("handover", ["shared memory", "pipe: pages larger than a slot", "pipe: no shared memory"])
def test_pages_handed_over_in_shared_memory_or_the_pipe_store_the_same(
        nomad_double: NomadDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handover: str,
        made_segments: list[str]) -> None:
    _cluster(nomad_double)
    sent: list[bytes] = []
    real_send = page_decoder._Worker.send

    def send(self: page_decoder._Worker, body: bytes) -> None:
        sent.append(bytes(body[:2]))
        real_send(self, body)

    returned: list[str] = []
    real_receive = page_decoder._Worker.receive

    def receive(self: page_decoder._Worker) -> Any:
        parts = real_receive(self)
        returned.append(type(parts).__name__)
        return parts

    monkeypatch.setattr(page_decoder._Worker, "send", send)
    monkeypatch.setattr(page_decoder._Worker, "receive", receive)
    if handover == "pipe: pages larger than a slot":
        monkeypatch.setattr(page_decoder, "SLOT_BYTES", 64)  # every page is larger (the process gets start and size)
    elif handover == "pipe: no shared memory":
        def refused(*args: Any, **kwargs: Any) -> None:
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(page_decoder.shared_memory, "SharedMemory", refused)
    with Store(tmp_path / "two.sqlite") as two, Store(tmp_path / "one.sqlite") as one:
        with_process = collect(_source(nomad_double), two, clock=lambda: NOW, inline_pages=0)
        without = collect(_source(nomad_double), one, clock=lambda: NOW, inline_pages=IN_ONE_PROCESS)
        assert _summary(with_process) == _summary(without) and _rows(two) == _rows(one)
    pages = [m for m in sent if m and (m[:1] != b"\0" or m == b"\0S")]  # not the usage asked for, nor a kind
    in_slots = pages.count(b"\0S")
    assert len(pages) >= 4  # of the six allocation pages, one in EVERY (two) is decoded here; job pages too
    assert in_slots == (len(pages) if handover == "shared memory" else 0)
    # what came back: every page decoded there but the one with a value of an unexpected type (decoded here)
    assert len(returned) == len(pages) and returned.count("NoneType") == 1, returned
    assert len(made_segments) == (0 if handover == "pipe: no shared memory" else 1)
    assert not set(made_segments) & _segments()  # the shared memory is removed with the process


@pytest.mark.parametrize(("body", "problem"), [({"Error": "not a page"}, "a dict, expected a list"),
                                               ("", "not JSON: Input data was truncated")])
def test_a_page_that_is_not_a_listing_is_named_as_without_the_process(nomad_double: NomadDouble, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch, body: Any,
                                                                       problem: str) -> None:
    _cluster(nomad_double)
    real = NomadDouble._list

    def listing(self: NomadDouble, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        status, page, headers = real(self, query)
        return (status, body, headers) if query.get("next_token") else (status, page, headers)

    monkeypatch.setattr(NomadDouble, "_list", listing)
    errors = []
    for inline in (0, IN_ONE_PROCESS):
        with Store(tmp_path / f"{inline}.sqlite") as store, pytest.raises(KitError) as caught:
            collect(_source(nomad_double), store, inline_pages=inline)
        errors.append(str(caught.value))
    assert errors[0] == errors[1] and f"/v1/allocations returned {problem}" in errors[0]
    assert not [p for p in multiprocessing.active_children() if p.name == "accounting-decoder"]


class KillingSource(NomadSource):
    """The real NomadSource; the decoding process is killed after the fourth page (fault injection)."""

    def allocation_bodies(self) -> Iterator[tuple[bytes, int]]:
        for number, page in enumerate(super().allocation_bodies()):
            if number == 4:
                for child in multiprocessing.active_children():
                    if child.name == "accounting-decoder":
                        child.kill()
                        child.join()
            yield page


def test_a_killed_decoding_process_is_named_and_the_next_run_completes(nomad_double: NomadDouble,
                                                                       tmp_path: Path,
                                                                       made_segments: list[str]) -> None:
    ids = _cluster(nomad_double)
    with Store(tmp_path / "acct.sqlite") as store:
        with pytest.raises(KitError, match="the process decoding Nomad's allocation listing ended without a result"):
            collect(KillingSource(NomadSettings(address=nomad_double.address, timeout=5)), store, inline_pages=0)
        again = collect(_source(nomad_double), store, inline_pages=0)
        assert again.listed == len(ids) and len(again.problems) == 1 and store.count() == len(ids) - 1
    assert len(made_segments) == 2 and not set(made_segments) & _segments()  # the killed process's run's too


_HOLDS_A_DECODER = """
import sys, time
from ai4os_kit.accounting.page_decoder import _Worker
if __name__ == "__main__":
    worker = _Worker()
    print(worker.shared.name if worker.shared else "", worker.process.pid, flush=True)
    time.sleep(120)
"""


def test_a_killed_collector_leaves_no_shared_memory_and_no_decoding_process(tmp_path: Path) -> None:
    """SIGKILL gives the collector no chance to clean up: Python's resource tracker removes the segment, and
    the decoding process ends when its pipe closes."""
    script = tmp_path / "holder.py"
    script.write_text(_HOLDS_A_DECODER)
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        name, pid = holder.stdout.readline().split()
        assert name in _segments() and Path(f"/proc/{pid}").exists()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 20
    while (name in _segments() or _running(int(pid))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert name not in _segments()
    assert not _running(int(pid))


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie waiting for its parent has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _job_bodies() -> list[tuple[bytes, int]]:
    """Nine job pages of five: owners of every kind; a NUL in an id (page 4), an id that is a number (page 5)."""
    pages = []
    for p in range(9):
        jobs: list[dict[str, Any]] = [
            {"ID": f"job-{p}-{i}", "Namespace": ["ai4eosc", None, ""][i % 3],
             "Meta": {"owner": [f"user{p}@egi.eu", 7, "", None, {"a": 1}][i], "other": "x"}} for i in range(5)]
        if p == 4:
            jobs[0]["ID"] = "job\0nul"
        if p == 5:
            jobs.append({"ID": 8, "Meta": {"owner": "dropped@egi.eu"}})
        pages.append((json.dumps(jobs).encode(), 10 + p))
    return pages


def test_job_pages_taken_apart_in_the_process_give_the_owners_read_here() -> None:
    """The job listing split as the allocation listing is: the same owner index, odd pages decoded here."""
    bodies = _job_bodies()
    keys = [("ai4eosc", f"job-{p}-0") for p in range(9)] + [("default", "job-3-1"), ("default", "job-3-2"),
                                                               ("ai4eosc", "job-3-3"), ("default", "job-3-4"),
                                                               ("ai4eosc", "job\0nul"), ("default", "8")]
    seen = []
    for inline in (0, IN_ONE_PROCESS):
        with page_decoder.PageDecoder([], lambda body: [], inline) as decoder:
            pages = list(decoder.job_pages(bodies, "owner"))
            index = NomadSource(NomadSettings(address="http://127.0.0.1:9")).job_owners("owner", pages)
        seen.append(([type(page).__name__ for page in pages], len(index), index.lookup(keys)))
    (kinds, count, owners), (kinds_here, count_here, owners_here) = seen
    # pages 3, 6 and 9 are decoded here (one in EVERY), and so are the NUL page and the odd page
    assert kinds == ["JobParts", "JobParts", "bytes", "JobParts", "bytes", "bytes", "JobParts", "JobParts", "bytes"]
    assert kinds_here == ["bytes"] * 9
    assert (count, owners) == (count_here, owners_here)
    assert count == 45  # the job whose id is a number is left out (its allocations are read in full)
    assert owners[:9] == [f"user{p}@egi.eu" if p != 4 else MISSING for p in range(9)]  # job-4-0 is "job\0nul"
    assert owners[9:] == ["7", None, None, "{'a': 1}", "user4@egi.eu", MISSING]


def _own_peak(_: int) -> tuple[float, float]:
    return peak_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_spawned_process_reports_its_own_peak_memory_not_its_parents() -> None:
    held = b"x" * (300 << 20)  # resident in this process when the child is spawned
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        own, maxrss = pool.map(_own_peak, [0])[0]
    del held
    assert maxrss >= 300  # what ru_maxrss says in the child: this process's size at the fork before the exec
    assert own < 150  # what the child itself used


def test_one_cpu_decodes_every_page_in_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(page_decoder, "_cpus", lambda: 1)
    assert page_decoder.PageDecoder([], lambda body: []).inline_pages > 10**9
    monkeypatch.setattr(page_decoder, "_cpus", lambda: 2)
    assert page_decoder.PageDecoder([], lambda body: []).inline_pages == page_decoder.INLINE_PAGES
