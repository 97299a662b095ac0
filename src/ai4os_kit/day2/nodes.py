"""Which nodes `add-node` adds and `remove-node` may remove: the plan (sites.yml) against the
deployed state (hosts.yml). Node names are <site>-<pool>-<n>, numbered within their pool, and a
shrinking pool loses its highest-numbered nodes (docs/terraform.md, "Removing nodes")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ai4os_kit.errors import InputError
from ai4os_kit.paths import HOSTS_FILE, SITES_FILE


def added(plan: Mapping[str, Any], deployed: Iterable[str]) -> list[str]:
    """The plan's nodes that hosts.yml does not have yet, in plan order."""
    have = set(deployed)
    return [n["name"] for n in plan["nodes"] if n["name"] not in have]


def _pool_of(plan: Mapping[str, Any], name: str) -> tuple[str, str, int] | None:
    """(site, pool, count now) of the pool a node name belongs to, from the name's shape."""
    for site in plan["sites"]:
        for pool in site["pools"]:
            prefix = f"{site['name']}-{pool['name']}-"
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                return site["name"], pool["name"], int(pool["count"])
    return None


def check_removal(plan: Mapping[str, Any], deployed: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """The nodes to remove, checked: each is deployed (hosts.yml) and already left the plan
    (its pool shrank in sites.yml). InputError naming the node and the fix otherwise."""
    names = list(dict.fromkeys(names))
    planned = {n["name"] for n in plan["nodes"]}
    for name in names:
        if name not in deployed:
            raise InputError(HOSTS_FILE, name, "not a node of the deployed platform",
                             f"name nodes of hosts.yml ({', '.join(sorted(deployed)[:6])}{', ...' if len(deployed) > 6 else ''})")
        if name in planned:
            where = _pool_of(plan, name)
            number = int(name.rsplit("-", 1)[1])
            if where is None:
                fix = "take its pool out of sites.yml first"
            elif number == where[2]:
                fix = (f"shrink pool {where[1]} of site {where[0]} to count {where[2] - 1} in sites.yml first "
                       "(a pool loses its highest-numbered nodes), then run this again")
            else:
                fix = (f"a pool loses its highest-numbered nodes: shrinking pool {where[1]} of site {where[0]} "
                       f"removes {where[0]}-{where[1]}-{where[2]} first; to retire {name} itself, drain it by hand "
                       f"(nomad node eligibility -disable) until the pool shrinks to it")
            raise InputError(SITES_FILE, name, "is still in the plan, so provisioning would keep (or recreate) it",
                             fix)
    return names
