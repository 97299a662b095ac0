"""The component catalogue (catalog/components.yml) and component resolution."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.errors import InputError
from ai4os_kit.paths import CATALOG_FILE

LAYERS = ("host", "cluster", "platform")
EXPOSURES = ("public", "operator", "wan_servers", "wan_nodes", "site", "ingress", "localhost")
NODE_ROLES = ("server", "ingress", "services", "cpu", "gpu", "tryme", "batch")


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str
    port_min: int
    port_max: int
    exposure: str
    on: tuple[str, ...]


@dataclass(frozen=True)
class Component:
    name: str
    description: str
    layer: str
    default: bool
    requires: tuple[str, ...]
    conflicts: tuple[str, ...]
    groups: tuple[str, ...]
    ports: tuple[Port, ...] = field(default=())

    def lands_on(self, role: str) -> bool:
        return "all" in self.groups or role in self.groups


class CatalogError(Exception):
    """The catalogue itself is broken (a bug in the kit, not operator input)."""


def _parse_port(comp: str, raw: dict[str, Any], groups: tuple[str, ...]) -> Port:
    port = raw["port"]
    if isinstance(port, str) and "-" in port:
        low, high = (int(p) for p in port.split("-", 1))
    else:
        low = high = int(port)
    on = tuple(raw.get("nodes") or groups)
    if on == ("all",):
        on = NODE_ROLES
    if raw["protocol"] not in ("tcp", "udp") or raw["exposure"] not in EXPOSURES or not 0 < low <= high < 65536:
        raise CatalogError(f"component {comp}: bad port entry {raw}")
    return Port(raw["name"], raw["protocol"], low, high, raw["exposure"], on)


def parse_catalog(data: dict[str, Any]) -> dict[str, Component]:
    comps: dict[str, Component] = {}
    for name, raw in (data.get("components") or {}).items():
        groups = tuple(raw.get("groups") or ())
        comp = Component(
            name=name,
            description=raw["description"],
            layer=raw["layer"],
            default=bool(raw["default"]),
            requires=tuple(raw.get("requires") or ()),
            conflicts=tuple(raw.get("conflicts") or ()),
            groups=groups,
            ports=tuple(_parse_port(name, p, groups) for p in raw.get("ports") or ()),
        )
        if comp.layer not in LAYERS:
            raise CatalogError(f"component {name}: unknown layer {comp.layer}")
        for group in groups:
            if group != "all" and group not in NODE_ROLES:
                raise CatalogError(f"component {name}: unknown group {group}")
        comps[name] = comp
    for comp in comps.values():
        for other in comp.requires + comp.conflicts:
            if other not in comps:
                raise CatalogError(f"component {comp.name}: refers to unknown component {other}")
    return comps


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_FILE) -> dict[str, Component]:
    with open(path, encoding="utf-8") as fh:
        return parse_catalog(yaml.safe_load(fh))


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' hint, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class Resolution:
    enabled: dict[str, str]        # name -> reason it is on
    disabled: dict[str, str]       # name -> reason it is off


def resolve(flags: dict[str, bool], catalog: dict[str, Component], file: str = "platform.yml",
            lines: dict[str, int] | None = None) -> Resolution:
    """Resolve ``ai4os_enable_*`` flags against the catalogue.

    ``flags`` maps component name -> bool as written by the operator. Unknown
    names and conflicts raise :class:`InputError`; requirements are pulled in
    with the reason recorded. A requirement the operator switched off
    explicitly is an error too (the operator must decide).
    """
    lines = lines or {}
    for name in flags:
        if name not in catalog:
            raise InputError(file, f"ai4os_enable_{name}", f"unknown component '{name}'{suggest(name, sorted(catalog))}",
                             f"use one of: {', '.join(sorted(catalog))}", line=lines.get(name))
    enabled: dict[str, str] = {}
    for name, comp in catalog.items():
        if name in flags:
            if flags[name]:
                enabled[name] = f"enabled in {file}"
        elif comp.default:
            enabled[name] = "on by default"
    queue = list(enabled)
    while queue:
        name = queue.pop(0)
        for req in catalog[name].requires:
            if flags.get(req) is False:
                raise InputError(file, f"ai4os_enable_{req}",
                                 f"'{req}' is switched off but '{name}' requires it",
                                 f"set ai4os_enable_{req}: true, or switch '{name}' off (ai4os_enable_{name}: false)",
                                 line=lines.get(req))
            if req not in enabled:
                enabled[req] = f"required by {name}"
                queue.append(req)
    for name in sorted(enabled):
        for other in catalog[name].conflicts:
            if other in enabled:
                first, second = sorted((name, other))
                raise InputError(file, f"ai4os_enable_{second}",
                                 f"components '{first}' ({enabled[first]}) and '{second}' ({enabled[second]}) conflict",
                                 f"switch one of them off (ai4os_enable_{first}: false or ai4os_enable_{second}: false)",
                                 line=lines.get(second) or lines.get(first))
    disabled = {n: ("switched off in " + file if flags.get(n) is False else "off by default")
                for n in catalog if n not in enabled}
    ordered = {n: enabled[n] for n in catalog if n in enabled}
    return Resolution(enabled=ordered, disabled=disabled)
