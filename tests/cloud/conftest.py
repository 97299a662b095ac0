"""Fixtures for the cloud layer: the local OpenStack test-bed and inventories that use it.

The test-bed (scripts/openstack-testbed, started by .ci/setup.d/20-openstack.sh)
writes a clouds.yaml with the cloud `ai4os-testbed` (a member user's
application credential). Integration tests FAIL in CI when it is not up and
are skipped locally with the reason.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudbed import CLOUD
from support import openstack_testbed


@pytest.fixture(scope="session")
def testbed() -> Path:
    """Path of the test-bed's clouds.yaml; fails in CI, skips elsewhere when it is not up."""
    return openstack_testbed.require()


@pytest.fixture
def os_env(testbed: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point openstacksdk (and the kit) at the test-bed's clouds.yaml."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(testbed))
    return testbed


@pytest.fixture
def admin_conn(testbed: Path) -> Iterator[Any]:
    """An admin connection to the test-bed (for setting up test conditions only)."""
    import openstack
    from openstack.config import loader

    conn = openstack.connection.Connection(
        config=loader.OpenStackConfig(config_files=[str(testbed)]).get_one(cloud=f"{CLOUD}-admin"))
    yield conn
    conn.close()


@pytest.fixture
def member_conn(os_env: Path) -> Iterator[Any]:
    """The member user's connection (what the kit itself uses)."""
    import openstack

    conn = openstack.connect(cloud=CLOUD)
    yield conn
    conn.close()


@pytest.fixture
def site_name(member_conn: Any) -> Iterator[str]:
    """A site name unique per test (servers of other tests never mix in); its servers are removed after."""
    from servers import delete_site_servers

    name = f"t{secrets.token_hex(3)}"
    yield name
    delete_site_servers(member_conn, name)
