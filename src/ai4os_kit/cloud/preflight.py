"""`ai4os-kit check --online`: does each site's project offer what the plan needs?

Per cloud site, with openstacksdk: every pool's flavor exists and matches
(GPU pools: the `Accelerator:*` extra specs; `pci_passthrough:alias` is
shown), the image is found (by name or properties), the project's quota
covers the whole plan (instances, cores, RAM, volumes and their GB, floating
IPs), the networks exist and the key pair is there. Nothing is created. One
report table; every failure says what to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import openstack
from openstack import exceptions as os_exc

from ai4os_kit.cloud import flavors as flavor_rules
from ai4os_kit.cloud.connect import site_connections
from ai4os_kit.errors import InputError, InputErrors, KitError
from ai4os_kit.model.node_contract import (
    META_PLATFORM,
    META_POOL,
    META_SITE,
    SERVER_GROUP_POLICY,
)
from ai4os_kit.paths import SITES_FILE

OK, FAIL, WARN = "OK", "FAIL", "WARN"
UNLIMITED = -1


@dataclass(frozen=True)
class Finding:
    """One row of the report."""

    site: str
    check: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Need:
    """One quota resource: what the plan needs and what the project has free."""

    resource: str
    wanted: int
    limit: int
    used: int

    @property
    def free(self) -> int | None:
        return None if self.limit == UNLIMITED else self.limit - self.used


# ------------------------------------------------------------------ flavors

def list_flavors(conn: openstack.connection.Connection) -> list[dict[str, Any]]:
    """Flavors the project sees, with extra specs (the shape ai4os_kit.cloud.flavors matches)."""
    with_specs = (f if f.extra_specs is not None else conn.compute.fetch_flavor_extra_specs(f)
                  for f in conn.compute.flavors(details=True))
    return [flavor_rules.flavor_dict(f) for f in with_specs]


def _gpu_text(flavor: Mapping[str, Any]) -> str:
    specs = flavor["extra_specs"]
    acc = ", ".join(f"{k}={v}" for k, v in sorted(specs.items()) if k.startswith("Accelerator:"))
    alias = specs.get("pci_passthrough:alias")
    return f"; {acc}" + (f"; pci_passthrough:alias={alias}" if alias else "") if acc or alias else ""


def _flavor_by_id(conn: openstack.connection.Connection, flavor_id: str) -> dict[str, Any] | None:
    try:
        return flavor_rules.flavor_dict(conn.compute.fetch_flavor_extra_specs(conn.compute.get_flavor(flavor_id)))
    except os_exc.NotFoundException:
        return None


def _suggest(pool: Mapping[str, Any], flavors: list[dict[str, Any]]) -> str:
    wanted = dict(pool["flavor"])
    fitting = [f for f in flavors if not flavor_rules.mismatches(
        {k: v for k, v in wanted.items() if k == "accelerator"}, f)]
    names = [f["name"] for f in sorted(fitting, key=lambda f: (f["vcpus"], f["ram"], f["name"]))][:5]
    return ", ".join(names) if names else "none fits"


def check_pool_flavor(conn: openstack.connection.Connection, site: Mapping[str, Any], index: int, pool_index: int,
                      flavors: list[dict[str, Any]]) -> tuple[Finding, dict[str, Any] | None]:
    """The pool's flavor, checked; the flavor data when it is usable."""
    pool = site["pools"][pool_index]
    wanted = pool["flavor"]
    key = f"{SITES_FILE} ai4os_sites[{index}].pools[{pool_index}].flavor"
    label = f"flavor {pool['name']}"
    accel_only = {"accelerator": wanted["accelerator"]} if wanted.get("accelerator") else {}
    if wanted.get("id") or wanted.get("name"):
        ref = wanted.get("id") or wanted.get("name")
        found = (_flavor_by_id(conn, wanted["id"]) if wanted.get("id")
                 else next((f for f in flavors if f["name"] == wanted["name"]), None))
        if found is None:
            kind = "id" if wanted.get("id") else "name"
            return Finding(site["name"], label, FAIL, f"no flavor with {kind} '{ref}' is visible to the project",
                           f"{key}.{kind}: use one the project sees (fitting: {_suggest(pool, flavors)}); "
                           "private flavors need the site to grant the project access"), None
        why = flavor_rules.mismatches(accel_only, found) if accel_only else []
        if why:
            return Finding(site["name"], label, FAIL, f"{found['name']} does not match: {'; '.join(why)}",
                           f"{key}: name a flavor that offers the accelerator (fitting: {_suggest(pool, flavors)})"
                           ), None
    else:
        found = flavor_rules.pick(wanted, flavors)  # type: ignore[assignment]
        if found is None:
            near = sorted(flavors, key=lambda f: len(flavor_rules.mismatches(wanted, f)))[:3]
            hints = "; ".join(f"{f['name']}: {', '.join(flavor_rules.mismatches(wanted, f))}" for f in near)
            return Finding(site["name"], label, FAIL,
                           f"no flavor offers {flavor_rules.describe(wanted)}" + (f" (closest: {hints})" if hints else ""),
                           f"{key}: lower the requirements, or name a flavor (flavor.name) or a private flavor's id "
                           "(flavor.id)"), None
        found = dict(found)
    detail = f"{found['name']}: {found['vcpus']} vCPU, {found['ram']} MiB, {found['disk']} GB{_gpu_text(found)}"
    return Finding(site["name"], label, OK, detail), found


# ------------------------------------------------------------------ image

def _image_props(image: Any) -> dict[str, str]:
    props = {k: str(v) for k, v in (image.properties or {}).items()}
    for attr in ("os_distro", "os_version", "architecture", "hw_firmware_type"):
        value = getattr(image, attr, None)
        if value is not None:
            props[attr] = str(value)
    return props


def check_image(conn: openstack.connection.Connection, site: Mapping[str, Any], index: int) -> Finding:
    wanted = site["image"]
    key = f"{SITES_FILE} ai4os_sites[{index}].image"
    images = [i for i in conn.image.images() if i.status == "active"]
    if wanted.get("name"):
        matches = [i for i in images if i.name == wanted["name"]]
        what = f"name '{wanted['name']}'"
    else:
        props = {k: str(v) for k, v in wanted["properties"].items()}
        matches = [i for i in images if all(_image_props(i).get(k) == v for k, v in props.items())]
        what = "properties " + ", ".join(f"{k}={v}" for k, v in sorted(props.items()))
    if not matches:
        have = "; ".join(f"{i.name} ({', '.join(f'{k}={v}' for k, v in sorted(_image_props(i).items()) if k.startswith('os_'))})"
                         for i in images[:8]) or "none"
        return Finding(site["name"], "image", FAIL, f"no active image with {what} (images: {have})",
                       f"{key}: choose one of the listed images (name or properties), or upload the image")
    newest = max(matches, key=lambda i: i.created_at or "")
    extra = f" (newest of {len(matches)})" if len(matches) > 1 else ""
    return Finding(site["name"], "image", OK, f"{newest.name} {newest.id}{extra}")


# ------------------------------------------------------------------ network, key pair

def check_network(conn: openstack.connection.Connection, site: Mapping[str, Any], index: int) -> list[Finding]:
    net = site["network"]
    key = f"{SITES_FILE} ai4os_sites[{index}].network"
    out: list[Finding] = []
    if net.get("existing"):
        found = conn.network.find_network(net["existing"], ignore_missing=True)
        out.append(Finding(site["name"], "network", OK, f"{found.name} {found.id}") if found else
                   Finding(site["name"], "network", FAIL, f"network '{net['existing']}' not found",
                           f"{key}.existing: name a network of the project (openstack network list), or use create: true"))
    needs_external = net.get("create") or any(p["floating_ip"] and p["count"] for p in site["pools"])
    if needs_external:
        external = [n for n in conn.network.networks(is_router_external=True)]
        if net.get("external"):
            chosen = [n for n in external if net["external"] in (n.name, n.id)]
            out.append(Finding(site["name"], "external network", OK, chosen[0].name) if chosen else
                       Finding(site["name"], "external network", FAIL,
                               f"external network '{net['external']}' not found "
                               f"(external networks: {', '.join(n.name for n in external) or 'none'})",
                               f"{key}.external: name one of the external networks"))
        elif len(external) == 1:
            out.append(Finding(site["name"], "external network", OK, external[0].name))
        else:
            names = ", ".join(n.name for n in external) or "none"
            out.append(Finding(site["name"], "external network", FAIL,
                               f"{len(external)} external networks ({names}): cannot pick one for router/floating IPs",
                               f"{key}.external: name the external network to use"))
    return out


def check_keypair(conn: openstack.connection.Connection, site: Mapping[str, Any], index: int) -> Finding:
    name = site["ssh"].get("key_name")
    key = f"{SITES_FILE} ai4os_sites[{index}].ssh.key_name"
    if not name:
        return Finding(site["name"], "key pair", WARN, "no key pair named; nodes get only cloud-init keys")
    if conn.compute.find_keypair(name, ignore_missing=True) is None:
        return Finding(site["name"], "key pair", FAIL, f"key pair '{name}' not found for this user",
                       f"create it (openstack keypair create --public-key ~/.ssh/id_ed25519.pub {name}) or fix {key}")
    return Finding(site["name"], "key pair", OK, name)


# ------------------------------------------------------------------ quota

@dataclass(frozen=True)
class Present:
    """What of a site's plan already exists in the project (a re-provision, or a grown plan).

    Those resources are already in the quota's `used`, so the plan only needs
    the rest: counting them again would fail every re-run of `provision`.
    """

    servers: Mapping[str, int] = field(default_factory=dict)  # pool name -> servers of the plan present
    secgroups: frozenset[str] = frozenset()
    network: bool = False


def plan_needs(site: Mapping[str, Any], chosen: Mapping[str, Mapping[str, Any]],
               secgroups: Iterable[Mapping[str, Any]] = (), present: Present | None = None) -> dict[str, int]:
    """What the site's resources still need, with the chosen flavors (pool name -> flavor).

    Counts what Terraform's modules create: a server, a port and maybe a data
    volume and a floating IP per node; a server group per anti-affinity pool;
    the plan's security groups and rules; network, subnet and router when created.
    Whatever ``present`` says exists already is not counted again.
    """
    present = present or Present()
    need = {"instances": 0, "cores": 0, "ram": 0, "volumes": 0, "gigabytes": 0, "floating_ips": 0,
            "ports": 0, "server_groups": 0, "server_group_members": 0}
    for pool in site["pools"]:
        there = min(int(present.servers.get(pool["name"], 0)), int(pool["count"]))
        count = int(pool["count"]) - there
        if count > 0 and there == 0 and int(pool["count"]) > 1 and pool["role"] in SERVER_GROUP_POLICY:
            need["server_groups"] += 1
        if int(pool["count"]) > 1 and pool["role"] in SERVER_GROUP_POLICY:
            need["server_group_members"] = max(need["server_group_members"], int(pool["count"]))
        flavor = chosen.get(pool["name"])
        need["instances"] += count
        need["ports"] += count
        if flavor:
            need["cores"] += count * int(flavor["vcpus"])
            need["ram"] += count * int(flavor["ram"])
        if pool["volume_gb"]:
            need["volumes"] += count
            need["gigabytes"] += count * int(pool["volume_gb"])
        if pool["floating_ip"]:
            need["floating_ips"] += count
    groups = [g for g in secgroups if g["name"] not in present.secgroups]
    need["security_groups"] = len(groups)
    need["security_group_rules"] = sum(len(g["rules"]) for g in groups)
    created = 1 if site["network"].get("create") and not present.network else 0
    need.update(networks=created, subnets=created, routers=created)
    return need


def find_present(conn: openstack.connection.Connection, site: Mapping[str, Any], platform: str,
                 secgroups: Iterable[Mapping[str, Any]] = ()) -> Present:
    """The site's resources of this plan that the project already has.

    Servers count when their metadata names this platform, site and a pool
    of the plan, and their name is one of that pool's nodes (what node_pool
    creates); security groups and the network by the names the site module gives.
    """

    members = {pool["name"]: set(pool.get("nodes") or ()) for pool in site["pools"]}
    servers: dict[str, int] = {}
    for server in conn.compute.servers():
        meta = dict(server.metadata or {})
        pool = meta.get(META_POOL)
        if meta.get(META_PLATFORM) == platform and meta.get(META_SITE) == site["name"] and \
                server.name in members.get(pool, ()):
            servers[pool] = servers.get(pool, 0) + 1
    wanted = {g["name"] for g in secgroups}
    project = conn.current_project_id
    have = {g.name for g in conn.network.security_groups(project_id=project)} & wanted if wanted else set()
    network = bool(site["network"].get("create")) and \
        conn.network.find_network(f"{platform}-{site['name']}", ignore_missing=True) is not None
    return Present(servers, frozenset(have), network)


def _compute_limits(conn: openstack.connection.Connection) -> dict[str, tuple[int, int]]:
    a = conn.compute.get_limits().absolute
    return {"instances": (a.instances, a.instances_used), "cores": (a.total_cores, a.total_cores_used),
            "ram": (a.total_ram, a.total_ram_used), "server_groups": (a.server_groups, a.server_groups_used),
            "server_group_members": (a.server_group_members, 0)}


def _volume_limits(conn: openstack.connection.Connection) -> dict[str, tuple[int, int]] | None:
    if not conn.has_service("block-storage"):
        return None
    a = conn.block_storage.get_limits().absolute
    return {"volumes": (a.max_total_volumes, a.total_volumes_used),
            "gigabytes": (a.max_total_volume_gigabytes, a.total_gigabytes_used)}


NETWORK_QUOTAS = ("floating_ips", "ports", "security_groups", "security_group_rules", "networks", "subnets", "routers")


def _network_limits(conn: openstack.connection.Connection) -> dict[str, tuple[int, int] | None]:
    """Neutron's quota details; None for a resource this Neutron does not offer (e.g. no L3: no floating IPs)."""
    quota = conn.network.get_quota(str(conn.current_project_id), details=True)
    out: dict[str, tuple[int, int] | None] = {}
    for name in NETWORK_QUOTAS:
        value = getattr(quota, name, None)
        out[name] = ((int(value.get("limit", UNLIMITED)), int(value.get("used", 0)) + int(value.get("reserved", 0)))
                     if isinstance(value, dict) else None)
    return out


POOL_DRIVEN = {"instances", "cores", "ram", "volumes", "gigabytes", "floating_ips", "ports", "server_groups",
               "server_group_members"}
UNITS = {"ram": " MiB", "gigabytes": " GB"}


def check_quota(site: Mapping[str, Any], index: int, need: Mapping[str, int],
                limits: Mapping[str, tuple[int, int] | None]) -> list[Finding]:
    """Compare the plan's needs with the project's free quota, resource by resource."""
    out: list[Finding] = []
    for resource, wanted in need.items():
        if not wanted:
            continue
        unit = UNITS.get(resource, "")
        have = limits.get(resource)
        if have is None:
            out.append(Finding(site["name"], f"quota {resource}", FAIL,
                               f"the plan needs {wanted}{unit} but the site offers no {resource} service",
                               f"{SITES_FILE} ai4os_sites[{index}].pools: drop volume_gb / floating_ip, or use a site "
                               "that has block storage and floating IPs"))
            continue
        n = Need(resource, wanted, int(have[0]), int(have[1]))
        if n.free is None:
            out.append(Finding(site["name"], f"quota {resource}", OK, f"needs {wanted}{unit}, unlimited"))
        elif wanted > n.free:
            out.append(Finding(site["name"], f"quota {resource}", FAIL,
                               f"the plan needs {wanted}{unit}, the project has {n.free}{unit} free "
                               f"(limit {n.limit}, used {n.used})",
                               f"ask the site to raise the project's {resource} quota to at least "
                               f"{n.used + wanted}{unit}" + (
                                   f", or shrink {SITES_FILE} ai4os_sites[{index}].pools (count, flavor, volume_gb)"
                                   if resource in POOL_DRIVEN else ", or free some in the project")))
        else:
            out.append(Finding(site["name"], f"quota {resource}", OK,
                               f"needs {wanted}{unit} of {n.free}{unit} free (limit {n.limit})"))
    return out


# ------------------------------------------------------------------ per site, whole plan

def check_site(conn: openstack.connection.Connection, site: Mapping[str, Any], index: int,
               plan_secgroups: Mapping[str, list[Mapping[str, Any]]] | None = None,
               platform: str | None = None) -> list[Finding]:
    """Every check of one site (read-only); with ``platform``, what of it exists already is not counted twice."""
    findings: list[Finding] = []
    plan_secgroups = plan_secgroups or {}
    flavors = list_flavors(conn)
    chosen: dict[str, dict[str, Any]] = {}
    for j, pool in enumerate(site["pools"]):
        if not pool["count"]:
            continue
        finding, flavor = check_pool_flavor(conn, site, index, j, flavors)
        findings.append(finding)
        if flavor:
            chosen[pool["name"]] = flavor
    findings.append(check_image(conn, site, index))
    findings.extend(check_network(conn, site, index))
    findings.append(check_keypair(conn, site, index))
    limits: dict[str, tuple[int, int] | None] = dict(_compute_limits(conn))
    volume_limits: dict[str, tuple[int, int] | None] = {"volumes": None, "gigabytes": None}
    volume_limits.update(_volume_limits(conn) or {})
    limits.update(volume_limits)
    limits.update(_network_limits(conn))
    secgroups = plan_secgroups.get(site["name"], [])
    present = find_present(conn, site, platform, secgroups) if platform else Present()
    if present.servers:
        findings.append(Finding(site["name"], "present", OK,
                                f"{sum(present.servers.values())} server(s) of this plan exist already "
                                "(not counted again against the quota)"))
    findings.extend(check_quota(site, index, plan_needs(site, chosen, secgroups, present), limits))
    return findings


def preflight(plan: Mapping[str, Any], env: Mapping[str, str] | None = None, verify: bool | str = True) -> list[Finding]:
    """Run every check on every cloud site; errors reaching a site become FAIL rows."""
    findings: list[Finding] = []
    with site_connections(plan, env, verify) as sites:
        for i, site, open_connection in sites:
            try:
                findings.extend(check_site(open_connection(), site, i, plan.get("secgroups") or {},
                                           plan["platform"]["name"]))
            except KitError as err:
                fix = getattr(err, "fix", "") or "check the site's credentials and endpoint"
                problem = getattr(err, "problem", None) or str(err)
                findings.append(Finding(site["name"], "connect", FAIL, problem, fix))
            except (os_exc.SDKException, OSError) as exc:
                findings.append(Finding(site["name"], "connect", FAIL, f"the cloud API failed: {exc}",
                                        "check that the site's APIs answer (openstack --os-cloud ... server list)"))
    return findings


def render(findings: Iterable[Finding]) -> list[str]:
    """The report table: one line per finding, failures followed by their fix."""
    rows = list(findings)
    if not rows:
        return ["OK    (no cloud sites: nothing to check online)"]
    w_site = max(len(f.site) for f in rows)
    w_check = max(len(f.check) for f in rows)
    lines = [f"{'':<5} {'site':<{w_site}}  {'check':<{w_check}}  detail"]
    for f in rows:
        lines.append(f"{f.status:<5} {f.site:<{w_site}}  {f.check:<{w_check}}  {f.detail}")
        if f.fix:
            lines.append(f"{'':<5} {'':<{w_site}}  {'':<{w_check}}  fix: {f.fix}")
    failed = sum(f.status == FAIL for f in rows)
    lines.append(f"{'FAIL' if failed else 'OK':<5} preflight: {failed} failure(s) in {len(rows)} check(s)")
    return lines


def require_ready(plan: Mapping[str, Any], env: Mapping[str, str] | None = None) -> list[Finding]:
    """Run the preflight and raise InputErrors listing every failure (for use before `terraform apply`)."""
    findings = preflight(plan, env)
    failed = [f for f in findings if f.status == FAIL]
    if failed:
        raise InputErrors([InputError(SITES_FILE, f"site {f.site}: {f.check}", f.detail, f.fix) for f in failed])
    return findings


def online_check(plan: Mapping[str, Any], args: Any = None) -> list[str]:
    """`ai4os-kit check --online` hook: the report lines (failures start with FAIL)."""
    return render(preflight(plan))
