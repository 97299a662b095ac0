"""The borrower's side (institution A): `federation accept` and `federation revoke`.

accept: A checks B's request (every CSR proves its key; node names belong to B's
site; B's public addresses are public; the namespaces exist in A), signs one
short-lived certificate per node with A's CA, writes the join bundle for B and
the record ``federation/lent/<site>.yml`` that A's plan reads (its Nomad servers
admit B's addresses; accounting names B as the lender of those nodes). Nothing
is written when a check fails.

revoke: the record moves to ``federation/revoked/`` (with the certificates'
serials); the caller then drains and purges B's nodes and provisions, which
closes A's security groups to B's addresses.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.errors import InputError, InputErrors
from ai4os_kit.federation import bundle
from ai4os_kit.model import lending, secrets, topology
from ai4os_kit.model.catalog import suggest
from ai4os_kit.model.inventory import Inventory
from ai4os_kit.paths import HOSTS_FILE, SECRETS_FILE

CLI = "command line"
BUNDLES_DIR = Path(lending.FEDERATION_DIR) / "bundles"
DEFAULT_DAYS = 30


class _Collector:
    def __init__(self, file: str) -> None:
        self.file, self.errors = file, []  # type: ignore[var-annotated]

    def add(self, path: tuple[Any, ...], problem: str, fix: str) -> None:
        self.errors.append(InputError(self.file, ".".join(str(p) for p in path), problem, fix))


def _ca(inventory: Path) -> tuple[str, str]:
    pw_file, _ = secrets.password_file(inventory, create=False)
    values = secrets.read_secrets(inventory, pw_file)
    if not values.get("ai4os_secret_ca_key") or not values.get("ai4os_secret_ca_cert"):
        raise InputError(str(inventory / SECRETS_FILE), "ai4os_secret_ca_key", "the platform CA is missing",
                         f"run `ai4os-kit secrets {inventory}`")
    return values["ai4os_secret_ca_key"], values["ai4os_secret_ca_cert"]


def server_addresses(inventory: Path, plan: dict[str, Any]) -> list[str]:
    """host:port of the Nomad servers at their public addresses (hosts.yml, written by provision)."""
    hosts_file = inventory / HOSTS_FILE
    hosts = (yaml.safe_load(hosts_file.read_text(encoding="utf-8")) or {}).get("all", {}).get("hosts") or {} \
        if hosts_file.is_file() else {}
    servers = [n["name"] for n in plan["nodes"] if n["nomad"]["server"]]
    found = [f"{hosts[s]['ai4os_node_public_address']}:4647" for s in servers
             if (hosts.get(s) or {}).get("ai4os_node_public_address")]
    if len(found) != len(servers):
        raise InputError(str(hosts_file), "ai4os_node_public_address", "the Nomad servers have no public address in "
                         "hosts.yml: the lent nodes could not reach them (private networks are not routed between "
                         "clouds)", "give the server pool of the Nomad server sites floating_ip: true and run "
                         f"`ai4os-kit provision {inventory}` first")
    return found


def _check_request(path: Path, request: dict[str, Any], inv: Inventory, namespaces: list[str] | None,
                   days: int, node_type: str) -> tuple[list[str], list[tuple[dict[str, Any], Any]]]:
    """(the scope's namespaces, [(node entry, CSR)]) of a request A can accept; InputError otherwise."""
    file = str(path)
    site = request.get("site")
    if not isinstance(site, str) or not lending.LABEL.match(site):
        raise InputError(file, "site", f"'{site}' is not a DNS label", "ask the lender to make the request again")
    own = {s["name"] for s in inv.sites}
    if site in own:
        raise InputError(file, "site", f"'{site}' is a site of this platform too: datacenter names must differ",
                         "ask the lender to offer it under another site name, or rename this platform's site")
    record_file = inv.path / lending.LENT_DIR / f"{site}.yml"
    if record_file.is_file():
        current = yaml.safe_load(record_file.read_text(encoding="utf-8")) or {}
        if current.get("lender") != request.get("lender"):
            raise InputError(file, "site", f"site '{site}' is already lent by {current.get('lender')}",
                             "revoke that site first, or ask the lender to use another site name")
    ours = {vo["namespace"] for vo in inv.platform["ai4os_vos"]}
    offered = request.get("namespaces") or []
    missing = [ns for ns in offered if ns not in ours]
    if missing and not namespaces:
        raise InputError(file, "namespaces", f"offers namespace '{missing[0]}', which this platform does not have"
                         f"{suggest(missing[0], sorted(ours))} (its VOs: {', '.join(sorted(ours))})",
                         "accept with --namespaces naming only this platform's namespaces among those offered, or "
                         "ask the lender to offer this platform's namespaces")
    scope = list(namespaces) if namespaces else [ns for ns in offered if ns in ours]
    for i, ns in enumerate(scope):
        if ns not in ours:
            raise InputError(CLI, f"--namespaces[{i}]", f"'{ns}' is not a namespace of this platform"
                             f"{suggest(ns, sorted(ours))}", f"use some of: {', '.join(sorted(ours))}")
        if ns not in offered:
            raise InputError(CLI, f"--namespaces[{i}]", f"'{ns}' was not offered by the lender ({', '.join(offered)})",
                             "serve only namespaces the lender offered")
    if not scope:
        raise InputError(file, "namespaces", "no namespace of this platform is offered", "ask the lender to offer one")
    addresses = request.get("public_addresses") or []
    bad = [a for a in addresses if lending.public_network(str(a)) is None]
    if not addresses or bad:
        raise InputError(file, "public_addresses", f"'{bad[0]}' is not a public address" if bad else
                         "no public address: this platform's servers could admit none of the lent nodes",
                         "ask the lender for the public addresses its site's nodes leave from (router, floating IPs)")
    if not 1 <= days <= bundle.MAX_DAYS:
        raise InputError(CLI, "--days", f"{days} is out of range", f"give 1 to {bundle.MAX_DAYS} days: certificates "
                         "are short-lived, renewed by accepting a new request")
    if node_type not in lending.NODE_TYPES:
        raise InputError(CLI, "--type", f"'{node_type}' is not a node type", f"use {' or '.join(lending.NODE_TYPES)}")
    nodes = request.get("nodes") or []
    if not nodes:
        raise InputError(file, "nodes", "lends no node", "ask the lender to make the request again")
    checked = []
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        name = str(node.get("name"))
        if not lending.LABEL.match(name) or not name.startswith(site + "-") or name in seen:
            raise InputError(file, f"nodes[{i}].name", f"'{name}' is not a node name of site {site} (or is repeated)",
                             f"node names are {site}-<pool>-<n>, each once")
        seen.add(name)
        csr = bundle.load_csr(str(node.get("csr", "")))
        if csr is None:
            raise InputError(file, f"nodes[{i}].csr", "is not a CSR whose signature proves the key",
                             "ask the lender to make the request again")
        if node.get("tags") not in ("cpu", "gpu"):
            raise InputError(file, f"nodes[{i}].tags", f"'{node.get('tags')}' is not cpu or gpu",
                             "ask the lender to make the request again")
        checked.append((node, csr))
    return scope, checked


def accept(inv: Inventory, plan: dict[str, Any], request_path: Path, namespaces: list[str] | None = None,
           days: int = DEFAULT_DAYS, node_type: str = "batch", out: Path | None = None,
           at: dt.datetime | None = None) -> tuple[Path, Path, str]:
    """Sign B's request; returns (bundle, record, CA fingerprint). Writes nothing on a bad input."""
    request = bundle.read_doc(request_path, bundle.REQUEST_KIND, "a federation request")
    scope, nodes = _check_request(request_path, request, inv, namespaces, days, node_type)
    col = _Collector(str(inv.sites_file))
    topology.check_reachability(inv.sites, col, lent_sites=len(inv.lent) + 1)
    if col.errors:
        raise InputErrors(col.errors)
    servers = server_addresses(inv.path, plan)
    ca_key, ca_cert = _ca(inv.path)
    issued = at or bundle.now()
    not_after = issued + dt.timedelta(days=days)
    region = plan["platform"]["region"]
    site = request["site"]
    record: dict[str, Any] = {
        "kind": lending.RECORD_KIND, "site": site, "lender": str(request.get("lender")),
        "lender_platform": str(request.get("lender_platform", "")), "accepted": bundle.iso(issued),
        "not_after": bundle.iso(not_after), "request_digest": bundle.digest(request),
        "ca_fingerprint": bundle.fingerprint(ca_cert), "public_addresses": list(request["public_addresses"]),
        "scope": {"namespaces": scope, "type": node_type}, "nodes": [],
    }
    entries = []
    for node, csr in nodes:
        cert = bundle.issue(csr, node["name"], region, ca_key, ca_cert, issued, not_after)
        record["nodes"].append({"name": node["name"], "tags": node["tags"], "serial": format(cert.serial_number, "x")})
        entries.append({"name": node["name"], "certificate": bundle.cert_pem(cert),
                        "meta": lending.node_meta(record, node["tags"])})
    lending.check_record(inv.path / lending.LENT_DIR / f"{site}.yml", record, {s["name"] for s in inv.sites},
                         {vo["namespace"] for vo in inv.platform["ai4os_vos"]})
    doc: dict[str, Any] = {
        "kind": bundle.BUNDLE_KIND, "version": bundle.VERSION, "platform": plan["platform"]["name"],
        "region": region, "datacenter": site, "issued": bundle.iso(issued), "not_after": record["not_after"],
        "request_digest": record["request_digest"], "ca_cert": ca_cert, "servers": servers,
        "scope": record["scope"], "nodes": entries,
    }
    doc["signature"] = bundle.sign(doc, ca_key)
    record["bundle_digest"] = bundle.digest(doc)
    target = out or inv.path / BUNDLES_DIR / f"{site}.yml"
    written = bundle.write_doc(target, doc)
    record_file = inv.path / lending.LENT_DIR / f"{site}.yml"
    record_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = record_file.with_name(record_file.name + ".tmp")
    tmp.write_text("---\n# A site lent to this platform (`ai4os-kit federation accept`); removed by `federation "
                   "revoke`.\n" + yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
    tmp.replace(record_file)
    return written, record_file, record["ca_fingerprint"]


def revoke(inventory: Path, site: str, at: dt.datetime | None = None) -> dict[str, Any]:
    """Move the record of ``site`` to federation/revoked/ (with the time); returns the record."""
    record_file = Path(inventory) / lending.LENT_DIR / f"{site}.yml"
    if not record_file.is_file():
        lent = sorted(p.stem for p in record_file.parent.glob("*.yml")) if record_file.parent.is_dir() else []
        raise InputError(CLI, "SITE", f"'{site}' is not a site lent to {inventory}{suggest(site, lent)}",
                         f"name one of: {', '.join(lent)}" if lent else "nothing is lent to this platform")
    record = yaml.safe_load(record_file.read_text(encoding="utf-8"))
    when = at or bundle.now()
    record["revoked"] = bundle.iso(when)
    target = Path(inventory) / lending.REVOKED_DIR / f"{site}-{when:%Y%m%dT%H%M%SZ}.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("---\n# A revoked lent site: its certificates' serials are no longer trusted by this platform "
                      "(they expire on not_after).\n" + yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
    record_file.unlink()
    return record


__all__ = ["accept", "revoke", "server_addresses", "DEFAULT_DAYS"]
