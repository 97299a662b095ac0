"""The node plan: sites -> pools -> nodes, groups, ports, security groups, certificates.

Pure and deterministic: the same inventory always gives the same dict; the
only file read is the kit's own data (catalog/gpu_models.yml). The shape is documented in
docs/plan-format.md; every later layer consumes it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import yaml

from ai4os_kit.model.catalog import NODE_ROLES, Component
from ai4os_kit.model.inventory import ENABLE_PREFIX, Inventory, pool_name, site_domain
from ai4os_kit.model.node_contract import node_name
from ai4os_kit.model.placement import PLATFORM_NAMESPACE
from ai4os_kit.model.topology import multi_site
from ai4os_kit.paths import CATALOG_FILE

NODE_TYPE = {
    "ingress": "ingress",
    "services": "services",
    "cpu": "compute",
    "gpu": "compute",
    "tryme": "tryme",
    "batch": "batch",
}
DATA_MOUNT = "/srv/ai4os"
# A node lent to another installation (sites.yml of this one, federation/<borrower>/joined.yml) leaves
# this platform's Nomad region: playbooks/federation-join.yml makes it a client of the borrower's.
LENT_GROUP = "federation_lent"
LENT_LEAVES = ("nomad", "nomad_clients")
WORLD = "0.0.0.0/0"


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector while a plan (or its inventory) is built.

    Building one makes a few objects per node and no reference cycles; at 100,000
    nodes the collector's repeated passes over them cost several times the work itself.
    On the way out the objects made meanwhile join the oldest generation (freeze, then
    unfreeze: two list splices), so the next young collection does not walk them all;
    a full collection still examines them.
    """
    enabled = gc.isenabled()
    promote = gc.get_freeze_count() == 0  # never unfreeze what a caller froze
    gc.disable()
    try:
        yield
    finally:
        if promote:
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


@lru_cache(maxsize=1)
def gpu_model_names() -> tuple[str, ...]:
    """GPU model names as Nomad's NVIDIA device plugin reports them (catalog/gpu_models.yml)."""
    data = yaml.safe_load((CATALOG_FILE.parent / "gpu_models.yml").read_text(encoding="utf-8"))
    return tuple(m["name"] for m in data["models"])


def plugin_models(accelerator_model: str | None) -> list[str]:
    """The device plugin's names a flavor's Accelerator:Model can stand for ("T4" -> "Tesla T4")."""
    if not accelerator_model:
        return []
    wanted = accelerator_model.lower()
    return [name for name in gpu_model_names() if wanted in name.lower()]


def _devices(role: str, flavor: dict[str, Any]) -> list[dict[str, Any]]:
    """What the NVIDIA device plugin will fingerprint on a node of this pool (gpu nodes only)."""
    accel = flavor.get("accelerator") or {}
    if role != "gpu" or not accel:
        return []
    return [{"type": "gpu", "vendor": "nvidia", "count": int(accel.get("number") or 1),
             "models": plugin_models(accel.get("model"))}]


def _flavor(pool: dict[str, Any]) -> dict[str, Any]:
    flavor = dict(pool.get("flavor") or {})
    if "accelerator" in flavor:
        flavor["accelerator"] = dict(flavor["accelerator"])
    return flavor


def _certs(name: str, consul_cn: str, nomad_cn: str) -> list[dict[str, Any]]:
    return [
        {"name": f"{name}-consul", "common_name": consul_cn, "sans": [consul_cn, name, "localhost", "127.0.0.1"]},
        {"name": f"{name}-nomad", "common_name": nomad_cn, "sans": [nomad_cn, name, "localhost", "127.0.0.1"]},
    ]


def _common_names(role: str, datacenter: str, region: str) -> tuple[str, str]:
    """The common names of a node's Consul and Nomad agent certificates (server or client)."""
    kind = "server" if role == "server" else "client"
    return f"{kind}.{datacenter}.consul", f"{kind}.{region}.nomad"


def node_certs(name: str, role: str, datacenter: str, region: str) -> list[dict[str, Any]]:
    """The Consul and Nomad agent certificates of one node, as the plan lists them."""
    return _certs(name, *_common_names(role, datacenter, region))


def _node_groups(site: str, role: str, enabled: list[Component], nomad_servers: bool = True) -> list[str]:
    """A node's inventory groups. A server node of a site that hosts no Nomad server
    (``nomad_servers`` false) is its datacenter's Consul server only: no Nomad agent."""
    groups = [role, f"site_{site}"]
    if role == "server":
        groups += ["consul_servers", "nomad_servers"] if nomad_servers else ["consul_servers"]
    else:
        groups += ["consul_clients", "nomad_clients"]
    groups += [c.name for c in enabled if c.lands_on(role) and (nomad_servers or not _nomad_only(c.name, role))]
    return groups


def _nomad_only(component: str, role: str) -> bool:
    """What only a Nomad server runs on a server node (absent on a Consul-only server)."""
    return component == "nomad" and role == "server"


def _nodes_for_site(site: dict[str, Any], platform: dict[str, Any], enabled: list[Component],
                    groups: dict[str, list[str]], nomad_servers: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The nodes and pool entries of one site; adds the nodes to ``groups``.

    ``nomad_servers``: the site's server nodes are Nomad servers too (sites.yml
    ai4os_nomad_server_sites), else only its Consul datacenter's servers.

    What is the same for every node of a pool (groups, meta, devices, flavor, volume,
    consul, certificate names) is computed once per pool and shared by the pool's nodes
    (at 100,000 nodes: a fraction of the time and memory). To change one node, give it
    its own object (node["nomad"]["meta"] = {...}); changing a shared one in place changes
    the whole pool, also in a copy.deepcopy of the plan.
    """
    region = platform["ai4os_nomad_region"]
    all_namespaces = [vo["namespace"] for vo in platform["ai4os_vos"]]
    datacenter = site["name"]
    nodes: list[dict[str, Any]] = []
    pools: list[dict[str, Any]] = []
    bastion_set = False
    for pool in site["pools"]:
        role = pool["role"]
        pname = pool_name(pool)
        namespaces = list(pool.get("namespaces") or all_namespaces)
        is_server = role == "server"
        nomad_server = is_server and nomad_servers
        consul_only = is_server and not nomad_servers  # holds no Nomad certificate either
        volume_gb = int(pool.get("volume_gb") or 0)
        floating_ip = bool(pool.get("floating_ip"))
        flavor = _flavor(pool)
        node_groups = _node_groups(datacenter, role, enabled, nomad_servers)
        # The meta contract (docs/plan-format.md lists each key's consumer): PAPI's job
        # templates constrain on type, namespace and status and prefer tags=cpu for CPU jobs;
        # its routers name hosts <svc>-<id>.<domain>-<VO domain>, so domain is the site's
        # label; node admission sets status from test to ready (or error).
        meta = {} if is_server else {
            "type": NODE_TYPE[role],
            "tags": "gpu" if role == "gpu" else "cpu",
            "namespace": ",".join(namespaces),
            "domain": datacenter,
            "status": "test",
        }
        devices = _devices(role, flavor)
        node_class = None if is_server else role
        volume = {"size_gb": volume_gb, "mount": DATA_MOUNT} if volume_gb else None
        consul = {"server": is_server}
        consul_cn, nomad_cn = _common_names(role, datacenter, region)
        pool_nodes: list[str] = []
        for index in range(1, pool["count"] + 1):
            name = node_name(datacenter, pname, index)
            bastion = role == "ingress" and not bastion_set
            bastion_set = bastion_set or bastion
            nodes.append({
                "name": name,
                "site": datacenter,
                "pool": pname,
                "role": role,
                "datacenter": datacenter,
                "groups": node_groups,
                "consul": consul,
                "nomad": {"server": nomad_server, "client": not is_server, "node_class": node_class,
                          "meta": meta, "devices": devices},
                "volume": volume,
                "floating_ip": floating_ip,
                "bastion": bastion,
                "flavor": flavor,
                "certs": _certs(name, consul_cn, nomad_cn)[:1] if consul_only else _certs(name, consul_cn, nomad_cn),
            })
            pool_nodes.append(name)
        for group in node_groups:
            groups.setdefault(group, []).extend(pool_nodes)
        pools.append({
            "name": pname,
            "role": role,
            "count": pool["count"],
            "flavor": _flavor(pool),
            "volume_gb": volume_gb,
            "floating_ip": floating_ip,
            "namespaces": namespaces if role not in ("server", "ingress") else [],
            "nodes": pool_nodes,
        })
    return nodes, pools


def _site_entry(site: dict[str, Any], platform: dict[str, Any], pools: list[dict[str, Any]],
                nodes: list[dict[str, Any]]) -> dict[str, Any]:
    auth = site.get("auth") or ("checkin" if site.get("egi_site") else "application_credential")
    network = site.get("network") or {}
    image = site.get("image") or {}
    ssh = site.get("ssh") or {}
    bastion = next((n["name"] for n in nodes if n["bastion"]), None)
    return {
        "name": site["name"],
        "datacenter": site["name"],
        "domain": site_domain(platform, site),
        "testbed": bool(site.get("testbed")),
        "egi_site": site.get("egi_site"),
        "cloud": site.get("cloud"),
        "vo": site.get("vo"),
        "auth": "none" if site.get("testbed") else auth,
        "region": site.get("region"),
        "location": dict(site.get("location") or {}),
        "network": {"create": bool(network.get("create")), "existing": network.get("existing"),
                    "cidr": network.get("cidr"), "external": network.get("external"),
                    "outbound_addresses": list(network.get("outbound_addresses") or [])},
        "image": {"name": image.get("name"), "properties": dict(image.get("properties") or {})},
        "ssh": {"user": ssh.get("user"), "key_name": ssh.get("key_name"),
                "allowed_cidrs": list(ssh.get("allowed_cidrs") or [])},
        "bastion": bastion,
        "pools": pools,
    }


def cloud_sites(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Sites Terraform provisions (test-bed sites are local containers)."""
    return [site for site in plan["sites"] if not site.get("testbed")]


def port_table(enabled: list[Component]) -> list[dict[str, Any]]:
    """Every port of every enabled component, with who may connect."""
    return [
        {"component": c.name, "name": p.name, "protocol": p.protocol, "port_min": p.port_min,
         "port_max": p.port_max, "exposure": p.exposure, "node_roles": list(p.on)}
        for c in enabled for p in c.ports
    ]


def _remote_cidrs(exposure: str, site: dict[str, Any]) -> list[str]:
    if exposure == "public":
        return [WORLD]
    if exposure == "operator":
        return list(site["ssh"]["allowed_cidrs"])
    if exposure == "site":
        return [site["network"]["cidr"]]
    return []  # localhost: never in a security group; ingress, wan_*: groups and public addresses


def secgroup_name(platform_name: str, site_name: str, role: str) -> str:
    """The security group of one node role at one site."""
    return f"{platform_name}-{site_name}-{role}"


def router_address_name(site_name: str) -> str:
    """The name of a created network's router address among the public addresses Terraform reports."""
    return f"{site_name}-router"


def wan_sources(sites: list[dict[str, Any]], nodes: list[dict[str, Any]],
                lent: list[dict[str, Any]] | None = None) -> dict[str, list[tuple[str | None, str | None]]]:
    """Who may reach the ports of exposures ``wan_servers`` / ``wan_nodes``, as (remote_cidr, remote_address).

    ``remote_address`` names a public address known only once provisioned: a node's
    floating IP (by node name) or a created network's router (``<site>-router``);
    Terraform puts the address in (modules/secgroups). An existing network's outbound
    addresses are given in sites.yml (CIDRs). Keys: ``consul_servers`` (every site's
    server nodes), ``nomad_servers`` (the Nomad servers), ``nodes`` (every address a
    node of the platform leaves from: floating IPs, routers, outbound addresses, and
    the public addresses of the sites other installations lend, ``lent``).
    """
    public = [n for n in nodes if n["floating_ip"]]
    leaving: list[tuple[str | None, str | None]] = [(None, n["name"]) for n in public]
    for site in sites:
        if site["network"]["create"]:
            leaving.append((None, router_address_name(site["name"])))
        leaving += [(cidr, None) for cidr in site["network"]["outbound_addresses"]]
    for record in lent or []:
        leaving += [(cidr, None) for cidr in record["public_addresses"] if (cidr, None) not in leaving]
    return {
        "consul_servers": [(None, n["name"]) for n in public if n["consul"]["server"]],
        "nomad_servers": [(None, n["name"]) for n in public if n["nomad"]["server"]],
        "nodes": leaving,
    }


def security_groups(sites: list[dict[str, Any]], ports: list[dict[str, Any]], platform_name: str,
                    nodes: list[dict[str, Any]] | None = None,
                    nomad_server_sites: list[str] | None = None,
                    lent: list[dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """One security group per (site, node role present), rules only from the port table.

    A rule's source is one of: a CIDR (``remote_cidr``); for exposure ``ingress``,
    the site's ingress security group (``remote_group``: Nomad's dynamic ports are
    reached only by Traefik on the ingress nodes, whatever their addresses); for
    exposures ``wan_servers`` / ``wan_nodes`` (only when the platform spans more
    than one cloud site), one public address of another node or router of the
    platform (``remote_address``, see wan_sources; sites reach each other only
    through public addresses, docs/federation.md). Nomad's ports are opened on the
    server nodes of the sites that run Nomad servers only; the Nomad servers' RPC
    port also to the public addresses of the sites other installations lend (``lent``).
    """
    cloud_sites = [s for s in sites if not s["testbed"] and s["network"]["cidr"]]
    cloud_names = {s["name"] for s in cloud_sites}
    wan: dict[str, list[tuple[str | None, str | None]]] = {}
    if multi_site(cloud_sites, len(lent or [])):
        wan = wan_sources(cloud_sites, [n for n in nodes or [] if n["site"] in cloud_names], lent)
        if not multi_site(cloud_sites):
            wan["consul_servers"] = []  # one datacenter: no Consul WAN peers, only lent Nomad clients
    nomad_sites = set(nomad_server_sites) if nomad_server_sites is not None else cloud_names
    out: dict[str, list[dict[str, Any]]] = {}
    for site in cloud_sites:
        roles = [r for r in NODE_ROLES if any(p["role"] == r and p["count"] > 0 for p in site["pools"])]
        ingress_group = secgroup_name(platform_name, site["name"], "ingress") if "ingress" in roles else None
        groups = []
        for role in roles:
            rules: list[dict[str, Any]] = []
            seen: set[tuple[Any, ...]] = set()
            for port in ports:
                if role not in port["node_roles"]:
                    continue
                if _nomad_only(port["component"], role) and site["name"] not in nomad_sites:
                    continue
                sources: list[tuple[str | None, str | None, str | None]] = [
                    (cidr, None, None) for cidr in _remote_cidrs(port["exposure"], site)]
                if port["exposure"] == "ingress" and ingress_group:
                    sources.append((None, ingress_group, None))
                if port["exposure"] == "wan_servers":
                    sources += [(cidr, None, name) for cidr, name in wan.get(f"{port['component']}_servers", [])]
                if port["exposure"] == "wan_nodes":
                    sources += [(cidr, None, name) for cidr, name in wan.get("nodes", [])]
                for cidr, group, address in sources:
                    key = (port["protocol"], port["port_min"], port["port_max"], cidr, group, address)
                    if key in seen:
                        continue
                    seen.add(key)
                    rules.append({"direction": "ingress", "protocol": port["protocol"],
                                  "port_min": port["port_min"], "port_max": port["port_max"],
                                  "remote_cidr": cidr, "remote_group": group, "remote_address": address,
                                  "component": port["component"], "port_name": port["name"]})
            groups.append({"name": secgroup_name(platform_name, site["name"], role), "role": role, "rules": rules})
        out[site["name"]] = groups
    return out


def build_plan(inv: Inventory) -> dict[str, Any]:
    """The whole plan for a validated inventory."""
    platform = inv.platform
    enabled = [inv.catalog[name] for name in inv.resolution.enabled]
    nodes: list[dict[str, Any]] = []
    sites: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {}
    server_sites = inv.nomad_server_sites or [site["name"] for site in inv.sites]
    with no_cycle_collection():
        for site in inv.sites:
            site_nodes, pools = _nodes_for_site(site, platform, enabled, groups, site["name"] in server_sites)
            nodes += site_nodes
            sites.append(_site_entry(site, platform, pools, site_nodes))
    ports = port_table(enabled)
    for node in nodes:  # lent to another installation: a Nomad client of its region, not of this one
        lent_to = inv.joined.get(node["name"])
        if lent_to:
            node["groups"] = [g for g in node["groups"] if g not in LENT_LEAVES] + [LENT_GROUP]
            node["nomad"] = dict(node["nomad"], meta=dict(lent_to["meta"]), lent_to=lent_to["platform"])
            for group in LENT_LEAVES:
                if node["name"] in groups.get(group, []):
                    groups[group] = [n for n in groups[group] if n != node["name"]]
            groups.setdefault(LENT_GROUP, []).append(node["name"])
    components = {
        name: {"enabled": name in inv.resolution.enabled,
               "reason": inv.resolution.enabled.get(name) or inv.resolution.disabled[name],
               "layer": comp.layer, "description": comp.description}
        for name, comp in inv.catalog.items()
    }
    fixed = {"ai4os_platform_name", "ai4os_domain", "ai4os_nomad_region", "ai4os_vos", "ai4os_oidc"}
    settings = {k: v for k, v in platform.items() if k not in fixed and not k.startswith(ENABLE_PREFIX)}
    return {
        "platform": {
            "name": platform["ai4os_platform_name"],
            "domain": platform["ai4os_domain"],
            "region": platform["ai4os_nomad_region"],
            "namespace": PLATFORM_NAMESPACE,
            "vos": [dict(vo) for vo in platform["ai4os_vos"]],
            "oidc": platform["ai4os_oidc"],
        },
        "components": components,
        "settings": settings,
        "sites": sites,
        "nodes": nodes,
        "groups": dict(sorted(groups.items())),
        "ports": ports,
        "lent": [{"site": r["site"], "lender": r["lender"], "nodes": [n["name"] for n in r["nodes"]],
                  "public_addresses": list(r["public_addresses"]), "scope": dict(r["scope"]),
                  "not_after": r["not_after"]} for r in inv.lent],
        "topology": {"multi_site": multi_site(sites, len(inv.lent)), "nomad_server_sites": list(server_sites),
                     "lent_sites": {r["site"]: r["lender"] for r in inv.lent},
                     "nomad_servers": len(groups.get("nomad_servers", []))},
        "secgroups": security_groups(sites, ports, platform["ai4os_platform_name"], nodes, server_sites, inv.lent),
    }
