"""Every molecule scenario that can run here, as `make test` runs them.

Each scenario: create test-bed nodes -> converge -> idempotence (0 changed)
-> check mode -> (side effects) -> testinfra verify -> destroy.  With CI=true
a missing Docker daemon is a failure; elsewhere the tests skip with the reason.
A scenario that needs binaries not obtainable here (Nomad, Consul, Vault)
prints `AI4OS-SKIP: <reason>`: what it verified before that point is reported as
passed (test_scenario), the agent part as skipped with the reason (test_scenario_agents).
They run under Mitogen's strategy, the kit's default (ansible.cfg); AI4OS_MOLECULE_STRATEGY=linear
runs them under Ansible's own.
"""

from __future__ import annotations

import os

import pytest
from molecule_runner import Outcome, run_scenario
from support.testbed import require_docker

# Sequential on purpose (2-core CI machines); the order puts cheap ones first.
SCENARIOS = ["preflight", "base", "artifacts", "volumes", "accounting", "docker", "traefik", "consul", "nomad",
             "cluster"]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def testbed() -> None:
    require_docker()


_OUTCOMES: dict[str, Outcome] = {}  # each scenario runs once; both tests below read its outcome


def _outcome(scenario: str) -> Outcome:
    if scenario not in _OUTCOMES:
        _OUTCOMES[scenario] = run_scenario(scenario, strategy=os.environ.get("AI4OS_MOLECULE_STRATEGY", "mitogen"))
    return _OUTCOMES[scenario]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(testbed: None, scenario: str) -> None:
    """What the scenario verified on its nodes (converge, 0 changed on the second run, check mode, verify)."""
    outcome = _outcome(scenario)
    assert outcome.returncode == 0, (
        f"molecule test -s {scenario} failed (rc {outcome.returncode}); full log: {outcome.log}\n{outcome.tail()}"
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_agents(testbed: None, scenario: str) -> None:
    """The part that needs the Nomad/Consul agents running: skipped, with the reason, where the
    scenario printed AI4OS-SKIP (binaries not obtainable here); passed where it ran."""
    outcome = _outcome(scenario)
    if outcome.returncode != 0:
        pytest.skip(f"{scenario}: the scenario failed (reported by test_scenario[{scenario}])")
    if outcome.skip_reason:
        pytest.skip(f"{scenario}: {outcome.skip_reason}")
