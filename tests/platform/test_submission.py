"""Submission through the Nomad HTTP API, against a TEST DOUBLE of that API (nomad_api_double.py;
Nomad itself is not obtainable here): secrets go to Nomad variables, jobs are parsed, planned and
registered; a re-run registers nothing; a changed setting re-registers only its job.
"""

from __future__ import annotations

import re
from pathlib import Path

from nomad_api_double import NomadApiDouble
from platform_render import SECRETS, make_inventory, render

COMPONENTS = ["mlflow", "papi", "node_admission"]
TOKEN = "test-management-token"


def _changed(stdout: str) -> int:
    recap = stdout.rsplit("PLAY RECAP", 1)[1]
    m = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", recap)
    assert m, recap
    return int(m.group(1))


def test_submit_is_idempotent_and_keeps_secrets_in_variables(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"ai4os_enable_mlflow": True,
                                    "ai4os_mlflow_backend_store_uri": "postgresql://mlflow@db.example.org/mlflow"},
                         dict(SECRETS, ai4os_mlflow_backend_store_password="db-secret"), gpu_facts=False)
    nomad = NomadApiDouble(TOKEN)
    extra = {"platform_job_submit": True, "platform_job_nomad_addr": nomad.address, "platform_job_nomad_token": TOKEN,
             "platform_job_nomad_ca_cert": "", "platform_job_components": COMPONENTS}
    try:
        first = render(inv, tmp_path / "out", extra)
        assert first.returncode == 0, first.stdout[-4000:]
        assert sorted(job for _, job in nomad.jobs) == ["mlflow", "node-admission", "papi"]
        assert {j["Region"] for j in nomad.jobs.values()} == {"ai4os"}
        assert nomad.variables[("default", "nomad/jobs/mlflow")] == {"db_password": "db-secret"}
        assert nomad.variables[("default", "nomad/jobs/papi")]["nomad_token"] == TOKEN
        assert "db-secret" not in first.stdout and TOKEN not in first.stdout

        writes = len(nomad.writes())
        second = render(inv, tmp_path / "out", extra)
        assert second.returncode == 0, second.stdout[-4000:]
        assert len(nomad.writes()) == writes            # nothing re-registered or re-written
        assert _changed(second.stdout) == 0

        third = render(inv, tmp_path / "out", dict(extra, ai4os_papi_count=2))
        assert third.returncode == 0, third.stdout[-4000:]
        assert [p for m, p in nomad.writes()[writes:]] == ["/v1/jobs"]      # only papi, once
        assert 'count = 2' in (tmp_path / "out" / "papi" / "papi.nomad.hcl").read_text()

        denied = render(inv, tmp_path / "out", dict(extra, platform_job_nomad_token="wrong", ai4os_papi_count=3,
                                                    platform_job_components=["papi"]))
        assert denied.returncode != 0 and "403" in denied.stdout
    finally:
        nomad.close()
