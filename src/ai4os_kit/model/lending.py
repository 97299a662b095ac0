"""Sites another platform installation lends to this one: the records of `ai4os-kit federation accept`.

A record, ``<inventory>/federation/lent/<site>.yml``, is written by ``accept`` and
removed by ``revoke`` (which keeps it under ``federation/revoked/``). It holds
nothing secret (node names, certificate serials and expiry, the lender's public
addresses, the scope) and is reviewed in git with the rest of the inventory. The
plan reads it: the Nomad servers admit the lender's public addresses on their RPC
port (and advertise their public addresses), and accounting names the lender of
the usage on those nodes (docs/federation.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ai4os_kit.errors import InputError
from ai4os_kit.yamlio import load_yaml

FEDERATION_DIR = "federation"
LENT_DIR = Path(FEDERATION_DIR) / "lent"
REVOKED_DIR = Path(FEDERATION_DIR) / "revoked"
RECORD_KIND = "ai4os_federation_lent"
LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
NODE_TYPES = ("batch", "compute")
# The node meta keys that mark a lent node (PAPI, node admission and accounting can tell them apart).
META_LENT_BY = "lent_by"
META_LENT_SITE = "lent_site"
META_LENT_UNTIL = "lent_until"


# Networks no other cloud can reach: private (RFC 1918), shared/CGNAT (RFC 6598), loopback,
# link-local, "this network", multicast and reserved. (The documentation and benchmarking
# ranges stand for public addresses in examples and test-beds, so they are accepted.)
NOT_ROUTED = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"))


def public_network(text: str) -> ipaddress.IPv4Network | None:
    """``text`` as an IPv4 network other clouds can reach (None: not one, or private/unroutable)."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen == 0:
        return None
    if any(net.overlaps(other) for other in NOT_ROUTED):
        return None
    return net


def _fail(file: Path, key: str, problem: str) -> InputError:
    return InputError(str(file), key, problem, "the file is written by `ai4os-kit federation accept`: accept the "
                      "lender's request again, or remove the file with `ai4os-kit federation revoke`")


def check_record(file: Path, data: Any, own_sites: set[str], namespaces: set[str]) -> dict[str, Any]:
    """One record, checked: the fields the plan and accounting read."""
    if not isinstance(data, dict) or data.get("kind") != RECORD_KIND:
        raise _fail(file, "kind", f"is not a record of a lent site (kind: {RECORD_KIND})")
    site = data.get("site")
    if not isinstance(site, str) or not LABEL.match(site):
        raise _fail(file, "site", f"'{site}' is not a DNS label")
    if file.stem != site:
        raise _fail(file, "site", f"the file of site '{site}' must be named {site}.yml")
    if site in own_sites:
        raise InputError(str(file), "site", f"'{site}' is also a site of this platform (sites.yml): a lent site keeps "
                         "its own datacenter name", f"revoke it (`ai4os-kit federation revoke INVENTORY {site}`) or "
                         "rename this platform's site")
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes or not all(isinstance(n, dict) and LABEL.match(str(n.get("name")))
                                                           and str(n.get("name")).startswith(site + "-") for n in nodes):
        raise _fail(file, "nodes", f"must list the lent nodes, each named {site}-<pool>-<n>")
    addresses = data.get("public_addresses")
    if not isinstance(addresses, list) or not addresses or not all(public_network(str(a)) for a in addresses):
        raise _fail(file, "public_addresses", "must list the lender's public IPv4 addresses (a.b.c.d/32)")
    scope = data.get("scope")
    if not isinstance(scope, dict) or not isinstance(scope.get("namespaces"), list) or not scope["namespaces"]:
        raise _fail(file, "scope.namespaces", "must list the namespaces the lent nodes serve")
    unknown = [ns for ns in scope["namespaces"] if ns not in namespaces]
    if unknown:
        raise InputError(str(file), "scope.namespaces", f"names namespace '{unknown[0]}', which no VO of this "
                         "platform has (platform.yml ai4os_vos)", "revoke the site and accept the request again "
                         "with --namespaces naming this platform's namespaces, or add the VO")
    if scope.get("type") not in NODE_TYPES:
        raise _fail(file, "scope.type", f"must be one of {', '.join(NODE_TYPES)}")
    for key in ("lender", "not_after"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise _fail(file, key, "is missing")
    return data


def load_lent(inventory: Path, own_sites: set[str], namespaces: set[str]) -> list[dict[str, Any]]:
    """Every record under ``<inventory>/federation/lent/``, checked, in file-name order."""
    folder = Path(inventory) / LENT_DIR
    if not folder.is_dir():
        return []
    records = []
    for file in sorted(folder.glob("*.yml")):
        data, _ = load_yaml(file)
        records.append(check_record(file, data, own_sites, namespaces))
    return records


JOINED_FILE = "joined.yml"  # federation/<borrower>/joined.yml: a bundle `federation join` checked


def load_joined(inventory: Path, own_nodes: Callable[[], set[str]]) -> dict[str, dict[str, Any]]:
    """The lender's side: node name -> what makes it a client of the borrower's region (from the
    bundles `ai4os-kit federation join` checked and kept): platform, region, datacenter, servers,
    meta. Every node named must still be a node of this inventory (``own_nodes``, computed only
    when a bundle is joined)."""
    out: dict[str, dict[str, Any]] = {}
    folder = Path(inventory) / FEDERATION_DIR
    files = sorted(folder.glob(f"*/{JOINED_FILE}")) if folder.is_dir() else []
    names = own_nodes() if files else set()
    for file in files:
        data, _ = load_yaml(file)
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise InputError(str(file), "nodes", "is not a join bundle", "join the bundle again with "
                             "`ai4os-kit federation join`, or remove the file to take the nodes back")
        for entry in data["nodes"]:
            name = str(entry.get("name"))
            if name not in names:
                raise InputError(str(file), "nodes", f"'{name}' is lent to {data.get('platform')} but is no node of "
                                 "this inventory any more", "ask the borrower to revoke the site, then remove "
                                 f"{file} (or keep the node in sites.yml until then)")
            if name in out:
                raise InputError(str(file), "nodes", f"'{name}' is lent to two platforms "
                                 f"({out[name]['platform']} and {data.get('platform')})",
                                 "a node joins one region: remove one of the joined bundles")
            out[name] = {"platform": data.get("platform"), "region": data.get("region"),
                         "datacenter": data.get("datacenter"), "servers": list(data.get("servers") or []),
                         "meta": dict(entry.get("meta") or {}), "bundle": str(file.relative_to(inventory))}
    return out


def node_meta(record: dict[str, Any], tags: str) -> dict[str, str]:
    """The Nomad node meta a lent node carries (the plan's meta contract plus the lending marks)."""
    scope = record["scope"]
    return {"type": scope["type"], "tags": tags, "namespace": ",".join(scope["namespaces"]),
            "domain": record["site"], "status": "test", META_LENT_BY: record["lender"],
            META_LENT_SITE: record["site"], META_LENT_UNTIL: record["not_after"]}


def expired(record: dict[str, Any], now: dt.datetime | None = None) -> bool:
    when = dt.datetime.fromisoformat(record["not_after"].replace("Z", "+00:00"))
    return when <= (now or dt.datetime.now(dt.UTC))


__all__ = ["LENT_DIR", "REVOKED_DIR", "RECORD_KIND", "JOINED_FILE", "load_lent", "load_joined", "check_record",
           "node_meta", "public_network"]
