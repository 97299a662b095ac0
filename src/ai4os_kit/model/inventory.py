"""Loading and validating an inventory directory.

One implementation, called from ``ai4os-kit check`` and from the first play of
``playbooks/site.yml`` (which runs ``ai4os-kit check``): schema validation of
``platform.yml`` and ``sites.yml``, then the cross-field rules. Every problem is
an :class:`InputError` naming the file, the key, what is wrong and the fix.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jsonschema

from ai4os_kit.errors import InputError, InputErrors
from ai4os_kit.model import component_rules, egi_sites, lending, oidc_claims, placement, secrets, topology
from ai4os_kit.model.catalog import (
    Component,
    Resolution,
    load_catalog,
    resolve,
    suggest,
)
from ai4os_kit.model.node_contract import node_name
from ai4os_kit.paths import (
    GENERATED,
    PLATFORM_FILE,
    SCHEMA_DIR,
    SECRETS_FILE,
    SITES_FILE,
)
from ai4os_kit.yamlio import (
    KeyPath,
    SourceMap,
    format_path,
    line_of,
    load_yaml,
    read_error,
)

CLIENT_ROLES = ("services", "cpu", "gpu", "tryme", "batch")
VALID_SERVER_COUNTS = (1, 3, 5)
ENABLE_PREFIX = "ai4os_enable_"
VAULT_HEADER = "$ANSIBLE_VAULT;"


@dataclass
class Inventory:
    """A validated inventory directory."""

    path: Path
    platform: dict[str, Any]
    sites: list[dict[str, Any]]
    resolution: Resolution
    catalog: dict[str, Component]
    platform_lines: dict[KeyPath, int] = field(default_factory=dict)
    sites_lines: dict[KeyPath, int] = field(default_factory=dict)
    # Sites whose server nodes are the Nomad region's servers (sites.yml ai4os_nomad_server_sites).
    nomad_server_sites: list[str] = field(default_factory=list)
    # Sites another installation lends to this one (federation/lent/*.yml, ai4os_kit.model.lending).
    lent: list[dict[str, Any]] = field(default_factory=list)
    # Nodes of this inventory lent to another installation (federation/*/joined.yml): node -> bundle facts.
    joined: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def platform_file(self) -> Path:
        return self.path / PLATFORM_FILE

    @property
    def sites_file(self) -> Path:
        return self.path / SITES_FILE

    @property
    def secrets_file(self) -> Path:
        return self.path / SECRETS_FILE


@lru_cache(maxsize=2)
def _schema(name: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / name, encoding="utf-8") as fh:
        return json.load(fh)


def platform_schema(catalog: dict[str, Component]) -> dict[str, Any]:
    """The platform schema, allowing ``ai4os_<component>_<setting>`` keys for platform-layer components.

    (Host and cluster components are tuned with their role variables, e.g.
    ``nomad_*``, in group_vars, not in platform.yml.)
    """
    schema = copy.deepcopy(_schema("platform.schema.json"))
    names = "|".join(sorted((n for n, c in catalog.items() if c.layer == "platform"), key=len, reverse=True))
    schema["patternProperties"][f"^ai4os_({names})_[a-z0-9_]+$"] = {
        "description": "A setting of a catalogue component (see docs/platform.md)."
    }
    return schema


def sites_schema() -> dict[str, Any]:
    return _schema("sites.schema.json")


# ---------------------------------------------------------------- schema errors

def _allowed_keys(schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    if "$ref" in schema:
        schema = _resolve_ref(root, schema["$ref"])
    return sorted(schema.get("properties", {}))


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the whole number {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "empty (nothing after the colon)"
    return type(value).__name__


# JSON Schema's type names in the words of a YAML file.
TYPE_WORDS = {
    "object": "a mapping (indented `key: value` lines)",
    "array": "a list (lines starting with '- ', or [a, b])",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


def _want(types: Any) -> str:
    names = types if isinstance(types, list) else [types]
    return " or ".join(TYPE_WORDS.get(n, n) for n in names)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _schema_error(err: jsonschema.ValidationError, file: str, lines: dict[KeyPath, int],
                  root: dict[str, Any]) -> InputError:
    path: KeyPath = tuple(err.absolute_path)
    key = format_path(path)
    line = line_of(lines, path)
    validator = err.validator
    value = err.instance
    schema = err.schema if isinstance(err.schema, dict) else {}
    desc = schema.get("description", "")
    hint = f" ({desc})" if desc else ""
    written = getattr(lines, "plain", {}).get(path)
    if validator == "additionalProperties":
        extra = sorted(set(value) - set(err.schema.get("properties", {})))
        extra = [k for k in extra if not any(re.search(p, k) for p in err.schema.get("patternProperties", {}))]
        allowed = sorted(err.schema.get("properties", {}))
        name = extra[0] if extra else "?"
        kpath = path + (name,)
        return InputError(file, format_path(kpath), f"unknown key '{name}'{suggest(name, allowed)}",
                          f"remove it or use one of the known keys: {', '.join(allowed)}",
                          line=line_of(lines, kpath))
    if validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        props = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
        mdesc = props.get(missing, {}).get("description", "")
        return InputError(file, format_path(path + (missing,)), "required key is missing",
                          f"add '{missing}'" + (f": {mdesc}" if mdesc else ""), line=line)
    if validator == "type":
        want = err.validator_value
        wants = want if isinstance(want, list) else [want]
        if "string" in wants and isinstance(value, (bool, int, float)) and written is not None:
            return InputError(file, key, f"'{written}' was read by YAML as {_type_name(value)}, not as text",
                              f"quote it: {path[-1]}: \"{written}\"" if path else f"quote it: \"{written}\"", line=line)
        if "boolean" in wants and isinstance(value, str):
            return InputError(file, key, f"'{value}' is text, not a boolean",
                              "write true or false without quotes", line=line)
        if set(wants) & {"integer", "number"} and isinstance(value, str):
            return InputError(file, key, f"'{value}' is text, not a number",
                              "write the number without quotes", line=line)
        if "integer" in wants and isinstance(value, float):
            whole = f"write {int(value)}" if value.is_integer() else "write a whole number (no decimal point)"
            return InputError(file, key, f"{written or value} is not a whole number", f"{whole}{hint}", line=line)
        return InputError(file, key, f"is {_type_name(value)}, expected {_want(want)}",
                          f"give {_want(want)} here{hint}", line=line)
    if validator == "enum":
        choices = [str(c) for c in err.validator_value]
        shown = written if written is not None and not isinstance(value, str) else value
        return InputError(file, key, f"'{shown}' is not allowed{suggest(str(shown), choices)}",
                          f"use one of: {', '.join(choices)}", line=line)
    if validator == "pattern":
        words = schema.get("x-pattern-words") or f"a value matching {err.validator_value}"
        return InputError(file, key, f"'{value}' has an invalid format", f"write {words}{hint}", line=line)
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                 "exclusiveMaximum": "less than"}[validator]
        return InputError(file, key, f"{value} is out of range: it must be {bound} {err.validator_value}",
                          f"give a value {bound} {err.validator_value}{hint}", line=line)
    if validator == "minItems":
        return InputError(file, key, "is an empty list" if not value else f"has {_plural(len(value), 'item')}",
                          f"list at least {_plural(err.validator_value, 'entry')}{hint}"
                          " (see inventories/sample)", line=line)
    if validator == "minLength":
        return InputError(file, key, "is empty text", f"give a value{hint}", line=line)
    if validator == "maxLength":
        return InputError(file, key, f"is {len(value)} characters long",
                          f"use at most {_plural(err.validator_value, 'character')}", line=line)
    return InputError(file, key, err.message, f"fix the value{hint}", line=line)


def _strict_integer(checker: Any, value: Any) -> bool:
    """YAML's 3.0 is a float: JSON Schema would call it an integer, Python's range() would not."""
    return isinstance(value, int) and not isinstance(value, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def _validate_schema(data: Any, schema: dict[str, Any], file: str, lines: dict[KeyPath, int]) -> list[InputError]:
    if not isinstance(data, dict):
        return [InputError(file, "", f"the file holds {_type_name(data)}, expected a mapping of keys",
                           "start the file with the keys shown in inventories/sample", line=1)]
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: (line_of(lines, tuple(e.absolute_path)) or 0, e.message))
    # report the most specific error per location (jsonschema may report a parent and a child)
    out: list[InputError] = []
    seen: set[tuple[str, str]] = set()
    for err in errors:
        ierr = _schema_error(err, file, lines, schema)
        if (ierr.key, ierr.problem) not in seen:
            seen.add((ierr.key, ierr.problem))
            out.append(ierr)
    return out


# ------------------------------------------------------------- cross-field rules

class _Collector:
    def __init__(self, file: str, lines: dict[KeyPath, int]) -> None:
        self.file = file
        self.lines = lines
        self.errors: list[InputError] = []

    def add(self, path: KeyPath, problem: str, fix: str) -> None:
        self.errors.append(InputError(self.file, format_path(path), problem, fix, line=line_of(self.lines, path)))


def site_domain(platform: dict[str, Any], site: dict[str, Any]) -> str:
    return site.get("domain") or f"{site['name']}.{platform['ai4os_domain']}"


def pool_name(pool: dict[str, Any]) -> str:
    return pool.get("name") or pool["role"]


def _check_platform(platform: dict[str, Any], col: _Collector) -> None:
    _check_admin_users(platform, col)
    vos = platform["ai4os_vos"]
    for attr in ("name", "namespace", "domain"):
        seen: dict[str, int] = {}
        for i, vo in enumerate(vos):
            if vo[attr] in seen:
                col.add(("ai4os_vos", i, attr), f"'{vo[attr]}' is used by ai4os_vos[{seen[vo[attr]]}] too",
                        f"give every VO its own {attr}")
            seen.setdefault(vo[attr], i)
    placement.check_reserved_namespaces(vos, col)
    oidc = platform["ai4os_oidc"]
    if oidc["provider"] == "keycloak" and "checkin" in oidc:
        col.add(("ai4os_oidc", "checkin"), "a Check-in mapping is given but provider is keycloak",
                "remove ai4os_oidc.checkin, or set provider: egi_checkin")
    if oidc["provider"] == "egi_checkin" and "keycloak" in oidc:
        col.add(("ai4os_oidc", "keycloak"), "a Keycloak mapping is given but provider is egi_checkin",
                "remove ai4os_oidc.keycloak, or set provider: keycloak")
    oidc_claims.check_operators_group(oidc, vos, col)


# Flavor fields that are requirements (the kit picks the smallest flavor meeting them).
FLAVOR_MINIMUMS = ("vcpus", "ram_mb", "disk_gb")


def _check_flavor_fields(path: KeyPath, flavor: dict[str, Any], col: _Collector) -> None:
    """A flavor is named (id or name) or described by minimums, never both ways at once."""
    if flavor.get("id") and flavor.get("name"):
        col.add(path, f"gives both id '{flavor['id']}' and name '{flavor['name']}'",
                "keep one of them: the id names exactly one flavor, the name may differ between clouds")
    minimums = [k for k in FLAVOR_MINIMUMS if k in flavor]
    if (flavor.get("id") or flavor.get("name")) and minimums:
        which = "id" if flavor.get("id") else "name"
        col.add(path, f"gives a flavor {which} and the minimums {', '.join(minimums)}: the named flavor would be "
                "used as it is and the minimums silently ignored",
                f"remove {', '.join(minimums)} to use the named flavor, or remove {which} to let the kit pick the "
                "smallest flavor meeting the minimums")


# Accounts of the operating system and of the kit's services: an admin user of that name would take
# them over (exclusive SSH keys, sudo) or break the service.
RESERVED_USERS = ("root", "daemon", "bin", "sys", "nobody", "consul", "nomad", "traefik", "vault", "docker")


def _check_admin_users(platform: dict[str, Any], col: _Collector) -> None:
    seen: dict[str, int] = {}
    for i, user in enumerate(platform.get("ai4os_admin_users") or []):
        name = user["name"]
        if name in RESERVED_USERS:
            col.add(("ai4os_admin_users", i, "name"), f"'{name}' is a system or service account",
                    f"choose a personal login name (reserved: {', '.join(RESERVED_USERS)})")
        if name in seen:
            col.add(("ai4os_admin_users", i, "name"), f"'{name}' is listed twice (first ai4os_admin_users[{seen[name]}])",
                    "list each admin once, with all their keys")
        seen.setdefault(name, i)


def _check_site_source(i: int, site: dict[str, Any], col: _Collector) -> None:
    sources = [k for k in ("egi_site", "cloud", "testbed") if site.get(k)]
    if len(sources) != 1:
        what = "none of" if not sources else "more than one of"
        col.add(("ai4os_sites", i), f"site '{site['name']}' gives {what} egi_site / cloud / testbed",
                "give exactly one: egi_site (an EGI site), cloud (a clouds.yaml entry) or testbed: true")
        return
    if site.get("egi_site") and not site.get("vo"):
        col.add(("ai4os_sites", i, "vo"), f"EGI site '{site['egi_site']}' needs the VO whose project to use",
                "add vo: <one of ai4os_vos[].name>")
    if site.get("testbed"):
        return
    if "network" not in site:
        col.add(("ai4os_sites", i, "network"), "a cloud site needs a network", "add network: {create: true, cidr: 10.x.y.0/24} or {existing: NAME, cidr: ...}")
    else:
        net = site["network"]
        if bool(net.get("create")) == bool(net.get("existing")):
            col.add(("ai4os_sites", i, "network"), "say either create: true or existing: NAME",
                    "set exactly one of network.create and network.existing")
    if "image" not in site or not (site["image"].get("name") or site["image"].get("properties")):
        col.add(("ai4os_sites", i, "image"), "a cloud site needs an image", "add image: {name: ...} or image: {properties: {os_distro: ubuntu, os_version: '22.04'}}")
    ssh = site.get("ssh") or {}
    if not ssh.get("allowed_cidrs"):
        col.add(("ai4os_sites", i, "ssh", "allowed_cidrs"), "no operator network may reach the bastion's SSH",
                "list the operator networks, e.g. allowed_cidrs: [192.0.2.0/24]")
    for j, cidr in enumerate(ssh.get("allowed_cidrs") or []):
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            col.add(("ai4os_sites", i, "ssh", "allowed_cidrs", j), f"'{cidr}' is not an IPv4 network", "write it as a.b.c.d/nn")
            continue
        if net.prefixlen == 0:
            col.add(("ai4os_sites", i, "ssh", "allowed_cidrs", j), "SSH would be open to the whole internet",
                    "list only the operator networks (never 0.0.0.0/0)")


def _check_pools(i: int, site: dict[str, Any], vo_namespaces: set[str], col: _Collector) -> None:
    testbed = bool(site.get("testbed"))
    names: dict[str, int] = {}
    servers = 0
    ingress = 0
    for j, pool in enumerate(site["pools"]):
        base: KeyPath = ("ai4os_sites", i, "pools", j)
        name = pool_name(pool)
        if name in names:
            col.add(base + ("name",), f"pool name '{name}' is used twice in site '{site['name']}'",
                    "give the second pool a distinct name")
        names.setdefault(name, j)
        role = pool["role"]
        if role == "server":
            servers += pool["count"]
        if role == "ingress":
            ingress += pool["count"]
        flavor = pool.get("flavor") or {}
        accel = flavor.get("accelerator")
        if role == "gpu" and not accel:
            col.add(base + ("flavor", "accelerator"), "a gpu pool states no accelerator requirements",
                    "add flavor.accelerator: {type: GPU, number: 1, vendor: NVIDIA, model: A100}")
        if role != "gpu" and accel:
            col.add(base + ("flavor", "accelerator"), f"accelerator requirements on a '{role}' pool",
                    "move the GPUs to a pool with role: gpu, or remove flavor.accelerator")
        if not testbed:
            by_name = bool(flavor.get("name") or flavor.get("id"))
            by_req = bool(flavor.get("vcpus") and flavor.get("ram_mb"))
            if not by_name and not by_req:
                col.add(base + ("flavor",), "no flavor given",
                        "give flavor.name (or flavor.id), or the requirements flavor.vcpus and flavor.ram_mb")
            if role in CLIENT_ROLES and pool["count"] > 0 and not pool.get("volume_gb"):
                col.add(base + ("volume_gb",), f"a '{role}' pool needs a data volume (Docker data on xfs with pquota)",
                        "set volume_gb, e.g. volume_gb: 100")
            if role == "ingress" and pool["count"] > 0 and not pool.get("floating_ip"):
                col.add(base + ("floating_ip",), "ingress nodes are the site's entry point and bastion and need a public address",
                        "set floating_ip: true")
        _check_flavor_fields(base + ("flavor",), flavor, col)
        for k, ns in enumerate(pool.get("namespaces") or []):
            if ns not in vo_namespaces:
                col.add(base + ("namespaces", k), f"namespace '{ns}' is not defined{suggest(ns, sorted(vo_namespaces))}",
                        f"use one of the ai4os_vos namespaces: {', '.join(sorted(vo_namespaces))}")
        if pool.get("namespaces") and role in ("server", "ingress"):
            col.add(base + ("namespaces",), f"'{role}' nodes run no user jobs", "remove namespaces from this pool")
    if servers not in VALID_SERVER_COUNTS:
        col.add(("ai4os_sites", i, "pools"), f"site '{site['name']}' has {servers} server node(s); the site's Consul "
                "datacenter needs 1, 3 or 5 servers for a quorum", "set the server pool's count to 1, 3 or 5")
    if ingress < 1:
        col.add(("ai4os_sites", i, "pools"), f"site '{site['name']}' has no ingress node",
                "add a pool {role: ingress, count: 1, floating_ip: true}")


EgiResolver = Callable[[dict[str, Any], int, str], Any]


def default_egi_resolver() -> EgiResolver:
    """Resolve EGI sites through EGI's site list shipped with the kit."""
    catalogue = egi_sites.load_sites()
    return lambda site, index, file: egi_sites.resolve(site, index, catalogue, file)


def _check_sites(platform: dict[str, Any], sites: list[dict[str, Any]], col: _Collector,
                 resolve_egi: EgiResolver | None) -> None:
    vo_names = {vo["name"] for vo in platform["ai4os_vos"]}
    namespaces = {vo["namespace"] for vo in platform["ai4os_vos"]}
    seen_names: dict[str, int] = {}
    seen_domains: dict[str, int] = {}
    networks: list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    seen_nodes: dict[str, tuple[int, int]] = {}
    for i, site in enumerate(sites):
        name = site["name"]
        if name in seen_names:
            col.add(("ai4os_sites", i, "name"), f"site name '{name}' is used by ai4os_sites[{seen_names[name]}] too",
                    "give every site a unique name (it becomes the datacenter name)")
        seen_names.setdefault(name, i)
        domain = site_domain(platform, site)
        if domain in seen_domains:
            col.add(("ai4os_sites", i, "domain"), f"domain '{domain}' is used by ai4os_sites[{seen_domains[domain]}] too",
                    "give every site its own domain")
        seen_domains.setdefault(domain, i)
        if site.get("vo") and site["vo"] not in vo_names:
            col.add(("ai4os_sites", i, "vo"), f"VO '{site['vo']}' is not in ai4os_vos{suggest(site['vo'], sorted(vo_names))}",
                    f"use one of: {', '.join(sorted(vo_names))}")
        _check_site_source(i, site, col)
        _check_pools(i, site, namespaces, col)
        for j, pool in enumerate(site["pools"]):
            pname = pool_name(pool)
            longest = node_name(name, pname, max(pool["count"], 1))
            if len(longest) > 63:
                col.add(("ai4os_sites", i, "pools", j), f"host name '{longest}' is longer than 63 characters",
                        "shorten the site or pool name")
            here = (i, j)
            for index in range(1, pool["count"] + 1):  # once per node: kept to a dict lookup or two
                node = node_name(name, pname, index)
                first = seen_nodes.setdefault(node, here)
                if first[0] != i:
                    k, m = first
                    col.add(("ai4os_sites", i, "pools", j),
                            f"node name '{node}' is also a node of ai4os_sites[{k}].pools[{m}] (names are <site>-<pool>-<n>)",
                            "rename this pool (name: ...) or one of the two sites so that the names differ")
                    break
        cidr = (site.get("network") or {}).get("cidr")
        if cidr:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                col.add(("ai4os_sites", i, "network", "cidr"), f"'{cidr}' is not a valid network", "write it as a.b.c.d/nn")
            else:
                for k, other in networks:
                    if net.overlaps(other):
                        col.add(("ai4os_sites", i, "network", "cidr"),
                                f"{cidr} overlaps ai4os_sites[{k}]'s {other}; federated sites must not share addresses",
                                "give each site a distinct CIDR")
                networks.append((i, net))
        if resolve_egi and site.get("egi_site") and site.get("vo") in vo_names:
            try:
                resolve_egi(site, i, col.file)
            except InputError as err:
                err.line = line_of(col.lines, ("ai4os_sites", i, err.key.rsplit(".", 1)[-1]))
                err.args = (err.render(),)
                col.errors.append(err)


def component_flags(platform: dict[str, Any]) -> dict[str, bool]:
    return {k[len(ENABLE_PREFIX):]: v for k, v in platform.items() if k.startswith(ENABLE_PREFIX)}


def _check_components(platform: dict[str, Any], catalog: dict[str, Component], file: str,
                      lines: dict[KeyPath, int]) -> Resolution:
    flags = component_flags(platform)
    flag_lines = {name: lines.get((ENABLE_PREFIX + name,)) for name in flags}
    return resolve(flags, catalog, file=file, lines={k: v for k, v in flag_lines.items() if v})


def _component_settings_errors(platform: dict[str, Any], enabled: set[str], file: str,
                               lines: dict[KeyPath, int]) -> list[InputError]:
    errors = component_rules.check_component_settings(platform, enabled, file)
    for err in errors:
        if err.line is None:
            err.line = lines.get((err.key.split(".")[0].split("[")[0],))
            err.args = (err.render(),)
    return errors


# ------------------------------------------------------------------- secrets

def check_secrets(inventory: Path) -> list[InputError]:
    """secrets.yml, when present, must be vault-encrypted and decryptable."""
    file = inventory / SECRETS_FILE
    if not file.exists():
        return []
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [InputError(str(file), "", f"cannot be read: {exc}", "check the file's permissions")]
    if not text.startswith(VAULT_HEADER):
        return [InputError(str(file), "", "is not encrypted with ansible-vault; secrets must never be stored in plain text",
                           f"encrypt it: ansible-vault encrypt {file}")]
    pw_file, _ = secrets.password_file(inventory, create=False)
    if not pw_file.exists():
        return []
    try:
        secrets.read_secrets(inventory, pw_file)
    except InputError as err:
        return [err]
    return []


# ------------------------------------------------------------------- entry point

def _check_directory(root: Path) -> None:
    """The inventory path is an existing directory (not a file, not a link loop)."""
    try:
        if root.is_dir():
            return
        exists = root.exists()
    except OSError as exc:  # a link loop raises on stat
        raise read_error(str(root), exc) from None
    if root.is_symlink() and not exists:
        raise InputError(str(root), "", "is a symbolic link to nothing (or to itself)",
                         "point the link at an inventory directory, or give that directory's path")
    if exists:
        raise InputError(str(root), "", "is a file, not an inventory directory",
                         "give the directory that holds platform.yml and sites.yml (not one of the files)")
    raise InputError(str(root), "", "inventory directory not found",
                     "give the path of an inventory directory (create one with `ai4os-kit init NAME`)")


def copy_inventory(source: Path, target: Path) -> None:
    """Copy an inventory directory without what the kit generated in it (hosts.yml, secrets, state).

    platform.yml and sites.yml are linked into group_vars/all of the copy (relative
    symlinks), also when the source holds plain copies there (the sample inside
    the wheel, which cannot carry links), so each file stays the one source.
    """
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(*GENERATED))
    folder = target / "group_vars" / "all"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (PLATFORM_FILE, SITES_FILE):
        link = folder / name
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(Path("..") / ".." / name)


_DEFAULT: Any = object()


def load_inventory(path: str | Path, *, check_vault: bool = True,
                   resolve_egi: EgiResolver | None = _DEFAULT) -> Inventory:
    """Load and validate an inventory directory; raise InputError(s) on any problem.

    EGI sites are resolved through EGI's site list (``resolve_egi``; by
    default the list shipped with the kit; ``None`` skips it).
    """
    root = Path(path)
    _check_directory(root)
    catalog = load_catalog()
    pfile, sfile = root / PLATFORM_FILE, root / SITES_FILE
    loaded: list[tuple[Any, SourceMap]] = []
    errors: list[InputError] = []
    for file in (pfile, sfile):  # both files are read before stopping, so one run names every problem
        try:
            loaded.append(load_yaml(file))
        except InputError as err:
            errors.append(err)
            loaded.append((None, SourceMap()))
    if errors:
        raise InputErrors(errors)
    (platform, plines), (sites_doc, slines) = loaded
    errors = _validate_schema(platform, platform_schema(catalog), str(pfile), plines)
    errors += _validate_schema(sites_doc, sites_schema(), str(sfile), slines)
    if errors:
        raise InputErrors(errors)
    resolution = _check_components(platform, catalog, str(pfile), plines)
    pcol = _Collector(str(pfile), plines)
    _check_platform(platform, pcol)
    scol = _Collector(str(sfile), slines)
    if resolve_egi is _DEFAULT:  # EGI's site list is read only for an inventory that has EGI sites
        resolve_egi = default_egi_resolver() if any(s.get("egi_site") for s in sites_doc["ai4os_sites"]) else None
    _check_sites(platform, sites_doc["ai4os_sites"], scol, resolve_egi)
    lent = lending.load_lent(root, {s["name"] for s in sites_doc["ai4os_sites"]},
                             {vo["namespace"] for vo in platform["ai4os_vos"]})
    topology.check_topology(sites_doc, scol, lent_sites=len(lent))
    placement.check_placement(sites_doc["ai4os_sites"], resolution, catalog, scol)
    if "papi" in resolution.enabled:
        placement.check_papi(platform, sites_doc["ai4os_sites"], pcol, scol)
    errors = pcol.errors + scol.errors
    errors += _component_settings_errors(platform, set(resolution.enabled), str(pfile), plines)
    if check_vault:
        errors += check_secrets(root)
    if errors:
        raise InputErrors(errors)
    return Inventory(path=root, platform=platform, sites=sites_doc["ai4os_sites"], resolution=resolution,
                     catalog=catalog, platform_lines=plines, sites_lines=slines,
                     nomad_server_sites=topology.nomad_server_sites(sites_doc), lent=lent,
                     joined=lending.load_joined(root, lambda: {node_name(s["name"], pool_name(p), k)
                                                               for s in sites_doc["ai4os_sites"] for p in s["pools"]
                                                               for k in range(1, p["count"] + 1)}))


__all__ = ["Inventory", "load_inventory", "copy_inventory", "site_domain", "pool_name", "component_flags"]
