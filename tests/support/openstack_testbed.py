"""The local OpenStack test-bed as every test directory sees it (one probe, one rule).

scripts/openstack-testbed (started by .ci/setup.d/20-openstack.sh) writes a
clouds.yaml with `ai4os-testbed` (a member's application credential),
`ai4os-testbed-member` and `ai4os-testbed-admin`. Tests that need it FAIL in
CI (CI=true) when it is not up and are skipped elsewhere with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from support.ci import unavailable

CLOUDS = Path(os.environ.get("AI4OS_OPENSTACK_CLOUDS", "/var/tmp/ai4os-openstack/clouds.yaml"))
CLOUD = "ai4os-testbed"


def connect(cloud: str = CLOUD) -> Any:
    """An openstacksdk connection to one of the test-bed's clouds."""
    import openstack
    from openstack.config import loader

    return openstack.connection.Connection(config=loader.OpenStackConfig(config_files=[str(CLOUDS)]).get_one(cloud=cloud))


def problem(cloud: str = CLOUD) -> str | None:
    """Why the test-bed cannot be used (None when it answers for ``cloud``)."""
    if not CLOUDS.is_file():
        return f"no test-bed clouds.yaml at {CLOUDS} (run scripts/openstack-testbed/{{install,start,bootstrap}}.sh)"
    try:
        conn = connect(cloud)
        conn.authorize()
        next(iter(conn.compute.flavors()), None)
        conn.close()
    except Exception as exc:  # noqa: BLE001 - any failure to answer means: not usable
        return f"the local OpenStack test-bed does not answer ({type(exc).__name__}: {exc})"
    return None


def require(cloud: str = CLOUD) -> Path:
    """The clouds.yaml path; fails the test in CI, skips it elsewhere, when the test-bed is not up."""
    reason = problem(cloud)
    if reason:
        unavailable(reason, "CI starts it: .ci/setup.d/20-openstack.sh")
    return CLOUDS
