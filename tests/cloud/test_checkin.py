"""EGI Check-in → Keystone federation → clouds.yaml.

Against the test-bed's real Keystone, which has the egi.eu identity provider
with protocol `openid` as EGI sites do: a rejected token, an unknown
protocol and the application-credential mode. The successful federated
login, through Apache mod_auth_openidc, is in test_checkin_federated.py.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudbed import CLOUD, lab_site, plan_for

from ai4os_kit.cloud import checkin
from ai4os_kit.errors import InputError
from ai4os_kit.model import egi_sites

KEYSTONE = "http://127.0.0.1:5000/v3"


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT-shaped token (only its claims matter to the expiry check)."""
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


# ------------------------------------------------------------------ token sources (no network)

def test_token_from_environment_in_order() -> None:
    env = {"EGI_ACCESS_TOKEN": "egi", "OIDC_ACCESS_TOKEN": "oidc"}
    assert checkin.access_token(env) == "oidc"
    assert checkin.access_token({"EGI_ACCESS_TOKEN": " egi \n"}) == "egi"


def test_expired_token_is_refused_before_any_request() -> None:
    token = jwt({"sub": "x", "exp": int(time.time()) - 60})
    with pytest.raises(InputError) as err:
        checkin.access_token({"OIDC_ACCESS_TOKEN": token})
    assert "expired at" in err.value.problem and "oidc-token" in err.value.fix
    fresh = jwt({"sub": "x", "exp": int(time.time()) + 3600})
    assert checkin.access_token({"OIDC_ACCESS_TOKEN": fresh}) == fresh


def test_no_token_says_every_way_to_get_one() -> None:
    with pytest.raises(InputError) as err:
        checkin.access_token({})
    assert "oidc-token" in err.value.fix and "OIDC_AGENT_ACCOUNT" in err.value.fix
    assert "OIDC_REFRESH_TOKEN" in err.value.fix


def test_oidc_agent_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="oidc-token is not installed"):
        checkin.access_token({"OIDC_AGENT_ACCOUNT": "egi"})


def test_refresh_token_needs_client_id() -> None:
    with pytest.raises(InputError) as err:
        checkin.access_token({"OIDC_REFRESH_TOKEN": "r"})
    assert err.value.key == "OIDC_CLIENT_ID"


def test_clouds_file_is_private_and_merged(tmp_path: Path) -> None:
    target = tmp_path / "state" / "clouds.yaml"
    checkin.write_clouds(target, {"a": {"auth_type": "token", "auth": {"token": "t1"}}})
    checkin.write_clouds(target, {"b": {"auth_type": "token", "auth": {"token": "t2"}}})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert set(yaml.safe_load(target.read_text())["clouds"]) == {"a", "b"}


# ------------------------------------------------------------------ against the test-bed's Keystone

def _local_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project_id: str, protocol: str = "openid") -> Path:
    """An EGI site file (EGI's format, validated by its schema) for the test-bed's Keystone."""
    sites = tmp_path / "egi-sites"
    sites.mkdir()
    (sites / "schema.json").write_text((egi_sites.BUNDLED_DIR / "schema.json").read_text())
    (sites / "LOCAL-TESTBED.yaml").write_text(yaml.safe_dump({
        "gocdb": "LOCAL-TESTBED", "endpoint": KEYSTONE, "protocol": protocol,
        "vos": [{"name": "vo.ai4eosc.eu", "auth": {"project_id": project_id}}]}))
    monkeypatch.setenv(egi_sites.SITES_DIR_ENV, str(sites))
    return sites


@pytest.fixture
def project_id(admin_conn: Any) -> str:
    return str(admin_conn.identity.find_project("ai4os-test", domain_id="default").id)


@pytest.mark.integration
@pytest.mark.parametrize("token", ["not-a-token", jwt({"sub": "x", "exp": int(time.time()) + 3600})],
                         ids=["not-a-token", "unsigned-jwt"])  # ids: the JWT holds the time (xdist compares ids)
def test_keystone_rejects_a_bad_token_with_a_clear_error(testbed: Path, project_id: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    _local_site(tmp_path, monkeypatch, project_id)
    resolved = egi_sites.resolve({"name": "lab", "egi_site": "LOCAL-TESTBED", "vo": "vo.ai4eosc.eu"}, 0,
                                 egi_sites.load_sites())
    with pytest.raises(InputError) as err:
        checkin.federated_token(resolved, token)
    assert "rejected the Check-in token (401)" in err.value.problem
    assert "fresh token" in err.value.fix


@pytest.mark.integration
def test_unknown_federation_protocol(testbed: Path, project_id: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _local_site(tmp_path, monkeypatch, project_id, protocol="oidc")
    resolved = egi_sites.resolve({"name": "lab", "egi_site": "LOCAL-TESTBED", "vo": "vo.ai4eosc.eu"}, 0,
                                 egi_sites.load_sites())
    with pytest.raises(InputError) as err:
        checkin.federated_token(resolved, "some-token")
    # Keystone answers 401 before it looks at the protocol: the message names both causes
    assert "no protocol 'oidc' for identity provider egi.eu" in err.value.problem
    assert "LOCAL-TESTBED.yaml" in err.value.fix


@pytest.mark.integration
def test_refresh_with_bad_token_fails_before_writing_anything(testbed: Path, project_id: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _local_site(tmp_path, monkeypatch, project_id)
    site = {**lab_site(), "auth": "checkin", "egi_site": "LOCAL-TESTBED", "vo": "vo.ai4eosc.eu"}
    del site["cloud"]
    plan = plan_for(tmp_path / "inv", [site])
    target = tmp_path / "kit" / "clouds.yaml"
    with pytest.raises(InputError, match="rejected the Check-in token"):
        checkin.refresh_credentials(plan, target, {"OIDC_ACCESS_TOKEN": "expired-or-forged"})
    assert not target.exists()


@pytest.mark.integration
def test_application_credential_mode(testbed: Path, tmp_path: Path) -> None:
    """A token cloud entry (as federation writes it) → an application credential that works, then removed."""
    import openstack
    from openstack.config import loader

    member = openstack.connection.Connection(
        config=loader.OpenStackConfig(config_files=[str(testbed)]).get_one(cloud=f"{CLOUD}-member"))
    token_entry = {"auth_type": "token", "region_name": "RegionOne",
                   "auth": {"auth_url": KEYSTONE, "token": member.auth_token, "project_id": member.current_project_id}}
    name = f"ai4os-test-{os.getpid()}-{int(time.time())}"
    entry = checkin.application_credential(token_entry, name, days=1)
    try:
        assert entry["auth_type"] == "v3applicationcredential"
        target = checkin.write_clouds(tmp_path / "clouds.yaml", {"lab": entry})
        conn = openstack.connection.Connection(
            config=loader.OpenStackConfig(config_files=[str(target)]).get_one(cloud="lab"))
        assert conn.current_project_id == member.current_project_id
        assert next(iter(conn.compute.flavors()), None) is not None
        with pytest.raises(InputError, match="exists"):
            checkin.application_credential(token_entry, name, days=1)
    finally:
        cred = member.identity.find_application_credential(member.current_user_id, name)
        if cred:
            member.identity.delete_application_credential(member.current_user_id, cred.id)
