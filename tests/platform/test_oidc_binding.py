"""Nomad's OIDC login for operators, reconciled for real by the oidc role against a Nomad API
TEST DOUBLE (nomad_api_double.py: Nomad is not obtainable here; the double answers like Nomad's
API does: binding rules listed as stubs, MaxTokenTTL as Go duration text). The issuer is a real
OpenID provider (npm oidc-provider). The operators' rule binds the operator policy, never a
management token; stale and duplicated rules of the kit's auth method are deleted, every field
is compared, and a re-run changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nomad_api_double import NomadApiDouble
from support.platform_render import CHECKIN_WITHOUT_PAPI, SECRETS, make_inventory, render
from support import oidc_op

TOKEN = "test-management-token"
METHOD = "ai4os-oidc"


def _changed(stdout: str) -> int:
    m = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", stdout.rsplit("PLAY RECAP", 1)[1])
    assert m
    return int(m.group(1))


def test_operator_binding_is_a_policy_and_rules_are_reconciled(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    provider: oidc_op.OP = request.getfixturevalue("op")
    url, ca = provider.issuer, provider.ca_file
    nomad = NomadApiDouble(TOKEN)
    # What an older kit (or a hand edit) left: a looser auth method, the operators bound to a
    # management token, a duplicate, and a rule of another auth method (not the kit's: kept).
    nomad.auth_methods[METHOD] = {"Name": METHOD, "Type": "OIDC", "TokenLocality": "global", "MaxTokenTTL": "24h0m0s",
                                  "Default": True, "Config": {"OIDCDiscoveryURL": url, "BoundAudiences": ["any"]}}
    nomad.auth_methods["other"] = {"Name": "other", "Type": "JWT"}
    for rule in ({"AuthMethod": METHOD, "Description": "ai4os-kit: platform operators get a management token",
                  "Selector": '"urn:x:operators" in list.entitlements', "BindType": "management", "BindName": ""},
                 {"AuthMethod": METHOD, "Description": "hand-made", "Selector": "true", "BindType": "management",
                  "BindName": ""},
                 {"AuthMethod": "other", "Description": "not ours", "Selector": "true", "BindType": "role",
                  "BindName": "x"}):
        nomad.respond("POST", "/v1/acl/binding-rule", rule)
    oidc = {"provider": "egi_checkin", "issuer": url, "operators_group": "urn:x:operators",
            "clients": {"papi": "ai4os-papi", "dashboard": "ai4os-dashboard", "nomad": "ai4os-nomad",
                        "oauth2_proxy": "ai4os-admin"}}
    inv = make_inventory(tmp_path, {"ai4os_oidc": oidc, "ai4os_oidc_ca_file": str(ca), **CHECKIN_WITHOUT_PAPI}, SECRETS,
                         gpu_facts=False)
    extra = {"platform_job_submit": True, "platform_job_nomad_addr": nomad.address, "platform_job_nomad_token": TOKEN,
             "platform_job_nomad_ca_cert": "", "platform_job_components": ["oidc"]}
    try:
        first = render(inv, tmp_path / "out", extra)
        assert first.returncode == 0, first.stdout[-4000:]
        method = nomad.auth_methods[METHOD]
        assert method["MaxTokenTTL"] == "8h0m0s" and method["Config"]["BoundAudiences"] == ["ai4os-nomad"]
        assert method["Config"]["OIDCClientSecret"] == SECRETS["ai4os_oidc_nomad_client_secret"]
        ours = [r for r in nomad.binding_rules if r["AuthMethod"] == METHOD]
        assert [(r["Selector"], r["BindType"], r["BindName"]) for r in ours] == [
            ('"urn:x:operators" in list.entitlements', "policy", "ai4os-operators")]
        assert [r["Description"] for r in nomad.binding_rules if r["AuthMethod"] == "other"] == ["not ours"]
        assert SECRETS["ai4os_oidc_nomad_client_secret"] not in first.stdout and TOKEN not in first.stdout

        writes = len(nomad.writes())
        second = render(inv, tmp_path / "out", extra)
        assert second.returncode == 0 and _changed(second.stdout) == 0, second.stdout[-3000:]
        assert len(nomad.writes()) == writes

        rule_id = ours[0]["ID"]
        oidc["operators_group"] = "urn:x:admins"
        changed = make_inventory(tmp_path / "changed", {"ai4os_oidc": oidc, "ai4os_oidc_ca_file": str(ca),
                                                        **CHECKIN_WITHOUT_PAPI}, SECRETS,
                                 gpu_facts=False)
        third = render(changed, tmp_path / "out", dict(extra, ai4os_oidc_nomad_token_ttl="90m"))
        assert third.returncode == 0, third.stdout[-3000:]
        ours = [r for r in nomad.binding_rules if r["AuthMethod"] == METHOD]
        assert [(r["ID"], r["Selector"]) for r in ours] == [(rule_id, '"urn:x:admins" in list.entitlements')]
        assert nomad.auth_methods[METHOD]["MaxTokenTTL"] == "1h30m0s"
    finally:
        nomad.close()
