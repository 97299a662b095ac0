"""The test suite's shared fixtures (a pytest plugin: tests/support, on pytest's import path).

- ``sample_inventory``: a private, writable copy of inventories/sample per test;
- the platform renderings (support/platform_render.py: ``rendered``, ``rendered_checkin``,
  ``rendered_keycloak``, ``webdav_port``), rendered once per session;
- a real OpenID provider (support/oidc_op.py: ``op``, ``op_pair``);
- the groups `make test` runs side by side (pytest-xdist, ``--dist loadgroup``): the tests that
  share a test-bed are in one group (BEDS below), run one after the other as without xdist; the
  other tests are grouped by layer directory, so module and session fixtures are set up once per
  group's worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ai4os_kit.model.inventory import copy_inventory
from ai4os_kit.paths import SAMPLE_INVENTORY

pytest_plugins = ["support.platform_render", "support.oidc_op"]

TESTS = Path(__file__).resolve().parent
# Groups that share a test-bed run their tests one after the other (paths relative to tests/).
# Molecule's scenarios and the other Docker test-beds use different container names, networks
# (Docker picks their subnets) and loop devices (attached with retries), so those two groups
# run side by side; the OpenStack test-bed (one project, one quota) is one group.
BEDS = {
    "molecule": ("testbed/test_scenarios.py",),
    "containers": ("testbed/", "cluster/test_day2_testbed.py", "platform/test_node_admission.py",
                   "federation/test_two_clouds.py"),
    "openstack": ("cloud/", "terraform/", "accounting/test_accounting_caso.py", "federation/test_cross_site_addresses.py"),
}
ORDER = list(BEDS)  # the longest groups start first, so the shortest finish last


def _group(relative: str) -> str:
    for name, prefixes in BEDS.items():
        if relative.startswith(prefixes):
            return name
    return relative.split("/", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups from the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = {}
    for item in items:
        groups[item] = group = _group(item.path.resolve().relative_to(TESTS).as_posix())
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: ORDER.index(groups[item]) if groups[item] in ORDER else len(ORDER))


def copy_sample(dest: Path) -> Path:
    target = dest / "inv"
    copy_inventory(SAMPLE_INVENTORY, target)
    return target


@pytest.fixture
def sample_inventory(tmp_path: Path) -> Path:
    """A writable copy of inventories/sample (without generated files)."""
    return copy_sample(tmp_path)
