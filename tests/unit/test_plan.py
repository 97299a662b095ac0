from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def sample_plan(path: Path) -> dict:
    return build_plan(load_inventory(path))


def test_plan_is_deterministic(sample_inventory: Path) -> None:
    assert json.dumps(sample_plan(sample_inventory)) == json.dumps(sample_plan(sample_inventory))


def test_node_names_are_dns_labels_and_unique(sample_inventory: Path) -> None:
    plan = sample_plan(sample_inventory)
    names = [n["name"] for n in plan["nodes"]]
    assert len(names) == len(set(names)) == 13
    assert all(DNS_LABEL.match(n) for n in names)
    assert "ifca-gpu-2" in names and "cesnet-server-1" in names


def test_cluster_contract_meta(sample_inventory: Path) -> None:
    plan = sample_plan(sample_inventory)
    nodes = {n["name"]: n for n in plan["nodes"]}
    gpu = nodes["ifca-gpu-1"]["nomad"]["meta"]
    assert gpu == {"type": "compute", "tags": "gpu", "namespace": "ai4eosc", "domain": "ifca", "status": "test"}
    assert nodes["ifca-gpu-1"]["nomad"]["devices"] == [{"type": "gpu", "vendor": "nvidia", "count": 1,
                                                         "models": ["NVIDIA A100-PCIE-40GB"]}]
    cpu = nodes["cesnet-cpu-1"]["nomad"]["meta"]
    assert cpu["tags"] == "cpu" and cpu["namespace"] == "ai4eosc,imagine" and cpu["status"] == "test"
    assert nodes["ifca-ingress-1"]["nomad"]["meta"]["type"] == "ingress"
    assert nodes["ifca-server-1"]["nomad"] == {"server": True, "client": False, "node_class": None, "meta": {},
                                               "devices": []}
    assert all(n["datacenter"] == n["site"] for n in plan["nodes"])


def test_groups(sample_inventory: Path) -> None:
    groups = sample_plan(sample_inventory)["groups"]
    assert groups["consul_servers"] == ["ifca-server-1", "ifca-server-2", "ifca-server-3", "cesnet-server-1"]
    assert groups["nvidia"] == ["ifca-gpu-1", "ifca-gpu-2"]
    assert groups["traefik"] == ["ifca-ingress-1", "cesnet-ingress-1"]
    assert "ifca-server-1" not in groups["docker"]
    assert set(groups["site_cesnet"]) == {"cesnet-server-1", "cesnet-ingress-1", "cesnet-cpu-1", "cesnet-cpu-2"}


def test_certificates_follow_region_and_datacenter(sample_inventory: Path) -> None:
    nodes = {n["name"]: n for n in sample_plan(sample_inventory)["nodes"]}
    certs = {c["name"]: c for c in nodes["ifca-server-1"]["certs"]}
    assert certs["ifca-server-1-nomad"]["common_name"] == "server.ai4os.nomad"
    assert certs["ifca-server-1-consul"]["common_name"] == "server.ifca.consul"
    assert "ifca-server-1" in certs["ifca-server-1-nomad"]["sans"]
    # cesnet's server node is its datacenter's Consul server only: no Nomad certificate
    assert [c["common_name"] for c in nodes["cesnet-server-1"]["certs"]] == ["server.cesnet.consul"]
    client = {c["name"]: c for c in nodes["ifca-cpu-1"]["certs"]}
    assert client["ifca-cpu-1-nomad"]["common_name"] == "client.ai4os.nomad"


def test_security_groups_come_only_from_the_port_table(sample_inventory: Path) -> None:
    plan = sample_plan(sample_inventory)
    table = {(p["component"], p["name"]): p for p in plan["ports"]}
    for site, groups in plan["secgroups"].items():
        for group in groups:
            for rule in group["rules"]:
                port = table[(rule["component"], rule["port_name"])]
                assert group["role"] in port["node_roles"]
                assert (rule["port_min"], rule["port_max"], rule["protocol"]) == (port["port_min"], port["port_max"], port["protocol"])
                if rule["remote_cidr"] == "0.0.0.0/0":
                    assert group["role"] == "ingress" and rule["port_min"] in (80, 443), rule


def test_federation_and_site_rules(sample_inventory: Path) -> None:
    plan = sample_plan(sample_inventory)
    server = next(g for g in plan["secgroups"]["ifca"] if g["role"] == "server")
    wan = {(r["remote_cidr"], r["remote_address"]) for r in server["rules"] if r["port_min"] == 8302 and r["protocol"] == "udp"}
    # the site's own servers on their private addresses, every Consul server of every site on its public one
    assert wan == {("10.10.0.0/24", None)} | {(None, n) for n in plan["groups"]["consul_servers"]}
    assert not any(r["remote_cidr"] == "10.20.0.0/24" for r in server["rules"]), "no rule names another site's private CIDR"
    ssh = [r for g in plan["secgroups"]["ifca"] for r in g["rules"] if r["port_min"] == 22]
    assert {r["remote_cidr"] for r in ssh if r["port_name"] == "ssh-bastion"} == {"192.0.2.0/24"}
    assert all(ipaddress.ip_network(r["remote_cidr"]).prefixlen > 0 for r in ssh)
    localhost_only = [r for g in plan["secgroups"]["ifca"] for r in g["rules"] if r["port_min"] == 8600]
    assert localhost_only == []


def test_ansible_inventory_render(sample_inventory: Path) -> None:
    plan = sample_plan(sample_inventory)
    inv = ansible_inventory.render(plan, {"ifca-cpu-1": {"ansible_host": "10.10.0.5"}})
    hosts = inv["all"]["hosts"]
    assert hosts["ifca-cpu-1"]["ansible_host"] == "10.10.0.5"
    assert hosts["ifca-gpu-1"]["ai4os_node_meta"]["tags"] == "gpu"
    assert set(inv["all"]["children"]["gpu"]["hosts"]) == {"ifca-gpu-1", "ifca-gpu-2"}


def test_hosts_file_carries_what_the_plan_derived(sample_inventory: Path) -> None:
    """Roles read sites, datacenters per role, components and each node's ports from hosts.yml."""
    plan = sample_plan(sample_inventory)
    inv = ansible_inventory.render(plan)["all"]
    sites = {s["name"]: s for s in inv["vars"]["ai4os_plan_sites"]}
    assert sites["ifca"]["domain"] == "ifca.ai4os.example.org" and sites["ifca"]["location"]["pue"] == 1.3
    assert inv["vars"]["ai4os_plan_datacenters"]["gpu"] == ["ifca"]
    assert inv["vars"]["ai4os_plan_datacenters"]["cpu"] == ["cesnet", "ifca"]
    assert "papi" in inv["vars"]["ai4os_plan_components"] and "mlflow" not in inv["vars"]["ai4os_plan_components"]
    server_ports = {(p["name"], p["port_min"]) for p in inv["children"]["server"]["vars"]["ai4os_node_ports"]}
    ingress_ports = {(p["name"], p["port_min"]) for p in inv["children"]["ingress"]["vars"]["ai4os_node_ports"]}
    assert ("consul-server-rpc", 8300) in server_ports and ("https", 443) not in server_ports
    assert ("https", 443) in ingress_ports and ("consul-server-rpc", 8300) not in ingress_ports
    # every row of the plan's port table reaches exactly the roles it names
    for port in plan["ports"]:
        for role in port["node_roles"]:
            rows = inv["children"].get(role, {}).get("vars", {}).get("ai4os_node_ports", [])
            if role in inv["children"]:
                assert any(r["name"] == port["name"] and r["component"] == port["component"] for r in rows)
