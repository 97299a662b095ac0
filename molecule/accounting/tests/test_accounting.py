"""Role accounting on a systemd node: its units run the collector and the monthly report as systemd runs them.

Nomad is the recorded-response TEST DOUBLE on the node's 127.0.0.1:4646 (prepare.yml): two allocations of
datacenter ifca (IFCA-LCG2), a CPU one in namespace imagine that ran five hours on the 3rd of the previous
month, a GPU one in namespace ai4eosc running since then.
"""

import csv
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

CPU_ALLOC = "0d2e4f6a-8b1c-4d3e-a5f7-9b0c1d2e3f40"
VENV = "/opt/ai4os-accounting"
STORE = "/var/lib/ai4os-accounting/accounting.sqlite"
OUTGOING = "/var/spool/apel/outgoing/ai4os"
SUMMARIES = "/srv/ai4os/accounting/summaries"
REPORTS = "/srv/ai4os/accounting/reports"


def previous_month() -> str:
    today = datetime.now(timezone.utc)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def _start(host, unit):
    """Start a oneshot unit as its timer does; return the journal of that run (its invocation)."""
    run = host.run(f"systemctl start {unit}.service")
    invocation = host.check_output(f"systemctl show -p InvocationID --value {unit}.service")
    journal = host.run(f"journalctl _SYSTEMD_INVOCATION_ID={invocation} --no-pager -o cat").stdout
    assert run.rc == 0, f"{unit}.service failed:\n{journal}"
    return journal


@pytest.fixture(scope="module")
def collected(host):
    return _start(host, "ai4os-accounting")


def test_the_timers_are_enabled_and_waiting(host):
    for timer in ("ai4os-accounting.timer", "ai4os-accounting-report.timer"):
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running


def test_the_collector_unit_stores_both_allocations(host, collected):
    assert "collect: 2 allocation(s) in Nomad" in collected
    count = host.check_output(
        f"{VENV}/bin/python -c \"import sqlite3; "
        f"print(sqlite3.connect('{STORE}').execute('SELECT COUNT(*) FROM allocations').fetchone()[0])\"")
    assert count == "2"


def test_the_collector_unit_queues_the_apel_records(host, collected):
    assert "export-apel: 2 cloud record(s)" in collected
    assert "export-gpu: " in collected and "export-gpu: 0 " not in collected
    messages = host.check_output(f"find {OUTGOING} -type f -exec cat {{}} +")
    assert "APEL-cloud-message: v0.4" in messages
    assert f"VMUUID: {CPU_ALLOC}" in messages
    assert "SiteName: IFCA-LCG2" in messages
    for vo in ("vo.imagine-ai.eu", "vo.ai4eosc.eu"):  # accounting_fqan_format's default
        assert f"FQAN: /{vo}/Role=NULL/Capability=NULL" in messages


def test_the_collector_unit_writes_the_papi_summaries(host, collected):
    for namespace in ("imagine", "ai4eosc"):
        for name in ("timeseries", "users-agg", "full-agg"):
            assert host.file(f"{SUMMARIES}/{namespace}-{name}.csv").is_file


def test_the_report_unit_writes_the_previous_month(host, collected):
    journal = _start(host, "ai4os-accounting-report")
    month = previous_month()
    assert f"report {month}: 2 VO/site row(s)" in journal
    rows = list(csv.DictReader(io.StringIO(host.file(f"{REPORTS}/{month}.csv").content_string)))
    by_vo = {row["vo"]: row for row in rows}
    assert by_vo["vo.imagine-ai.eu"]["site"] == "IFCA-LCG2" and float(by_vo["vo.imagine-ai.eu"]["cpu_hours"]) > 0
    assert float(by_vo["vo.ai4eosc.eu"]["gpu_hours"]) > 0
    assert host.file(f"{REPORTS}/{month}.png").size > 0


def test_a_second_run_reads_nothing_new(host, collected):
    again = _start(host, "ai4os-accounting")
    assert "collect: 2 allocation(s) in Nomad" in again
    assert "export-apel: 1 cloud record(s)" in again  # only the running allocation is reported again


def test_the_units_are_confined(host):
    for unit in ("ai4os-accounting", "ai4os-accounting-report"):
        shown = dict(line.split("=", 1) for line in host.check_output(
            f"systemctl show {unit}.service -p ProtectSystem -p NoNewPrivileges -p ProtectHome").splitlines())
        assert shown == {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "ProtectHome": "yes"}, unit


def test_the_nomad_token_is_readable_by_root_only(host):
    token = host.file("/etc/ai4os-accounting/nomad-token")
    assert (token.user, token.group, token.mode) == ("root", "root", 0o600)
    assert token.content_string == "molecule-accounting-token\n"


def test_the_virtualenv_is_marked_with_the_pinned_wheel(host):
    pin = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "wheel" / "sha256").read_text().strip()
    assert host.file(f"{VENV}/.ai4os-kit-installed").content_string.split(" ")[0] == pin
    assert host.check_output(f"{VENV}/bin/ai4os-kit --version").strip().endswith("0.1.0")
