"""Every security-group rule traces to the plan's port table; no management port is world-open; Nomad's dynamic
ports are opened to the site's ingress group only; between sites only public addresses are admitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import tfharness
from ai4os_kit.model.plan import cloud_sites, wan_sources
from ai4os_kit.terraform import render

WORLD = {"0.0.0.0/0", "::/0"}
WEB = {("tcp", 80), ("tcp", 443)}


def _rendered_rules(plan: dict[str, Any], tmp_path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(site, role, rule) for every ingress rule of the rendered root."""
    root = render.render_root(plan, tmp_path / "root")
    return [(call["site"], group["role"], rule)
            for call in root["module"].values()
            for group in call["secgroups"].values()
            for rule in group["rules"]]


def _allowed_cidrs(plan: dict[str, Any], site_name: str, exposure: str) -> set[str]:
    site = next(s for s in plan["sites"] if s["name"] == site_name)
    return {
        "public": WORLD,
        "operator": set(site["ssh"]["allowed_cidrs"]),
        "site": {site["network"]["cidr"]},
    }.get(exposure, set())


def _allowed_sources(plan: dict[str, Any], site_name: str, port: dict[str, Any]) -> set[tuple[str | None, ...]]:
    """(remote_cidr, remote_group, remote_address) a port may be opened to: between sites only the public
    addresses the plan names (never a private CIDR of another site)."""
    exposure = port["exposure"]
    if exposure == "ingress":
        return {(None, f"{plan['platform']['name']}-{site_name}-ingress", None)}
    if exposure.startswith("wan_"):
        wan = wan_sources(cloud_sites(plan), plan["nodes"])
        key = "nodes" if exposure == "wan_nodes" else f"{port['component']}_servers"
        return {(cidr, None, address) for cidr, address in wan[key]}
    return {(cidr, None, None) for cidr in _allowed_cidrs(plan, site_name, exposure)}


def test_every_rule_traces_to_a_port_of_the_port_table(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    ports = {(p["component"], p["name"]): p for p in sample_plan["ports"]}
    rules = _rendered_rules(sample_plan, tmp_path)
    assert len(rules) > 50
    for site, role, rule in rules:
        component, port_name = rule["description"].split("/", 1)
        port = ports.get((component, port_name))
        assert port is not None, f"{site}/{role}: rule {rule} names no port of the port table"
        assert (rule["protocol"], rule["port_min"], rule["port_max"]) == (port["protocol"], port["port_min"], port["port_max"])
        assert role in port["node_roles"], f"{port_name} is not listened on by {role} nodes"
        source = (rule["remote_cidr"], rule["remote_group"], rule["remote_address"])
        assert source in _allowed_sources(sample_plan, site, port), (
            f"{site}/{role}: {port_name} ({port['exposure']}) opened to {source}")


def test_every_port_of_the_table_is_opened_where_it_listens(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    """The converse: nothing the platform needs is missing."""
    opened = {(site, role, r["protocol"], r["port_min"], r["port_max"], r["remote_cidr"], r["remote_group"],
               r["remote_address"]) for site, role, r in _rendered_rules(sample_plan, tmp_path)}
    nomad_sites = sample_plan["topology"]["nomad_server_sites"]
    for site in cloud_sites(sample_plan):
        roles = {pool["role"] for pool in site["pools"]}
        for port in sample_plan["ports"]:
            listening = roles & set(port["node_roles"])
            if port["component"] == "nomad" and site["name"] not in nomad_sites:
                listening -= {"server"}  # a Consul-only server node runs no Nomad agent
            for role in listening:
                for source in _allowed_sources(sample_plan, site["name"], port):
                    if source[0] == "::/0":
                        continue
                    wanted = (site["name"], role, port["protocol"], port["port_min"], port["port_max"], *source)
                    assert wanted in opened, f"{port['component']}/{port['name']} is not opened: {wanted}"


def test_dynamic_ports_are_opened_to_the_ingress_group_only(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    """Nomad's dynamic ports (the tasks' host ports) take connections from Traefik only, on every client role."""
    dynamic = next(p for p in sample_plan["ports"] if p["name"] == "nomad-dynamic")
    assert dynamic["exposure"] == "ingress"
    found: dict[tuple[str, str], set[Any]] = {}
    for site, role, rule in _rendered_rules(sample_plan, tmp_path):
        if rule["protocol"] == "tcp" and rule["port_min"] <= dynamic["port_max"] and rule["port_max"] >= dynamic["port_min"]:
            found.setdefault((site, role), set()).add((rule["remote_cidr"], rule["remote_group"]))
    expected = {(site["name"], pool["role"]) for site in cloud_sites(sample_plan) for pool in site["pools"]
                if pool["role"] in dynamic["node_roles"]}
    assert set(found) == expected and {"services", "cpu", "ingress"} <= {role for _, role in expected}
    for (site, role), sources in found.items():
        assert sources == {(None, f"demo-{site}-ingress")}, f"{site}/{role}: dynamic ports open to {sources}"


@pytest.mark.parametrize(("rule", "error"), [
    ({"remote_group": "no-such-group"}, "must name a security group of this module's groups"),
    ({"remote_group": "g", "remote_cidr": "10.10.0.0/24"}, "exactly one source: remote_cidr, remote_group or remote_address"),
    ({"remote_address": "b-server-1", "remote_cidr": "10.10.0.0/24"}, "exactly one source"),
    ({}, "exactly one source: remote_cidr, remote_group or remote_address"),
    ({"remote_address": "no-such-node"}, "must name an address of public_addresses"),
])
def test_module_refuses_a_rule_without_one_valid_source(terraform: str, tmp_path: Path, rule: dict[str, str],
                                                        error: str) -> None:
    groups = {"g": {"rules": [dict({"protocol": "tcp", "port_min": 20000, "port_max": 32000}, **rule)]}}
    proc = tfharness.evaluate_locals(tfharness.MODULES / "secgroups", {"groups": groups}, tmp_path, check=False)
    assert not isinstance(proc, dict), f"{rule} was accepted"
    assert error in " ".join(proc.stderr.split())


def test_no_management_port_is_open_to_the_world(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    world = [(site, role, r) for site, role, r in _rendered_rules(sample_plan, tmp_path) if r["remote_cidr"] in WORLD]
    assert world, "the web entry points must be reachable"
    for site, role, rule in world:
        assert role == "ingress", f"{site}: {rule} is world-open on a {role} node"
        assert rule["port_min"] == rule["port_max"] and (rule["protocol"], rule["port_min"]) in WEB, rule


def test_ssh_from_outside_only_reaches_the_bastion(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    for site, role, rule in _rendered_rules(sample_plan, tmp_path):
        if rule["protocol"] == "tcp" and rule["port_min"] <= 22 <= rule["port_max"]:
            site_cidr = _allowed_cidrs(sample_plan, site, "site")
            if rule["remote_cidr"] not in site_cidr:
                assert role == "ingress" and rule["remote_cidr"] in _allowed_cidrs(sample_plan, site, "operator")
    bastions = {s["bastion"] for s in sample_plan["sites"]}
    assert all(n["role"] == "ingress" for n in sample_plan["nodes"] if n["name"] in bastions)


@pytest.mark.parametrize(("protocol", "port", "who"), [
    ("udp", 8302, "consul_servers"), ("tcp", 8302, "consul_servers"), ("tcp", 8300, "consul_servers"),
    ("udp", 4648, "nomad_servers"), ("tcp", 4648, "nomad_servers"), ("tcp", 4647, "nodes")])
def test_between_sites_only_public_addresses_are_admitted(sample_plan: dict[str, Any], tmp_path: Path,
                                                          protocol: str, port: int, who: str) -> None:
    """Consul WAN and the Nomad servers' ports: the site's own CIDR (its servers on one network) and the
    public addresses of the platform's nodes and routers; never another site's private CIDR."""
    wanted = set(wan_sources(cloud_sites(sample_plan), sample_plan["nodes"])[who])
    nomad_sites = sample_plan["topology"]["nomad_server_sites"]
    for site in cloud_sites(sample_plan):
        sources = {(r["remote_cidr"], r["remote_address"]) for s, role, r in _rendered_rules(sample_plan, tmp_path)
                   if s == site["name"] and role == "server" and r["protocol"] == protocol and r["port_min"] == port}
        if port in (4647, 4648) and site["name"] not in nomad_sites:
            assert sources == set(), f"{site['name']} runs no Nomad server"
            continue
        assert sources - {(site["network"]["cidr"], None)} == wanted, f"{site['name']}: {protocol}/{port}"
        others = {s["network"]["cidr"] for s in cloud_sites(sample_plan)} - {site["network"]["cidr"]}
        assert not {cidr for cidr, _ in sources} & others
    if who == "nodes":  # every public way out: floating IPs, the created network's router, cesnet's outbound address
        assert {("198.51.100.20/32", None), (None, "ifca-router"), (None, "cesnet-ingress-1")} <= wanted


def test_module_applies_exactly_the_rendered_rules_plus_egress(terraform: str, sample_plan: dict[str, Any],
                                                               tmp_path: Path) -> None:
    """Real Terraform evaluates the secgroups module's expressions on the rendered arguments."""
    root = render.render_root(sample_plan, tmp_path / "root")
    groups = {n: {"description": g["description"], "rules": g["rules"]} for n, g in root["module"]["site_ifca"]["secgroups"].items()}
    public = tfharness.public_addresses(sample_plan)
    values = tfharness.evaluate_locals(tfharness.MODULES / "secgroups", {"groups": groups, "public_addresses": public},
                                       tmp_path / "eval")
    assert isinstance(values, dict)
    effective = values["rules"]
    ingress = {(r["group"], r["protocol"], r["port_min"], r["port_max"], r["remote_cidr"], r["remote_group"])
               for r in effective.values() if r["direction"] == "ingress"}
    rendered = {(name, r["protocol"], r["port_min"], r["port_max"],
                 f"{public[r['remote_address']]}/32" if r["remote_address"] else r["remote_cidr"], r["remote_group"])
                for name, g in groups.items() for r in g["rules"]}
    assert ingress == rendered
    by_address = [key for key, r in effective.items() if r["remote_address"]]
    assert by_address and all(key.endswith(f"|address:{effective[key]['remote_address']}") for key in by_address)
    dynamic = {key: r for key, r in effective.items() if r["port_min"] == 20000}
    assert dynamic and all(r["remote_group"] == "demo-ifca-ingress" and r["remote_cidr"] is None for r in dynamic.values())
    assert all(key.endswith("|group:demo-ifca-ingress") for key in dynamic)
    egress = sorted((r["group"], r["ethertype"], r["remote_cidr"]) for r in effective.values() if r["direction"] == "egress")
    assert egress == sorted((g, e, c) for g in groups for e, c in (("IPv4", "0.0.0.0/0"), ("IPv6", "::/0")))


def test_module_merges_duplicate_rules_and_keeps_both_names(terraform: str, tmp_path: Path) -> None:
    """Neutron refuses duplicate rules: the same port from two components becomes one rule naming both."""
    rule = {"protocol": "tcp", "port_min": 4647, "port_max": 4647, "remote_cidr": "10.10.0.0/24"}
    groups = {"g": {"rules": [dict(rule, description="nomad/nomad-rpc"), dict(rule, description="nomad/nomad-rpc-clients")]}}
    values = tfharness.evaluate_locals(tfharness.MODULES / "secgroups", {"groups": groups, "egress_cidrs": []}, tmp_path)
    assert isinstance(values, dict)
    assert values["rules"] == {"g|ingress|IPv4|tcp|4647|4647|10.10.0.0/24": {
        "group": "g", "key": "g|ingress|IPv4|tcp|4647|4647|10.10.0.0/24", "direction": "ingress", "ethertype": "IPv4",
        "protocol": "tcp", "port_min": 4647, "port_max": 4647, "remote_cidr": "10.10.0.0/24", "remote_group": None,
        "remote_address": None, "description": "nomad/nomad-rpc, nomad/nomad-rpc-clients"}}


@pytest.mark.parametrize(("protocol", "port"), [("tcp", 22), ("tcp", 4646), ("udp", 8302), ("tcp", 8500)])
def test_module_refuses_a_world_open_management_port(terraform: str, tmp_path: Path, protocol: str, port: int) -> None:
    groups = {"g": {"rules": [{"protocol": protocol, "port_min": port, "port_max": port, "remote_cidr": "0.0.0.0/0"}]}}
    proc = tfharness.evaluate_locals(tfharness.MODULES / "secgroups", {"groups": groups}, tmp_path, check=False)
    assert not isinstance(proc, dict), "a world-open management port was accepted"
    assert "Only tcp/80 and tcp/443 may be open to 0.0.0.0/0" in proc.stderr


def test_module_accepts_https_from_the_world(terraform: str, tmp_path: Path) -> None:
    groups = {"g": {"rules": [{"protocol": "tcp", "port_min": 443, "port_max": 443, "remote_cidr": "0.0.0.0/0"}]}}
    values = tfharness.evaluate_locals(tfharness.MODULES / "secgroups", {"groups": groups}, tmp_path)
    assert isinstance(values, dict) and "g|ingress|IPv4|tcp|443|443|0.0.0.0/0" in values["rules"]
