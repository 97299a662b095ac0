"""The node contract: what every layer agrees a node carries, written once.

- the server metadata the node_pool module sets on each server and discovery
  reads back (`inventory --from-cloud`, the quota preflight);
- the server group policy of pools whose nodes must not share a hypervisor;
- the Ansible connection variables of a provisioned node.

Node meta (the Nomad client meta PAPI's job templates read) is built by the
plan (ai4os_kit.model.plan) and documented in docs/plan-format.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

META_PLATFORM = "ai4os_platform"
META_SITE = "ai4os_site"
META_POOL = "ai4os_pool"
META_ROLE = "ai4os_role"
META_GROUPS = "ai4os_groups"
META_NODE_META = "ai4os_node_meta"
def node_name(site: str, pool: str, index: int) -> str:
    """<site>-<pool>-<n>: numbered within its pool, so growing or shrinking one pool never renames
    (and so never replaces) a node of another pool. A pool is named after its role by default."""
    return f"{site}-{pool}-{index}"


# Keys a server of the platform must carry for discovery to place it.
REQUIRED_METADATA = (META_SITE, META_POOL, META_ROLE, META_GROUPS)

# Pools of these roles with more than one node get a server group with this policy.
SERVER_GROUP_POLICY = {"server": "anti-affinity"}


def meta_strings(meta: Mapping[str, Any]) -> dict[str, str]:
    """Nomad meta as strings (server metadata holds strings)."""
    return {k: (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in meta.items() if v is not None}


def server_metadata(platform: str, node: Mapping[str, Any]) -> dict[str, str]:
    """The metadata modules/node_pool sets on a node's server (discovery reads it back).

    Same values as the module's `metadata` local (a test compares both);
    Terraform's jsonencode sorts keys and writes no spaces.
    """
    return {
        META_PLATFORM: platform,
        META_SITE: node["site"],
        META_POOL: node["pool"],
        META_ROLE: node["role"],
        META_GROUPS: ",".join(node["groups"]),
        META_NODE_META: json.dumps(meta_strings(node["nomad"]["meta"]), sort_keys=True, separators=(",", ":")),
    }


def connection_vars(host: Mapping[str, Any]) -> dict[str, Any]:
    """Ansible connection variables of one host ({ansible_host, vars}) of the inventory output."""
    out: dict[str, Any] = {"ansible_host": host["ansible_host"]}
    out.update({k: v for k, v in (host.get("vars") or {}).items() if v is not None})
    return out
