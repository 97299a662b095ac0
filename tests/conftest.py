"""The test suite's shared fixtures (a pytest plugin: tests/support, on pytest's import path).

- ``sample_inventory``: a private, writable copy of inventories/sample per test;
- the platform renderings (support/platform_render.py: ``rendered``, ``rendered_checkin``,
  ``rendered_keycloak``, ``webdav_port``), rendered once per session;
- a real OpenID provider (support/oidc_op.py: ``op``, ``op_pair``);
- the groups `make test` runs side by side (pytest-xdist, ``--dist loadgroup``): every test that
  uses a shared test-bed (Docker containers and networks, the OpenStack test-bed and its quota,
  molecule) is in one group, run one after the other as without xdist; the other tests are grouped
  by layer directory, so module and session fixtures are set up once per group's worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ai4os_kit.model.inventory import copy_inventory
from ai4os_kit.paths import SAMPLE_INVENTORY

pytest_plugins = ["support.platform_render", "support.oidc_op"]

TESTS = Path(__file__).resolve().parent
# Paths (relative to tests/) of everything that uses a shared test-bed: never two at once.
BEDS = ("cloud/", "terraform/", "testbed/", "federation/", "accounting/test_accounting_caso.py",
        "cluster/test_day2_testbed.py", "platform/test_node_admission.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        relative = item.path.resolve().relative_to(TESTS).as_posix()
        group = "beds" if relative.startswith(BEDS) else relative.split("/", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))


def copy_sample(dest: Path) -> Path:
    target = dest / "inv"
    copy_inventory(SAMPLE_INVENTORY, target)
    return target


@pytest.fixture
def sample_inventory(tmp_path: Path) -> Path:
    """A writable copy of inventories/sample (without generated files)."""
    return copy_sample(tmp_path)
