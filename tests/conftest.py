"""The test suite's shared fixtures (a pytest plugin: tests/support, on pytest's import path).

- ``sample_inventory``: a private, writable copy of inventories/sample per test;
- the platform renderings (support/platform_render.py: ``rendered``, ``rendered_checkin``,
  ``rendered_keycloak``, ``webdav_port``), rendered once per session;
- a real OpenID provider (support/oidc_op.py: ``op``, ``op_pair``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ai4os_kit.model.inventory import copy_inventory
from ai4os_kit.paths import SAMPLE_INVENTORY

pytest_plugins = ["support.platform_render", "support.oidc_op"]


def copy_sample(dest: Path) -> Path:
    target = dest / "inv"
    copy_inventory(SAMPLE_INVENTORY, target)
    return target


@pytest.fixture
def sample_inventory(tmp_path: Path) -> Path:
    """A writable copy of inventories/sample (without generated files)."""
    return copy_sample(tmp_path)
