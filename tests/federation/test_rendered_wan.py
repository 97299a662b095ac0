"""What the consul and nomad roles render across clouds: servers advertise their public address to
the other sites (Consul advertise_addr_wan and retry_join_wan; Nomad advertise rpc/serf, which
clients take over as their server list) and keep everything else on the site's network.

Rendered by ansible-playbook from the roles' own templates and defaults
(tests/cluster/render_config.yml) with hosts.yml as `provision` writes it: the plan's host
variables plus ansible_host and, for nodes with a floating IP, ai4os_node_public_address.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from support import hcl_config
from support.cluster_helpers import ROOT, run_playbook
from support.cluster_render import test_secrets

SAMPLE = ROOT / "inventories" / "sample"


def _render(tmp_path: Path, inventory: Path = SAMPLE) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """(plan, {node: private address}, {node: {file: text}}); public addresses 198.18.0.<n>."""
    plan = build_plan(load_inventory(inventory))
    addresses, private = {}, {}
    for i, node in enumerate(plan["nodes"], start=10):
        private[node["name"]] = f"10.0.0.{i}"
        addresses[node["name"]] = {"ansible_host": private[node["name"]]}  # stands in for the facts' address
        if node["floating_ip"]:
            addresses[node["name"]]["ai4os_node_public_address"] = f"198.18.0.{i}"
    (tmp_path / "hosts.yml").write_text(ansible_inventory.dump(ansible_inventory.render(plan, addresses)))
    platform = yaml.safe_load((inventory / "platform.yml").read_text())
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({**platform, **test_secrets(), "render_out": str(tmp_path / "out.json")}))
    proc = run_playbook(tmp_path, ROOT / "tests" / "cluster" / "render_config.yml", "-e", f"@{tmp_path / 'vars.yml'}",
                        inventory=str(tmp_path / "hosts.yml"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return plan, private, json.loads((tmp_path / "out.json").read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    return _render(tmp_path_factory.mktemp("wan"))


def _public(n: int) -> str:
    return f"198.18.0.{n}"


def test_consul_servers_federate_over_public_addresses(rendered: tuple[dict, dict, dict]) -> None:
    plan, private, out = rendered
    index = {n["name"]: i for i, n in enumerate(plan["nodes"], start=10)}
    servers = plan["groups"]["consul_servers"]
    for name in servers:
        consul = hcl_config.loads(out[name]["consul.hcl"])
        site = name.split("-")[0]
        assert consul["advertise_addr"] == consul["bind_addr"] == private[name], "LAN gossip stays private"
        assert consul["advertise_addr_wan"] == _public(index[name])
        others = [s for s in servers if not s.startswith(site + "-")]
        assert consul["retry_join_wan"] == [_public(index[s]) for s in others]
        own = [private[s] for s in servers if s.startswith(site + "-") and s != name]
        assert consul["retry_join"] == own, "servers of one datacenter join on its network"
    client = hcl_config.loads(out["cesnet-cpu-1"]["consul.hcl"])
    assert "advertise_addr_wan" not in client and "retry_join_wan" not in client
    assert client["retry_join"] == [private["cesnet-server-1"]], "a client joins its own site's Consul server"


def test_nomad_servers_advertise_their_public_address_to_the_region(rendered: tuple[dict, dict, dict]) -> None:
    plan, private, out = rendered
    index = {n["name"]: i for i, n in enumerate(plan["nodes"], start=10)}
    servers = plan["groups"]["nomad_servers"]
    assert servers == ["ifca-server-1", "ifca-server-2", "ifca-server-3"]
    for name in servers:
        nomad = hcl_config.loads(out[name]["nomad.hcl"])
        assert hcl_config.first(nomad, "advertise.rpc") == hcl_config.first(nomad, "advertise.serf") == _public(index[name])
        assert hcl_config.first(nomad, "advertise.http") == private[name], "the HTTP API stays on the site network"
        server = hcl_config.loads(out[name]["server.hcl"])
        assert hcl_config.first(server, "server.bootstrap_expect") == 3
        assert sorted(hcl_config.first(server, "server.server_join.retry_join")) == sorted(
            _public(index[s]) for s in servers if s != name)
    for name in ("ifca-cpu-1", "cesnet-cpu-1"):  # clients of both sites reach the servers' public addresses
        client = hcl_config.loads(out[name]["client.hcl"])
        assert sorted(hcl_config.first(client, "client.server_join.retry_join")) == sorted(
            f"{_public(index[s])}:4647" for s in servers)
        nomad = hcl_config.loads(out[name]["nomad.hcl"])
        assert hcl_config.first(nomad, "advertise.rpc") == private[name], "a client advertises its own address"
    assert "nomad.hcl" not in out["cesnet-server-1"], "cesnet's server node runs Consul only"


def test_one_site_keeps_every_address_private(tmp_path: Path) -> None:
    inventory = tmp_path / "inv"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "platform.yml").write_text((SAMPLE / "platform.yml").read_text())
    sites = yaml.safe_load((SAMPLE / "sites.yml").read_text())
    sites["ai4os_sites"] = sites["ai4os_sites"][:1]  # ifca alone (its servers keep their floating IPs)
    sites.pop("ai4os_nomad_server_sites")
    (inventory / "sites.yml").write_text(yaml.safe_dump(sites))
    plan, private, out = _render(tmp_path, inventory)
    for name in plan["groups"]["nomad_servers"]:
        nomad = hcl_config.loads(out[name]["nomad.hcl"])
        assert hcl_config.first(nomad, "advertise.rpc") == private[name]
        consul = hcl_config.loads(out[name]["consul.hcl"])
        assert consul["advertise_addr_wan"] == private[name] and "retry_join_wan" not in consul
