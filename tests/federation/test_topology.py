"""Quorum by design and reachability between clouds: `ai4os-kit check` refuses an even or unsafe
Nomad server total (naming the sites), a multi-site platform that does not say where the servers
run, and a site without public reachability; exit 2 with the fix, nothing written."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from federation_bed import copy_sample

from ai4os_kit.cli import main
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

Sites = dict


def _snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and not p.is_symlink()}


def _third_site(sites: Sites, name: str, servers: int) -> None:
    cesnet = next(s for s in sites["ai4os_sites"] if s["name"] == "cesnet")
    site = yaml.safe_load(yaml.safe_dump(cesnet))
    site.update(name=name, cloud=f"{name}-cloud", network={"create": True, "cidr": "10.40.0.0/24"})
    site["pools"][0]["count"] = servers
    sites["ai4os_sites"].append(site)


def _servers(name: str, count: int) -> Callable[[Sites], None]:
    def change(sites: Sites) -> None:
        site = next(s for s in sites["ai4os_sites"] if s["name"] == name)
        next(p for p in site["pools"] if p["role"] == "server")["count"] = count
    return change


def _edit(inventory: Path, *changes: Callable[[Sites], None]) -> None:
    path = inventory / "sites.yml"
    sites = yaml.safe_load(path.read_text())
    for change in changes:
        change(sites)
    path.write_text(yaml.safe_dump(sites, sort_keys=False))


BAD = [
    pytest.param([lambda s: s.__setitem__("ai4os_nomad_server_sites", ["ifca", "cesnet"])],
                 "ai4os_nomad_server_sites", ["4 servers", "ifca (3) + cesnet (1)", "1, 3 or 5"],
                 "name one home site", id="even-total-across-sites"),
    pytest.param([lambda s: s.pop("ai4os_nomad_server_sites")], "ai4os_nomad_server_sites",
                 ["2 sites (ifca, cesnet)", "does not say which of them run the Nomad region's servers"],
                 "add `ai4os_nomad_server_sites: [ifca]`", id="no-choice-with-two-sites"),
    pytest.param([lambda s: _third_site(s, "tubs", 1), _servers("ifca", 3),
                  lambda s: s.__setitem__("ai4os_nomad_server_sites", ["ifca", "cesnet", "tubs"])],
                 "ai4os_nomad_server_sites", ["ifca (3) + cesnet (1) + tubs (1)", "losing site 'ifca' (3 of 5)"],
                 "name one home site (ai4os_nomad_server_sites: [ifca]", id="spread-with-a-majority-at-one-site"),
    pytest.param([lambda s: s.__setitem__("ai4os_nomad_server_sites", ["ifca", "cesnt"])],
                 "ai4os_nomad_server_sites[1]", ["'cesnt' is not a site", "did you mean 'cesnet'"],
                 "use one of: ifca, cesnet", id="unknown-site"),
    pytest.param([lambda s: s["ai4os_sites"][1]["pools"][0].pop("floating_ip")],
                 "ai4os_sites[1].pools[0].floating_ip", ["site 'cesnet' has no public address for its server nodes",
                                                         "not routed between clouds"],
                 "set floating_ip: true on the site's server pool", id="site-without-public-servers"),
    pytest.param([lambda s: s["ai4os_sites"][1]["network"].pop("outbound_addresses")],
                 "ai4os_sites[1].network.outbound_addresses",
                 ["existing network 'ai4os-net'", "cannot know the public address its nodes leave through"],
                 "add network.outbound_addresses", id="existing-network-without-outbound-address"),
    pytest.param([_servers("cesnet", 2)], "ai4os_sites[1].pools",
                 ["site 'cesnet' has 2 server node(s)", "Consul datacenter needs 1, 3 or 5"],
                 "set the server pool's count to 1, 3 or 5", id="even-consul-datacenter"),
]


@pytest.mark.parametrize(("changes", "key", "problems", "fix"), BAD)
def test_bad_topology_exits_2_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           changes: list[Callable[[Sites], None]], key: str, problems: list[str],
                                           fix: str) -> None:
    inventory = copy_sample(tmp_path / "inv")
    _edit(inventory, *changes)
    before = _snapshot(inventory)
    for command in ("check", "plan"):
        assert main([command, str(inventory)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "sites.yml" in err and f": {key}: " in err, err
        for problem in problems:
            assert problem in err, err
        assert f"fix: {fix}" in err, err
        assert "Traceback" not in err
    assert _snapshot(inventory) == before, "nothing is written for a bad inventory"


@pytest.mark.parametrize(("changes", "servers"), [
    pytest.param([], {"ifca-server-1", "ifca-server-2", "ifca-server-3"}, id="home-site"),
    pytest.param([_servers("ifca", 1), lambda s: _third_site(s, "tubs", 1),
                  lambda s: s.__setitem__("ai4os_nomad_server_sites", ["ifca", "cesnet", "tubs"])],
                 {"ifca-server-1", "cesnet-server-1", "tubs-server-1"}, id="one-server-at-each-of-three-sites"),
])
def test_good_placements_give_an_odd_raft_group(tmp_path: Path, changes: list[Callable[[Sites], None]],
                                               servers: set[str]) -> None:
    inventory = copy_sample(tmp_path / "inv")
    _edit(inventory, *changes)
    plan = build_plan(load_inventory(inventory))
    assert set(plan["groups"]["nomad_servers"]) == servers
    assert set(plan["groups"]["consul_servers"]) >= servers  # every site keeps its Consul datacenter
    assert plan["topology"]["nomad_servers"] == len(servers) and len(servers) % 2 == 1
    for node in plan["nodes"]:
        if node["role"] == "server" and node["name"] not in servers:
            assert "nomad" not in node["groups"] and node["nomad"]["server"] is False  # a Consul-only server


def test_single_site_needs_no_choice_and_no_public_servers(tmp_path: Path) -> None:
    inventory = copy_sample(tmp_path / "inv")

    def only_ifca(sites: Sites) -> None:
        sites["ai4os_sites"] = sites["ai4os_sites"][:1]
        sites.pop("ai4os_nomad_server_sites")
        sites["ai4os_sites"][0]["pools"][0].pop("floating_ip")
    _edit(inventory, only_ifca)
    plan = build_plan(load_inventory(inventory))
    assert plan["topology"]["multi_site"] is False and plan["topology"]["nomad_server_sites"] == ["ifca"]
    rules = [r for groups in plan["secgroups"].values() for g in groups for r in g["rules"]]
    assert not any(r["remote_address"] for r in rules), "one site: no rule names a public address"
