"""APEL records: golden files, caso's models as the reference, a real dirq queue, bad queue/certificate input.

Nomad is the recorded-response TEST DOUBLE (nomad_double.py); the queue is a
real dirq QueueSimple read back with dirq's own API.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dirq.QueueSimple import QueueSimple
from hypothesis import given, settings
from hypothesis import strategies as st
from nomad_double import NomadDouble, fixture

from ai4os_kit.accounting import apel
from ai4os_kit.accounting.collector import collect
from ai4os_kit.accounting.hostcert import check_host_certificate
from ai4os_kit.accounting.model import APEL_STATUS, Usage
from ai4os_kit.accounting.nomad_client import NomadSettings, NomadSource
from ai4os_kit.accounting.ssmqueue import OutgoingQueue
from ai4os_kit.accounting.store import Store
from ai4os_kit.errors import InputError, KitError

GOLDEN = Path(__file__).parent / "golden"
NOW = 1775500000  # 2026-04-06T18:26:40Z
CTX = apel.ExportContext(site_names={"ifca": "IFCA-LCG2"},
                         vos={"ai4eosc": "vo.ai4eosc.eu", "imagine": "vo.imagine-ai.eu"},
                         compute_service="AI4OS Nomad", cloud_type="ai4os-kit (Nomad)")


def read_queue(path: Path) -> list[str]:
    """Every message of a dirq QueueSimple, in queue order, read (and removed) with dirq's API as ssmsend does."""
    queue = QueueSimple(str(path))
    out = []
    for name in queue:
        if queue.lock(name):
            out.append(queue.get(name).decode())
            queue.remove(name)
    return out


@pytest.fixture
def recorded_store(nomad_double: NomadDouble, tmp_path: Path) -> Path:
    for name in ("allocation-gpu-running.json", "allocation-cpu-complete.json"):
        doc = fixture(name)
        nomad_double.allocs[doc["ID"]] = doc
    path = tmp_path / "acct.sqlite"
    with Store(path) as store:
        collect(NomadSource(NomadSettings(address=nomad_double.address)), store)
    return path


def test_cloud_and_gpu_messages_match_golden_files_through_a_real_dirq_queue(recorded_store: Path,
                                                                              tmp_path: Path) -> None:
    queue_dir = tmp_path / "outgoing"
    queue = OutgoingQueue(queue_dir)
    with Store(recorded_store) as store:
        cloud = apel.export_cloud(store, queue, CTX, NOW)
        gpu = apel.export_accelerator(store, queue, CTX, NOW)
    assert (cloud.records, cloud.messages, gpu.records, gpu.messages) == (2, 1, 2, 1)
    assert QueueSimple(str(queue_dir)).count() == 2
    cloud_text, gpu_text = read_queue(queue_dir)
    assert cloud_text == (GOLDEN / "apel-cloud-message.txt").read_text()
    assert json.loads(gpu_text) == json.loads((GOLDEN / "apel-accelerator-message.json").read_text())
    assert QueueSimple(str(queue_dir)).count() == 0


def test_cloud_message_layout(recorded_store: Path, tmp_path: Path) -> None:
    """v0.4 header, records separated by a line holding only %%, keys sorted as caso writes them."""
    with Store(recorded_store) as store:
        apel.export_cloud(store, OutgoingQueue(tmp_path / "q"), CTX, NOW)
    (text,) = read_queue(tmp_path / "q")
    header, body = text.split("\n", 1)
    assert header == "APEL-cloud-message: v0.4" and text.endswith("\n")
    records = body.rstrip("\n").split("\n%%\n")
    assert len(records) == 2
    for record in records:
        keys = [line.split(": ", 1)[0] for line in record.split("\n")]
        assert keys == sorted(keys)
        assert {"VMUUID", "SiteName", "CloudComputeService", "MachineName", "LocalUserId", "GlobalUserName", "FQAN",
                "Status", "StartTime", "EndTime", "WallDuration", "CpuCount", "Memory", "Disk",
                "CloudType"} <= set(keys)


def test_gpu_records_split_by_calendar_month(recorded_store: Path, tmp_path: Path) -> None:
    with Store(recorded_store) as store:
        apel.export_accelerator(store, OutgoingQueue(tmp_path / "q"), CTX, NOW)
    (text,) = read_queue(tmp_path / "q")
    message = json.loads(text)
    assert (message["Type"], message["Version"]) == ("APEL-accelerator-message", "0.1")
    months = {(r["MeasurementYear"], r["MeasurementMonth"]): r["AvailableDuration"] for r in message["UsageRecords"]}
    april = 1775001600  # 2026-04-01T00:00:00Z
    assert months == {(2026, 3): april - 1774908310, (2026, 4): NOW - april}


def test_second_export_sends_only_running_allocations_again(recorded_store: Path, tmp_path: Path) -> None:
    with Store(recorded_store) as store:
        queue = OutgoingQueue(tmp_path / "q")
        apel.export_cloud(store, queue, CTX, NOW)
        again = apel.export_cloud(store, queue, CTX, NOW + 600)
    assert again.records == 1  # the running GPU allocation, with 600 s more wall time
    last = read_queue(tmp_path / "q")[-1]
    assert "VMUUID: 6b8c7f2e-3a41-4c55-9d2e-0f1a2b3c4d5e" in last and f"WallDuration: {NOW + 600 - 1774908310}" in last


usages = st.builds(
    Usage,
    alloc_id=st.uuids().map(str),
    namespace=st.sampled_from(["ai4eosc", "imagine"]),
    job_id=st.text(max_size=20),
    name=st.text(max_size=40),
    owner=st.none() | st.text(min_size=1, max_size=30) | st.sampled_from(["é", "\n"]),
    node_id=st.just("n"),
    datacenter=st.just("ifca"),
    cpu_millicores=st.integers(0, 256_000),
    cpu_mhz=st.integers(0, 10**6),
    memory_mb=st.integers(0, 2**21),
    disk_mb=st.integers(0, 2**22),
    gpu_count=st.integers(0, 8),
    gpu_model=st.none() | st.text(max_size=30),
    create=st.just(1_700_000_000),
    start=st.integers(1_700_000_000, 1_760_000_000),
    end=st.none() | st.integers(1_760_000_000, 1_770_000_000),
    status=st.sampled_from(sorted(APEL_STATUS)),
    modify_index=st.integers(1, 10**9),
)


@settings(max_examples=60, deadline=None, database=None)
@given(usages)
def test_rendering_equals_casos_own_models(usage: Usage) -> None:
    """The fast renderer writes byte for byte what caso's CloudRecord/AcceleratorRecord write."""
    now = 1_770_000_000
    fields = apel.cloud_fields(usage, CTX, now)
    assert fields is not None
    reference = apel.caso_cloud_record(usage, CTX, now)
    assert reference is not None
    assert apel.render_cloud(fields) == reference.ssm_message()
    assert apel.render_cloud_usage(usage, CTX, now) == reference.ssm_message()
    omit = apel.ExportContext(**{**CTX.__dict__, "cpu_duration": "omit"})
    assert apel.render_cloud_usage(usage, omit, now) == "\n".join(
        line for line in reference.ssm_message().split("\n") if not line.startswith("CpuDuration:"))
    assert "\n%%" not in apel.render_cloud(fields).replace("\n", "\n ")  # no record can inject a separator
    for rec in apel.accelerator_records(usage, CTX, now):
        assert json.dumps(rec, separators=(",", ":")) == apel.caso_accelerator_record(rec).ssm_message()
    # the export's text builder writes json.dumps of those records
    assert apel.accelerator_texts(usage, CTX, now) == [json.dumps(r) for r in apel.accelerator_records(usage, CTX, now)]


@pytest.fixture(scope="module")
def sql_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sql") / "render.sqlite"


@settings(max_examples=80, deadline=None, database=None)
@given(usage=usages, default_vo=st.booleans(), omit=st.booleans())
def test_sql_rendering_equals_the_python_renderer_and_casos_model(sql_store: Path, usage: Usage, default_vo: bool,
                                                                   omit: bool) -> None:
    """The export's SQL writes each record as the Python renderer does; a record with text to clean is told apart."""
    now = 1_770_000_000
    ctx = apel.ExportContext(**{**CTX.__dict__, "cpu_duration": "omit" if omit else "reserved",
                                "default_vo": "vo.other.eu" if default_vo else None})
    usage = usage._replace(namespace="other" if default_vo and usage.modify_index % 2 else usage.namespace)
    with Store(sql_store) as store:
        store.db.execute("DELETE FROM allocations")
        store.upsert([usage], now)
        select, params = apel.cloud_sql(ctx, now)
        ((_, text, *fields),) = list(store.export_select(0, select, params, **apel._filters(ctx)))
    expected = apel.render_cloud_usage(usage, ctx, now)
    clean = all(v.isascii() and v.isprintable() for v in (usage.name, usage.namespace, usage.owner or ""))
    assert fields == [usage.name, usage.namespace, usage.owner]
    assert apel.cloud_text_checker()(*fields) == clean  # else the export renders it in Python
    if clean:
        assert text == expected
        reference = apel.caso_cloud_record(usage, ctx, now)
        assert reference is not None and (omit or text == reference.ssm_message())


def test_gpu_hours_over_months_add_up() -> None:
    usage = Usage(str(uuid.uuid4()), "ai4eosc", "j", "n", "o", "n", "ifca", 1000, 0, 1, 1, 2, "NVIDIA A100",
                  0, 1767139200, 1772323200, "complete", 1)  # 2025-12-31 .. 2026-03-01
    records = apel.accelerator_records(usage, CTX, NOW)
    assert [(r["MeasurementYear"], r["MeasurementMonth"]) for r in records] == [(2025, 12), (2026, 1), (2026, 2)]
    assert sum(r["AvailableDuration"] for r in records) == 1772323200 - 1767139200


# -- bad input: full / read-only queue directory, host certificate

_EXPORT_SNIPPET = """
import resource, signal, sys
from test_accounting_apel import CTX, NOW
from ai4os_kit.accounting import apel
from ai4os_kit.accounting.ssmqueue import OutgoingQueue
from ai4os_kit.accounting.store import Store
from ai4os_kit.errors import KitError
try:
    with Store({store!r}) as store:
{limit}
        apel.export_cloud(store, OutgoingQueue({queue!r}), CTX, NOW)
except KitError as err:
    print(err)
    sys.exit(3)
"""


def _export_in_child(store: Path, queue: Path, limit: str = "", unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    code = _EXPORT_SNIPPET.format(store=str(store), queue=str(queue), limit=limit)
    cmd = [sys.executable, "-c", code]
    if unprivileged and os.geteuid() == 0:  # root ignores file modes unless DAC override is dropped
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] + cmd
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # the child imports this module's CTX, NOW
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def _queue_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def test_full_queue_directory_writes_nothing_and_keeps_the_cursor(recorded_store: Path, tmp_path: Path) -> None:
    queue_dir = tmp_path / "outgoing"
    queue_dir.mkdir()
    limit = ("        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
             "        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))")  # the 'disk' takes 100 bytes per file
    proc = _export_in_child(recorded_store, queue_dir, limit)
    assert proc.returncode == 3, proc.stderr
    assert f"cannot write to the SSM outgoing queue {queue_dir}: File too large" in proc.stdout
    assert "Nothing was half-written" in proc.stdout and "Traceback" not in proc.stderr
    assert _queue_files(queue_dir) == []  # no partial message, no temporary file
    with Store(recorded_store) as store:
        assert store.meta("cursor_apel_cloud") == 0
        result = apel.export_cloud(store, OutgoingQueue(queue_dir), CTX, NOW)  # space is back: nothing lost
    assert result.records == 2 and len(read_queue(queue_dir)) == 1


def test_read_only_queue_directory_is_a_clear_error(recorded_store: Path, tmp_path: Path) -> None:
    queue_dir = tmp_path / "outgoing"
    queue_dir.mkdir()
    queue_dir.chmod(0o555)
    try:
        proc = _export_in_child(recorded_store, queue_dir, unprivileged=True)
    finally:
        queue_dir.chmod(0o755)
    assert proc.returncode == 3, proc.stderr
    assert "Permission denied" in proc.stdout and "give the accounting service user write access" in proc.stdout
    assert _queue_files(queue_dir) == []
    with Store(recorded_store) as store:
        assert store.meta("cursor_apel_cloud") == 0


def test_queue_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "q").write_text("")
    with pytest.raises(KitError, match="cannot write to the SSM outgoing queue"):
        OutgoingQueue(tmp_path / "q")


def make_cert(directory: Path, days: int = 365, name: str = "host") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounting.ai4os.example.org")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}cert.pem", directory / f"{name}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_host_certificate_checks(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    assert "accounting.ai4os.example.org" in check_host_certificate(cert, key, "acct.yml")
    with pytest.raises(InputError, match=r"ssm.host_cert: .*missing-cert.pem does not exist"):
        check_host_certificate(tmp_path / "missing-cert.pem", key, "acct.yml")
    with pytest.raises(InputError, match="ssm.host_cert: missing"):
        check_host_certificate(None, key, "acct.yml")
    old, old_key = make_cert(tmp_path, days=-1, name="old")
    with pytest.raises(InputError, match="expired on"):
        check_host_certificate(old, old_key, "acct.yml")
    with pytest.raises(InputError, match="does not belong to"):
        check_host_certificate(cert, old_key, "acct.yml")
    with pytest.raises(InputError, match="not a PEM X.509 certificate"):
        check_host_certificate(key, key, "acct.yml")


def test_format_drift_from_caso_stops_the_export(recorded_store: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """If the fast renderer (SQL) and caso's model ever disagree, nothing is queued and the error shows both."""
    real = apel.cloud_sql

    def drifting(ctx: apel.ExportContext, now: int) -> Any:
        select, params = real(ctx, now)
        return select, {**params, "record": params["record"].replace("PublicIPCount: 0", "PublicIPCount: 1")}

    monkeypatch.setattr(apel, "cloud_sql", drifting)
    with Store(recorded_store) as store, pytest.raises(KitError, match="differs from caso's model"):
        apel.export_cloud(store, OutgoingQueue(tmp_path / "q"), CTX, NOW)
    assert QueueSimple(str(tmp_path / "q")).count() == 0


def _store_of(path: Path, usages: list[Usage]) -> Path:
    with Store(path) as store:
        store.upsert(usages, NOW)
    return path


def _many(count: int, **changes: Any) -> list[Usage]:
    base = Usage("", "ai4eosc", "job", "job.usergroup[0]", "owner@egi.eu", "n", "ifca", 2000, 0, 8000, 20480, 1,
                 "NVIDIA A100", NOW - 7200, NOW - 7000, NOW - 100, "complete", 5)
    return [base._replace(alloc_id=str(uuid.UUID(int=i + 1)), **changes) for i in range(count)]


def test_messages_hold_at_most_1000_records_and_512_kib(tmp_path: Path) -> None:
    """APEL's unloader sends 1000 records a message; ARGO AMS takes 1 MB once signed and base64-encoded."""
    store = _store_of(tmp_path / "a.sqlite", _many(2500))
    with Store(store) as s:
        result = apel.export_cloud(s, OutgoingQueue(tmp_path / "q"), CTX, NOW)
    messages = read_queue(tmp_path / "q")
    assert (result.records, result.messages) == (2500, 3)
    assert [m.count("\nVMUUID: ") for m in messages] == [1000, 1000, 500]
    big = _many(2500, name="x" * 2000)  # long job names: the byte limit splits first
    store = _store_of(tmp_path / "b.sqlite", big)
    with Store(store) as s:
        result = apel.export_cloud(s, OutgoingQueue(tmp_path / "q2"), CTX, NOW)
    messages = read_queue(tmp_path / "q2")
    assert result.records == 2500 and all(len(m.encode()) <= apel.MAX_MESSAGE_BYTES + 64 for m in messages)
    assert len(messages) == result.messages > 3 and sum(m.count("\nVMUUID: ") for m in messages) == 2500


def test_accelerator_message_assembled_from_encoded_records_is_json_dumps() -> None:
    usage = _many(1)[0]._replace(start=1767139200, end=1772323200)
    records = apel.accelerator_records(usage, CTX, NOW)
    assert len(records) == 3
    assert apel._accelerator_message_of([json.dumps(r) for r in records]) == apel.accelerator_message(records)


def test_only_allocations_of_egi_sites_and_vos_are_read_and_the_rest_counted(tmp_path: Path) -> None:
    usages = _many(10) + [u._replace(datacenter="cesnet") for u in _many(20)[10:13]] + \
        [u._replace(namespace="private") for u in _many(20)[13:15]] + \
        [u._replace(start=None, end=None, status="pending") for u in _many(20)[15:16]]
    with Store(_store_of(tmp_path / "a.sqlite", usages)) as store:
        cloud = apel.export_cloud(store, OutgoingQueue(tmp_path / "q"), CTX, NOW)
        gpu = apel.export_accelerator(store, OutgoingQueue(tmp_path / "q"), CTX, NOW)
        assert (cloud.records, cloud.skipped) == (10, 5)  # not started: neither sent nor counted as skipped
        assert (gpu.records, gpu.skipped) == (10, 5)
        with_default = apel.ExportContext(**{**CTX.__dict__, "default_vo": "vo.default.eu"})
        store.set_meta("cursor_apel_cloud", 0)
        again = apel.export_cloud(store, OutgoingQueue(tmp_path / "q"), with_default, NOW)
    assert (again.records, again.skipped) == (12, 3)
    last = read_queue(tmp_path / "q")[-1]
    assert "FQAN: /vo.default.eu/Role=NULL/Capability=NULL\n" in last and "\nLocalGroupId: private\n" in last


def test_cursor_is_durable_at_each_flush_while_the_export_still_reads(tmp_path: Path) -> None:
    """Each synced batch moves the cursor in the file, as another process (a restarted exporter) would read it."""
    path = tmp_path / "a.sqlite"
    with Store(path) as store:
        for batch in range(4):  # four changes: the cursor can stop between them
            store.upsert([u._replace(alloc_id=str(uuid.UUID(int=100 * batch + i + 1))) for i, u in
                          enumerate(_many(3))], NOW)
    seen: list[int] = []

    class Watched(OutgoingQueue):
        def add(self, message: bytes, durable: bool = True) -> str:
            with sqlite3.connect(path) as other:  # what a crash would leave for the next run
                seen.append(other.execute("SELECT COALESCE((SELECT value FROM meta WHERE key = 'cursor_apel_cloud'), 0)")
                            .fetchone()[0])
            return super().add(message, durable)

    with Store(path) as store:
        result = apel.export_cloud(store, Watched(tmp_path / "q"), CTX, NOW, size=2, sync_every=1)
        assert result.records == 12 and store.meta("cursor_apel_cloud") == 4
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == 3, seen
