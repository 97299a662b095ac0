"""The kit's OIDC checks against a real OpenID provider (oidc-provider over HTTPS).

Tokens come from the provider's authorization code flow; nothing is forged.
"""

from __future__ import annotations

import argparse
import copy
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from support.oidc_op import OP, PAPI

from ai4os_kit.errors import InputError
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.paths import SAMPLE_INVENTORY
from ai4os_kit.platform.oidc import (
    ClaimMapping,
    OidcError,
    check_token,
    discover,
    map_claims,
    online_check,
)


@pytest.fixture(scope="module")
def sample_plan() -> dict[str, Any]:
    return build_plan(load_inventory(SAMPLE_INVENTORY, check_vault=False))


def plan_for(base: dict[str, Any], issuer: str, provider: str = "egi_checkin", papi: str = PAPI,
             ca_file: str | None = None) -> dict[str, Any]:
    plan = copy.deepcopy(base)
    oidc = plan["platform"]["oidc"]
    oidc["issuer"] = issuer
    oidc["provider"] = provider
    oidc["clients"]["papi"] = papi
    if provider == "keycloak":
        oidc["keycloak"] = {"audience": papi, "role_prefix": "access:", "roles_claim": "realm_access.roles", "levels": ["user"]}
        oidc["operators_group"] = "access:vo.ai4eosc.eu:admin"
    else:  # EGI Check-in directly (a platform without PAPI): VO entitlements, operators by entitlement
        oidc.pop("keycloak", None)
        oidc["checkin"] = {"entitlement_prefix": "urn:mace:egi.eu:group:", "entitlement_authority": "aai.egi.eu",
                           "roles": ["member", "vm_operator"]}
        oidc["operators_group"] = "urn:mace:egi.eu:group:vo.ai4eosc.eu:role=platform-admin#aai.egi.eu"
    if ca_file:
        plan["settings"]["ai4os_oidc_ca_file"] = ca_file
    return plan


def fails(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def test_discovery_and_keys_of_the_real_provider(op: OP, sample_plan: dict[str, Any]) -> None:
    doc = discover(op.issuer, op.ca_file)
    assert doc["issuer"] == op.issuer
    lines = online_check(plan_for(sample_plan, op.issuer), None, ca_file=op.ca_file)
    assert not fails(lines), lines
    assert any("signing key" in line for line in lines)
    assert any("claims not checked" in line for line in lines)


def test_checkin_member_token_is_accepted_and_mapped(op: OP, sample_plan: dict[str, Any]) -> None:
    plan = plan_for(sample_plan, op.issuer)
    token = op.token("alice")
    lines = online_check(plan, token, ca_file=op.ca_file)
    assert not fails(lines), lines
    assert "grants vo.ai4eosc.eu" in lines[-1] and "platform operator" in lines[-1]
    access = check_token(token, ClaimMapping.from_plan(plan), op.ca_file)
    assert list(access.vos) == ["vo.ai4eosc.eu"]
    assert access.vos["vo.ai4eosc.eu"] == ["urn:mace:egi.eu:group:vo.ai4eosc.eu:role=member#aai.egi.eu"]


def test_keycloak_role_token_is_accepted_and_mapped(op: OP, sample_plan: dict[str, Any]) -> None:
    plan = plan_for(sample_plan, op.issuer, provider="keycloak")
    access = check_token(op.token("carol"), ClaimMapping.from_plan(plan), op.ca_file)
    assert access.vos == {"vo.imagine-ai.eu": ["access:vo.imagine-ai.eu:user"]}
    assert access.operator is False


def test_expired_token_is_rejected(op: OP, sample_plan: dict[str, Any]) -> None:
    plan = plan_for(sample_plan, op.issuer, papi="short-lived")   # this client's ID tokens live 1 s
    token = op.token("alice", client_id="short-lived")
    time.sleep(2.5)
    lines = online_check(plan, token, ca_file=op.ca_file)
    assert "token expired at" in fails(lines)[0], lines


def test_wrong_audience_is_rejected(op: OP, sample_plan: dict[str, Any]) -> None:
    token = op.token("alice", client_id="some-other-app")
    with pytest.raises(OidcError, match=r"audience 'some-other-app' does not include 'ai4os-papi'"):
        check_token(token, ClaimMapping.from_plan(plan_for(sample_plan, op.issuer)), op.ca_file)


def test_wrong_issuer_is_rejected(op_pair: tuple[OP, OP], sample_plan: dict[str, Any]) -> None:
    platform_op, foreign_op = op_pair
    token = foreign_op.token("alice")
    lines = online_check(plan_for(sample_plan, platform_op.issuer), token, ca_file=platform_op.ca_file)
    assert f"token issuer '{foreign_op.issuer}' is not the platform issuer '{platform_op.issuer}'" in fails(lines)[0]


def test_missing_entitlement_is_rejected(op: OP, sample_plan: dict[str, Any]) -> None:
    plan = plan_for(sample_plan, op.issuer)
    lines = online_check(plan, op.token("bob"), ca_file=op.ca_file)
    fail = fails(lines)[0]
    assert "token of 'bob' grants no VO" in fail
    assert "urn:mace:egi.eu:group:vo.ai4eosc.eu:role=member#aai.egi.eu" in fail


def test_missing_keycloak_role_is_rejected(op: OP, sample_plan: dict[str, Any]) -> None:
    plan = plan_for(sample_plan, op.issuer, provider="keycloak")
    with pytest.raises(OidcError, match=r"token of 'dave' grants no VO.*access:vo.ai4eosc.eu:user"):
        check_token(op.token("dave"), ClaimMapping.from_plan(plan), op.ca_file)


def test_tls_is_verified_without_the_test_ca(op: OP, sample_plan: dict[str, Any]) -> None:
    lines = online_check(plan_for(sample_plan, op.issuer), None)
    assert "CERTIFICATE_VERIFY_FAILED" in fails(lines)[0] or "certificate verify failed" in fails(lines)[0]


def test_ca_file_setting_is_read_relative_to_the_inventory(op: OP, sample_plan: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "test-ca.pem").write_bytes(op.ca_file.read_bytes())
    plan = plan_for(sample_plan, op.issuer, ca_file="test-ca.pem")
    args = argparse.Namespace(inventory=str(tmp_path), token=op.token("alice"))
    assert not fails(online_check(plan, args)), online_check(plan, args)


def test_issuer_must_match_the_discovery_document_exactly(op: OP, sample_plan: dict[str, Any]) -> None:
    lines = online_check(plan_for(sample_plan, op.issuer + "/"), None, ca_file=op.ca_file)
    assert f"names issuer '{op.issuer}'" in fails(lines)[0]


def test_plain_http_issuer_is_refused(sample_plan: dict[str, Any]) -> None:
    lines = online_check(plan_for(sample_plan, "http://127.0.0.1:1/realms/x"), None)
    assert "is not an https URL" in fails(lines)[0]
    with pytest.raises(InputError, match="ai4os_oidc.issuer"):
        discover("http://127.0.0.1:1/realms/x")


def test_unreachable_issuer_is_reported(sample_plan: dict[str, Any]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines = online_check(plan_for(sample_plan, f"https://127.0.0.1:{port}"), None)
    assert "unreachable" in fails(lines)[0] and "discovery document not available" in fails(lines)[0]


def test_claim_mapping_without_a_provider(sample_plan: dict[str, Any]) -> None:
    mapping = ClaimMapping.from_plan(plan_for(sample_plan, "https://aai.egi.eu/auth/realms/egi"))
    claims = {"sub": "x", "eduperson_entitlement": "urn:mace:egi.eu:group:vo.imagine-ai.eu:role=member#aai.egi.eu"}
    assert list(map_claims(claims, mapping).vos) == ["vo.imagine-ai.eu"]
    with pytest.raises(OidcError, match="has no 'eduperson_entitlement' claim"):
        map_claims({"sub": "x"}, mapping)
