"""The exports of one accounting run side by side.

APEL cloud records are written here, GPU records and summaries in a second process.

The three read the store and write files of their own (the SSM queue, the
PAPI summaries); the two APEL exporters have cursors of their own. Run one
after the other they use one core; the accounting node has more. Threads do
not help: the cloud export hands Python's GIL to SQLite for every row it
reads, and a thread computing the summaries meanwhile makes each hand-back
wait (measured on ten million allocations: 94 s side by side on two threads,
72 s one after the other). A second process does: it opens the store on a
connection of its own (SQLite in WAL mode: readers do not wait for the
cursor writes, which are short), and the dirq queue takes messages from
several writers. The process is spawned, not forked: nothing of this one
(open SQLite connections, threads) is carried into it.

An error on either side is raised once both have stopped, the cloud
export's first; an error in the second process comes back as its message,
and a second process that dies without one (killed) is named as such.

When the second process is done before the cloud export (it usually is:
the cloud records are most of the work), it takes over the second half of
the change numbers the cloud export has not reached yet (a :class:`Handover`
shared by both: the cloud export here publishes each change number it
starts and stops before the first one the second process took). The cloud
cursor moves past the second process's part only once both parts are
queued; a run that fails in between sends that part again next time, which
APEL's latest record per VMUUID makes harmless.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ai4os_kit.accounting import apel
from ai4os_kit.accounting.procstat import cpu_seconds, peak_mb
from ai4os_kit.accounting.ssmqueue import OutgoingQueue
from ai4os_kit.accounting.store import Store
from ai4os_kit.accounting.summary import from_store, write_summaries
from ai4os_kit.errors import KitError


@dataclass
class Exports:
    """What the exports of a run wrote.

    Also the wall seconds per export, and the second process's CPU seconds and peak memory.
    """

    cloud: apel.ExportResult
    gpu: apel.ExportResult
    summaries: list[Path]
    seconds: dict[str, float]
    second_cpu: float
    second_peak_mb: float
    cloud_tail: int = 0  # cloud records the second process queued (the changes it took over)


_DONE = 2**62  # Handover.at once the cloud export here has read everything it will read
_NOT_STARTED = -1  # Handover.at until the cloud export here has read its cursor


class Handover:
    """The change numbers where the cloud export here is (``at``) and where the second process's part starts.

    Made before the second process starts and handed to it at its start
    (multiprocessing's shared values travel only that way); both sides
    read and write them under the lock.
    """

    def __init__(self, context: Any) -> None:
        self.lock = context.Lock()
        self.at = context.Value("q", _NOT_STARTED, lock=False)
        self.boundary = context.Value("q", _DONE, lock=False)

    def start(self, cursor: int) -> None:
        """The cloud export here starts after ``cursor`` (until then the second process takes nothing over)."""
        with self.lock:
            self.at.value = cursor

    def stop(self, change: int) -> bool:
        """The cloud export here is about to read ``change``: False to go on, True where the second process took over."""
        with self.lock:
            if change >= self.boundary.value:
                return True
            self.at.value = max(self.at.value, change)
            return False

    def finish(self) -> None:
        with self.lock:
            self.at.value = _DONE

    def take_over(self, last_change: int) -> int | None:
        """In the second process: the change number its part starts at (half of what is left), or None."""
        with self.lock:
            at = self.at.value
            first = at + 1 + (last_change - at) // 2
            if at == _NOT_STARTED or at >= _DONE or first > last_change:
                return None
            self.boundary.value = first
            return first


_HANDOVER: Handover | None = None  # in the second process: given at its start


def _adopt(handover: Handover) -> None:
    global _HANDOVER
    _HANDOVER = handover


def _cloud(store_path: Path, queue_dir: Path, ctx: apel.ExportContext, now: int,
           handover: Handover | None = None) -> apel.ExportResult:
    with Store(store_path) as store:
        if handover is None:
            return apel.export_cloud(store, OutgoingQueue(queue_dir), ctx, now)
        handover.start(store.meta("cursor_apel_cloud"))
        try:
            return apel.export_cloud(store, OutgoingQueue(queue_dir), ctx, now, stop=handover.stop)
        finally:
            handover.finish()


def cloud_tail(store_path: Path, queue_dir: Path, ctx: apel.ExportContext, now: int,
               handover: Handover) -> apel.ExportResult | None:
    """In the second process: the cloud records of the changes the cloud export left to it (None: none left)."""
    with Store(store_path) as store:
        first = handover.take_over(store.last_change())
        if first is None:
            return None
        return apel.export_cloud(store, OutgoingQueue(queue_dir), ctx, now, after=first - 1)


def gpu_and_summaries(store_path: Path, queue_dir: Path, ctx: apel.ExportContext, now: int, summaries_dir: Path,
                      namespaces: tuple[str, ...]) -> tuple[apel.ExportResult, list[Path], dict[str, float],
                                                            apel.ExportResult | None]:
    """APEL GPU records, the PAPI summaries, then the cloud records left to it: what the second process does."""
    start = time.perf_counter()
    with Store(store_path) as store:
        gpu = apel.export_accelerator(store, OutgoingQueue(queue_dir), ctx, now)
        middle = time.perf_counter()
        summaries = from_store(store, now)
    paths = write_summaries(summaries, summaries_dir, namespaces)
    seconds = {"gpu": middle - start, "summaries": time.perf_counter() - middle}
    tail = None
    if _HANDOVER is not None:
        before = time.perf_counter()
        tail = cloud_tail(store_path, queue_dir, ctx, now, _HANDOVER)
        seconds["cloud tail"] = time.perf_counter() - before
    return gpu, paths, seconds, tail


def _second(store_path: Path, queue_dir: Path, ctx: apel.ExportContext, now: int, summaries_dir: Path,
            namespaces: tuple[str, ...]) -> tuple[str | None, object, float, float]:
    """In the second process: (error message or None, result, CPU seconds, peak resident MB)."""
    error: str | None = None
    result: object = None
    try:
        result = gpu_and_summaries(store_path, queue_dir, ctx, now, summaries_dir, namespaces)
    except KitError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 -- anything else comes back as its message, not as an unpicklable object
        error = f"{type(exc).__name__}: {exc}"
    return error, result, cpu_seconds(), peak_mb()


def export_all(store_path: Path, queue_dir: Path, ctx: apel.ExportContext, now: int, summaries_dir: Path,
               namespaces: Iterable[str] = ()) -> Exports:
    """APEL cloud and GPU records into the SSM queue and the PAPI summaries, as one run of the accounting timer."""
    spawn = multiprocessing.get_context("spawn")
    handover = Handover(spawn)
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn, initializer=_adopt, initargs=(handover,)) as pool:
        second = pool.submit(_second, store_path, queue_dir, ctx, now, summaries_dir, tuple(namespaces))
        start = time.perf_counter()
        cloud_error: BaseException | None = None
        try:
            cloud = _cloud(store_path, queue_dir, ctx, now, handover)
        except BaseException as exc:  # raised below, once the second process has stopped too
            cloud_error = exc
        cloud_seconds = time.perf_counter() - start
        try:
            error, result, cpu, peak = second.result()
        except BrokenProcessPool:  # killed (the kernel's OOM killer, a signal) or could not start
            error, result, cpu, peak = ("the second process ended without a result (killed, or out of memory? "
                                        "see the journal of the accounting service)"), None, 0.0, 0.0
    if cloud_error is not None:
        raise cloud_error
    if error is not None:
        raise KitError(f"accounting export (APEL GPU records, PAPI summaries, the later cloud records) failed: {error}")
    gpu, paths, seconds, tail = result  # type: ignore[misc]
    return Exports(join_cloud(store_path, cloud, tail), gpu, paths, {"cloud": cloud_seconds, **seconds}, cpu, peak,
                   tail.records if tail is not None else 0)


def join_cloud(store_path: Path, cloud: apel.ExportResult, tail: apel.ExportResult | None) -> apel.ExportResult:
    """Both parts of the cloud export are queued: the cursor moves past the second one's; the two results as one."""
    if tail is None:
        return cloud
    with Store(store_path) as store:
        if tail.last_change > store.meta("cursor_apel_cloud"):
            store.set_meta("cursor_apel_cloud", tail.last_change)
    return apel.ExportResult(cloud.records + tail.records, cloud.messages + tail.messages,
                             cloud.skipped - tail.records, cloud.names + tail.names,
                             max(cloud.last_change, tail.last_change))
