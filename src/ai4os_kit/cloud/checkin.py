"""EGI Check-in → Keystone federation → credentials in a clouds.yaml.

The EGI way: an OIDC access token from Check-in (oidc-agent, an environment
variable, or a refresh token exchanged at the issuer) is presented to the
site's Keystone at ``OS-FEDERATION/identity_providers/egi.eu/protocols/<protocol>/auth``
(keystoneauth1's ``v3oidcaccesstoken``), scoped to the VO's project, and the
resulting Keystone token is written to a kit-owned ``clouds.yaml`` with
``auth_type: token``. Tokens expire (Check-in access tokens after about an hour),
so :func:`refresh_credentials` runs before every Terraform run. For long
operations an application credential can be created from that token instead.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from ai4os_kit.errors import InputError, KitError
from ai4os_kit.model.egi_sites import (
    IDENTITY_PROVIDER,
    EgiSite,
    ResolvedSite,
    resolve_plan,
)

TOKEN_ENV_VARS = ("AI4OS_ACCESS_TOKEN", "OIDC_ACCESS_TOKEN", "EGI_ACCESS_TOKEN")
AGENT_ACCOUNT_ENV = "OIDC_AGENT_ACCOUNT"
REFRESH_ENV = ("OIDC_REFRESH_TOKEN", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")
DEFAULT_ISSUER = "https://aai.egi.eu/auth/realms/egi"
TOKEN_SOURCE = "environment (access token)"
HOW_TO_GET_TOKEN = (
    f"export {TOKEN_ENV_VARS[1]}=$(oidc-token <account>), or set {AGENT_ACCOUNT_ENV} for oidc-agent, "
    f"or {REFRESH_ENV[0]} + {REFRESH_ENV[1]} for a refresh token"
)
TIMEOUT_S = 30


@dataclass(frozen=True)
class ScopedToken:
    """A project-scoped Keystone token."""

    token: str
    project_id: str
    user_id: str
    expires_at: str
    auth_url: str


def _jwt_claims(token: str) -> dict[str, Any] | None:
    """Claims of a JWT access token, unverified (only to tell an expired token early); None if opaque."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def check_not_expired(token: str, source: str, now: float | None = None) -> None:
    """Raise InputError when a JWT access token's ``exp`` is past (with 30 s margin)."""
    claims = _jwt_claims(token)
    if not claims or not isinstance(claims.get("exp"), (int, float)):
        return
    now = time.time() if now is None else now
    if claims["exp"] <= now + 30:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(claims["exp"]))
        raise InputError(source, "access token", f"the Check-in access token expired at {when}",
                         f"get a fresh token: {HOW_TO_GET_TOKEN}")


def _from_oidc_agent(account: str) -> str:
    binary = shutil.which("oidc-token")
    if binary is None:
        raise InputError("environment", AGENT_ACCOUNT_ENV, f"{AGENT_ACCOUNT_ENV}={account} but oidc-token is not installed",
                         "install oidc-agent (Debian package oidc-agent) and load the account, or export an access token")
    try:
        out = subprocess.run([binary, account], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise KitError(f"oidc-token {account} did not answer in {TIMEOUT_S} s; is oidc-agent running?") from None
    if out.returncode != 0 or not out.stdout.strip():
        raise InputError("environment", AGENT_ACCOUNT_ENV, f"oidc-agent gave no token for account '{account}': "
                         f"{out.stderr.strip() or 'empty answer'}",
                         f"start oidc-agent and run `oidc-add {account}` (or `oidc-gen` to create the account)")
    return out.stdout.strip()


def _token_endpoint(issuer: str) -> str:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        reply = requests.get(url, timeout=TIMEOUT_S)
        reply.raise_for_status()
        endpoint = reply.json()["token_endpoint"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise KitError(f"cannot read the OIDC discovery document {url}: {exc}") from None
    return str(endpoint)


def _from_refresh_token(env: Mapping[str, str], issuer: str) -> str:
    refresh, client_id, secret = (env.get(name, "") for name in REFRESH_ENV)
    if not client_id:
        raise InputError("environment", REFRESH_ENV[1], f"{REFRESH_ENV[0]} is set but {REFRESH_ENV[1]} is not",
                         f"export {REFRESH_ENV[1]} (the Check-in client the refresh token was issued to)")
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": client_id,
            "scope": "openid profile eduperson_entitlement"}
    if secret:
        form["client_secret"] = secret
    try:
        reply = requests.post(_token_endpoint(issuer), data=form, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise KitError(f"cannot reach the token endpoint of {issuer}: {exc}") from None
    if reply.status_code in (400, 401):
        raise InputError("environment", REFRESH_ENV[0], f"{issuer} refused the refresh token: {reply.text[:200]}",
                         "the refresh token is expired or revoked, or belongs to another client: get a new one")
    if not reply.ok or "access_token" not in reply.json():
        raise KitError(f"token endpoint of {issuer} answered {reply.status_code}: {reply.text[:200]}")
    return str(reply.json()["access_token"])


def access_token(env: Mapping[str, str] | None = None, issuer: str = DEFAULT_ISSUER) -> str:
    """Find a Check-in access token: env variable, then oidc-agent, then a refresh token."""
    env = os.environ if env is None else env
    for name in TOKEN_ENV_VARS:
        if env.get(name, "").strip():
            token = env[name].strip()
            check_not_expired(token, f"environment ({name})")
            return token
    if env.get(AGENT_ACCOUNT_ENV):
        token = _from_oidc_agent(env[AGENT_ACCOUNT_ENV])
    elif env.get(REFRESH_ENV[0]):
        token = _from_refresh_token(env, issuer)
    else:
        raise InputError("environment", TOKEN_ENV_VARS[1], "no EGI Check-in access token found",
                         HOW_TO_GET_TOKEN)
    check_not_expired(token, TOKEN_SOURCE)
    return token


def _keystone_error(exc: Exception, site: EgiSite, url: str) -> KitError:
    if isinstance(exc, ks_exc.Unauthorized):
        return InputError(TOKEN_SOURCE, "access token",
                          f"Keystone of {site.gocdb} ({url}) rejected the Check-in token (401): it is expired, "
                          f"invalid or not from Check-in, or the site has no protocol '{site.protocol}' for "
                          f"identity provider {IDENTITY_PROVIDER}",
                          f"get a fresh token ({HOW_TO_GET_TOKEN}) and check that it carries your VO entitlement; "
                          f"if it does, check the site's `protocol` in {site.file}")
    if isinstance(exc, ks_exc.Forbidden):
        return InputError(TOKEN_SOURCE, "vo", f"Keystone of {site.gocdb} refused access to the VO's project (403)",
                          "check your VO membership in Check-in (the token must carry the VO's entitlement)")
    if isinstance(exc, ks_exc.NotFound):
        return InputError(site.file, "protocol",
                          f"Keystone of {site.gocdb} has no federation protocol '{site.protocol}' for "
                          f"identity provider {IDENTITY_PROVIDER} (404)",
                          "check the site's `protocol` (openid or oidc) in EGI's site list")
    if isinstance(exc, (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.SSLError)):
        return KitError(f"cannot reach Keystone of {site.gocdb} at {url}: {exc}")
    return KitError(f"Keystone of {site.gocdb} ({url}) failed: {exc}")


def _scoped(plugin: v3.BaseAuth, verify: bool | str) -> ScopedToken:
    sess = ks_session.Session(auth=plugin, verify=verify, timeout=TIMEOUT_S)
    access = plugin.get_access(sess)
    expires = access.expires.isoformat() if access.expires else ""
    return ScopedToken(token=str(access.auth_token), project_id=access.project_id or "",
                       user_id=str(access.user_id), expires_at=expires, auth_url=plugin.auth_url)


def _only_project(url: str, token: str, site: EgiSite, vo: str, verify: bool | str) -> str:
    """Project id for a VO the site's list gives none for: the one project the token can scope to."""
    plugin = v3.Token(auth_url=url, token=token)
    sess = ks_session.Session(auth=plugin, verify=verify, timeout=TIMEOUT_S)
    projects = sess.get(f"{url}/auth/projects").json().get("projects", [])
    if len(projects) != 1:
        names = ", ".join(p.get("name", p.get("id", "?")) for p in projects) or "none"
        raise InputError(site.file, f"vos[{vo}].auth.project_id",
                         f"EGI's list gives no project for {vo} at {site.gocdb} and the token can use: {names}",
                         "ask the site for the VO's project id (or use an application credential in clouds.yaml)")
    return str(projects[0]["id"])


def federated_token(resolved: ResolvedSite, token: str, verify: bool | str = True) -> ScopedToken:
    """Exchange a Check-in access token for a project-scoped Keystone token at one site."""
    url = resolved.auth_url
    site = resolved.egi
    try:
        project_id = resolved.project_id
        if project_id is None:
            unscoped = v3.OidcAccessToken(url, IDENTITY_PROVIDER, site.protocol, access_token=token)
            project_id = _only_project(url, _scoped(unscoped, verify).token, site, resolved.vo, verify)
        plugin = v3.OidcAccessToken(url, IDENTITY_PROVIDER, site.protocol, access_token=token, project_id=project_id)
        return _scoped(plugin, verify)
    except ks_exc.ClientException as exc:
        raise _keystone_error(exc, site, url) from None


def application_credential(cloud: Mapping[str, Any], name: str, days: int = 30,
                           verify: bool | str = True) -> dict[str, Any]:
    """Create an application credential with a token cloud entry; return an app-credential cloud entry.

    For long operations (Keystone tokens expire after hours). The secret is only
    ever written to the kit's clouds.yaml (mode 0600).
    """
    auth = cloud["auth"]
    plugin = v3.Token(auth_url=auth["auth_url"], token=auth["token"], project_id=auth["project_id"])
    sess = ks_session.Session(auth=plugin, verify=verify, timeout=TIMEOUT_S)
    expires = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + days * 86400))
    body = {"application_credential": {"name": name, "expires_at": expires,
                                       "description": "ai4os-kit: long Terraform/Ansible runs"}}
    try:
        user_id = plugin.get_user_id(sess)
        reply = sess.post(f"{auth['auth_url'].rstrip('/')}/users/{user_id}/application_credentials", json=body)
    except ks_exc.Conflict:
        raise InputError(TOKEN_SOURCE, "application credential", f"an application credential named {name} exists",
                         f"delete it (openstack application credential delete {name}) or pick another name") from None
    except ks_exc.ClientException as exc:
        raise KitError(f"cannot create application credential {name}: {exc}") from None
    cred = reply.json()["application_credential"]
    entry = {key: value for key, value in cloud.items() if key not in ("auth", "auth_type")}
    entry["auth_type"] = "v3applicationcredential"
    entry["auth"] = {"auth_url": auth["auth_url"], "application_credential_id": cred["id"],
                     "application_credential_secret": cred["secret"]}
    return entry


def cloud_name(site: Mapping[str, Any]) -> str:
    """Name of a plan site's cloud in clouds.yaml: the operator's `cloud`, else ai4os-<site>."""
    return str(site.get("cloud") or f"ai4os-{site['name']}")


def token_cloud(resolved: ResolvedSite, scoped: ScopedToken) -> dict[str, Any]:
    """clouds.yaml entry (auth_type token) for a federated token."""
    entry: dict[str, Any] = {
        "auth_type": "token",
        "auth": {"auth_url": resolved.auth_url, "token": scoped.token, "project_id": scoped.project_id},
        "identity_api_version": 3,
        "interface": "public",
        "ai4os_expires_at": scoped.expires_at,
    }
    if resolved.region:
        entry["region_name"] = resolved.region
    return entry


def read_clouds(path: Path) -> dict[str, Any]:
    """The ``clouds`` mapping of a clouds.yaml ({} when absent)."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("clouds", {}), dict):
        raise InputError(str(path), "clouds", "not a clouds.yaml (no `clouds:` mapping)",
                         "delete the file; the kit writes it again")
    return dict(data.get("clouds", {}))


def write_clouds(path: Path, clouds: Mapping[str, Any]) -> Path:
    """Merge ``clouds`` into the kit's clouds.yaml, written 0600 (it holds tokens)."""
    merged = read_clouds(path)
    merged.update(clouds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump({"clouds": merged}, out, sort_keys=True)
    os.replace(tmp, path)
    return path


def refresh_credentials(plan: Mapping[str, Any], clouds_file: Path, env: Mapping[str, str] | None = None,
                        verify: bool | str = True, app_credentials: bool = True) -> Path:
    """Write fresh credentials of every `auth: checkin` EGI site of the plan into ``clouds_file``.

    Call before every Terraform run. Sites with `cloud:` keep using the
    operator's clouds.yaml; EGI sites with `auth: application_credential`
    get one created the first time (from a fresh Check-in token) and keep it;
    with ``app_credentials=False`` (read-only checks) they get a token too.
    """
    resolved = resolve_plan(dict(plan))
    need = [s for s in plan["sites"] if s["name"] in resolved]
    if not need:
        return clouds_file
    issuer = (plan.get("platform", {}).get("oidc") or {}).get("issuer") or DEFAULT_ISSUER
    existing = read_clouds(clouds_file)
    token: str | None = None
    updates: dict[str, Any] = {}
    for site in need:
        name = cloud_name(site)
        long_lived = app_credentials and site.get("auth") == "application_credential"
        if long_lived and existing.get(name, {}).get("auth_type") == "v3applicationcredential":
            continue
        token = token or access_token(env, issuer)
        entry = token_cloud(resolved[site["name"]], federated_token(resolved[site["name"]], token, verify))
        if long_lived:
            entry = application_credential(entry, f"ai4os-{plan['platform']['name']}-{site['name']}", verify=verify)
        updates[name] = entry
    return write_clouds(clouds_file, updates)
