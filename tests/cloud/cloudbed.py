"""Helpers for the cloud tests: the test-bed's names and inventories that use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from support.openstack_testbed import CLOUD, CLOUDS  # noqa: F401 (re-exported for the cloud tests)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "inventories" / "sample"
# The cloud tests provision hosts only: the platform jobs (which would need a services node and
# PAPI's site location) are switched off, as in the test-bed's inventories/local.
PLATFORM_JOBS_OFF = {f"ai4os_enable_{name}": False for name in
                     ("papi", "dashboard", "oidc", "storage", "monitoring", "docuum", "node_admission")}

# What bootstrap.py creates (scripts/openstack-testbed/bootstrap.py): change together.
QUOTA_INSTANCES = 20
QUOTA_GIGABYTES = 4000
GPUS_ON_HYPERVISOR = 2


def lab_site(name: str = "lab", **changes: Any) -> dict[str, Any]:
    """A sites.yml entry on the test-bed: 1 server, 1 ingress (floating IP), 1 cpu, 1 gpu node."""
    site: dict[str, Any] = {
        "name": name,
        "cloud": CLOUD,
        "auth": "application_credential",
        "location": {"country": "ES"},
        "network": {"existing": "ai4os-net", "cidr": "10.10.0.0/24"},
        "image": {"properties": {"os_distro": "ubuntu", "os_version": "22.04"}},
        "ssh": {"user": "ubuntu", "key_name": "ai4os-operator", "allowed_cidrs": ["192.0.2.0/24"]},
        "pools": [
            {"role": "server", "count": 1, "flavor": {"name": "m1.small"}},
            {"role": "ingress", "count": 1, "flavor": {"name": "m1.small"}, "floating_ip": True},
            {"role": "cpu", "count": 1, "flavor": {"vcpus": 2, "ram_mb": 4096}, "volume_gb": 50},
            {"role": "gpu", "count": 1, "volume_gb": 100,
             "flavor": {"vcpus": 8, "ram_mb": 32768,
                        "accelerator": {"type": "GPU", "number": 1, "vendor": "NVIDIA", "model": "A100"}}},
        ],
    }
    site.update(changes)
    return site


def write_inventory(dest: Path, sites: list[dict[str, Any]]) -> Path:
    """An inventory directory: the sample platform.yml and the given sites."""
    target = dest / "inv"
    target.mkdir(parents=True, exist_ok=True)
    platform = yaml.safe_load((SAMPLE / "platform.yml").read_text(encoding="utf-8"))
    (target / "platform.yml").write_text(yaml.safe_dump({**platform, **PLATFORM_JOBS_OFF}, sort_keys=False),
                                         encoding="utf-8")
    (target / "sites.yml").write_text(yaml.safe_dump({"ai4os_sites": sites}, sort_keys=False), encoding="utf-8")
    return target


def plan_for(dest: Path, sites: list[dict[str, Any]]) -> dict[str, Any]:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    return build_plan(load_inventory(write_inventory(dest, sites), check_vault=False))
