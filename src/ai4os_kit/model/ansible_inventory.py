"""The Ansible inventory (hosts.yml) rendered from the plan.

Both paths produce it with this one function: `ai4os-kit plan` (no addresses
yet) and `ai4os-kit provision` / discovery (addresses from Terraform's
`inventory` output or from server metadata), so they are identical in shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.model.catalog import NODE_ROLES
from ai4os_kit.paths import HOSTS_FILE


def node_hostvars(node: dict[str, Any]) -> dict[str, Any]:
    """Host variables every role reads (prefixed ai4os_node_)."""
    return {
        "ai4os_node_site": node["site"],
        "ai4os_node_datacenter": node["datacenter"],
        "ai4os_node_role": node["role"],
        "ai4os_node_pool": node["pool"],
        "ai4os_node_consul_server": node["consul"]["server"],
        "ai4os_node_nomad_server": node["nomad"]["server"],
        "ai4os_node_nomad_client": node["nomad"]["client"],
        "ai4os_node_class": node["nomad"]["node_class"],
        "ai4os_node_meta": dict(node["nomad"]["meta"]),
        "ai4os_node_volume_gb": node["volume"]["size_gb"] if node["volume"] else 0,
        "ai4os_node_data_mount": node["volume"]["mount"] if node["volume"] else None,
        "ai4os_node_bastion": node["bastion"],
        "ai4os_node_certs": [dict(c) for c in node["certs"]],
    }


def plan_vars(plan: dict[str, Any]) -> dict[str, Any]:
    """Facts the plan derived that roles read (``all.vars``): never re-derived in Jinja.

    ai4os_plan_sites        name, datacenter, domain, location, testbed of every site
    ai4os_plan_datacenters  node role -> datacenters that have nodes of that role
    ai4os_plan_components   names of the switched-on components (requirements included)
    """
    datacenters: dict[str, list[str]] = {role: [] for role in NODE_ROLES}
    for node in plan["nodes"]:
        if node["datacenter"] not in datacenters[node["role"]]:
            datacenters[node["role"]].append(node["datacenter"])
    return {
        "ai4os_plan_sites": [{"name": s["name"], "datacenter": s["datacenter"], "domain": s["domain"],
                              "location": dict(s["location"]), "testbed": s["testbed"]} for s in plan["sites"]],
        "ai4os_plan_datacenters": {role: sorted(dcs) for role, dcs in datacenters.items()},
        "ai4os_plan_components": sorted(name for name, c in plan["components"].items() if c["enabled"]),
    }


def role_ports(plan: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Node role -> the port table rows that listen on nodes of that role (``ai4os_node_ports``)."""
    keys = ("component", "name", "protocol", "port_min", "port_max", "exposure")
    return {role: [{k: port[k] for k in keys} for port in plan["ports"] if role in port["node_roles"]]
            for role in NODE_ROLES}


def render(plan: dict[str, Any], addresses: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The YAML inventory as a dict.

    ``addresses`` maps node name -> connection variables (ansible_host,
    ansible_user, ansible_ssh_common_args, ...), merged into the host vars.
    Test-bed sites connect through the Docker connection to a container named
    like the node. Each node role's group carries ``ai4os_node_ports`` (a node
    is in exactly one role group).
    """
    addresses = addresses or {}
    testbed_sites = {s["name"] for s in plan["sites"] if s["testbed"]}
    hosts: dict[str, Any] = {}
    for node in plan["nodes"]:
        hv = node_hostvars(node)
        if node["site"] in testbed_sites:
            hv["ansible_connection"] = "community.docker.docker"
            hv["ansible_host"] = node["name"]
        hv.update(addresses.get(node["name"], {}))
        hosts[node["name"]] = hv
    ports = role_ports(plan)
    children: dict[str, Any] = {}
    for group, names in plan["groups"].items():
        children[group] = {"hosts": {name: None for name in names}}
        if group in ports:
            children[group]["vars"] = {"ai4os_node_ports": ports[group]}
    return {"all": {"vars": plan_vars(plan), "hosts": hosts, "children": children}}


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: ~20x faster on 1,000 nodes


def dump(inventory: dict[str, Any]) -> str:
    header = "---\n# Written by ai4os-kit from the node plan; do not edit (edit platform.yml / sites.yml).\n"
    return header + yaml.dump(inventory, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def write(inventory_dir: Path, inventory: dict[str, Any]) -> Path:
    """Write hosts.yml atomically (write a temp file, then rename)."""
    target = inventory_dir / HOSTS_FILE
    tmp = target.with_suffix(".yml.tmp")
    tmp.write_text(dump(inventory), encoding="utf-8")
    tmp.replace(target)
    return target
