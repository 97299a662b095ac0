"""PAPI summaries, the monthly report, the configuration file and the CLI end to end.

Nomad is the recorded-response TEST DOUBLE (nomad_double.py).
"""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml
from dirq.QueueSimple import QueueSimple
from hypothesis import given, settings
from hypothesis import strategies as st
from nomad_double import NomadDouble, fixture
from test_accounting_apel import make_cert, read_queue

from ai4os_kit.accounting.apel import ExportContext
from ai4os_kit.accounting.config import load_config
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.report import month_rows, rows_from_totals, write_report
from ai4os_kit.accounting.timeslices import month_bounds
from ai4os_kit.accounting.store import Store
from ai4os_kit.accounting.summary import Summaries, write_summaries
from ai4os_kit.cli import main
from ai4os_kit.errors import InputError

MAR1 = 1772323200  # 2026-03-01T00:00:00Z
H = 3600
ROOT = Path(__file__).resolve().parents[2]
CTX = ExportContext(site_names={"ifca": "IFCA-LCG2"}, vos={"ai4eosc": "vo.ai4eosc.eu", "imagine": "vo.imagine-ai.eu"},
                    compute_service="AI4OS Nomad")


def usage(ns: str, owner: str, dc: str, millicores: int, gpus: int, create: int, start: int, end: int | None,
          memory: int = 1000, disk: int = 2048) -> Usage:
    return Usage(str(uuid.uuid4()), ns, "job", "job.g[0]", owner, "node", dc, millicores, 0, memory, disk, gpus,
                 "NVIDIA A100" if gpus else None, create, start, end, "complete" if end else "running", 1)


HISTORY = [
    usage("ai4eosc", "u1", "ifca", 4000, 2, MAR1 - H, MAR1, MAR1 + 48 * H),           # 2 days, queued 1 h before
    usage("ai4eosc", "u2", "ifca", 4000, 0, MAR1 + 24 * H, MAR1 + 24 * H, MAR1 + 42 * H),  # 18 h on 2 March
    usage("imagine", "u3", "cesnet", 2000, 1, MAR1 + 10 * H, MAR1 + 10 * H, None),      # still running
]


def read_papi(path: Path) -> dict[str, list[object]]:
    """Read a summary the way PAPI's stats endpoint does (';', ints except date and owner)."""
    with open(path) as handle:
        reader = csv.DictReader(handle, delimiter=";")
        table: dict[str, list[object]] = {k: [] for k in reader.fieldnames or []}
        for row in reader:
            for key, value in row.items():
                table[key].append(value if key in ("date", "owner") else int(value))
    return table


def test_papi_summaries(tmp_path: Path) -> None:
    now = MAR1 + 72 * H
    paths = write_summaries(Summaries().add_all(HISTORY, now), tmp_path, ["ai4eosc", "imagine", "empty"])
    assert {p.name for p in paths} >= {"ai4eosc-timeseries.csv", "ai4eosc-users-agg.csv", "ai4eosc-full-agg.csv",
                                       "empty-full-agg.csv"}
    users = read_papi(tmp_path / "ai4eosc-users-agg.csv")
    assert users == {"owner": ["u1", "u2"], "cpu_num": [8, 3], "cpu_MHz": [0, 0], "memory_MB": [2000, 750],
                     "disk_MB": [4096, 1536], "gpu_num": [4, 0]}
    full = read_papi(tmp_path / "ai4eosc-full-agg.csv")
    assert full["cpu_num"] == [11] and full["gpu_num"] == [4]
    series = read_papi(tmp_path / "ai4eosc-timeseries.csv")
    assert series["date"] == ["2026-02-28", "2026-03-01", "2026-03-02"]
    assert series["cpu_num"] == [0, 4, 7] and series["gpu_num"] == [0, 2, 2] and series["running"] == [0, 1, 2]
    assert read_papi(tmp_path / "imagine-users-agg.csv")["gpu_num"] == [round(62 / 24)]  # running until now
    assert read_papi(tmp_path / "empty-full-agg.csv")["cpu_num"] == [0]


def test_monthly_report_with_plot(tmp_path: Path) -> None:
    now = MAR1 + 72 * H
    rows = month_rows(HISTORY, CTX, 2026, 3, now)
    assert [(r.vo, r.site, r.allocations, r.cpu_hours, r.gpu_hours) for r in rows] == [
        ("vo.ai4eosc.eu", "IFCA-LCG2", 2, 4 * 48 + 4 * 18, 2 * 48),
        ("vo.imagine-ai.eu", "cesnet", 1, 2 * 62, 62),
    ]
    assert month_rows(HISTORY, CTX, 2026, 2, now) == []  # queued time is no usage
    with Store(tmp_path / "acct.sqlite") as store:  # the SQL aggregation the CLI uses gives the same rows
        store.upsert(HISTORY, now)
        for mon in (2, 3, 4):
            lo, hi = month_bounds(2026, mon)
            assert rows_from_totals(store.month_totals(lo, hi, now), CTX) == month_rows(HISTORY, CTX, 2026, mon, now)
    csv_path, md_path, png_path = write_report(rows, tmp_path, 2026, 3)
    assert csv_path.read_text().splitlines()[1] == "vo.ai4eosc.eu,IFCA-LCG2,2,264.00,96.00"
    assert "| **total** | | 3 | 388.00 | 158.00 |" in md_path.read_text()
    image = matplotlib.image.imread(png_path)
    assert image.shape[:2] == (480, 1200) and image.std() > 0  # a real, non-blank plot


def write_config(tmp_path: Path, address: str, **changes: object) -> Path:
    cert, key = make_cert(tmp_path)
    cfg = {
        "store": str(tmp_path / "acct.sqlite"),
        "nomad": {"address": address, "timeout": 5},
        "apel": {"compute_service": "AI4OS Nomad", "sites": {"ifca": "IFCA-LCG2"},
                 "vos": {"ai4eosc": "vo.ai4eosc.eu", "imagine": "vo.imagine-ai.eu"}},
        "ssm": {"outgoing_dir": str(tmp_path / "outgoing"), "host_cert": str(cert), "host_key": str(key)},
        "summaries_dir": str(tmp_path / "summaries"),
        "reports_dir": str(tmp_path / "reports"),
    }
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]  # type: ignore[assignment]
        if value is None:
            node.pop(last)  # type: ignore[attr-defined]
        else:
            node[last] = value  # type: ignore[index]
    path = tmp_path / "accounting.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize(("changes", "key", "problem"), [
    ({"apel__compute_service": None}, "apel.compute_service", "missing"),
    ({"nomad__address": "nomad:4646"}, "nomad.address", "is not an http(s) URL"),
    ({"nomad__timeout": "soon"}, "nomad.timeout", "expected int"),
    ({"store": "relative.sqlite"}, "store", "is not an absolute path"),
    ({"apel__cpu_duration": "measured"}, "apel.cpu_duration", "is not reserved or omit"),
    ({"apel__sites": {"ifca": 7}}, "apel.sites.ifca", "expected a non-empty string"),
    ({"extra": 1}, "extra", "unknown key"),
])
def test_config_errors_name_file_key_and_line(tmp_path: Path, changes: dict[str, object], key: str,
                                              problem: str) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:4646", **changes)
    with pytest.raises(InputError) as err:
        load_config(path)
    assert err.value.key == key and problem in err.value.problem and err.value.file == str(path)
    assert err.value.line is not None


def test_cli_run_end_to_end(nomad_double: NomadDouble, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("allocation-gpu-running.json", "allocation-cpu-complete.json"):
        doc = fixture(name)
        nomad_double.allocs[doc["ID"]] = doc
    cfg = write_config(tmp_path, nomad_double.address)
    assert main(["accounting", "run", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "collect: 2 allocation(s) in Nomad" in out and "2 cloud record(s) in 1 message(s)" in out
    assert QueueSimple(str(tmp_path / "outgoing")).count() == 2
    assert read_papi(tmp_path / "summaries" / "ai4eosc-users-agg.csv")["owner"] == ["c3f1a9e0b2d4@egi.eu"]
    assert main(["accounting", "report", "--config", str(cfg), "--month", "2026-03"]) == 0
    assert (tmp_path / "reports" / "2026-03.png").stat().st_size > 1000
    assert main(["accounting", "check", "--config", str(cfg)]) == 0
    assert "allocation(s), 2 job(s), index" in capsys.readouterr().out  # both listings the collector reads


def test_cli_run_as_the_timer_runs_it(nomad_double: NomadDouble, tmp_path: Path) -> None:
    """`accounting run` from a console script of its own, as systemd starts it: the exporters' second process is
    spawned and imports that script again (as __mp_main__), which must not run the command a second time."""
    doc = fixture("allocation-gpu-running.json")
    nomad_double.allocs[doc["ID"]] = doc
    cfg = write_config(tmp_path, nomad_double.address)
    script = tmp_path / "ai4os-kit"  # what pip writes for the console script
    script.write_text("import sys\nfrom ai4os_kit.cli import main\nif __name__ == '__main__':\n    sys.exit(main())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script), "accounting", "run", "--config", str(cfg)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["collect", "export-apel", "export-gpu", "summary"], lines
    assert "1 cloud record(s) in 1 message(s)" in lines[1]
    assert re.match(r"export-gpu: [1-9][0-9]* gpu record\(s\) in 1 message\(s\)", lines[2])  # monthly: grows with time
    assert QueueSimple(str(tmp_path / "outgoing")).count() == 2
    assert read_papi(tmp_path / "summaries" / "ai4eosc-users-agg.csv")["gpu_num"] != [0]


def test_cli_unreachable_nomad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = write_config(tmp_path, f"http://127.0.0.1:{port}")
    assert main(["accounting", "collect", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"failed: Nomad at http://127.0.0.1:{port}: listing allocations failed")
    assert "Traceback" not in err


def test_cli_missing_host_certificate_queues_nothing_and_keeps_records(nomad_double: NomadDouble, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    doc = fixture("allocation-cpu-complete.json")
    nomad_double.allocs[doc["ID"]] = doc
    cfg = write_config(tmp_path, nomad_double.address, ssm__host_cert=str(tmp_path / "gone" / "hostcert.pem"))
    assert main(["accounting", "run", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"error: {cfg}: ssm.host_cert: {tmp_path}/gone/hostcert.pem does not exist" in err
    assert not (tmp_path / "outgoing").exists()
    with Store(tmp_path / "acct.sqlite") as store:  # collected and kept for the next export
        assert store.count() == 1 and store.meta("cursor_apel_cloud") == 0
    cfg = write_config(tmp_path, nomad_double.address)  # certificate installed: the records go out
    assert main(["accounting", "export-apel", "--config", str(cfg)]) == 0
    assert len(read_queue(tmp_path / "outgoing")) == 1


def test_cli_bad_month(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:4646")
    assert main(["accounting", "report", "--config", str(cfg), "--month", "March"]) == 2
    assert "--month: 'March' is not YYYY-MM" in capsys.readouterr().err


DAY = 86400
moments = st.integers(MAR1 - 3 * DAY, MAR1 + 40 * DAY) | st.sampled_from([MAR1, MAR1 + DAY, MAR1 + 2 * DAY - 1])


@st.composite
def histories(draw: st.DrawFn) -> list[Usage]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        create = draw(moments)
        start = draw(st.none() | moments)
        end = draw(st.none() | moments)
        out.append(Usage(str(uuid.uuid4()), draw(st.sampled_from(["ai4eosc", "imagine"])), "job", "job.g[0]",
                         draw(st.none() | st.sampled_from(["", "u1", "u2", "unknown"])), "node", "ifca",
                         draw(st.integers(0, 64_000)), draw(st.integers(0, 10**5)), draw(st.integers(0, 10**6)),
                         draw(st.integers(0, 10**7)), draw(st.integers(0, 8)), None, create, start, end,
                         "complete" if end else "running", 1))
    return out


@settings(max_examples=150, deadline=None, database=None)
@given(history=histories(), now=moments)
def test_summaries_from_the_store_equal_the_day_by_day_reference(tmp_path_factory: pytest.TempPathFactory,
                                                                  history: list[Usage], now: int) -> None:
    """Intervals over many days, ending on midnight, running past now, starting before creation, never started."""
    with Store(tmp_path_factory.mktemp("s") / "a.sqlite") as store:
        store.upsert(history, now)
        fast = Summaries().add_store(store, now)
    reference = Summaries().add_all(history, now)
    assert (dict(fast.daily), dict(fast.users)) == (dict(reference.daily), dict(reference.users))
    for namespace in reference.namespaces():
        assert fast.tables(namespace) == reference.tables(namespace)


def test_summary_sums_stay_exact_beyond_int64() -> None:
    """Rows whose int64 sum would overflow are summed in parts and added as Python integers."""
    from ai4os_kit.accounting.summary import _exact_sums

    big = 2**61
    bins = np.array([0, 2, 0, 0, 2])
    sums = _exact_sums(bins, [np.array([big, 5, big, big, 7]), np.array([1, 1, 1, 1, 1]), None], 3)
    assert sums == {0: [3 * big, 3, 3], 2: [12, 2, 2]}
    odd = 2**53 + 1  # not a float64 on its own
    assert _exact_sums(bins, [np.array([odd, 1, odd, odd, 0])], 3) == {0: [3 * odd], 2: [1]}
    step = 2**50  # partial sums kept below 2**53: eight rows at a time
    assert _exact_sums(np.zeros(20, np.int64), [np.full(20, step + 1)], 1) == {0: [20 * (step + 1)]}
