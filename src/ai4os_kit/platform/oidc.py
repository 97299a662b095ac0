"""OIDC: the issuer's discovery document and keys, token verification, claim mapping.

The platform's OIDC settings (``ai4os_oidc`` in platform.yml, ``plan["platform"]["oidc"]``)
choose one of two providers:

- ``egi_checkin``: a user of VO ``<vo>`` carries the entitlement
  ``<entitlement_prefix><vo>:role=<role>#<entitlement_authority>`` in
  ``eduperson_entitlement`` (e.g. ``urn:mace:egi.eu:group:vo.ai4eosc.eu:role=member#aai.egi.eu``);
  tokens are for the PAPI client (``aud`` = ``clients.papi``);
- ``keycloak``: a user of VO ``<vo>`` holds the realm role ``<role_prefix><vo>:<level>``
  (e.g. ``access:vo.ai4eosc.eu:user``) in the claim ``roles_claim`` (dot path, default
  ``realm_access.roles``); tokens carry ``keycloak.audience`` (or ``clients.papi``).

``ai4os-kit check --online`` calls :func:`online_check`: the issuer must be https, answer
its discovery document (whose ``issuer`` must match exactly) and publish keys; with a
token, the token must verify against those keys and map to at least one VO.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jwt

from ai4os_kit.errors import InputError, KitError

TOKEN_ENV = "AI4OS_KIT_OIDC_TOKEN"
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
REQUIRED_DISCOVERY = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint")


class OidcError(KitError):
    """The issuer or a token does not do what the platform needs (exit 1)."""


@dataclass(frozen=True)
class ClaimMapping:
    """How claims grant access, derived from ``ai4os_oidc``."""

    provider: str
    issuer: str
    audience: str
    vos: tuple[str, ...]
    operators_group: str | None = None
    entitlement_prefix: str = "urn:mace:egi.eu:group:"
    entitlement_authority: str = "aai.egi.eu"
    checkin_roles: tuple[str, ...] = ("member",)
    role_prefix: str = "access:"
    roles_claim: str = "realm_access.roles"
    levels: tuple[str, ...] = ("user",)

    @classmethod
    def from_plan(cls, plan: dict[str, Any]) -> "ClaimMapping":
        oidc = plan["platform"]["oidc"]
        checkin = oidc.get("checkin") or {}
        keycloak = oidc.get("keycloak") or {}
        papi = oidc["clients"]["papi"]
        provider = oidc["provider"]
        return cls(
            provider=provider,
            issuer=oidc["issuer"],
            audience=(keycloak.get("audience") or papi) if provider == "keycloak" else papi,
            vos=tuple(vo["name"] for vo in plan["platform"]["vos"]),
            operators_group=oidc.get("operators_group"),
            entitlement_prefix=checkin.get("entitlement_prefix", cls.entitlement_prefix),
            entitlement_authority=checkin.get("entitlement_authority", cls.entitlement_authority),
            checkin_roles=tuple(checkin.get("roles", cls.checkin_roles)),
            role_prefix=keycloak.get("role_prefix", cls.role_prefix),
            roles_claim=keycloak.get("roles_claim", cls.roles_claim),
            levels=tuple(keycloak.get("levels", cls.levels)),
        )

    def expected(self, vo: str) -> list[str]:
        """The claim values that make a user a member of ``vo``."""
        if self.provider == "egi_checkin":
            return [f"{self.entitlement_prefix}{vo}:role={r}#{self.entitlement_authority}" for r in self.checkin_roles]
        return [f"{self.role_prefix}{vo}:{lvl}" for lvl in self.levels]

    @property
    def claim(self) -> str:
        return "eduperson_entitlement" if self.provider == "egi_checkin" else self.roles_claim


@dataclass
class Access:
    """What a verified token grants."""

    subject: str
    vos: dict[str, list[str]] = field(default_factory=dict)   # vo -> matching claim values
    operator: bool = False


def _claim(claims: dict[str, Any], path: str) -> list[str]:
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return []
        node = node[part]
    if isinstance(node, str):
        return [node]
    return [str(v) for v in node] if isinstance(node, list) else []


def map_claims(claims: dict[str, Any], mapping: ClaimMapping) -> Access:
    """Map verified claims to VOs; OidcError when they grant no VO."""
    values = set(_claim(claims, mapping.claim))
    access = Access(subject=str(claims.get("sub", "?")))
    for vo in mapping.vos:
        hits = [v for v in mapping.expected(vo) if v in values]
        if hits:
            access.vos[vo] = hits
    access.operator = bool(mapping.operators_group and mapping.operators_group in values)
    if not access.vos:
        examples = ", ".join(mapping.expected(vo)[0] for vo in mapping.vos)
        have = f"it carries {len(values)} value(s) in '{mapping.claim}'" if values else f"it has no '{mapping.claim}' claim"
        raise OidcError(f"token of '{access.subject}' grants no VO of the platform: {have}, "
                        f"none of them is an expected {'entitlement' if mapping.provider == 'egi_checkin' else 'role'} "
                        f"({examples}). Fix: give the account membership of a VO at the provider")
    return access


# ------------------------------------------------------------------ network

def _context(ca_file: str | Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def require_https(url: str, key: str, file: str = "platform.yml") -> None:
    parsed = urlparse(url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise InputError(file, key, f"'{url}' is not an https URL",
                         "use the provider's https:// URL (trust a private CA with ai4os_oidc_ca_file, never plain http)")


def fetch_json(url: str, ca_file: str | Path | None = None, timeout: float = 10) -> dict[str, Any]:
    """GET a JSON document over https; OidcError naming the URL when that fails."""
    require_https(url, "url")
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, context=_context(ca_file), timeout=timeout) as resp:  # noqa: S310 (https only)
            body = resp.read()
    except urllib.error.HTTPError as exc:
        raise OidcError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OidcError(f"{url}: unreachable ({reason})") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise OidcError(f"{url}: answer is not JSON") from None
    if not isinstance(doc, dict):
        raise OidcError(f"{url}: answer is not a JSON object")
    return doc


def discover(issuer: str, ca_file: str | Path | None = None, timeout: float = 10) -> dict[str, Any]:
    """The issuer's discovery document, checked (issuer matches, https endpoints, keys)."""
    require_https(issuer, "ai4os_oidc.issuer")
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        doc = fetch_json(url, ca_file, timeout)
    except OidcError as exc:
        raise OidcError(f"issuer {issuer}: discovery document not available: {exc}. "
                        "Fix: check ai4os_oidc.issuer and that this machine reaches it") from None
    missing = [k for k in REQUIRED_DISCOVERY if not doc.get(k)]
    if missing:
        raise OidcError(f"issuer {issuer}: discovery document lacks {', '.join(missing)}")
    if doc["issuer"] != issuer:
        raise OidcError(f"issuer {issuer}: discovery document names issuer '{doc['issuer']}'. "
                        "Fix: set ai4os_oidc.issuer to exactly that value")
    for key in ("jwks_uri", "token_endpoint", "authorization_endpoint"):
        if urlparse(doc[key]).scheme != "https":
            raise OidcError(f"issuer {issuer}: {key} '{doc[key]}' is not https")
    return doc


def fetch_jwks(discovery: dict[str, Any], ca_file: str | Path | None = None, timeout: float = 10) -> jwt.PyJWKSet:
    doc = fetch_json(discovery["jwks_uri"], ca_file, timeout)
    try:
        keys = jwt.PyJWKSet.from_dict(doc)
    except jwt.PyJWTError as exc:
        raise OidcError(f"{discovery['jwks_uri']}: no usable signing keys ({exc})") from None
    return keys


# ------------------------------------------------------------------- tokens

def _when(ts: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(int(ts), tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return str(ts)


def verify_token(token: str, discovery: dict[str, Any], jwks: jwt.PyJWKSet, audience: str,
                 leeway: float = 0) -> dict[str, Any]:
    """Verify signature, issuer, audience and lifetime; return the claims or raise OidcError."""
    issuer = discovery["issuer"]
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise OidcError(f"token is not a JWT: {exc}") from None
    if unverified.get("iss") != issuer:
        raise OidcError(f"token issuer '{unverified.get('iss')}' is not the platform issuer '{issuer}'. "
                        "Fix: get the token from the platform's provider")
    alg = header.get("alg")
    allowed = [a for a in discovery.get("id_token_signing_alg_values_supported", ASYMMETRIC_ALGS) if a in ASYMMETRIC_ALGS]
    if alg not in allowed:
        raise OidcError(f"token is signed with '{alg}', which the kit does not accept (allowed: {', '.join(allowed)})")
    kid = header.get("kid")
    candidates = [k for k in jwks.keys if kid is None or k.key_id == kid]
    if not candidates:
        raise OidcError(f"token's signing key '{kid}' is not among the issuer's keys ({discovery['jwks_uri']})")
    try:
        return jwt.decode(token, candidates[0].key, algorithms=[alg], audience=audience, issuer=issuer,
                          leeway=leeway, options={"require": ["exp", "iat", "iss", "sub"]})
    except jwt.ExpiredSignatureError:
        raise OidcError(f"token expired at {_when(unverified.get('exp'))}. Fix: get a fresh token") from None
    except jwt.InvalidAudienceError:
        raise OidcError(f"token audience {unverified.get('aud')!r} does not include '{audience}'. "
                        "Fix: request the token for the platform's client (or configure the audience mapper)") from None
    except jwt.InvalidSignatureError:
        raise OidcError("token signature does not verify against the issuer's keys") from None
    except jwt.MissingRequiredClaimError as exc:
        raise OidcError(f"token lacks the claim '{exc.claim}'") from None
    except jwt.PyJWTError as exc:
        raise OidcError(f"token rejected: {exc}") from None


def check_token(token: str, mapping: ClaimMapping, ca_file: str | Path | None = None,
                timeout: float = 10) -> Access:
    """Discovery + JWKS + verification + claim mapping of one token."""
    disc = discover(mapping.issuer, ca_file, timeout)
    keys = fetch_jwks(disc, ca_file, timeout)
    return map_claims(verify_token(token, disc, keys, mapping.audience), mapping)


# ----------------------------------------------------------------- CLI hook

def _ca_file(plan: dict[str, Any], inventory: str | None) -> str | None:
    value = (plan.get("settings") or {}).get("ai4os_oidc_ca_file")
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute() and inventory:
        path = Path(inventory) / path
    return str(path)


def online_check(plan: dict[str, Any], token: Any = None, ca_file: str | Path | None = None) -> list[str]:
    """Report lines for ``ai4os-kit check --online`` ("OK ..." / "FAIL ...").

    ``token`` is a token string, or the CLI's argparse namespace (its ``token``), or None
    (then $AI4OS_KIT_OIDC_TOKEN; without one the claims are not checked).
    """
    inventory = getattr(token, "inventory", None)
    if token is not None and not isinstance(token, str):
        token = getattr(token, "token", None)
    token = token or os.environ.get(TOKEN_ENV) or None
    ca_file = ca_file or _ca_file(plan, inventory)
    if not (plan.get("components") or {}).get("oidc", {}).get("enabled", True):
        return ["OK   oidc: switched off, nothing to check"]
    mapping = ClaimMapping.from_plan(plan)
    lines: list[str] = []
    try:
        disc = discover(mapping.issuer, ca_file)
        lines.append(f"OK   oidc: {mapping.issuer} answers its discovery document")
        keys = fetch_jwks(disc, ca_file)
        lines.append(f"OK   oidc: {len(keys.keys)} signing key(s) at {disc['jwks_uri']}")
    except (OidcError, InputError) as exc:
        return lines + [f"FAIL oidc: {exc}"]
    if not token:
        return lines + [f"OK   oidc: no test token given (--token or ${TOKEN_ENV}); claims not checked"]
    try:
        access = map_claims(verify_token(token, disc, keys, mapping.audience), mapping)
    except OidcError as exc:
        return lines + [f"FAIL oidc: {exc}"]
    vos = ", ".join(f"{vo} ({'; '.join(v)})" for vo, v in access.vos.items())
    lines.append(f"OK   oidc: token of '{access.subject}' verifies and grants {vos}"
                 + ("; platform operator" if access.operator else ""))
    return lines
