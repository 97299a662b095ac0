"""Benchmark: N Nomad allocations through the accounting collector, the store and the exporters.

Stages (each timed): collect (decode Nomad's listing pages, parse, upsert into the SQLite
store; past the first pages most are decoded in a second process: ai4os_kit.accounting.page_decoder,
--inline-pages to change or avoid that) -> the exporters as `ai4os-kit accounting run` runs them (APEL cloud records into the
dirq queue here, meanwhile APEL GPU accelerator records and the PAPI summaries in a second
process: ai4os_kit.accounting.exporters) -> monthly report (CSV, Markdown, PNG) -> the PAPI summaries
of a later run with nothing changed (what every run after the first pays: the base the first one
kept, and the open rows). The last two are printed, not counted in the target. Prints wall
and CPU time per stage (a second process's CPU included), the totals, the peak resident
memory (the collector's plus its decoding process's, and this process's plus the second one's
while both export; a spawned process's own peak, not ru_maxrss, which includes its parent's) and the
1-minute load average at start and end. On a shared machine the CPU time is what a stage costs
(wall time also counts other processes' turns on the CPU).
Target (issue 16): 10,000,000 allocations in under 120 s and 500 MB.

    .venv/bin/python benchmarks/accounting.py [--allocations 10000000] [--task-events 0] [--dir DIR] [--inline-pages N]

What the collector reads is what Nomad sends: pages of 500 allocation stubs of
``GET /v1/allocations?namespace=*&resources=true`` (all stub fields, three tasks with their
resources and task states, Go's compact JSON) and pages of ``GET /v1/jobs?meta=true`` (one job
per allocation, as PAPI creates a job per deployment, with PAPI's meta). They are generated
in memory while the collector runs and handed to the real collector through NomadSource's
page reader: only the HTTP transfer is left out, and generating them is not timed. Nomad also
sends each task's latest events (up to 10 per task); ``--task-events N`` puts N in each
task state (see docs/accounting.md for what they cost). 10 % of the allocations hold GPUs,
5 % are running, a third run at a site that is not an EGI site.

Run it alone (`flock -x /tmp/ai4os-heavy.lock ...` on the shared test machines).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import msgspec
import numpy as np

from ai4os_kit.accounting import apel
from ai4os_kit.accounting.collector import collect
from ai4os_kit.accounting.exporters import export_all
from ai4os_kit.accounting.nomad_client import PAGE_SIZE, NomadSettings, NomadSource
from ai4os_kit.accounting.procstat import peak_mb
from ai4os_kit.accounting.procstat import rss_mb
from ai4os_kit.accounting.report import rows_from_totals, write_report
from ai4os_kit.accounting.store import Store
from ai4os_kit.accounting.summary import BulkFold, from_store
from ai4os_kit.accounting.timeslices import month_bounds

START = 1767225600  # 2026-01-01T00:00:00Z
SPAN = 90 * 86400   # allocations start within three months
NOW = START + SPAN + 86400
TARGET_SIZE, TARGET_S, TARGET_MB = 10_000_000, 120, 500
POOL_PAGES = 8  # distinct generated pages, replayed with other ids (generating every stub cost more than reading it)
REPLAY = "RRRRRRRR"  # where a replayed page's number goes
CTX = apel.ExportContext(site_names={"site0": "SITE-A", "site1": "SITE-B"},  # site2 is not an EGI site
                         vos={"ai4eosc": "vo.ai4eosc.eu", "imagine": "vo.imagine-ai.eu"},
                         compute_service="AI4OS Nomad")


def _node(i: int) -> dict[str, Any]:
    """A GPU node as /v1/node/:id describes it (8 H100 instances)."""
    return {"ID": str(uuid.UUID(int=i + 1, version=4)), "Name": f"site{i % 3}-gpu-{i}", "Datacenter": f"site{i % 3}",
            "NodeResources": {"Cpu": {"CpuShares": 83200, "TotalCpuCores": 32},
                              "Devices": [{"Vendor": "nvidia", "Type": "gpu", "Name": "NVIDIA H100 80GB HBM3",
                                           "Instances": [{"ID": f"GPU-{i}-{g}", "Healthy": True}
                                                         for g in range(8)]}]}}


NODES = [_node(i) for i in range(30)]
_EVENT = ('{"Type":"%s","Time":%d,"Message":"","DisplayMessage":"%s","Details":{},"FailsTask":false,'
          '"RestartReason":"","SetupError":"","DriverError":"","DriverMessage":"","ExitCode":0,"Signal":0,'
          '"KillReason":"","KillTimeout":0,"KillError":"","StartDelay":0,"DownloadError":"","ValidationError":"",'
          '"DiskLimit":0,"FailedSibling":"","VaultError":"","TaskSignalReason":"","TaskSignal":"",'
          '"GenericSource":""}')
_EVENTS = (("Received", "Task received by client"), ("Task Setup", "Building Task Directory"),
           ("Driver", "Downloading image"), ("Started", "Task started by client"),
           ("Killing", "Sent interrupt. Waiting 5s before force killing"), ("Killed", "Task successfully killed"),
           ("Restart Signaled", "User requested running tasks to restart"), ("Terminated", "Exit Code: 0"),
           ("Restarting", "Task restarting in 0s"), ("Signaling", "Task being sent a signal"))
_TASK = ('"%s":{"Cpu":{"CpuShares":%d,"ReservedCores":%s},"Memory":{"MemoryMB":%d,"MemoryMaxMB":0},'
         '"Networks":null,"Devices":%s}')
_STATE = ('"%s":{"State":"%s","Failed":false,"Restarts":0,"LastRestart":null,"StartedAt":"%s","FinishedAt":%s,'
          '"Events":[%s],"TaskHandle":null}')
_STUB = ('{"ID":"%s","EvalID":"%s","Name":"job-%d.usergroup[0]","Namespace":"%s","NodeID":"%s","NodeName":"%s",'
         '"JobID":"job-%d","JobType":"service","JobVersion":0,"TaskGroup":"usergroup",'
         '"AllocatedResources":{"Tasks":{%s},"TaskLifecycles":{"storage_mount":{"Hook":"prestart","Sidecar":true},'
         '"main":null,"dind":null},"Shared":{"DiskMB":20000,"Networks":[{"Mode":"bridge","IP":"172.26.64.12"}],'
         '"Ports":null}},"DesiredStatus":"run","DesiredDescription":"","ClientStatus":"%s","ClientDescription":"",'
         '"DesiredTransition":{"Migrate":null,"Reschedule":null,"ForceReschedule":null,"NoShutdownDelay":null},'
         '"TaskStates":{%s},"DeploymentStatus":{"Healthy":true,"Timestamp":"%s","Canary":false,"ModifyIndex":%d},'
         '"FollowupEvalID":"","NextAllocation":"","RescheduleTracker":null,"PreemptedAllocations":null,'
         '"PreemptedByAllocation":"","CreateIndex":%d,"ModifyIndex":%d,"CreateTime":%d,"ModifyTime":%d}')
_JOB = ('{"ID":"job-%d","ParentID":"","Name":"job-%d","Namespace":"%s","Datacenters":["site0","site1","site2"],'
        '"Multiregion":null,"Type":"service","Priority":50,"Periodic":false,"ParameterizedJob":false,"Stop":false,'
        '"Status":"dead","StatusDescription":"","JobSummary":{"JobID":"job-%d","Namespace":"%s","Summary":'
        '{"usergroup":{"Queued":0,"Complete":1,"Failed":0,"Running":0,"Starting":0,"Lost":0,"Unknown":0}},'
        '"Children":{"Pending":0,"Running":0,"Dead":0},"CreateIndex":%d,"ModifyIndex":%d},"CreateIndex":%d,'
        '"ModifyIndex":%d,"JobModifyIndex":%d,"SubmitTime":%d,"Meta":{"owner":"user%d@egi.eu",'
        '"owner_name":"User %d","owner_email":"user%d@example.org","title":"deployment %d","description":""}}')


_DAYS: dict[int, str] = {}
_TASKS: dict[tuple[int, int, int], str] = {}


def rfc3339(epoch: int) -> str:
    """Nomad's time format (RFC 3339, nanoseconds, UTC)."""
    day, secs = divmod(epoch, 86400)
    if day not in _DAYS:
        _DAYS[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    return f"{_DAYS[day]}{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.123456789Z"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _tasks(node: int, cores: int, gpus: int) -> str:
    """The AllocatedResources tasks of an allocation (a handful of shapes, built once each)."""
    key = (node, cores, gpus)
    if key not in _TASKS:
        devices = ('[{"Vendor":"nvidia","Type":"gpu","Name":"NVIDIA H100 80GB HBM3","DeviceIDs":[%s]}]'
                   % ",".join(f'"GPU-{node}-{g}"' for g in range(gpus))) if gpus else "null"
        _TASKS[key] = ",".join((_TASK % ("main", 0, "[" + ",".join(map(str, range(cores))) + "]", 8000, devices),
                                _TASK % ("storage_mount", 50, "null", 250, "null"),
                                _TASK % ("dind", 100, "null", 500, "null")))
    return _TASKS[key]


def _namespace(i: int) -> str:
    return "ai4eosc" if i % 3 else "imagine"


_SHAPES: dict[tuple[int, int, int, str], str] = {}


def _shape(node_index: int, cores: int, gpus: int, status: str) -> str:
    """The stub of one allocation shape with %-placeholders for what differs between allocations."""
    key = (node_index, cores, gpus, status)
    if key not in _SHAPES:
        node = NODES[node_index]
        finished = "null" if status == "running" else '"%(end)s"'
        states = ",".join(_STATE % (task, "running" if status == "running" else "dead", "%(start)s", finished, "")
                          for task in ("main", "storage_mount", "dind"))
        _SHAPES[key] = (_STUB % ("%(id)s", "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b", 0, "%(ns)s", node["ID"],
                                 node["Name"], 0, _tasks(node_index, cores, gpus), status, states, "%(start)s", 0, 0,
                                 0, 0, 0)).replace('"Name":"job-0.', '"Name":"job-%(i)d.').replace(
            '"JobID":"job-0"', '"JobID":"job-%(i)d"').replace('"ModifyIndex":0}', '"ModifyIndex":%(index)d}').replace(
            '"CreateIndex":0,"ModifyIndex":0,"CreateTime":0,"ModifyTime":0}',
            '"CreateIndex":%(index)d,"ModifyIndex":%(index)d,"CreateTime":%(create)d,"ModifyTime":%(modify)d}')
    return _SHAPES[key]


def allocation_stub(i: int, rng: random.Random, events: int) -> str:
    """One allocation list stub (resources=true, task states) in Go's compact JSON."""
    node = i % len(NODES)
    start = START + rng.randrange(SPAN)
    running = rng.random() < 0.05
    end = None if running else start + rng.randrange(60, 3 * 86400)
    gpus = rng.choice((1, 2)) if i % 10 == 0 else 0
    cores = rng.choice((1, 2, 4, 8))
    status = "running" if running else ("failed" if i % 17 == 0 else "complete")
    values = {"id": _uuid(rng), "i": i, "ns": _namespace(i), "start": rfc3339(start), "end": rfc3339(end or start),
              "index": 100 + 2 * i, "create": (start - 30) * 10**9, "modify": (end or start) * 10**9}
    if not events:
        return _shape(node, cores, gpus, status) % values
    states = []
    finished = f'"{values["end"]}"' if end else "null"
    for task in ("main", "storage_mount", "dind"):
        evs = ",".join(_EVENT % (kind, (start - 20 + n) * 10**9, text) for n, (kind, text) in enumerate(_EVENTS[:events]))
        states.append(_STATE % (task, "running" if running else "dead", values["start"], finished, evs))
    return _STUB % (values["id"], "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b", i, values["ns"], NODES[node]["ID"],
                    NODES[node]["Name"], i, _tasks(node, cores, gpus), status, ",".join(states), values["start"],
                    values["index"], values["index"], values["index"], values["create"], values["modify"])


class GeneratedNomad(NomadSource):
    """The real NomadSource (page decoding, owner index) reading generated pages instead of HTTP responses."""

    def __init__(self, count: int, events: int) -> None:
        self.settings = NomadSettings(address="http://generated")
        self.api = SimpleNamespace(allocations="allocations", jobs="jobs")
        self.count, self.events = count, events
        self.nodes = {n["ID"]: n for n in NODES}
        self.gen_cpu = 0.0  # CPU time of the thread generating the pages (not counted)
        self.full_reads = 0

    def _pool(self, endpoint: Any) -> list[tuple[bytearray, np.ndarray, int]]:
        """POOL_PAGES pages (page bytes, where the replay number goes, stubs), generated once; see _pages."""
        rng = random.Random(16)
        pool = []
        for lo in range(0, min(self.count, POOL_PAGES * PAGE_SIZE), PAGE_SIZE):
            hi = min(lo + PAGE_SIZE, self.count)
            if endpoint == "jobs":
                items = [_JOB % (i, i, _namespace(i), i, _namespace(i), 99 + 2 * i, 101 + 2 * i, 99 + 2 * i,
                                 99 + 2 * i, 99 + 2 * i, START * 10**9, i % 5000, i % 5000, i % 5000, i)
                         for i in range(lo, hi)]
            else:  # the id's first 8 hex digits: the replay number
                items = ['{"ID":"' + REPLAY + allocation_stub(i, rng, self.events)[7 + len(REPLAY):]
                         for i in range(lo, hi)]
            page = bytearray(("[" + ",".join(items) + "]").replace("job-", f"job-{REPLAY}-").encode())
            marks = np.frombuffer(page, np.uint8)
            at = np.flatnonzero(marks[:len(marks) - len(REPLAY) + 1] == ord(REPLAY[0]))
            at = at[[page[a:a + len(REPLAY)] == REPLAY.encode() for a in at.tolist()]]
            pool.append((page, at[:, None] + np.arange(len(REPLAY)), hi - lo))
        return pool

    def _pages(self, endpoint: Any, what: str, params: dict[str, Any]) -> Iterator[tuple[bytes, int]]:
        """The listing: page k is pool page k % POOL_PAGES with replay number k // POOL_PAGES written in place
        (the first 8 hex digits of each allocation id, and the job ids), so every id and job is unique."""
        t0 = time.thread_time()
        pool = self._pool(endpoint)
        self.gen_cpu += time.thread_time() - t0
        for k, lo in enumerate(range(0, self.count, PAGE_SIZE)):
            t0 = time.thread_time()
            page, at, size = pool[k % len(pool)]
            np.frombuffer(page, np.uint8)[at] = np.frombuffer(b"%08x" % (k // len(pool)), np.uint8)
            if self.count - lo < size:  # the last page, shorter
                docs = msgspec.json.decode(page)[:self.count - lo]
                body = msgspec.json.encode(docs)
            else:
                body = bytes(page)
            self.gen_cpu += time.thread_time() - t0
            yield body, 100 + 2 * self.count

    def node(self, node_id: str) -> dict[str, Any] | None:
        return self.nodes.get(node_id)

    def allocation(self, alloc_id: str, namespace: str) -> dict[str, Any] | None:
        self.full_reads += 1  # every generated job has an owner: this is not expected
        return None


REPORT = "monthly report 2026-02 (+PNG)"
LATER_SUMMARIES = "PAPI summaries of a later run, no change"  # what each timer run after the first pays
APART = (REPORT, LATER_SUMMARIES)  # shown, not part of the target


def reset_peak() -> None:
    """Start this process's peak resident memory (procstat.peak_mb, Linux's VmHWM) afresh (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allocations", type=int, default=TARGET_SIZE, help="how many allocations (size)")
    parser.add_argument("--task-events", type=int, default=0, choices=range(11), metavar="0-10",
                        help="events in each task state of the listing (Nomad keeps up to 10)")
    parser.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed after)")
    parser.add_argument("--inline-pages", type=int, default=None,
                        help="pages decoded in the collector's process before a second one decodes the rest "
                             "(default: the collector's own; a number above the page count: no second process)")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="acct-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    print(f"1-minute load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs; figures are only "
          "comparable on an otherwise idle machine)", flush=True)
    print(f"{args.allocations:,} allocations, {args.task_events} event(s) per task state", flush=True)

    def stage(name: str, t0: float, c0: float, minus: tuple[float, float] = (0.0, 0.0)) -> None:
        times[name] = time.perf_counter() - t0 - minus[0]
        cpu[name] = time.process_time() - c0 - minus[1]
        print(f"{name:<40} wall {times[name]:7.1f} s  cpu {cpu[name]:7.1f} s  peak RSS {peak_mb():5.0f} MB",
              flush=True)

    spent: dict[str, list[float]] = {}  # wall and CPU (of the thread that ran it) of a part of the collect

    def timed(owner: Any, method: str, part: str) -> Any:
        """Patch owner.method to add its wall and thread CPU time to spent[part]; returns the original."""
        real = getattr(owner, method)
        spent[part] = [0.0, 0.0]

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return real(*a, **kw)
            finally:
                spent[part][0] += time.perf_counter() - t0
                spent[part][1] += time.thread_time() - c0
        setattr(owner, method, wrapper)
        return real

    try:
        source = GeneratedNomad(args.allocations, args.task_events)
        t0, c0 = time.perf_counter(), time.process_time()
        parts = {"store writes (own thread)": (Store, "upsert_columns"), "the job listing (generating it too)":
                 (GeneratedNomad, "job_owners"), "building the id index": (Store, "end_bulk"),
                 "summing the summaries' base": (BulkFold, "add")}
        originals = {part: timed(owner, method, part) for part, (owner, method) in parts.items()}
        try:
            with Store(work / "accounting.sqlite") as store:
                result = collect(source, store, clock=lambda: NOW, inline_pages=args.inline_pages)
                count = store.count()
        finally:
            for part, (owner, method) in parts.items():
                setattr(owner, method, originals[part])
        stage(f"collect {count:,} (decode, parse, store)", t0, c0, (source.gen_cpu, source.gen_cpu - result.decoder_cpu))
        print(f"{'  of which the decoding process':<40} {'':13}  cpu {result.decoder_cpu:7.1f} s  peak RSS "
              f"{result.decoder_peak_mb:5.0f} MB (running beside the collector: together "
              f"{peak_mb() + result.decoder_peak_mb:.0f} MB)")
        for part, (wall, used) in spent.items():
            print(f"{'  of which ' + part:<40} wall {wall:7.1f} s  cpu {used:7.1f} s")
        print(f"  (generating the pages, not counted: {source.gen_cpu:.1f} s of CPU)")
        if result.problems or source.full_reads or count != args.allocations:
            print(f"collect went wrong: {len(result.problems)} problem(s), {source.full_reads} full read(s), "
                  f"{count} stored", file=sys.stderr)
            return 2

        after_collect, collect_peak = rss_mb(), peak_mb() + result.decoder_peak_mb  # both ran at once
        reset_peak()  # from here on the peak is the exporters' (the collector's stays in `peak`)
        t0, c0 = time.perf_counter(), time.process_time()
        exports = export_all(work / "accounting.sqlite", work / "outgoing", CTX, NOW, work / "summaries",
                             CTX.vos.keys())
        times["exporters"] = time.perf_counter() - t0
        cpu["exporters"] = time.process_time() - c0 + exports.second_cpu  # the second process measures its own
        both = peak_mb() + exports.second_peak_mb
        for name, seconds in exports.seconds.items():
            print(f"  {name:<38} wall {seconds:7.1f} s")
        print(f"{'APEL cloud | APEL GPU + PAPI summaries':<40} wall {times['exporters']:7.1f} s  cpu "
              f"{cpu['exporters']:7.1f} s  ({exports.cloud.records:,} cloud records, {exports.cloud_tail:,} of them "
              f"queued by the second process, {exports.gpu.records:,} GPU records, "
              f"{len(exports.summaries)} summary files)")
        print(f"{'  memory: this process after collect':<40} {after_collect:7.0f} MB, peak while exporting "
              f"{peak_mb():.0f} MB + second process {exports.second_peak_mb:.0f} MB = {both:.0f} MB")
        peak = max(collect_peak, both)
        with Store(work / "accounting.sqlite") as store:
            t0, c0 = time.perf_counter(), time.process_time()
            lo, hi = month_bounds(2026, 2)
            rows = rows_from_totals(store.month_totals(lo, hi, NOW), CTX)
            write_report(rows, work / "reports", 2026, 2)
            stage(REPORT, t0, c0)
            t0, c0 = time.perf_counter(), time.process_time()
            from_store(store, NOW + 600)
            stage(LATER_SUMMARIES, t0, c0)
        peak = max(peak, peak_mb())
        # The target is collect + store + exporters: the monthly report (run once a month) and a later run's
        # summaries are shown, not counted.
        wall = sum(seconds for name, seconds in times.items() if name not in APART)
        used = sum(seconds for name, seconds in cpu.items() if name not in APART)
        per = 1e6 / max(1, args.allocations)
        print(f"{'collect + store + exporters (no report)':<40} wall {wall:7.1f} s  cpu {used:7.1f} s  "
              f"({wall * per:.1f} / {used * per:.1f} us per allocation)")
        print(f"{'peak RSS (collecting or exporting processes)':<40} {peak:7.0f} MB")
        print(f"1-minute load average at the end: {os.getloadavg()[0]:.2f}")
        if args.allocations < TARGET_SIZE:
            print(f"(the target, < {TARGET_S} s and < {TARGET_MB} MB, is for {TARGET_SIZE:,} allocations)")
            return 0
        ok = wall < TARGET_S and peak < TARGET_MB
        print("target met" if ok else "TARGET MISSED", f"(< {TARGET_S} s and < {TARGET_MB} MB)")
        return 0 if ok else 1
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
