"""Bad input: platforms that cannot run (ai4os_kit.model.placement). Same contract as the rest of
the bad-input suite (test_bad_inventories.py): exit 2, file, key, problem and fix named, no
traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_inventories import Case, mutate, replace, run_kit, snapshot


def _keycloak_with_other_roles(d: dict) -> None:
    d["ai4os_oidc"].update(provider="keycloak", keycloak={"audience": "ai4os-api", "role_prefix": "group:"})


def _papi_with_checkin(d: dict) -> None:
    d["ai4os_oidc"].pop("keycloak", None)
    d["ai4os_oidc"].update(provider="egi_checkin", operators_group="urn:mace:egi.eu:group:ops:role=admin#aai.egi.eu")


CASES = [
    Case("papi-without-services-node", mutate("sites.yml", lambda d: d["ai4os_sites"][0]["pools"].pop(2)),
         "sites.yml", "ai4os_sites", ("papi is switched on", "no site has a node of role services",
                                      "add a pool with role: services", "ai4os_enable_papi: false")),
    Case("tryme-pool-with-tryme-off", mutate("sites.yml", lambda d: d["ai4os_sites"][1]["pools"].append(
        {"role": "tryme", "count": 1, "flavor": {"name": "standard.large"}, "volume_gb": 50})),
         "sites.yml", "ai4os_sites[1].pools[3].role", ("'tryme' pool needs component tryme, which is off",
                                                       "ai4os_enable_tryme: true")),
    Case("gpu-pool-with-nvidia-off", replace("platform.yml", "ai4os_enable_tryme: false",
                                             "ai4os_enable_tryme: false\nai4os_enable_nvidia: false"),
         "sites.yml", "ai4os_sites[0].pools[4].role", ("'gpu' pool needs component nvidia", "ai4os_enable_nvidia: true")),
    Case("vo-namespace-default-reserved", mutate("platform.yml", lambda d: d["ai4os_vos"][1].update(namespace="default")),
         "platform.yml", "ai4os_vos[1].namespace", ("'default' is reserved", "a namespace of its own")),
    Case("vo-namespace-platform-reserved", mutate("platform.yml", lambda d: d["ai4os_vos"][1].update(namespace="platform")),
         "platform.yml", "ai4os_vos[1].namespace", ("'platform' is reserved", "platform's own jobs")),
    Case("papi-without-its-try-me-vo", mutate("platform.yml", lambda d: d["ai4os_vos"][1].update(name="vo.example.eu")
                                              or d["ai4os_vos"][0].update(name="vo.other.eu")),
         "platform.yml", "ai4os_vos", ("PAPI reads the namespace of VO vo.ai4eosc.eu", "list VO vo.ai4eosc.eu")),
    Case("papi-site-without-pue", mutate("sites.yml", lambda d: d["ai4os_sites"][1]["location"].pop("pue")),
         "sites.yml", "ai4os_sites[1].location", ("has no pue", "PAPI ranks datacenters", "pue:")),
    Case("papi-keycloak-role-format", mutate("platform.yml", _keycloak_with_other_roles),
         "platform.yml", "ai4os_oidc.keycloak.role_prefix", ("differs from what PAPI reads", "role_prefix: access:")),
    Case("papi-with-checkin-tokens", mutate("platform.yml", _papi_with_checkin),
         "platform.yml", "ai4os_oidc.provider", ("PAPI reads VO membership only from roles access:<vo>:<level>",
                                                "put a Keycloak realm in front of EGI Check-in", "provider: keycloak")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_platform_that_cannot_run_is_refused(case: Case, sample_inventory: Path) -> None:
    case.edit(sample_inventory)
    before = snapshot(sample_inventory)
    for command in ("check", "plan"):
        result = run_kit(command, str(sample_inventory))
        message = result.stderr
        assert result.returncode == 2, f"{command}: exit {result.returncode}\n{result.stdout}\n{message}"
        assert "Traceback" not in message + result.stdout
        assert case.file in message and f": {case.key}:" in message and "fix:" in message, message
        for part in case.expect:
            assert part in message, f"{part!r} not in:\n{message}"
    assert snapshot(sample_inventory) == before
    assert not (sample_inventory / "hosts.yml").exists()
