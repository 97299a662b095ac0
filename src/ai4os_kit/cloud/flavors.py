"""Choose a flavor for each pool that asks by requirements.

The Terraform flavor data source can only match exact sizes and cannot read
extra specs, so pools that give requirements instead of a flavor name or id
(vcpus / ram_mb / disk_gb as minimums, an accelerator matched against the
flavor's `Accelerator:*` extra specs) get a flavor id chosen here, with
openstacksdk, right before Terraform runs: the smallest flavor that meets
every requirement. Pools without an accelerator never get a GPU flavor.
The node_pool module re-checks the accelerator on whatever flavor it gets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ai4os_kit.cloud.checkin import cloud_name
from ai4os_kit.errors import InputError, KitError
from ai4os_kit.model.plan import cloud_sites
from ai4os_kit.paths import SITES_FILE

FlavorIds = dict[tuple[str, str], str]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def accelerator_count(flavor: Mapping[str, Any]) -> float:
    specs = flavor.get("extra_specs") or {}
    count = _number(specs.get("Accelerator:Number"))
    if not count and specs.get("pci_passthrough:alias"):
        count = 1.0
    return count


def mismatches(wanted: Mapping[str, Any], flavor: Mapping[str, Any]) -> list[str]:
    """Why ``flavor`` does not meet the pool's requirements ([] when it does)."""
    why: list[str] = []
    for key, have, unit in (("vcpus", "vcpus", "vCPU"), ("ram_mb", "ram", "MiB RAM"), ("disk_gb", "disk", "GB disk")):
        if wanted.get(key) is not None and int(flavor.get(have) or 0) < int(wanted[key]):
            why.append(f"{flavor.get(have)} {unit} < {wanted[key]}")
    acc = wanted.get("accelerator")
    specs = {k: str(v) for k, v in (flavor.get("extra_specs") or {}).items()}
    if not acc:
        if accelerator_count(flavor):
            why.append("has an accelerator the pool does not ask for")
        return why
    if specs.get("Accelerator:Type", "").lower() != str(acc.get("type", "GPU")).lower():
        why.append(f"Accelerator:Type is '{specs.get('Accelerator:Type', '')}', not '{acc.get('type', 'GPU')}'")
    if _number(specs.get("Accelerator:Number")) < _number(acc.get("number", 1)):
        why.append(f"Accelerator:Number {specs.get('Accelerator:Number', '0')} < {acc.get('number', 1)}")
    for key in ("vendor", "model"):
        spec = f"Accelerator:{key.capitalize()}"
        if acc.get(key) and str(acc[key]).lower() not in specs.get(spec, "").lower():
            why.append(f"{spec} '{specs.get(spec, '')}' does not contain '{acc[key]}'")
    return why


def pick(wanted: Mapping[str, Any], flavors: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The smallest flavor meeting ``wanted`` (fewest accelerators, then vCPUs, RAM, disk, name)."""
    fitting = [f for f in flavors if not mismatches(wanted, f)]
    fitting.sort(key=lambda f: (accelerator_count(f), f.get("vcpus") or 0, f.get("ram") or 0,
                                f.get("disk") or 0, str(f.get("name"))))
    return fitting[0] if fitting else None


def describe(wanted: Mapping[str, Any]) -> str:
    parts = [f">= {wanted[k]} {u}" for k, u in (("vcpus", "vCPU"), ("ram_mb", "MiB RAM"), ("disk_gb", "GB disk"))
             if wanted.get(k) is not None]
    acc = wanted.get("accelerator")
    if acc:
        parts.append(f">= {acc.get('number', 1)} x {acc.get('type', 'GPU')} "
                     f"{acc.get('vendor', '')} {acc.get('model', '')}".rstrip())
    return ", ".join(parts)


def closest(wanted: Mapping[str, Any], flavors: Iterable[Mapping[str, Any]], count: int = 3) -> str:
    """The flavors nearest to ``wanted`` and what each lacks, for error messages."""
    near = sorted(flavors, key=lambda f: len(mismatches(wanted, f)))[:count]
    return "; ".join(f"{f.get('name')}: {', '.join(mismatches(wanted, f))}" for f in near)


def by_requirements(pool: Mapping[str, Any]) -> bool:
    flavor = pool.get("flavor") or {}
    return not flavor.get("id") and not flavor.get("name")


def choose(plan: Mapping[str, Any], site_flavors: Mapping[str, list[Mapping[str, Any]]]) -> FlavorIds:
    """Flavor ids for every requirements-only pool; InputError naming the pool when none fits."""
    chosen: FlavorIds = {}
    for i, site in enumerate(plan["sites"]):
        if site["name"] not in site_flavors:
            continue
        flavors = site_flavors[site["name"]]
        for j, pool in enumerate(site["pools"]):
            if not by_requirements(pool):
                continue
            best = pick(pool["flavor"], flavors)
            if best is None:
                hints = closest(pool["flavor"], flavors)
                raise InputError(SITES_FILE, f"ai4os_sites[{i}].pools[{j}].flavor",
                                 f"no flavor at site {site['name']} offers {describe(pool['flavor'])}"
                                 + (f" (closest: {hints})" if hints else " (the project sees no flavor)"),
                                 "lower the requirements, name a flavor (flavor.name), or give a private "
                                 "flavor's id (flavor.id)")
            chosen[(site["name"], pool["name"])] = str(best["id"])
    return chosen


def flavor_dict(flavor: Any) -> dict[str, Any]:
    """An openstacksdk Flavor in the shape the functions above match."""
    return {"id": flavor.id, "name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.ram, "disk": flavor.disk,
            "extra_specs": dict(flavor.extra_specs or {})}


_flavor_dict = flavor_dict  # the name ai4os_kit.cloud.preflight imported first


def flavor_dicts(conn: Any) -> list[dict[str, Any]]:
    """Every flavor the connection's project sees, with extra specs."""
    with_specs = (f if f.extra_specs is not None else conn.compute.fetch_flavor_extra_specs(f)
                  for f in conn.compute.flavors(details=True))
    return [flavor_dict(f) for f in with_specs]


def list_flavors(cloud: str, clouds_file: Path) -> list[dict[str, Any]]:
    """Every flavor the project of ``cloud`` (in ``clouds_file``) sees, with extra specs."""
    import openstack
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc
    from openstack.config import loader

    try:
        config = loader.OpenStackConfig(config_files=[str(clouds_file)]).get_one(cloud=cloud)
        return flavor_dicts(openstack.connection.Connection(config=config))
    except (os_exc.SDKException, ks_exc.ClientException, OSError) as exc:  # unreachable cloud: no traceback
        raise KitError(f"cannot list the flavors of cloud '{cloud}': {exc}") from None


def resolve(plan: Mapping[str, Any], clouds_file: Path) -> FlavorIds:
    """Flavor ids for the plan's requirements-only pools, asking each site's cloud."""
    wanted = [s for s in cloud_sites(plan) if any(by_requirements(p) for p in s["pools"])]
    return choose(plan, {s["name"]: list_flavors(cloud_name(s), clouds_file) for s in wanted})
