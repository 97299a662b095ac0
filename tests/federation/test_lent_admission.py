"""Node admission on the nodes another installation lends (docs/federation.md, "Scope and node meta").

B offers b-lab's cpu nodes, A accepts (the real `federation` commands), hosts.yml is written as
`provision` writes it after that, and A's real platform play renders the node admission job.
The job must also run in the lent datacenter (else a lent node keeps `status=test` and PAPI
places nothing there), and its script must not ask a lent node to reach an ingress of A's (A has
none at B's site). The rendered script runs here the way it runs on a node, in dry-run mode (it
prints the meta instead of setting it through the Nomad agent: no Nomad here); the checks that
need a prepared node may fail on this machine, which is not one; only the ingress check matters.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
from federation_bed import public_hosts
from support.hcl_config import heredoc
from support.platform_render import SECRETS, render

from ai4os_kit.cli import main
from ai4os_kit.platform.nomad_job import hcl_attr, hcl_blocks, parse_job

pytestmark = pytest.mark.integration


def _job(path: Path) -> tuple[list[str], str]:
    """The job's datacenters and the admission script as Nomad writes it into local/."""
    text = path.read_text()
    _, job = hcl_blocks(hcl2.loads(text), "job")[0]
    _, group = hcl_blocks(job, "group")[0]
    _, task = hcl_blocks(group, "task")[0]
    script = next(body for _, body in hcl_blocks(task, "template")
                  if hcl_attr(body, "destination") == "local/node_admission.py")
    return parse_job(text, str(path)).datacenters, heredoc(hcl_attr(script, "data"))


def _run(script: Path, datacenter: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_ID": "lent-node", "NODE_TAGS": "cpu",
           "NODE_DATACENTER": datacenter, "NODE_ADMISSION_DRY_RUN": "1"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.stdout


def test_node_admission_runs_on_lent_nodes_without_an_ingress_check(borrower: Path, lender: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["federation", "offer", str(lender), "--site", "b-lab", "--to", "demo", "--namespaces", "ai4eosc",
                 "--outbound-address", "198.51.100.30/32"]) == 0, capsys.readouterr().err
    assert main(["federation", "accept", str(borrower), str(lender / "federation" / "demo" / "request.yml")]) == 0
    capsys.readouterr()
    public_hosts(borrower)   # hosts.yml as `provision` writes it once A accepted
    out = tmp_path / "out"
    # A's secrets.yml (vaulted, as `ai4os-kit secrets` made it) and the operator's OIDC client secrets.
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(borrower / ".vault-pass"))
    result = render(borrower, out, {"platform_job_components": ["node_admission"], **SECRETS})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

    datacenters, text = _job(out / "node_admission" / "node-admission.nomad.hcl")
    assert "b-lab" in datacenters and {"ifca", "cesnet"} <= set(datacenters), datacenters
    script = tmp_path / "node_admission.py"
    script.write_text(text)

    lent = _run(script, "b-lab")
    assert "skip  traefik-reachable: lent by beta: this platform has no ingress at that site" in lent, lent
    meta_line = next(line for line in lent.splitlines() if line.startswith("meta "))
    assert "traefik-reachable" not in meta_line, lent
    # A node of A's own site is still asked to reach its site's ingress (none answers here).
    own = _run(script, "ifca")
    assert "skip  traefik-reachable" not in own
    assert any(line.split()[:2] == ["FAIL", "traefik-reachable:"] for line in own.splitlines()), own
