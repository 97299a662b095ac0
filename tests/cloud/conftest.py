"""Fixtures for the cloud layer: the local OpenStack test-bed and inventories that use it.

The test-bed (scripts/openstack-testbed, started by .ci/setup.d/20-openstack.sh)
writes a clouds.yaml with the cloud `ai4os-testbed` (a member user's
application credential). Integration tests FAIL in CI when it is not up and
are skipped locally with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "inventories" / "sample"
CLOUDS = Path(os.environ.get("AI4OS_OPENSTACK_CLOUDS", "/var/tmp/ai4os-openstack/clouds.yaml"))
CLOUD = "ai4os-testbed"

# What bootstrap.py creates (scripts/openstack-testbed/bootstrap.py): change together.
QUOTA_INSTANCES = 20
QUOTA_GIGABYTES = 4000
GPUS_ON_HYPERVISOR = 2


def _testbed_problem() -> str | None:
    if not CLOUDS.is_file():
        return f"no test-bed clouds.yaml at {CLOUDS} (run scripts/openstack-testbed/{{install,start,bootstrap}}.sh)"
    try:
        import openstack
        from openstack.config import loader

        conn = openstack.connection.Connection(config=loader.OpenStackConfig(config_files=[str(CLOUDS)]).get_one(cloud=CLOUD))
        conn.authorize()
        next(iter(conn.compute.flavors()), None)
    except Exception as exc:  # any failure means: not usable
        return f"the local OpenStack test-bed does not answer ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="session")
def testbed() -> Path:
    """Path of the test-bed's clouds.yaml; fails in CI, skips elsewhere when it is not up."""
    problem = _testbed_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must start the OpenStack test-bed (.ci/setup.d/20-openstack.sh): {problem}")
        pytest.skip(problem)
    return CLOUDS


@pytest.fixture
def os_env(testbed: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point openstacksdk (and the kit) at the test-bed's clouds.yaml."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(testbed))
    return testbed


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
    shutil.copy(SAMPLE / "platform.yml", target / "platform.yml")
    (target / "sites.yml").write_text(yaml.safe_dump({"ai4os_sites": sites}, sort_keys=False), encoding="utf-8")
    return target


def plan_for(dest: Path, sites: list[dict[str, Any]]) -> dict[str, Any]:
    from ai4os_kit.inventory import load_inventory
    from ai4os_kit.plan import build_plan

    return build_plan(load_inventory(write_inventory(dest, sites), check_vault=False))


@pytest.fixture
def admin_conn(testbed: Path) -> Iterator[Any]:
    """An admin connection to the test-bed (for setting up test conditions only)."""
    import openstack
    from openstack.config import loader

    conn = openstack.connection.Connection(
        config=loader.OpenStackConfig(config_files=[str(testbed)]).get_one(cloud=f"{CLOUD}-admin"))
    yield conn
    conn.close()
