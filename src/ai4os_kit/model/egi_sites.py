"""EGI Federated Cloud site descriptions (the format EGI publishes).

One YAML file per site (GOCDB name, Keystone endpoint, federation protocol,
region, VO -> project id), validated by EGI's own ``schema.json``. The kit
ships a copy in ``ai4os_kit/data/egi-sites``; operators point
``AI4OS_EGI_SITES_DIR`` at a fresher checkout of EGI's site list to override.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from ai4os_kit.errors import InputError
from ai4os_kit.yamlio import format_path, load_yaml

SITES_DIR_ENV = "AI4OS_EGI_SITES_DIR"
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "egi-sites"
DEFAULT_PROTOCOL = "openid"   # EGI's schema: the default protocol of the egi.eu IdP
IDENTITY_PROVIDER = "egi.eu"  # Check-in's identity provider name in every site's Keystone


@dataclass(frozen=True)
class VoProject:
    """Where a VO lives at a site: its project (None: found at login) and region."""

    project_id: str | None
    region: str | None


@dataclass(frozen=True)
class EgiSite:
    """One EGI site endpoint as published by EGI (one file)."""

    id: str              # the file's stem; equals the GOCDB name unless a site has several endpoints
    gocdb: str
    endpoint: str
    protocol: str
    region: str | None
    file: str
    projects: dict[str, VoProject] = field(default_factory=dict)  # VO -> project

    @property
    def vos(self) -> list[str]:
        return sorted(self.projects)


@dataclass(frozen=True)
class ResolvedSite:
    """An inventory site resolved through EGI's list: where and as whom to log in."""

    site: str            # the inventory's site name
    egi: EgiSite
    vo: str
    project_id: str | None
    region: str | None

    @property
    def auth_url(self) -> str:
        return self.egi.endpoint.rstrip("/")


def sites_dir() -> Path:
    """The directory holding the site files: the env override or the bundled copy."""
    env = os.environ.get(SITES_DIR_ENV)
    return Path(env) if env else BUNDLED_DIR


def _schema(directory: Path) -> dict[str, Any]:
    path = directory / "schema.json"
    if not path.is_file():
        path = BUNDLED_DIR / "schema.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def _validate(data: Any, file: Path, validator: jsonschema.protocols.Validator) -> None:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    err = errors[0]
    raise InputError(
        str(file), format_path(tuple(err.absolute_path)),
        f"not a valid EGI site description: {err.message}",
        "fix the file to match EGI's schema.json (or take a fresh copy of EGI's site list)",
    )


def _site_from(data: dict[str, Any], file: Path) -> EgiSite:
    projects = {vo["name"]: VoProject(vo["auth"].get("project_id") or None, vo["auth"].get("region") or None)
                for vo in data.get("vos", [])}
    return EgiSite(
        id=file.stem, gocdb=data["gocdb"], endpoint=data["endpoint"],
        protocol=data.get("protocol") or DEFAULT_PROTOCOL,
        region=data.get("region") or None, file=str(file), projects=projects,
    )


def load_sites(directory: Path | None = None) -> dict[str, EgiSite]:
    """Load and validate every ``*.yaml`` site file; key: the file stem (see :func:`find`)."""
    directory = directory or sites_dir()
    if not directory.is_dir():
        raise InputError(str(directory), SITES_DIR_ENV, "EGI site directory not found",
                         f"point {SITES_DIR_ENV} at a directory of EGI site YAML files, or unset it")
    validator_cls = jsonschema.validators.validator_for(_schema(directory))
    validator = validator_cls(_schema(directory))
    sites: dict[str, EgiSite] = {}
    for file in sorted(directory.glob("*.yaml")):
        data, _lines = load_yaml(file)
        _validate(data, file, validator)
        site = _site_from(data, file)
        sites[site.id] = site
    return sites


def find(sites: dict[str, EgiSite], name: str) -> list[EgiSite]:
    """Site endpoints named ``name``: a file id, or a GOCDB name (several when it has several endpoints)."""
    if name in sites:
        return [sites[name]]
    return [s for s in sites.values() if s.gocdb == name]


def sites_for_vo(sites: dict[str, EgiSite], vo: str | None) -> list[EgiSite]:
    """Sites offering ``vo`` (all sites when ``vo`` is None), by GOCDB name."""
    return [s for name, s in sorted(sites.items()) if vo is None or vo in s.projects]


def _closest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    return f" (closest: {', '.join(close)})" if close else ""


def resolve(site: dict[str, Any], index: int, sites: dict[str, EgiSite],
            file: str = "sites.yml") -> ResolvedSite:
    """Resolve one plan/inventory site that names ``egi_site`` (and ``vo``)."""
    key = f"ai4os_sites[{index}]"
    name = site["egi_site"]
    found = find(sites, name)
    if not found:
        names = sorted({s.gocdb for s in sites.values()})
        raise InputError(file, f"{key}.egi_site", f"unknown EGI site '{name}'{_closest(name, names)}",
                         "use a GOCDB name that `ai4os-kit sites` lists (names are case-sensitive)")
    if len(found) > 1:
        ids = ", ".join(f"{s.id} ({s.endpoint})" for s in found)
        raise InputError(file, f"{key}.egi_site", f"EGI site '{name}' has several endpoints: {ids}",
                         "name the endpoint by its id from `ai4os-kit sites` instead of the GOCDB name")
    egi = found[0]
    vo = site.get("vo")
    if not vo:
        raise InputError(file, f"{key}.vo", f"site {name} needs a VO to pick the OpenStack project",
                         f"add `vo:` with one of: {', '.join(egi.vos)}")
    if vo not in egi.projects:
        offering = [s.gocdb for s in sites_for_vo(sites, vo)]
        where = f"sites offering it: {', '.join(offering)}" if offering else "no EGI site offers it"
        raise InputError(file, f"{key}.vo", f"VO '{vo}' is not offered at {name} ({where})",
                         f"use a VO {name} offers ({', '.join(egi.vos)}) or another site (ai4os-kit sites --vo {vo})")
    project = egi.projects[vo]
    region = site.get("region") or project.region or egi.region
    return ResolvedSite(site=site["name"], egi=egi, vo=vo, project_id=project.project_id, region=region)


def resolve_plan(plan: dict[str, Any], sites: dict[str, EgiSite] | None = None,
                 file: str = "sites.yml") -> dict[str, ResolvedSite]:
    """Resolve every EGI site of a plan; key: the inventory's site name."""
    egi_sites = [(i, s) for i, s in enumerate(plan["sites"]) if s.get("egi_site")]
    if not egi_sites:
        return {}
    sites = sites if sites is not None else load_sites()
    return {s["name"]: resolve(s, i, sites, file) for i, s in egi_sites}
