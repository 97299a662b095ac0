"""Role firewall: the rules each node gets, rendered by the role's own tasks (rules.yml) for an inventory of
one site, checked by the real nft (nftables from Debian) and read back; the settings and inventory it refuses.

The behaviour (real containers refused and allowed) is tested on the test-bed: molecule/firewall.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support.cluster_helpers import ROOT, run_playbook

DEFAULTS = yaml.safe_load((ROOT / "roles" / "firewall" / "defaults" / "main.yml").read_text())
CATALOG = yaml.safe_load((ROOT / "catalog" / "components.yml").read_text())["components"]

INVENTORY = {
    "all": {
        "hosts": {
            "s1-server-1": {"ansible_host": "10.10.0.10", "ai4os_node_role": "server"},
            "s1-ingress-1": {"ansible_host": "10.10.0.20", "ai4os_node_role": "ingress"},
            "s1-services-1": {"ansible_host": "10.10.0.30", "ai4os_node_role": "services"},
            "s1-cpu-1": {"ansible_host": "10.10.0.40", "ai4os_node_role": "cpu"},
            "s2-ingress-1": {"ansible_host": "10.20.0.20", "ai4os_node_role": "ingress"},
            "s2-cpu-1": {"ansible_host": "10.20.0.40", "ai4os_node_role": "cpu"},
        },
        "vars": {"ansible_connection": "local"},
        "children": {
            "site_s1": {"hosts": dict.fromkeys(["s1-server-1", "s1-ingress-1", "s1-services-1", "s1-cpu-1"])},
            "site_s2": {"hosts": dict.fromkeys(["s2-ingress-1", "s2-cpu-1"])},
            "ingress": {"hosts": dict.fromkeys(["s1-ingress-1", "s2-ingress-1"])},
            "nomad_servers": {"hosts": dict.fromkeys(["s1-server-1"])},
            "firewall": {"hosts": dict.fromkeys(["s1-ingress-1", "s1-services-1", "s1-cpu-1", "s2-ingress-1", "s2-cpu-1"])},
        },
    }
}

PLAYBOOK = """\
- name: Rules of the firewall role
  hosts: firewall
  gather_facts: false
  tasks:
    - name: The role's rules tasks
      ansible.builtin.include_role:
        name: firewall
        tasks_from: rules.yml
      vars:
        firewall_rules_file: "{{ out }}/{{ inventory_hostname }}.nft"
    - name: End here, without the handler that would load the rules (this machine is not a node)
      ansible.builtin.meta: end_play
"""


def _site_vars(inventory: dict) -> dict:
    for name in inventory["all"]["hosts"]:
        inventory["all"]["hosts"][name]["ai4os_node_site"] = name.split("-")[0]
    return inventory


def failed_hosts(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """Hosts the PLAY RECAP counts as failed (meta end_play leaves the exit code at 0)."""
    recap = proc.stdout.split("PLAY RECAP")[-1]
    return {m.group(1) for m in re.finditer(r"^(\S+)\s+:.*\bfailed=([1-9])", recap, re.M)}


def _render(tmp_path: Path, inventory: dict | None = None, *extra: str):
    if shutil.which("nft") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nft is missing: the CI set-up must install Debian's nftables")
        pytest.skip("nft (Debian package nftables) is not installed: the role checks its rules with it")
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump(_site_vars(inventory or yaml.safe_load(yaml.safe_dump(INVENTORY)))))
    playbook = tmp_path / "rules.yml"
    playbook.write_text(PLAYBOOK)
    out = tmp_path / "out"
    out.mkdir()
    isolation = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    args = ["-e", f"out={out}"]
    if not (isolation.exists() and isolation.read_text().strip() == "1"):
        args += ["-e", "firewall_container_isolation=false"]  # this machine has no br_netfilter
    return run_playbook(tmp_path, playbook, *args, *extra, inventory=str(inv)), out


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("firewall")
    proc, out = _render(tmp)
    assert proc.returncode == 0 and not failed_hosts(proc), proc.stdout[-4000:]
    return {p.stem: p.read_text() for p in out.glob("*.nft")}


def _chain(text: str, name: str) -> str:
    return re.search(r"chain " + name + r" \{(.*?)\n\t\}", text, re.S).group(1)


def _set(text: str, name: str) -> set[str]:
    found = re.search(r"set " + name + r" \{.*?(?:elements = \{ (.*?) \}|\n\t\})", text, re.S).group(1)
    return set(found.split(", ")) if found else set()


def _ranges(spec: list[dict]) -> set[tuple[str, int]]:
    out = set()
    for item in spec:
        low, _, high = str(item["port"]).partition("-")
        out |= {(item["protocol"], p) for p in range(int(low), int(high or low) + 1)}
    return out


def test_management_ports_cover_the_catalogue() -> None:
    """Every port of Nomad, Consul and the node exporter (catalog/components.yml) is closed to containers."""
    listed = _ranges(DEFAULTS["firewall_management_ports"])
    for component in ("nomad", "consul", "monitoring"):
        for port in CATALOG[component]["ports"]:
            if port["name"] == "nomad-dynamic":
                continue
            assert _ranges([port]) <= listed, f"{component}/{port['name']} is not in firewall_management_ports"


def test_every_firewall_node_gets_rules_nft_accepts(rules: dict[str, str]) -> None:
    assert set(rules) == {"s1-ingress-1", "s1-services-1", "s1-cpu-1", "s2-ingress-1", "s2-cpu-1"}
    for text in rules.values():
        assert "table inet ai4os_firewall {" in text
        assert "type filter hook forward priority filter - 10; policy accept;" in text
        assert "type filter hook input priority filter - 10; policy accept;" in text
        assert "flush ruleset" not in text  # Docker's chains live in the same ruleset


def test_dynamic_ports_open_to_the_ingress_node_of_the_own_site_only(rules: dict[str, str]) -> None:
    dynamic = CATALOG["nomad"]["ports"][-1]["port"]
    assert dynamic == "20000-32000"
    assert _set(rules["s1-cpu-1"], "dynamic_sources") == {"10.10.0.20"}
    assert _set(rules["s2-cpu-1"], "dynamic_sources") == {"10.20.0.20"}
    assert f"meta l4proto {{ tcp, udp }} th dport {dynamic} jump to_dynamic_ports" in _chain(rules["s1-cpu-1"], "input")
    assert f"ct original proto-dst {dynamic} jump to_dynamic_ports" in _chain(rules["s1-cpu-1"], "forward")


def test_containers_reach_every_node_only_through_traefik(rules: dict[str, str]) -> None:
    every_node = {h["ansible_host"] for h in INVENTORY["all"]["hosts"].values()}
    out = _chain(rules["s1-cpu-1"], "from_containers_out")
    assert _set(rules["s1-cpu-1"], "cluster") == every_node
    assert _set(rules["s1-cpu-1"], "ingress") == {"10.10.0.20"}
    traefik = out.index('ip daddr @ingress tcp dport { 80, 443 } accept')
    assert out.index("tcp dport @management_tcp") < traefik < out.index("ip daddr @cluster counter reject")


def test_only_services_containers_reach_the_nomad_api_of_the_servers(rules: dict[str, str]) -> None:
    services = _chain(rules["s1-services-1"], "from_containers_out")
    assert 'tcp dport 4646 ip daddr { 10.10.0.10 } accept comment "PAPI to the Nomad API (hosts of nomad_servers)"' in services
    assert services.index("dport 4646 ip daddr") < services.index("tcp dport @management_tcp")
    for name in ("s1-cpu-1", "s1-ingress-1", "s2-cpu-1"):
        assert "dport 4646 ip daddr" not in rules[name]


def test_extra_networks_sources_and_the_plans_port_table(tmp_path: Path) -> None:
    node_ports = [{"component": "nomad", "name": "nomad-dynamic", "protocol": "tcp", "port_min": 21000, "port_max": 31000,
                   "exposure": "site"}]  # the plan's port table of the node (hosts.yml), here with another range
    proc, out = _render(tmp_path, None, "-e", json.dumps({"firewall_cluster_networks": ["10.10.0.0/24"],
                                                          "firewall_dynamic_ports_extra_sources": ["192.0.2.7"],
                                                          "ai4os_node_ports": node_ports}))
    assert proc.returncode == 0 and not failed_hosts(proc), proc.stdout[-4000:]
    text = (out / "s1-cpu-1.nft").read_text()
    assert "10.10.0.0/24" in _set(text, "cluster")
    assert _set(text, "dynamic_sources") == {"10.10.0.20", "192.0.2.7"}
    assert "th dport 21000-31000 jump to_dynamic_ports" in _chain(text, "input")
    check = subprocess.run(["nft", "--check", "--file", str(out / "s1-cpu-1.nft")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr  # overlapping cluster addresses merge (auto-merge)


def test_a_site_without_an_ingress_node_is_refused(tmp_path: Path) -> None:
    inventory = yaml.safe_load(yaml.safe_dump(INVENTORY))
    inventory["all"]["children"]["ingress"]["hosts"].pop("s2-ingress-1")
    proc, out = _render(tmp_path, inventory)
    text = " ".join(proc.stdout.split())
    assert failed_hosts(proc) == {"s2-cpu-1", "s2-ingress-1"}
    assert "firewall on s2-cpu-1: no ingress node in site s2 (groups ingress and site_s2)" in text
    assert "Fix:" in text
    assert not (out / "s2-cpu-1.nft").exists()


ALL = {"s1-ingress-1", "s1-services-1", "s1-cpu-1", "s2-ingress-1", "s2-cpu-1"}


@pytest.mark.parametrize(("extra", "expect", "refused"), [
    ('{"firewall_dynamic_ports": "20000:32000"}', 'firewall_dynamic_ports is a port or range "a-b" (got 20000:32000)', ALL),
    ('{"firewall_container_allow": {"cpu": [{"name": "x", "protocol": "tcp", "port": 1, "group": "no_such_group"}]}}',
     "firewall_container_allow.cpu entries are {name, protocol: tcp|udp, port, group} where group is an inventory group",
     {"s1-cpu-1", "s2-cpu-1"}),
])
def test_bad_settings_are_refused(tmp_path: Path, extra: str, expect: str, refused: set[str]) -> None:
    proc, out = _render(tmp_path, None, "-e", extra)
    assert failed_hosts(proc) == refused
    assert expect in " ".join(proc.stdout.split())
    assert {p.stem for p in out.iterdir()} == ALL - refused
