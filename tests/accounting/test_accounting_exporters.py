"""The exports of `accounting run` side by side (accounting.exporters).

They give the same records and summaries as one after the other.

The second process is a real spawned Python process reading the same SQLite
store and writing into the same dirq queue.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import uuid
from pathlib import Path

import pytest
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
    assert set(done.seconds) == {"cloud", "gpu", "summaries"}
    assert done.second_cpu > 0 and done.second_peak_mb > 0  # measured in the second process


def test_a_failure_in_the_second_process_is_named_and_the_cloud_records_still_go_out(store_file: Path,
                                                                                     tmp_path: Path) -> None:
    path = _copy(store_file, tmp_path / "store")
    blocked = tmp_path / "summaries-is-a-file"
    blocked.write_text("not a directory\n")
    with pytest.raises(KitError) as err:
        export_all(path, tmp_path / "queue", CTX, NOW, blocked, NAMESPACES)
    message = str(err.value)
    assert message.startswith("accounting export (APEL GPU records, PAPI summaries) failed: cannot write the usage "
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
    assert str(err.value) == ("accounting export (APEL GPU records, PAPI summaries) failed: the second process ended "
                              "without a result (killed, or out of memory? see the journal of the accounting service)")
    with Store(path) as store:
        assert store.meta("cursor_apel_cloud") > 0  # this side finished its export
        assert store.meta("cursor_apel_gpu") == 0  # the other side never ran
