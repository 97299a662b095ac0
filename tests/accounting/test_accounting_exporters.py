"""The exports of `accounting run` side by side (accounting.exporters).

They give the same records and summaries as one after the other.

The second process is a real spawned Python process reading the same SQLite
store and writing into the same dirq queue.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import threading
import uuid
from pathlib import Path

import pytest
from apel_queue import queued_records
from test_accounting_apel import read_queue

from ai4os_kit.accounting import apel, exporters
from ai4os_kit.accounting.exporters import export_all
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.ssmqueue import OutgoingQueue
from ai4os_kit.accounting.store import Store
from ai4os_kit.accounting.summary import Summaries, write_summaries
from ai4os_kit.errors import KitError

MAR1 = 1772323200  # 2026-03-01T00:00:00Z
NOW = MAR1 + 20 * 86400
CTX = apel.ExportContext(site_names={"ifca": "IFCA-LCG2", "cesnet": "CESNET-MCC"},  # "lent" is not an EGI site
                         vos={"ai4eosc": "vo.ai4eosc.eu", "imagine": "vo.imagine-ai.eu"},
                         compute_service="AI4OS Nomad")
NAMESPACES = ("ai4eosc", "imagine")


def _history(count: int) -> list[Usage]:
    """Allocations over three weeks: some with GPUs, some still running, some at a site that is not an EGI site."""
    rng = random.Random(7)
    out = []
    for i in range(count):
        start = MAR1 + rng.randrange(18 * 86400)
        end = None if i % 20 == 0 else start + rng.randrange(60, 2 * 86400)
        gpus = rng.choice((1, 2)) if i % 8 == 0 else 0
        out.append(Usage(str(uuid.UUID(int=rng.getrandbits(128), version=4)), NAMESPACES[i % 2], f"job-{i}",
                         f"job-{i}.g[0]", f"user{i % 37}@egi.eu", f"node-{i % 5}", ("ifca", "cesnet", "lent")[i % 3],
                         1000 * rng.choice((1, 2, 4)), 0, 4000, 2048, gpus, "NVIDIA A100" if gpus else None,
                         start - 30, start, end, "running" if end is None else "complete", 10 + i))
    return out


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("exporters") / "acct.sqlite"
    with Store(path) as store:
        store.upsert(_history(2600), NOW - 3600)
    return path


@pytest.fixture(scope="module")
def changes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same allocations written in 26 runs of the collector: 26 change numbers."""
    path = tmp_path_factory.mktemp("exporters-changes") / "acct.sqlite"
    history = _history(2600)
    with Store(path) as store:
        for lo in range(0, len(history), 100):
            store.upsert(history[lo:lo + 100], NOW - 3600)
    return path


def _copy(store_file: Path, to: Path) -> Path:
    to.mkdir()
    for part in store_file.parent.glob(store_file.name + "*"):  # the database and its WAL, if any
        shutil.copy(part, to / part.name)
    return to / store_file.name


def test_side_by_side_exports_equal_the_exports_one_after_the_other(store_file: Path, tmp_path: Path) -> None:
    one = _copy(store_file, tmp_path / "one")
    with Store(one) as store:
        queue = OutgoingQueue(tmp_path / "one-queue")
        cloud = apel.export_cloud(store, queue, CTX, NOW)
        gpu = apel.export_accelerator(store, queue, CTX, NOW)
        files = write_summaries(Summaries().add_store(store, NOW), tmp_path / "one-summaries", NAMESPACES)
        cursors = store.meta("cursor_apel_cloud"), store.meta("cursor_apel_gpu")

    both = _copy(store_file, tmp_path / "both")
    done = export_all(both, tmp_path / "both-queue", CTX, NOW, tmp_path / "both-summaries", NAMESPACES)

    assert (done.cloud.records, done.cloud.messages, done.cloud.skipped) == (cloud.records, cloud.messages,
                                                                              cloud.skipped)
    assert (done.gpu.records, done.gpu.messages, done.gpu.skipped) == (gpu.records, gpu.messages, gpu.skipped)
    assert cloud.messages >= 2 and gpu.records > 0 and cloud.skipped > 0  # the data exercises each part
    # the two writers' messages interleave in the queue: compare them as a whole, each message once
    assert sorted(read_queue(tmp_path / "both-queue")) == sorted(read_queue(tmp_path / "one-queue"))
    assert [p.name for p in done.summaries] == [p.name for p in files]
    for path in files:
        assert (tmp_path / "both-summaries" / path.name).read_bytes() == path.read_bytes(), path.name
    with Store(both) as store:  # each exporter's cursor moved as far as one after the other
        assert (store.meta("cursor_apel_cloud"), store.meta("cursor_apel_gpu")) == cursors
    assert set(done.seconds) == {"cloud", "gpu", "summaries", "cloud tail"}
    assert done.second_cpu > 0 and done.second_peak_mb > 0  # measured in the second process


def test_a_failure_in_the_second_process_is_named_and_the_cloud_records_still_go_out(store_file: Path,
                                                                                     tmp_path: Path) -> None:
    path = _copy(store_file, tmp_path / "store")
    blocked = tmp_path / "summaries-is-a-file"
    blocked.write_text("not a directory\n")
    with pytest.raises(KitError) as err:
        export_all(path, tmp_path / "queue", CTX, NOW, blocked, NAMESPACES)
    message = str(err.value)
    assert message.startswith("accounting export (APEL GPU records, PAPI summaries, the later cloud records) failed: cannot write the usage "
                              f"summaries to {blocked}")
    assert "Traceback" not in message
    with Store(path) as store:
        assert store.meta("cursor_apel_cloud") > 0  # the cloud export on this side finished
        assert store.meta("cursor_apel_gpu") > 0  # the GPU export ran before the summaries failed
    assert len(read_queue(tmp_path / "queue")) >= 3


def test_a_failure_on_both_sides_raises_the_cloud_exports_error(store_file: Path,
                                                                 tmp_path: Path) -> None:
    path = _copy(store_file, tmp_path / "store")
    queue = tmp_path / "queue-is-a-file"
    queue.write_text("not a directory\n")
    with pytest.raises(KitError, match=f"cannot write to the SSM outgoing queue {queue}"):
        export_all(path, queue, CTX, NOW, tmp_path / "summaries", NAMESPACES)
    # both sides fail on the queue; the cloud export's error is the one raised, and no cursor moved
    with Store(path) as store:
        assert store.meta("cursor_apel_cloud") == 0 and store.meta("cursor_apel_gpu") == 0


def _killed(*_args: object) -> None:
    """Stands in for the second process's work: the process dies without a result (as the OOM killer does it)."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_second_process_killed_without_a_result_is_named(store_file: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The spawned process imports this module by name (spawn passes on sys.path) and runs _killed in it.
    monkeypatch.setattr(exporters, "_second", _killed)
    path = _copy(store_file, tmp_path / "store")
    with pytest.raises(KitError) as err:
        export_all(path, tmp_path / "queue", CTX, NOW, tmp_path / "summaries", NAMESPACES)
    assert str(err.value) == ("accounting export (APEL GPU records, PAPI summaries, the later cloud records) failed: the second process ended "
                              "without a result (killed, or out of memory? see the journal of the accounting service)")
    with Store(path) as store:
        assert store.meta("cursor_apel_cloud") > 0  # this side finished its export
        assert store.meta("cursor_apel_gpu") == 0  # the other side never ran


class PausingQueue(OutgoingQueue):
    """The real queue; the cloud export's thread waits after its first message until the test lets it go (a test
    double for a busy cloud export, so that the second process's part is taken at a known point)."""

    paused = threading.Event()
    go_on = threading.Event()

    def add(self, message: bytes, durable: bool = True) -> str:
        name = super().add(message, durable)
        if threading.current_thread().name == "cloud-here" and not self.paused.is_set():
            self.paused.set()
            assert self.go_on.wait(30)
        return name


def test_the_second_process_takes_over_the_later_changes_and_nothing_is_lost_or_sent_twice(
        changes_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = _copy(changes_file, tmp_path / "one")
    with Store(one) as store:
        alone = apel.export_cloud(store, OutgoingQueue(tmp_path / "one-queue"), CTX, NOW, size=50)
        cursor = store.meta("cursor_apel_cloud")

    split = _copy(changes_file, tmp_path / "split")
    monkeypatch.setattr(exporters, "OutgoingQueue", PausingQueue)
    handover = exporters.Handover(multiprocessing.get_context("spawn"))
    assert exporters.cloud_tail(split, tmp_path / "split-queue", CTX, NOW, handover) is None  # the export here not begun
    here: list[apel.ExportResult] = []
    thread = threading.Thread(name="cloud-here", target=lambda: here.append(
        exporters._cloud(split, tmp_path / "split-queue", CTX, NOW, handover)))
    thread.start()
    assert PausingQueue.paused.wait(30)  # the cloud export here has queued its first message
    tail = exporters.cloud_tail(split, tmp_path / "split-queue", CTX, NOW, handover)
    PausingQueue.go_on.set()
    thread.join(30)
    assert tail is not None and here
    with Store(split) as store:
        assert store.meta("cursor_apel_cloud") < tail.last_change  # not past the other part before it is joined
    joined = exporters.join_cloud(split, here[0], tail)

    assert here[0].records > 0 and tail.records > 0 and tail.last_change == alone.last_change == cursor
    assert (joined.records, joined.skipped) == (alone.records, alone.skipped)
    records = sorted(r["VMUUID"] for r in queued_records(tmp_path / "split-queue")[0])
    assert records == sorted(r["VMUUID"] for r in queued_records(tmp_path / "one-queue")[0])  # each once
    assert queued_records(tmp_path / "split-queue")[0] != [] and len(set(records)) == len(records)
    with Store(split) as store:
        assert store.meta("cursor_apel_cloud") == cursor
    # the second process found nothing left once the export here is done
    assert exporters.cloud_tail(split, tmp_path / "split-queue", CTX, NOW, handover) is None


def test_side_by_side_exports_of_many_changes_equal_the_exports_one_after_the_other(changes_file: Path,
                                                                                     tmp_path: Path) -> None:
    """Whether or not the second process finds changes left to take over (timing), the same records are queued."""
    one = _copy(changes_file, tmp_path / "one")
    with Store(one) as store:
        cloud = apel.export_cloud(store, OutgoingQueue(tmp_path / "one-queue"), CTX, NOW)
        apel.export_accelerator(store, OutgoingQueue(tmp_path / "one-queue"), CTX, NOW)
        cursors = store.meta("cursor_apel_cloud"), store.meta("cursor_apel_gpu")
    both = _copy(changes_file, tmp_path / "both")
    done = export_all(both, tmp_path / "both-queue", CTX, NOW, tmp_path / "both-summaries", NAMESPACES)
    assert (done.cloud.records, done.cloud.skipped) == (cloud.records, cloud.skipped)
    ours, theirs = queued_records(tmp_path / "both-queue"), queued_records(tmp_path / "one-queue")
    assert sorted(r["VMUUID"] for r in ours[0]) == sorted(r["VMUUID"] for r in theirs[0])
    assert len(ours[1]) == len(theirs[1])
    with Store(both) as store:
        assert (store.meta("cursor_apel_cloud"), store.meta("cursor_apel_gpu")) == cursors
