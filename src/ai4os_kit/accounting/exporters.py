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
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ai4os_kit.accounting import apel
from ai4os_kit.accounting.procstat import cpu_seconds, peak_mb
from ai4os_kit.accounting.ssmqueue import OutgoingQueue
from ai4os_kit.accounting.store import Store
from ai4os_kit.accounting.summary import Summaries, write_summaries
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


def _cloud(store_path: Path, queue_dir: Path, ctx: apel.ExportContext, now: int) -> apel.ExportResult:
    with Store(store_path) as store:
        return apel.export_cloud(store, OutgoingQueue(queue_dir), ctx, now)


def gpu_and_summaries(store_path: Path, queue_dir: Path, ctx: apel.ExportContext, now: int, summaries_dir: Path,
                      namespaces: tuple[str, ...]) -> tuple[apel.ExportResult, list[Path], dict[str, float]]:
    """APEL GPU records, then the PAPI summaries: what the second process does."""
    start = time.perf_counter()
    with Store(store_path) as store:
        gpu = apel.export_accelerator(store, OutgoingQueue(queue_dir), ctx, now)
        middle = time.perf_counter()
        summaries = Summaries().add_store(store, now)
    paths = write_summaries(summaries, summaries_dir, namespaces)
    return gpu, paths, {"gpu": middle - start, "summaries": time.perf_counter() - middle}


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
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        second = pool.submit(_second, store_path, queue_dir, ctx, now, summaries_dir, tuple(namespaces))
        start = time.perf_counter()
        cloud_error: BaseException | None = None
        try:
            cloud = _cloud(store_path, queue_dir, ctx, now)
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
        raise KitError(f"accounting export (APEL GPU records, PAPI summaries) failed: {error}")
    gpu, paths, seconds = result  # type: ignore[misc]
    return Exports(cloud, gpu, paths, {"cloud": cloud_seconds, **seconds}, cpu, peak)
