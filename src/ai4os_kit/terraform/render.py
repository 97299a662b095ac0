"""The Terraform root module of an inventory, rendered as Terraform JSON.

One provider configuration (alias = site name) and one ``site`` module call per
cloud site of the node plan, a backend (local by default; ``s3``; ``swift``
through Swift's S3 API) and one root output, ``inventory``: the sites' Ansible
inventory parts, keyed by site. Everything comes from the plan
(docs/plan-format.md); nothing here talks to a cloud.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from ai4os_kit.cloud.checkin import cloud_name
from ai4os_kit.errors import InputError
from ai4os_kit.model.node_contract import SERVER_GROUP_POLICY, meta_strings
from ai4os_kit.model.plan import cloud_sites
from ai4os_kit.paths import PLATFORM_FILE, ROOT

MODULES_DIR = ROOT / "terraform" / "modules"
ROOT_FILE = "main.tf.json"
PROVIDER_SOURCE = "terraform-provider-openstack/openstack"
PROVIDER_VERSION = ">= 2.1.0, < 4.0.0"
BACKEND_SETTING = "ai4os_terraform_backend"
# Credentials of a remote backend come from the environment, never from files.
BACKEND_SECRET_KEYS = ("access_key", "secret_key", "token", "password", "sse_customer_key")
BACKEND_TYPES = ("local", "s3", "swift")


def module_name(site: Mapping[str, Any]) -> str:
    return f"site_{site['name']}"


# ------------------------------------------------------------------ backend

def _backend_error(key: str, problem: str, fix: str) -> InputError:
    return InputError(PLATFORM_FILE, f"{BACKEND_SETTING}{key}", problem, fix)


def _require(conf: Mapping[str, Any], key: str, kind: str) -> str:
    value = conf.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _backend_error(f".{key}", f"the {kind} backend needs `{key}` (a non-empty string)",
                             f"set {BACKEND_SETTING}.{key} in {PLATFORM_FILE}")
    return value


def _s3_common(conf: Mapping[str, Any], platform: str, bucket: str) -> dict[str, Any]:
    backend: dict[str, Any] = {
        "bucket": bucket,
        "key": conf.get("key") or f"ai4os/{platform}/terraform.tfstate",
        "region": conf.get("region") or "us-east-1",
        "use_lockfile": True,
    }
    endpoint = conf.get("endpoint")
    if endpoint is not None:
        if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
            raise _backend_error(".endpoint", f"'{endpoint}' is not an https URL",
                                 "give the object store's S3 endpoint as https://host[:port]")
        backend["endpoints"] = {"s3": endpoint}
        # Not AWS: no STS/IMDS/region checks, path-style bucket addressing.
        backend.update({"use_path_style": True, "skip_credentials_validation": True,
                        "skip_region_validation": True, "skip_requesting_account_id": True,
                        "skip_metadata_api_check": True, "skip_s3_checksum": True})
    return backend


def render_backend(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The ``terraform.backend`` block from ``ai4os_terraform_backend`` in platform.yml.

    ``type: local`` (default): state in the root's directory. ``type: s3``:
    bucket, optional key/region/endpoint. ``type: swift``: container and the
    endpoint of the site's Swift S3 API (Terraform >= 1.3 has no native swift
    backend). Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    (for Swift: EC2 credentials); a credential in the file is refused.
    """
    conf = (plan.get("settings") or {}).get(BACKEND_SETTING) or {"type": "local"}
    if not isinstance(conf, Mapping):
        raise _backend_error("", "must be a mapping with `type: local|s3|swift`",
                             f"write e.g. `{BACKEND_SETTING}: {{type: local}}`")
    kind = conf.get("type", "local")
    if kind not in BACKEND_TYPES:
        raise _backend_error(".type", f"unknown backend type '{kind}'",
                             "use local, s3 or swift")
    secrets = sorted(k for k in conf if k in BACKEND_SECRET_KEYS)
    if secrets:
        raise _backend_error(f".{secrets[0]}", "credentials must not be stored in the inventory",
                             "remove it and export AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                             "(for Swift: `openstack ec2 credentials create`) before running the kit")
    platform = plan["platform"]["name"]
    if kind == "local":
        unknown = sorted(set(conf) - {"type", "path"})
        if unknown:
            raise _backend_error(f".{unknown[0]}", "not a setting of the local backend",
                                 "remove it (the local backend takes only `path`)")
        return {"local": {"path": conf.get("path") or "terraform.tfstate"}}
    if kind == "s3":
        return {"s3": _s3_common(conf, platform, _require(conf, "bucket", "s3"))}
    _require(conf, "endpoint", "swift")
    return {"s3": _s3_common(conf, platform, _require(conf, "container", "swift"))}


def backend_type(plan: Mapping[str, Any]) -> str:
    conf = (plan.get("settings") or {}).get(BACKEND_SETTING) or {}
    return str(conf.get("type", "local")) if isinstance(conf, Mapping) else "local"


# ------------------------------------------------------------------ site module arguments

def _flavor(flavor: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "vcpus", "ram_mb", "disk_gb")
    out: dict[str, Any] = {k: flavor[k] for k in keys if flavor.get(k) is not None}
    acc = flavor.get("accelerator")
    if acc:
        out["accelerator"] = {k: acc[k] for k in ("type", "number", "vendor", "model") if acc.get(k) is not None}
    return out


def _pools(site: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]],
           flavor_ids: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    pools: dict[str, Any] = {}
    for pool in site["pools"]:
        members = {name: nodes[name] for name in pool["nodes"]}
        flavor = _flavor(pool["flavor"])
        chosen = flavor_ids.get((site["name"], pool["name"]))
        if chosen:
            flavor = {"id": chosen, **({"accelerator": flavor["accelerator"]} if "accelerator" in flavor else {})}
        pools[pool["name"]] = {
            "role": pool["role"],
            "server_group_policy": SERVER_GROUP_POLICY.get(pool["role"]) if pool["count"] > 1 else None,
            "flavor": flavor,
            "nodes": {name: {
                "groups": list(node["groups"]),
                "node_meta": meta_strings(node["nomad"]["meta"]),
                "volume_gb": node["volume"]["size_gb"] if node["volume"] else 0,
                "floating_ip": bool(node["floating_ip"]),
            } for name, node in members.items()},
        }
    return pools


def _secgroups(groups: list[Mapping[str, Any]]) -> dict[str, Any]:
    return {group["name"]: {
        "role": group["role"],
        "description": f"ai4os-kit: ports of the {group['role']} nodes (from the plan's port table)",
        "rules": [{
            "direction": rule["direction"],
            "protocol": rule["protocol"],
            "port_min": rule["port_min"],
            "port_max": rule["port_max"],
            "remote_cidr": rule["remote_cidr"],
            "remote_group": rule.get("remote_group"),
            "remote_address": rule.get("remote_address"),
            "description": f"{rule['component']}/{rule['port_name']}",
        } for rule in group["rules"]],
    } for group in groups}


def _admin_keys(plan: Mapping[str, Any]) -> list[str]:
    users = (plan.get("settings") or {}).get("ai4os_admin_users") or []
    return sorted({key for user in users for key in user.get("ssh_keys", [])})


def site_arguments(plan: Mapping[str, Any], site: Mapping[str, Any],
                   flavor_ids: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """Arguments of one ``site`` module call (the module's variables).

    ``flavor_ids`` maps (site, pool) to the flavor chosen for a pool that
    gives requirements only (ai4os_kit.cloud.flavors); the accelerator
    requirement stays, so the module re-checks the flavor's extra specs.
    A site whose rules name other nodes' public addresses gets them all
    (``public_addresses``: the root's local, see render_root).
    """
    nodes = {node["name"]: node for node in plan["nodes"] if node["site"] == site["name"]}
    network = site["network"]
    image = {k: v for k, v in site["image"].items() if v not in (None, {})}
    return {
        "platform": plan["platform"]["name"],
        "site": site["name"],
        "network": {k: network[k] for k in ("create", "existing", "cidr", "external") if network.get(k) is not None},
        "image": image,
        "ssh": {"user": site["ssh"]["user"], "key_name": site["ssh"]["key_name"], "public_keys": _admin_keys(plan)},
        "secgroups": _secgroups(plan["secgroups"].get(site["name"], [])),
        "pools": _pools(site, nodes, flavor_ids or {}),
        "bastion": site["bastion"],
        **({"public_addresses": f"${{local.{PUBLIC_ADDRESSES}}}"} if _names_addresses(plan, site) else {}),
    }


PUBLIC_ADDRESSES = "public_addresses"


def _names_addresses(plan: Mapping[str, Any], site: Mapping[str, Any]) -> bool:
    return any(rule.get("remote_address") for group in plan["secgroups"].get(site["name"], []) for rule in group["rules"])


def public_addresses_local(sites: list[Mapping[str, Any]]) -> str:
    """Every site's public addresses in one map (floating IPs, routers): each site's rules
    admit the others' in the same apply, nothing copied by hand (docs/federation.md)."""
    return "${merge(" + ", ".join(f"module.{module_name(site)}.public_addresses" for site in sites) + ")}"


# ------------------------------------------------------------------ root

def _module_source(root_dir: Path, modules_dir: Path) -> str:
    rel = os.path.relpath(modules_dir / "site", root_dir.resolve())
    return rel if rel.startswith("../") or rel.startswith("./") else f"./{rel}"


def _provider(site: Mapping[str, Any]) -> dict[str, Any]:
    provider: dict[str, Any] = {"alias": site["name"], "cloud": cloud_name(site)}
    if site.get("region"):
        provider["region"] = site["region"]
    return provider


def render_root(plan: Mapping[str, Any], root_dir: Path, modules_dir: Path = MODULES_DIR,
                flavor_ids: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """The root module (Terraform JSON) for ``plan``, to be written into ``root_dir``."""
    sites = cloud_sites(plan)
    source = _module_source(root_dir, modules_dir)
    modules = {}
    for site in sites:
        call: dict[str, Any] = {"source": source, "providers": {"openstack": f"openstack.{site['name']}"}}
        call.update(site_arguments(plan, site, flavor_ids))
        modules[module_name(site)] = call
    wired = [site for site in sites if _names_addresses(plan, site)]
    return {
        "//": "Written by ai4os-kit from the node plan; do not edit (edit platform.yml / sites.yml).",
        # No required_version here: modules/site carries it (and checkov's JSON
        # parser only reads named blocks under `terraform`).
        "terraform": {
            "required_providers": {"openstack": {"source": PROVIDER_SOURCE, "version": PROVIDER_VERSION}},
            "backend": render_backend(plan),
        },
        "provider": {"openstack": [_provider(site) for site in sites]},
        **({"locals": {PUBLIC_ADDRESSES: public_addresses_local(sites)}} if wired else {}),
        "module": modules,
        "output": {"inventory": {
            "description": "Per site: hosts with addresses, groups, per-host vars (see terraform/modules/inventory).",
            "value": {site["name"]: f"${{module.{module_name(site)}.inventory}}" for site in sites},
        }, PUBLIC_ADDRESSES: {
            "description": "Every site's public addresses (node name: floating IP; <site>-router: a created network's "
                           "router), as the sites' security groups admit them (docs/federation.md).",
            "value": public_addresses_local(sites),
        }},
    }


# The root directory also holds state, saved plans and the kit's clouds.yaml
# (tokens): none of them belongs in git; main.tf.json may be reviewed there.
ROOT_GITIGNORE = "clouds.yaml\nclouds.tmp\n*.tfplan\n.terraform/\n.terraform.lock.hcl\n*.tfstate\n*.tfstate.*\n"


def write_root(root: Mapping[str, Any], root_dir: Path) -> Path:
    """Write main.tf.json atomically (and the directory's .gitignore); returns its path."""
    root_dir.mkdir(parents=True, exist_ok=True)
    (root_dir / ".gitignore").write_text(ROOT_GITIGNORE, encoding="utf-8")
    target = root_dir / ROOT_FILE
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(root, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target
