"""VO membership as the platform's OIDC provider expresses it, and the rule that keeps the
operators' group apart from it.

- EGI Check-in: a member of VO ``<vo>`` carries the entitlement
  ``<entitlement_prefix><vo>:role=<role>#<entitlement_authority>`` for a role of ``checkin.roles``;
- Keycloak: a member holds the realm role ``<role_prefix><vo>:<level>`` for a level of
  ``keycloak.levels``.

The operators' group (``ai4os_oidc.operators_group``) binds the Nomad operator policy: it must
not be a value every member of a VO carries, or every VO member would operate the platform.
"""

from __future__ import annotations

from typing import Any, Protocol

# Defaults of the mapping keys (schemas/platform.schema.json, ai4os_kit.platform.oidc.ClaimMapping).
CHECKIN_DEFAULTS = {"entitlement_prefix": "urn:mace:egi.eu:group:", "entitlement_authority": "aai.egi.eu",
                    "roles": ["member"]}
KEYCLOAK_DEFAULTS = {"role_prefix": "access:", "levels": ["user"]}


class Collector(Protocol):
    def add(self, path: tuple[Any, ...], problem: str, fix: str) -> None: ...


def membership_values(oidc: dict[str, Any], vo: str) -> list[str]:
    """The claim values that make a user a member of ``vo``."""
    if oidc["provider"] == "egi_checkin":
        c = {**CHECKIN_DEFAULTS, **(oidc.get("checkin") or {})}
        return [f"{c['entitlement_prefix']}{vo}:role={role}#{c['entitlement_authority']}" for role in c["roles"]]
    k = {**KEYCLOAK_DEFAULTS, **(oidc.get("keycloak") or {})}
    return [f"{k['role_prefix']}{vo}:{level}" for level in k["levels"]]


def check_operators_group(oidc: dict[str, Any], vos: list[dict[str, Any]], col: Collector) -> None:
    group = oidc.get("operators_group")
    if not group:
        return
    kind = "entitlement" if oidc["provider"] == "egi_checkin" else "role"
    for vo in vos:
        if group in membership_values(oidc, vo["name"]):
            col.add(("ai4os_oidc", "operators_group"),
                    f"'{group}' is the membership {kind} of VO {vo['name']}: every member of the VO would get "
                    "the Nomad operator policy",
                    f"set operators_group to a {kind} only the platform's operators hold "
                    f"(e.g. {'...:role=platform-admin#...' if kind == 'entitlement' else '...:admin'})")
