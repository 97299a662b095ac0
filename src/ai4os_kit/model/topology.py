"""Where the region's servers run and how sites in independent clouds reach each other.

The model (docs/federation.md): every site is its own Consul datacenter (its
server pool: 1, 3 or 5 Consul servers, LAN gossip inside the site's network
only); the Nomad region has one Raft group whose servers are the server nodes
of the sites named in ``ai4os_nomad_server_sites`` (sites.yml). Between sites
nothing travels over private addresses: Consul servers federate over their
public (floating) addresses, Nomad clients of every site reach the Nomad
servers at theirs. These rules refuse a topology that cannot keep a quorum or
cannot be reached, naming the sites. Called by
:func:`ai4os_kit.model.inventory.load_inventory` (``ai4os-kit check``).
"""

from __future__ import annotations

from typing import Any, Protocol

from ai4os_kit.model.catalog import suggest

SERVER_SITES_KEY = "ai4os_nomad_server_sites"
RAFT_SIZES = (1, 3, 5)


class Collector(Protocol):
    def add(self, path: tuple[Any, ...], problem: str, fix: str) -> None: ...


def _servers(site: dict[str, Any]) -> int:
    return sum(pool["count"] for pool in site["pools"] if pool["role"] == "server")


def multi_site(sites: list[dict[str, Any]], lent_sites: int = 0) -> bool:
    """More than one site (counting sites lent by other installations): the sites reach each
    other only through public addresses."""
    return len(sites) + lent_sites > 1


def nomad_server_sites(sites_doc: dict[str, Any]) -> list[str]:
    """The sites whose server nodes are Nomad servers: as listed, or the only site."""
    listed = sites_doc.get(SERVER_SITES_KEY)
    if listed:
        return list(dict.fromkeys(listed))
    sites = sites_doc["ai4os_sites"]
    return [sites[0]["name"]] if len(sites) == 1 else []


def _spread_fix(names: list[str]) -> str:
    return (f"name one home site ({SERVER_SITES_KEY}: [{names[0]}], whose server pool has 1, 3 or 5 nodes), "
            "or spread the servers over 3 or 5 sites with one server node each")


def check_nomad_servers(sites_doc: dict[str, Any], col: Collector) -> None:
    """The region's servers: an explicit, odd, failure-tolerant placement."""
    sites = sites_doc["ai4os_sites"]
    by_name = {site["name"]: site for site in sites}
    listed = sites_doc.get(SERVER_SITES_KEY)
    if listed is None:
        if len(sites) > 1:
            names = [s["name"] for s in sites]
            col.add((SERVER_SITES_KEY,),
                    f"the platform has {len(sites)} sites ({', '.join(names)}) but does not say which of them run the "
                    "Nomad region's servers (one Raft group; every other site runs Nomad clients and the Consul "
                    "servers of its own datacenter)",
                    f"add `{SERVER_SITES_KEY}: [{names[0]}]` to sites.yml (a home site), or list 3 or 5 sites "
                    "with one server node each")
        return
    seen: set[str] = set()
    counts: list[tuple[str, int]] = []
    for i, name in enumerate(listed):
        if name in seen:
            col.add((SERVER_SITES_KEY, i), f"site '{name}' is listed twice", "list each site once")
            continue
        seen.add(name)
        if name not in by_name:
            col.add((SERVER_SITES_KEY, i), f"'{name}' is not a site of ai4os_sites{suggest(name, list(by_name))}",
                    f"use one of: {', '.join(by_name)}")
            continue
        counts.append((name, _servers(by_name[name])))
    if len(counts) != len(seen):
        return
    total = sum(n for _, n in counts)
    spelled = " + ".join(f"{name} ({n})" for name, n in counts)
    if total not in RAFT_SIZES:
        col.add((SERVER_SITES_KEY,),
                f"the Nomad region would have {total} servers ({spelled}); one Raft group needs 1, 3 or 5 "
                f"(with {total} a quorum of {total // 2 + 1} tolerates no more failures than {total - 1} servers do)",
                _spread_fix([name for name, _ in counts]))
        return
    if len(counts) > 1:
        for name, n in counts:
            if 2 * n >= total:
                col.add((SERVER_SITES_KEY,),
                        f"the Nomad region's servers are spread as {spelled}: losing site '{name}' ({n} of {total}) "
                        f"loses the quorum of {total // 2 + 1}, so spreading adds WAN latency to every Raft "
                        "write without surviving that site",
                        _spread_fix([name for name, _ in counts]))
                return


def check_reachability(sites: list[dict[str, Any]], col: Collector, lent_sites: int = 0) -> None:
    """With several sites, each cloud site must be reachable without routed private networks."""
    if not multi_site(sites, lent_sites):
        return
    count = f"{len(sites)} sites" + (f" and {lent_sites} lent site(s)" if lent_sites else "")
    for i, site in enumerate(sites):
        if site.get("testbed"):
            continue  # test-bed sites are containers on one local network
        servers = [(j, pool) for j, pool in enumerate(site["pools"]) if pool["role"] == "server" and pool["count"] > 0]
        for j, pool in servers:
            if not pool.get("floating_ip"):
                col.add(("ai4os_sites", i, "pools", j, "floating_ip"),
                        f"site '{site['name']}' has no public address for its server nodes: with {count} "
                        "in independent clouds, Consul servers federate and Nomad clients reach the Nomad servers "
                        "only through public addresses (private networks are not routed between clouds)",
                        "set floating_ip: true on the site's server pool")
        network = site.get("network") or {}
        if network.get("existing") and not network.get("outbound_addresses"):
            col.add(("ai4os_sites", i, "network", "outbound_addresses"),
                    f"site '{site['name']}' uses the existing network '{network['existing']}': the kit cannot know "
                    "the public address its nodes leave through, which the Nomad servers' security group must admit",
                    "add network.outbound_addresses: [<the router's external address>/32] (openstack router show "
                    "<router> -c external_gateway_info), or let the kit create the network (create: true)")


def check_topology(sites_doc: dict[str, Any], col: Collector, lent_sites: int = 0) -> None:
    check_nomad_servers(sites_doc, col)
    check_reachability(sites_doc["ai4os_sites"], col, lent_sites)


__all__ = ["SERVER_SITES_KEY", "check_topology", "multi_site", "nomad_server_sites"]
