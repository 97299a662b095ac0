"""Accounting names the lender of the usage on lent nodes: `ai4os-kit accounting report` with the
configuration's `lent` map (lent datacenter -> lending institution) writes a per-lender CSV and a
section of the Markdown; the lent datacenter is never sent to APEL as one of this platform's sites."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from ai4os_kit.accounting.config import load_config
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.store import Store
from ai4os_kit.cli import main
from ai4os_kit.errors import InputError

MAR1 = 1772323200  # 2026-03-01T00:00:00Z
H = 3600


def _usage(namespace: str, datacenter: str, millicores: int, gpus: int, hours: int) -> Usage:
    return Usage(str(uuid.uuid4()), namespace, "job", "job.g[0]", "owner", "node", datacenter, millicores, 0, 1000,
                 2048, gpus, "NVIDIA A100" if gpus else None, MAR1, MAR1, MAR1 + hours * H, "complete", 1)


def _config(tmp_path: Path, lent: object) -> Path:
    path = tmp_path / "accounting.yml"
    path.write_text(yaml.safe_dump({
        "store": str(tmp_path / "acct.sqlite"), "nomad": {"address": "https://127.0.0.1:4646"},
        "apel": {"compute_service": "demo-nomad", "sites": {"ifca": "IFCA-LCG2"},
                 "vos": {"ai4eosc": "vo.ai4eosc.eu", "imagine": "vo.imagine-ai.eu"}},
        "ssm": {"outgoing_dir": str(tmp_path / "outgoing")}, "summaries_dir": str(tmp_path / "summaries"),
        "reports_dir": str(tmp_path / "reports"), "lent": lent}))
    return path


def test_report_shows_the_usage_of_lent_nodes_per_lender(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, {"b-lab": "beta", "c-hpc": "gamma"})
    with Store(tmp_path / "acct.sqlite") as store:
        store.upsert([_usage("ai4eosc", "ifca", 4000, 0, 10),        # own site
                      _usage("ai4eosc", "b-lab", 2000, 1, 5),        # lent by beta
                      _usage("imagine", "b-lab", 1000, 0, 4),
                      _usage("ai4eosc", "c-hpc", 8000, 0, 1)], MAR1 + 100 * H)   # lent by gamma
    assert main(["accounting", "report", "--config", str(config), "--month", "2026-03"]) == 0
    reports = tmp_path / "reports"
    lent = (reports / "2026-03-lent.csv").read_text().splitlines()
    assert lent == ["lender,site,vo,allocations,cpu_hours,gpu_hours",
                    "beta,b-lab,vo.ai4eosc.eu,1,10.00,5.00",
                    "beta,b-lab,vo.imagine-ai.eu,1,4.00,0.00",
                    "gamma,c-hpc,vo.ai4eosc.eu,1,8.00,0.00"]
    markdown = (reports / "2026-03.md").read_text()
    assert "## Usage of lent nodes, per lending institution" in markdown
    assert "| beta | b-lab | vo.ai4eosc.eu | 1 | 10.00 | 5.00 |" in markdown
    # The main table still has every site; only the GOCDB-named one is an APEL site.
    main_rows = (reports / "2026-03.csv").read_text().splitlines()
    assert "vo.ai4eosc.eu,IFCA-LCG2,1,40.00,0.00" in main_rows and "vo.ai4eosc.eu,b-lab,1,10.00,5.00" in main_rows
    assert load_config(config).export.site_names == {"ifca": "IFCA-LCG2"}


def test_without_lent_sites_the_report_is_as_before(tmp_path: Path) -> None:
    config = _config(tmp_path, {})
    with Store(tmp_path / "acct.sqlite") as store:
        store.upsert([_usage("ai4eosc", "ifca", 4000, 0, 10)], MAR1 + 100 * H)
    assert main(["accounting", "report", "--config", str(config), "--month", "2026-03"]) == 0
    assert not (tmp_path / "reports" / "2026-03-lent.csv").exists()
    assert "lent nodes" not in (tmp_path / "reports" / "2026-03.md").read_text()


def test_a_bad_lent_map_names_file_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_config(_config(tmp_path, {"b-lab": 7}))
    assert err.value.key == "lent.b-lab" and "expected a non-empty string" in err.value.problem and err.value.line
