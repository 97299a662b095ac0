"""Every molecule scenario that can run here, as `make test` runs them.

Each scenario: create test-bed nodes -> converge -> idempotence (0 changed)
-> check mode -> (side effects) -> testinfra verify -> destroy.  With CI=true
a missing Docker daemon is a failure; elsewhere the tests skip with the reason.
A scenario that needs binaries not obtainable here (Nomad, Consul, Vault)
prints `AI4OS-SKIP: <reason>` and is reported as skipped, never as passed.
They run under Mitogen's strategy, the kit's default (ansible.cfg); AI4OS_MOLECULE_STRATEGY=linear
runs them under Ansible's own.
"""

from __future__ import annotations

import os

import pytest
from molecule_runner import docker_problem, run_scenario

# Sequential on purpose (2-core CI machines); the order puts cheap ones first.
SCENARIOS = ["preflight", "base", "artifacts", "volumes", "docker", "traefik", "consul", "nomad", "cluster"]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def testbed() -> None:
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"test-bed unavailable in CI: {problem}")
    pytest.skip(f"test-bed unavailable: {problem}")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(testbed: None, scenario: str) -> None:
    outcome = run_scenario(scenario, strategy=os.environ.get("AI4OS_MOLECULE_STRATEGY", "mitogen"))
    if outcome.returncode == 0 and outcome.skip_reason:
        pytest.skip(f"{scenario}: {outcome.skip_reason}")
    assert outcome.returncode == 0, (
        f"molecule test -s {scenario} failed (rc {outcome.returncode}); full log: {outcome.log}\n{outcome.tail()}"
    )
