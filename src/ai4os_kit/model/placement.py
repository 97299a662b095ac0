"""Rules that refuse platforms that cannot run: where components land, reserved namespaces,
and what PAPI's code reads from the files the kit renders for it.

Called by :func:`ai4os_kit.model.inventory.load_inventory` (``ai4os-kit check``) with
collectors that turn each problem into an InputError naming file, key and fix.

PAPI facts are those of ai4os/ai4-papi 6d25648df9f76454d7beed0055ad085de05a6073, recorded with
file:line in tests/data/papi/facts.yml (the tests check these constants against that file).
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from ai4os_kit.model.catalog import NODE_ROLES, Component, Resolution

# Node roles Nomad jobs can land on (every client).
JOB_ROLES = tuple(r for r in NODE_ROLES if r != "server")
# Nomad namespace of the platform's own jobs (PAPI, dashboard, node admission, ...): VOs get no
# rights there. "default" holds no platform job, but PAPI lists and reads every job in it.
PLATFORM_NAMESPACE = "platform"
RESERVED_NAMESPACES = ("default", PLATFORM_NAMESPACE)
# Node roles whose nodes only one component puts to use: such a pool with that component off
# is idle (and a gpu node without the NVIDIA stack cannot run GPU jobs).
ROLE_NEEDS = {"gpu": "nvidia", "tryme": "tryme", "ingress": "traefik"}
# PAPI: the VO whose namespace it reads at import (try-me jobs, routers/v1/try_me/nomad.py:28-29),
# the characters its issuer constant (auth.py:30, set by the papi role at start) cannot hold,
# and its fixed Keycloak role format and access levels (auth.py:33, 63-69).
PAPI_IMPORT_VO = "vo.ai4eosc.eu"
PAPI_ISSUER_FORBIDDEN = re.compile(r"[\s\"'`\\|&$]")
PAPI_KEYCLOAK = {"role_prefix": "access:", "roles_claim": "realm_access.roles"}
PAPI_LEVELS = ("ap-a", "ap-a1", "ap-b", "ap-u", "ap-d")


class Collector(Protocol):
    def add(self, path: tuple[Any, ...], problem: str, fix: str) -> None: ...


def check_reserved_namespaces(vos: list[dict[str, Any]], col: Collector) -> None:
    for i, vo in enumerate(vos):
        if vo["namespace"] in RESERVED_NAMESPACES:
            why = ("the platform's own jobs run there" if vo["namespace"] == PLATFORM_NAMESPACE
                   else "Nomad's default namespace, whose jobs PAPI lists and reads for every user")
            col.add(("ai4os_vos", i, "namespace"), f"'{vo['namespace']}' is reserved: {why}",
                    f"give VO {vo['name']} a namespace of its own (not {' or '.join(RESERVED_NAMESPACES)})")


def check_placement(sites: list[dict[str, Any]], resolution: Resolution, catalog: dict[str, Component],
                    col: Collector) -> None:
    """Switched-on platform components need a node their jobs can land on; pools need their component."""
    roles = {pool["role"] for site in sites for pool in site["pools"] if pool["count"] > 0}
    for name, why in resolution.enabled.items():
        comp = catalog[name]
        if comp.layer != "platform":
            continue
        wanted = [r for r in JOB_ROLES if comp.lands_on(r)]
        if not roles & set(wanted):
            col.add(("ai4os_sites",),
                    f"{name} is switched on ({why}) but no site has a node of role {' or '.join(wanted)}, "
                    "where its jobs run",
                    f"add a pool with role: {wanted[0]} to a site, or switch {name} off "
                    f"(ai4os_enable_{name}: false in platform.yml)")
    for i, site in enumerate(sites):
        for j, pool in enumerate(site["pools"]):
            need = ROLE_NEEDS.get(pool["role"])
            if need and pool["count"] > 0 and need not in resolution.enabled:
                col.add(("ai4os_sites", i, "pools", j, "role"),
                        f"a '{pool['role']}' pool needs component {need}, which is off "
                        f"({resolution.disabled.get(need, 'switched off')})",
                        f"switch it on (ai4os_enable_{need}: true in platform.yml) or remove the pool")


def check_papi(platform: dict[str, Any], sites: list[dict[str, Any]], pcol: Collector, scol: Collector) -> None:
    """What PAPI's code reads from the files the papi role renders from the inventory."""
    if PAPI_IMPORT_VO not in [vo["name"] for vo in platform["ai4os_vos"]]:
        pcol.add(("ai4os_vos",),
                 f"PAPI reads the namespace of VO {PAPI_IMPORT_VO} when it starts (its try-me jobs always "
                 "run there) and stops without it",
                 f"list VO {PAPI_IMPORT_VO} in ai4os_vos, or switch PAPI off (ai4os_enable_papi: false)")
    oidc = platform["ai4os_oidc"]
    if oidc["provider"] != "keycloak":
        pcol.add(("ai4os_oidc", "provider"),
                 f"'{oidc['provider']}' tokens carry no Keycloak realm roles, and PAPI reads VO membership only from "
                 "roles access:<vo>:<level> in realm_access.roles (auth.py:61-69): its authorised routes would "
                 "refuse every user",
                 "put a Keycloak realm in front of EGI Check-in that maps VO entitlements to access:<vo>:<level> "
                 "roles, and set provider: keycloak with that realm as issuer (docs/platform.md, PAPI: Login); "
                 "or switch PAPI off (ai4os_enable_papi: false)")
    if PAPI_ISSUER_FORBIDDEN.search(oidc["issuer"]):
        pcol.add(("ai4os_oidc", "issuer"),
                 "holds a character PAPI's issuer setting cannot take (white space, quotes, \\, |, & or $)",
                 "use the plain https URL of the issuer")
    if oidc["provider"] == "keycloak":
        keycloak = oidc.get("keycloak") or {}
        for key, papi_value in PAPI_KEYCLOAK.items():
            if keycloak.get(key, papi_value) != papi_value:
                pcol.add(("ai4os_oidc", "keycloak", key),
                         f"'{keycloak[key]}' differs from what PAPI reads ('{papi_value}': roles "
                         "access:<vo>:<level> in realm_access.roles)",
                         f"set ai4os_oidc.keycloak.{key}: {papi_value} (PAPI's is not configurable)")
        unknown = [lvl for lvl in keycloak.get("levels") or [] if lvl not in PAPI_LEVELS]
        if unknown:
            pcol.add(("ai4os_oidc", "keycloak", "levels"),
                     f"level(s) {', '.join(unknown)} are not PAPI's access levels ({', '.join(PAPI_LEVELS)})",
                     "use PAPI's levels; users need ap-u (or ap-d) to deploy")
    for i, site in enumerate(sites):
        location = site.get("location") or {}
        missing = [k for k in ("lat", "lon", "pue") if k not in location]
        if missing:
            scol.add(("ai4os_sites", i, "location"),
                     f"site '{site['name']}' has no {', '.join(missing)}: PAPI ranks datacenters by location "
                     "and PUE (var/datacenters.csv) and cannot start without them",
                     "give it location: {country: XX, lat: .., lon: .., pue: ..}, or switch PAPI off")
