"""`ai4os-kit inventory --from-cloud`: rebuild the Ansible inventory from the servers.

For operators who lost Terraform's state or outputs. The node_pool module
writes server metadata (the contract):

==================  ==========================================
``ai4os_platform``  plan.platform.name
``ai4os_site``      the site's name
``ai4os_pool``      the pool's name
``ai4os_role``      the node role
``ai4os_groups``    inventory groups, comma-joined
``ai4os_node_meta`` Nomad client meta as JSON (string values)
==================  ==========================================

Discovery lists each site's servers with openstacksdk, keeps those whose
``ai4os_platform`` is this platform, takes groups and Nomad meta from the
metadata and addresses from the servers (the floating IP when there is one,
else the fixed IP reached through the site's bastion), and renders the
inventory with the same function as provisioning.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ai4os_kit.cloud.connect import site_connections
from ai4os_kit.errors import KitError
from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.node_contract import (
    META_GROUPS,
    META_NODE_META,
    META_PLATFORM,
    META_POOL,
    META_ROLE,
    META_SITE,
    REQUIRED_METADATA,
    connection_vars,
)


@dataclass(frozen=True)
class DiscoveredNode:
    """A server of the platform, as its metadata and addresses describe it."""

    name: str
    site: str
    pool: str
    role: str
    groups: list[str]
    meta: dict[str, str]
    private_ip: str | None
    floating_ip: str | None
    server_id: str


@dataclass
class Discovery:
    nodes: dict[str, DiscoveredNode] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _server_addresses(server: Any) -> tuple[str | None, str | None]:
    """(fixed, floating) IPv4 from the server's network info (Nova's view)."""
    fixed = floating = None
    for entries in (server.addresses or {}).values():
        for entry in entries:
            if entry.get("version", 4) != 4:
                continue
            if entry.get("OS-EXT-IPS:type", "fixed") == "floating":
                floating = floating or entry["addr"]
            else:
                fixed = fixed or entry["addr"]
    return fixed, floating


def port_addresses(conn: Any) -> dict[str, tuple[str | None, str | None]]:
    """Server id -> (fixed, floating) IPv4 from Neutron (current even when Nova's cache lags)."""
    floating = {ip.port_id: ip.floating_ip_address for ip in conn.network.ips() if ip.port_id}
    out: dict[str, tuple[str | None, str | None]] = {}
    for port in conn.network.ports():
        if not str(port.device_owner or "").startswith("compute:") or port.device_id in out:
            continue
        fixed = next((f["ip_address"] for f in port.fixed_ips or [] if ":" not in f["ip_address"]), None)
        out[port.device_id] = (fixed, floating.get(port.id))
    return out


def parse_server(server: Any, platform: str,
                 addresses: tuple[str | None, str | None] | None = None) -> DiscoveredNode | None:
    """The node a server is, from its metadata; None for servers of other platforms."""
    meta = dict(server.metadata or {})
    if meta.get(META_PLATFORM) != platform:
        return None
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise KitError(f"server {server.name} ({server.id}) belongs to platform {platform} but lacks metadata "
                       f"{', '.join(missing)}; set it (openstack server set --property ...) or recreate the server")
    try:
        node_meta = json.loads(meta.get(META_NODE_META) or "{}")
    except ValueError:
        raise KitError(f"server {server.name}: metadata {META_NODE_META} is not JSON: {meta[META_NODE_META]!r}") from None
    fixed, floating = addresses or _server_addresses(server)
    return DiscoveredNode(
        name=server.name, site=meta[META_SITE], pool=meta[META_POOL], role=meta[META_ROLE],
        groups=[g for g in meta[META_GROUPS].split(",") if g], meta={k: str(v) for k, v in node_meta.items()},
        private_ip=fixed, floating_ip=floating, server_id=server.id,
    )


def discover_site(conn: Any, site: Mapping[str, Any], platform: str) -> list[DiscoveredNode]:
    ports = port_addresses(conn)
    found = [parse_server(s, platform, ports.get(s.id)) for s in conn.compute.servers(details=True)]
    return [n for n in found if n is not None and n.site == site["name"]]


def discover(plan: Mapping[str, Any], env: Mapping[str, str] | None = None, verify: bool | str = True) -> Discovery:
    """Every node of the plan's platform found in its sites' clouds."""
    result = Discovery()
    platform = plan["platform"]["name"]
    with site_connections(plan, env, verify) as sites:
        for _i, site, open_connection in sites:
            for node in discover_site(open_connection(), site, platform):
                result.nodes[node.name] = node
    return result


def site_addresses(site: Mapping[str, Any], nodes: list[DiscoveredNode]) -> dict[str, dict[str, Any]]:
    """Connection variables as the Terraform inventory module computes them (ProxyJump via the bastion)."""
    user = site["ssh"]["user"]
    bastion = next((n for n in nodes if n.name == site["bastion"]), None)
    jump = f"-o ProxyJump={user}@{bastion.floating_ip}" if bastion and bastion.floating_ip else None
    out: dict[str, dict[str, Any]] = {}
    for node in nodes:
        host_vars: dict[str, Any] = {"ansible_user": user}
        if node.floating_ip is None:
            host_vars["ansible_ssh_common_args"] = jump
        else:  # what the roles advertise across sites (docs/federation.md)
            host_vars["ai4os_node_public_address"] = node.floating_ip
        host = {"ansible_host": node.floating_ip or node.private_ip, "vars": host_vars}
        out[node.name] = connection_vars(host)
    return out


def _reconcile(plan: Mapping[str, Any], found: Mapping[str, DiscoveredNode], warnings: list[str]) -> dict[str, Any]:
    """The plan with its cloud nodes as the servers say (groups, Nomad meta); absent nodes left out."""
    cloud_sites = {s["name"] for s in plan["sites"] if not s.get("testbed")}
    view = copy.deepcopy(dict(plan))
    kept = []
    for node in view["nodes"]:
        if node["site"] not in cloud_sites:
            kept.append(node)
            continue
        server = found.get(node["name"])
        if server is None:
            warnings.append(f"{node['name']}: in the plan but no server has it (not provisioned, or deleted)")
            continue
        for what, planned, actual in (("groups", node["groups"], server.groups),
                                      ("Nomad meta", node["nomad"]["meta"], server.meta),
                                      ("pool", node["pool"], server.pool), ("role", node["role"], server.role)):
            if planned != actual:
                warnings.append(f"{node['name']}: server metadata {what} {actual!r} differs from the plan's "
                                f"{planned!r} (the inventory follows the server; `ai4os-kit provision` reconciles)")
        node["groups"] = list(server.groups)
        node["nomad"]["meta"] = dict(server.meta)
        kept.append(node)
    planned_names = {n["name"] for n in view["nodes"]}
    for name in sorted(set(found) - planned_names):
        warnings.append(f"{name}: a server of this platform that the plan does not have (left out; "
                        "delete it or add it back to sites.yml)")
    view["nodes"] = kept
    groups: dict[str, list[str]] = {g: [] for g in plan["groups"]}
    for node in kept:
        for group in node["groups"]:
            groups.setdefault(group, []).append(node["name"])
    view["groups"] = groups
    return view


def inventory_from_cloud(plan: Mapping[str, Any], discovery: Discovery) -> dict[str, Any]:
    """The Ansible inventory rebuilt from the discovered servers (same renderer as provisioning)."""
    view = _reconcile(plan, discovery.nodes, discovery.warnings)
    addresses: dict[str, dict[str, Any]] = {}
    for site in plan["sites"]:
        nodes = [n for n in discovery.nodes.values() if n.site == site["name"]]
        addresses.update(site_addresses(site, nodes))
    return ansible_inventory.render(view, addresses)
