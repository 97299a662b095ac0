"""Scale in and out: `ai4os-kit remove-node` (playbooks/remove-node.yml) drains with a deadline, makes
nodes leave one at a time and keeps the quorum; `ai4os-kit add-node` (playbooks/scale.yml) waits for
new clients to be ready and admitted. The choice of nodes is checked against the plan first.

Agents are TEST DOUBLES (cluster_api_double.py): Nomad and Consul cannot run here. scale.yml's host
and cluster layers converge the real roles on systemd containers in test_day2_testbed.py; here
its checks run alone (--tags day2_checks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.day2_bed import Day2Bed, events

from ai4os_kit.cli import main
from ai4os_kit.day2 import nodes
from ai4os_kit.errors import InputError
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan


def _shrink(bed: Day2Bed, **counts: int) -> None:
    sites = yaml.safe_load((bed.inventory / "sites.yml").read_text())
    for pool in sites["ai4os_sites"][0]["pools"]:
        pool["count"] = counts.get(pool["role"], pool["count"])
    (bed.inventory / "sites.yml").write_text(yaml.safe_dump(sites))


def _cli(bed: Day2Bed, monkeypatch: pytest.MonkeyPatch, *argv: str, extra: dict | None = None) -> int:
    for key, value in bed.env().items():
        monkeypatch.setenv(key, value)
    return main([*argv, "--ansible-args", f"-e @{bed.vars_file(extra)}"])


@pytest.fixture()
def five_servers(tmp_path: Path) -> Iterator[Day2Bed]:
    bed = Day2Bed(tmp_path, pools={"server": 5, "ingress": 1, "cpu": 2})
    yield bed
    bed.close()


def test_removal_is_checked_against_the_plan(tmp_path: Path) -> None:
    bed = Day2Bed(tmp_path)
    bed.close()
    deployed = {name: {} for name in bed.servers + bed.clients}
    with pytest.raises(InputError) as still_planned:  # the pool was not shrunk
        nodes.check_removal(bed.plan, deployed, ["local-cpu-5"])
    assert "shrink pool cpu of site local to count 4" in still_planned.value.fix
    with pytest.raises(InputError) as middle:  # a pool loses its highest-numbered nodes only
        nodes.check_removal(bed.plan, deployed, ["local-cpu-2"])
    assert "removes local-cpu-5 first" in middle.value.fix
    with pytest.raises(InputError) as unknown:
        nodes.check_removal(bed.plan, deployed, ["local-gpu-1"])
    assert "not a node of the deployed platform" in unknown.value.problem
    _shrink(bed, cpu=4)
    plan = build_plan(load_inventory(bed.inventory, check_vault=False))
    assert nodes.check_removal(plan, deployed, ["local-cpu-5"]) == ["local-cpu-5"]
    assert nodes.added(bed.plan, deployed) == [] and nodes.added(bed.plan, list(deployed)[:-1]) == [list(deployed)[-1]]


def test_two_servers_and_a_client_leave_one_at_a_time(five_servers: Day2Bed, monkeypatch, capfd) -> None:
    bed = five_servers
    _shrink(bed, server=3, cpu=1)
    gone = ["local-server-4", "local-server-5", "local-cpu-2"]
    assert _cli(bed, monkeypatch, "remove-node", str(bed.inventory), *gone, "--yes") == 0
    out = capfd.readouterr().out
    # one node at a time, in the given order, each followed by the health of the servers that stay
    leaves = [h for t, h, s in events(out) if "Leave the datacenter gracefully" in t and s == "changed"]
    assert leaves == gone
    waits = [h for t, h, s in events(out) if "Wait until the region is healthy" in t and s == "ok"]
    assert waits == ["local-server-1", "local-server-4", "local-server-5"]  # before anything, then after each server
    # Nomad: the servers left the gossip pool and the Raft peers; the client was drained, then purged
    assert {n for n, s in bed.nomad.servers.items() if s["Raft"]} == {"local-server-1", "local-server-2", "local-server-3"}
    assert bed.nomad.servers["local-server-4"]["Status"] == "left"
    assert sorted(n["Name"] for n in bed.nomad.nodes.values()) == ["local-cpu-1", "local-ingress-1"]
    drains = [r for r in bed.nomad.log if r[3].endswith("/drain")]
    assert len(drains) == 1
    # Consul: each left gracefully (a server leaves Raft by itself), nobody was forced
    assert {n for n, s in bed.consul.servers.items() if s["Raft"]} == {"local-server-1", "local-server-2", "local-server-3"}
    assert all(bed.consul.members[n]["Status"] == "left" for n in gone)
    assert not [r for r in bed.consul.log if "force-leave" in r[3]]
    # hosts.yml no longer lists them (test-bed site: no VM to destroy); status: healthy and as planned
    hosts = (bed.inventory / "hosts.yml").read_text()
    assert not any(n in hosts for n in gone)
    rc = main(["status", str(bed.inventory), "--nomad", bed.agents[("nomad", "local-server-1")].api.removesuffix("/v1"),
               "--consul", bed.agents[("consul", "local-server-1")].api.removesuffix("/v1")])
    screen = capfd.readouterr().out
    assert rc == 0, screen
    assert "No problems: healthy and as planned." in screen and "local-server-4" not in screen


def test_a_removal_that_breaks_the_quorum_is_refused_before_anything_changes(tmp_path: Path, monkeypatch,
                                                                            capfd) -> None:
    bed = Day2Bed(tmp_path)
    try:
        _shrink(bed, server=1)  # the plan allows 1, 3 or 5 servers; 3 -> 1 loses the failure tolerance
        rc = _cli(bed, monkeypatch, "remove-node", str(bed.inventory), "local-server-2", "local-server-3", "--yes")
        flat = " ".join(capfd.readouterr().out.split())
        assert rc == 1
        assert "would leave Consul datacenter local with 1 server(s); the Nomad region with 1 server(s)" in flat
        assert "Nothing was changed" in flat
        assert not [r for r in bed.consul.log + bed.nomad.log if r[2] != "GET"]
        assert "local-server-3" in (bed.inventory / "hosts.yml").read_text()
    finally:
        bed.close()


def test_a_drain_that_does_not_finish_stops_with_the_node_ineligible(tmp_path: Path, monkeypatch, capfd) -> None:
    bed = Day2Bed(tmp_path)
    try:
        bed.nomad.stuck_drains.add("local-cpu-5")
        _shrink(bed, cpu=4)
        rc = _cli(bed, monkeypatch, "remove-node", str(bed.inventory), "local-cpu-5", "--yes")
        flat = " ".join(capfd.readouterr().out.split())
        assert rc == 1
        assert "local-cpu-5: the drain did not complete within the deadline (2 s)" in flat
        node = bed.nomad.node("local-cpu-5")
        assert node["SchedulingEligibility"] == "ineligible" and node["Drain"]
        assert bed.consul.members["local-cpu-5"]["Status"] == "alive"  # it did not leave Consul
        assert "local-cpu-5" in (bed.inventory / "hosts.yml").read_text()
    finally:
        bed.close()


def test_new_clients_are_waited_for_until_admitted(tmp_path: Path, monkeypatch, capfd) -> None:
    """add-node with node names: scale.yml's checks (--tags day2_checks) wait until the new client is
    ready and node admission set status=ready; an admission error stops it with the reason."""
    bed = Day2Bed(tmp_path)
    try:
        for key, value in bed.env().items():
            monkeypatch.setenv(key, value)
        new = bed.nomad.node("local-cpu-5")
        new["Meta"] = {"status": "test"}
        new["_admit"] = ("ready", None)
        # the whole scale.yml would converge the host and cluster layers on this machine: only its checks run here
        rc = main(["add-node", str(bed.inventory), "local-cpu-5", "--ansible-args",
                   f"-e @{bed.vars_file()} --tags day2_checks"])
        out = capfd.readouterr().out
        assert rc == 0, out[-3000:]
        assert [h for t, h, s in events(out) if "Wait for the node admission checks" in t] == ["local-cpu-5"]
        assert new["Meta"]["status"] == "ready"
        assert not [r for r in bed.nomad.log if r[3].endswith("/eligibility")]  # a new node is eligible already

        failing = bed.nomad.node("local-cpu-4")
        failing["Meta"] = {"status": "test"}
        failing["_admit"] = ("error", "docker info failed: Cannot connect to the Docker daemon")
        rc = main(["add-node", str(bed.inventory), "local-cpu-4", "--ansible-args",
                   f"-e @{bed.vars_file()} --tags day2_checks"])
        flat = " ".join(capfd.readouterr().out.split())
        assert rc == 1
        assert "node admission says status=error (docker info failed: Cannot connect to the Docker daemon)" in flat
    finally:
        bed.close()


def test_scale_narrows_every_site_play_to_the_new_nodes(tmp_path: Path) -> None:
    """scale.yml runs site's own host, cluster and accounting plays with ai4os_play_scope ":&day2_new"
    (the group of the new nodes): every play of those playbooks takes the scope, and Ansible then
    selects the new nodes only (--list-hosts, with a node's name as the scope)."""
    import subprocess

    import yaml as _yaml
    from support.cluster_helpers import ROOT, ansible_bin, ansible_env

    scale = _yaml.safe_load((ROOT / "playbooks" / "scale.yml").read_text())
    imported = {p["ansible.builtin.import_playbook"]: p.get("vars", {}) for p in scale if "ansible.builtin.import_playbook" in p}
    assert {k: v.get("ai4os_play_scope") for k, v in imported.items() if k != "validate.yml"} == \
        {"hosts.yml": ":&day2_new", "cluster.yml": ":&day2_new", "accounting.yml": ":&day2_new"}
    for name in ("hosts.yml", "cluster.yml", "accounting.yml"):
        entries = _yaml.safe_load((ROOT / "playbooks" / name).read_text())
        assert entries[0] == {"name": "Validate", "ansible.builtin.import_playbook": "validate.yml"}, name
        for play in entries[1:]:
            assert play["hosts"].endswith("{{ ai4os_play_scope | default('') }}"), (name, play["name"])
            assert play.get("force_handlers") is True, (name, play["name"])

    bed = Day2Bed(tmp_path)
    bed.close()
    listed = subprocess.run([ansible_bin("ansible-playbook"), "-i", str(bed.inventory / "hosts.yml"), "--list-hosts",
                             "-e", "ai4os_play_scope=:&local-cpu-5", str(ROOT / "playbooks" / "cluster.yml")],
                            env=ansible_env(tmp_path), capture_output=True, text=True, check=True).stdout
    plays = re.findall(r"play #\d+ \(([^)]*)\): (\w[^\t]*?)\s+TAGS.*?\n\s+pattern: .*?\n\s+hosts \((\d+)\):\n((?:\s+\S+\n)*)",
                       listed)
    assert plays[0][:2] == ("all", "Validate the inventory (before facts)")  # the validation, on the controller
    assert [(p[0], int(p[2]), p[3].split()) for p in plays][1:] == [
        ("consul:&local-cpu-5", 1, ["local-cpu-5"]), ("nomad:&local-cpu-5", 1, ["local-cpu-5"]),
        ("traefik:&local-cpu-5", 0, [])]


def test_destructive_commands_need_a_confirmation(tmp_path: Path, monkeypatch, capfd) -> None:
    """Without a terminal and without --yes/--confirm, remove-node, reset and restore refuse (exit 2)
    and run nothing; a wrong platform name is refused too."""
    bed = Day2Bed(tmp_path)
    bed.close()
    for key, value in bed.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    _shrink(bed, cpu=4)
    assert main(["remove-node", str(bed.inventory), "local-cpu-5"]) == 2
    assert "fix: re-run with --yes\n" in capfd.readouterr().err
    assert main(["reset", str(bed.inventory)]) == 2
    assert "--confirm local" in capfd.readouterr().err
    assert main(["reset", str(bed.inventory), "--confirm", "other"]) == 2
    assert "not confirmed (expected 'local'); nothing was changed" in capfd.readouterr().err
    snap = bed.tmp / "nomad-20260101T000000Z-2.0.4.snap"
    snap.write_bytes(b"x")
    assert main(["restore", str(bed.inventory), "--file", str(snap)]) == 2
    assert "ansible-playbook" not in capfd.readouterr().out
    assert not bed.consul.log and not bed.nomad.log
