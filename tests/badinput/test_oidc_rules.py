"""Bad input: an operators' group every VO member holds (ai4os_kit.model.oidc_claims), refused like
the platform rules of test_platform_rules.py (same check: exit 2, file, key, problem and fix named,
no traceback, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_inventories import Case, mutate
from test_platform_rules import test_platform_that_cannot_run_is_refused as refused


def _keycloak_operators_are_users(d: dict) -> None:
    d["ai4os_oidc"].update(provider="keycloak", keycloak={"audience": "ai4os-api", "levels": ["ap-u", "ap-a"]},
                           operators_group="access:vo.imagine-ai.eu:ap-a")


def _checkin_operators_are_members(d: dict) -> None:
    """EGI Check-in directly (possible without PAPI, which reads Keycloak roles only)."""
    d["ai4os_enable_papi"] = d["ai4os_enable_dashboard"] = False
    d["ai4os_oidc"].pop("keycloak", None)
    d["ai4os_oidc"].update(provider="egi_checkin", checkin={"roles": ["member"]},
                           operators_group="urn:mace:egi.eu:group:vo.ai4eosc.eu:role=member#aai.egi.eu")


CASES = [
    Case("operators-are-checkin-members", mutate("platform.yml", _checkin_operators_are_members),
         "platform.yml", "ai4os_oidc.operators_group",
         ("membership entitlement of VO vo.ai4eosc.eu", "every member of the VO would get the Nomad operator policy",
          "only the platform's operators hold")),
    Case("operators-are-keycloak-users", mutate("platform.yml", _keycloak_operators_are_users),
         "platform.yml", "ai4os_oidc.operators_group",
         ("'access:vo.imagine-ai.eu:ap-a' is the membership role of VO vo.imagine-ai.eu", "a role only")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_operators_group_apart_from_vo_membership(case: Case, sample_inventory: Path) -> None:
    refused(case, sample_inventory)          # check and plan: exit 2, file/key/fix named, nothing written
