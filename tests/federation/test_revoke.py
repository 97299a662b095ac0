"""`federation revoke`: the record leaves the plan (no rule admits the lender's addresses any more), the
lent nodes are drained, then purged, through the region's API: playbooks/federation-revoke.yml run by
the CLI against the TEST DOUBLE of Nomad's API (tests/support/cluster_api_double.py; Nomad cannot
run here), over mutual TLS with certificates of A's CA and A's management token."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from ai4os_kit.cli import main
from ai4os_kit.day2 import playbook
from ai4os_kit.model import ansible_inventory, secrets
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from support.cluster_api_double import Agent, Cluster
from support.day2_bed import _pki

OUTBOUND = "198.51.100.30/32"
LENT = ["b-lab-cpu-1", "b-lab-cpu-2"]


def _lend(borrower: Path, lender: Path) -> None:
    assert main(["federation", "offer", str(lender), "--site", "b-lab", "--to", "demo", "--namespaces", "ai4eosc",
                 "--outbound-address", OUTBOUND]) == 0
    assert main(["federation", "accept", str(borrower), str(lender / "federation" / "demo" / "request.yml")]) == 0


def _admitted(inventory: Path) -> list[str]:
    plan = build_plan(load_inventory(inventory))
    return [r["port_name"] for groups in plan["secgroups"].values() for g in groups for r in g["rules"]
            if r["remote_cidr"] == OUTBOUND]


def test_revoke_unknown_site_exits_2(borrower: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["federation", "revoke", str(borrower), "b-lab", "--no-drain", "--no-provision"]) == 2
    err = capsys.readouterr().err
    assert "'b-lab' is not a site lent to" in err and "nothing is lent to this platform" in err


def test_revoke_drains_then_purges_the_lent_nodes(borrower: Path, lender: Path, tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    _lend(borrower, lender)
    assert _admitted(borrower) == ["nomad-rpc"]
    values = secrets.read_secrets(borrower, secrets.password_file(borrower, create=False)[0])
    pki = _pki(tmp_path, values["ai4os_secret_ca_key"], values["ai4os_secret_ca_cert"])
    plan = build_plan(load_inventory(borrower))
    servers = plan["groups"]["nomad_servers"]
    region = Cluster("nomad", servers, ["ifca-cpu-1"], version="2.0.4", region="ai4os", datacenter="ifca",
                     management=values["ai4os_secret_nomad_bootstrap_token"])
    for name in [*LENT, "b-lab-cpu-9"]:  # b-lab-cpu-9: a node of that site the record does not name
        region.add_node(name, "2.0.4")["Datacenter"] = "b-lab"
    agent = Agent(region, servers[0], pki["server"], pki["server_key"], pki["ca"])
    try:
        hosts = ansible_inventory.render(plan)  # every node is this machine; the API host's agent is the double
        for hostvars in hosts["all"]["hosts"].values():
            hostvars.update(ansible_connection="local", ansible_python_interpreter=sys.executable)
        ansible_inventory.write(borrower, hosts)
        extra = tmp_path / "vars.yml"
        extra.write_text(yaml.safe_dump({
            "federation_nomad_api": agent.api, "federation_nomad_ca": str(pki["ca"]),
            "federation_nomad_client_cert": str(pki["client"]), "federation_nomad_client_key": str(pki["client_key"]),
            "federation_drain_deadline": 60}))
        assert main(["federation", "revoke", str(borrower), "b-lab", "--no-provision",
                     "--ansible-args", f"-e @{extra}"]) == 0, capfd.readouterr()
        out = capfd.readouterr().out
        assert "drain: b-lab-cpu-1, b-lab-cpu-2 of lent site b-lab" in " ".join(out.split())
        assert values["ai4os_secret_nomad_bootstrap_token"] not in out, "the management token is never printed"
        for name in LENT:
            node = region.node(name)
            assert node["SchedulingEligibility"] == "ineligible" and node["Drain"] is True
            assert node["DrainStrategy"]["Deadline"] == 60 * 10**9
            assert node["LastDrain"]["Meta"] == {"ai4os_kit": "federation-revoke"}
        assert region.node("b-lab-cpu-9")["SchedulingEligibility"] == "eligible"
        # The record left the plan: no rule admits the lender's address (provision applies that).
        assert _admitted(borrower) == []
        revoked = list((borrower / "federation" / "revoked").glob("b-lab-*.yml"))
        assert len(revoked) == 1 and not (borrower / "federation" / "lent" / "b-lab.yml").exists()
        record = yaml.safe_load(revoked[0].read_text())
        assert [n["name"] for n in record["nodes"]] == LENT and record["revoked"] and all(n["serial"] for n in record["nodes"])
        # After provision closed the security groups: the purge step.
        rc = playbook.run(borrower, "federation-revoke.yml", {"federation_revoked_site": "b-lab",
                                                             "federation_revoked_nodes": LENT, "federation_step": "purge"},
                          ["-e", f"@{extra}"])
        assert rc == 0, capfd.readouterr()
        assert {n["Name"] for n in region.nodes.values()} == {"ifca-cpu-1", "b-lab-cpu-9"}
    finally:
        agent.close()
