"""Create servers on the test-bed exactly as terraform/modules/node_pool does.

The OpenStack Terraform provider cannot be downloaded here, so these helpers
make the same API objects with openstacksdk: one server per node named like
the node, the pool's flavor (by name, id, or the one ai4os_kit.cloud.flavors
picks), the image found by properties, a port on the site network, a
floating IP where the plan says, and the metadata of node_pool/locals.tf:
ai4os_platform/site/pool/role, ai4os_groups (comma-joined),
ai4os_node_meta (Terraform's jsonencode: sorted keys, no spaces).
Data volumes are not created: the test-bed runs cinder-api only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from ai4os_kit.cloud import flavors as flavor_rules
from ai4os_kit.terraform.render import site_arguments

BOOT_TIMEOUT_S = 240


def node_pool_metadata(args: Mapping[str, Any], pool_name: str, node_name: str) -> dict[str, str]:
    """node_pool/locals.tf `metadata`, from the site module's arguments the kit renders."""
    pool = args["pools"][pool_name]
    node = pool["nodes"][node_name]
    return {
        "ai4os_platform": args["platform"],
        "ai4os_site": args["site"],
        "ai4os_pool": pool_name,
        "ai4os_role": pool["role"],
        "ai4os_groups": ",".join(node["groups"]),
        "ai4os_node_meta": json.dumps(dict(sorted(node["node_meta"].items())), separators=(",", ":")),
    }


def _flavor_id(conn: Any, wanted: Mapping[str, Any]) -> str:
    if wanted.get("id"):
        return str(wanted["id"])
    if wanted.get("name"):
        return str(conn.compute.find_flavor(wanted["name"], ignore_missing=False).id)
    best = flavor_rules.pick(wanted, [flavor_rules.flavor_dict(f) for f in conn.compute.flavors(details=True)])
    assert best is not None, f"no test-bed flavor for {wanted}"
    return str(best["id"])


def _image_id(conn: Any, image: Mapping[str, Any]) -> str:
    for candidate in conn.image.images():
        if image.get("name") and candidate.name == image["name"]:
            return str(candidate.id)
        props = image.get("properties") or {}
        if props and all(str(getattr(candidate, k, None) or (candidate.properties or {}).get(k)) == str(v)
                         for k, v in props.items()):
            return str(candidate.id)
    raise AssertionError(f"no image {image}")


def create_pool_servers(conn: Any, plan: Mapping[str, Any], site: Mapping[str, Any], *,
                        pools: list[str] | None = None, nodes: list[str] | None = None,
                        wait: bool = True) -> dict[str, Any]:
    """Servers for the site's pools (all, or the named pools / nodes); node name -> server."""
    args = site_arguments(plan, site)
    network = conn.network.find_network(args["network"]["existing"], ignore_missing=False)
    external = next(iter(conn.network.networks(is_router_external=True)))
    image_id = _image_id(conn, args["image"])
    created: dict[str, Any] = {}
    for pool_name, pool in args["pools"].items():
        if pools is not None and pool_name not in pools:
            continue
        flavor_id = _flavor_id(conn, pool["flavor"])
        for node_name, node in pool["nodes"].items():
            if nodes is not None and node_name not in nodes:
                continue
            port = conn.network.create_port(network_id=network.id, name=f"{node_name}-port")
            server = conn.compute.create_server(
                name=node_name, flavor_id=flavor_id, image_id=image_id, key_name=args["ssh"]["key_name"],
                networks=[{"port": port.id}], metadata=node_pool_metadata(args, pool_name, node_name))
            if node["floating_ip"]:
                conn.network.create_ip(floating_network_id=external.id, port_id=port.id)
            created[node_name] = server
    if wait:
        for name, server in created.items():
            created[name] = wait_for(conn, server)
    return created


def wait_for(conn: Any, server: Any) -> Any:
    """The server once ACTIVE or ERROR (nova's fake driver 'boots' in seconds)."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:
        server = conn.compute.get_server(server.id)
        if server.status in ("ACTIVE", "ERROR"):
            return server
        if time.monotonic() > deadline:
            raise AssertionError(f"server {server.name} still {server.status} after {BOOT_TIMEOUT_S} s")
        time.sleep(1)


def build_events(admin: Any, server: Any) -> list[str]:
    """What nova recorded of a server's build: each event's result and, for an admin, the compute's traceback.

    Diagnostics for an assertion message: a build that fails on the compute host ends as
    "Exceeded maximum number of retries" (the test-bed has one hypervisor), which names no cause.
    """
    lines = []
    for action in admin.compute.server_actions(server.id):
        detail = admin.compute.get_server_action(action.request_id, server.id)
        for event in detail.events or []:
            event = dict(event)
            lines.append(f"{detail.action}/{event.get('event')}: {event.get('result')}")
            if event.get("traceback"):
                lines.append(str(event["traceback"])[-1500:])
    return lines


def wait_until_gone(conn: Any, server: Any) -> None:
    """Until the API no longer knows the server.

    openstacksdk's wait_for_delete returns as soon as the status reads DELETED, which nova
    sets before the compute host frees the server's resources (its PCI devices in the
    resource tracker, its placement allocations: seconds later on a busy machine); the
    record disappears only after that. A test that asks for a GPU right after an earlier
    test's GPU server "is deleted" would otherwise race the release of that GPU.
    """
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while conn.compute.find_server(server.id, ignore_missing=True) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"server {server.name} still listed {BOOT_TIMEOUT_S} s after its deletion")
        time.sleep(0.5)


def delete_site_servers(conn: Any, site_name: str) -> None:
    """Remove every server (with its ports and floating IPs) a test made for ``site_name``."""
    servers = [s for s in conn.compute.servers() if (s.metadata or {}).get("ai4os_site") == site_name
               or s.name.startswith(f"{site_name}-")]
    ports = [p for p in conn.network.ports() if p.name.startswith(f"{site_name}-")]
    port_ids = {p.id for p in ports}
    for ip in conn.network.ips():
        if ip.port_id in port_ids:
            conn.network.delete_ip(ip)
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        wait_until_gone(conn, server)
    for port in ports:
        conn.network.delete_port(port, ignore_missing=True)
