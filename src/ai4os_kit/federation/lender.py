"""The lender's side (institution B): `federation offer` and `federation join`.

offer: B names a site of its inventory and the pools it lends; the kit makes a key
and a CSR per lent node (the keys are stored ansible-vault encrypted in B's
inventory, ``federation/<borrower>/keys.vault``), collects B's public addresses
(floating IPs, the site's router or outbound addresses) and writes the request.

join: B checks the bundle the borrower A returned before anything of it is used:
signed by the CA whose fingerprint A's operator gave (out of band), answering
B's own request, not expired, one certificate per lent node, signed by that CA,
for that node's key and names only, and a scope no wider than offered. The
checked bundle is kept as ``federation/<borrower>/joined.yml``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ai4os_kit.errors import InputError
from ai4os_kit.federation import bundle
from ai4os_kit.model import secrets
from ai4os_kit.model.catalog import suggest
from ai4os_kit.model.lending import FEDERATION_DIR, JOINED_FILE, LABEL, public_network
from ai4os_kit.model.plan import router_address_name
from ai4os_kit.paths import HOSTS_FILE, TERRAFORM_DIR

KEYS_FILE = "keys.vault"
REQUEST_FILE = "request.yml"
CLI = "command line"
SITES_HINT = "sites.yml"
LENDABLE = ("cpu", "gpu", "batch", "tryme")  # node roles whose nodes run users' jobs only


def exchange_dir(inventory: Path, borrower: str) -> Path:
    return Path(inventory) / FEDERATION_DIR / borrower


# ------------------------------------------------------------------ vault-encrypted keys

def _vault(inventory: Path) -> Any:
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    pw_file, _ = secrets.password_file(Path(inventory), create=False)
    if not pw_file.exists():
        raise InputError(str(pw_file), "", "the inventory has no vault password: the lent nodes' keys are stored "
                         "encrypted with it", f"run `ai4os-kit secrets {inventory}` first")
    return VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(secrets.read_password(pw_file)))])


def write_keys(inventory: Path, borrower: str, keys: dict[str, str]) -> Path:
    path = exchange_dir(inventory, borrower) / KEYS_FILE
    blob = _vault(inventory).encrypt(yaml.safe_dump(keys).encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    secrets.write_private(tmp, blob)
    tmp.replace(path)
    return path


def read_keys(inventory: Path, borrower: str) -> dict[str, str]:
    path = exchange_dir(inventory, borrower) / KEYS_FILE
    if not path.is_file():
        raise InputError(str(path), "", "the lent nodes' keys are missing",
                         f"make the request again with `ai4os-kit federation offer {inventory} ... --to {borrower}`")
    return yaml.safe_load(_vault(inventory).decrypt(path.read_bytes()))


# ------------------------------------------------------------------ public addresses

def _hosts(inventory: Path) -> dict[str, Any]:
    path = Path(inventory) / HOSTS_FILE
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("all", {}).get("hosts") or {}


def _terraform_addresses(inventory: Path) -> dict[str, str]:
    """Public addresses from the Terraform root's output (no cloud access; {} before a provision)."""
    directory = Path(inventory) / TERRAFORM_DIR
    if not (directory / ".terraform").is_dir():
        return {}
    from ai4os_kit.terraform.runner import Terraform

    return Terraform(directory, echo=lambda _: None).output().get("public_addresses") or {}


def public_addresses(inventory: Path, plan: dict[str, Any], site: dict[str, Any], nodes: list[str],
                     extra: list[str]) -> list[str]:
    """Every address the lent nodes reach the borrower's servers from, as a.b.c.d/32."""
    hosts = _hosts(inventory)
    found: list[str] = []
    for name in nodes:
        address = (hosts.get(name) or {}).get("ai4os_node_public_address")
        if address:
            found.append(f"{address}/32")
    found += list(site["network"]["outbound_addresses"])
    router = _terraform_addresses(inventory).get(router_address_name(site["name"]))
    if router:
        found.append(f"{router}/32")
    for i, text in enumerate(extra):
        if public_network(text) is None:
            raise InputError(CLI, f"--outbound-address[{i}]", f"'{text}' is not a public IPv4 address or network",
                             "give the address the site's nodes reach the internet from, e.g. 198.51.100.7/32")
        found.append(text if "/" in text else f"{text}/32")
    return list(dict.fromkeys(found))


# ------------------------------------------------------------------ offer

def _lent_nodes(plan: dict[str, Any], site: dict[str, Any], pools: list[str]) -> list[dict[str, Any]]:
    by_name = {p["name"]: p for p in site["pools"]}
    chosen = pools or [p["name"] for p in site["pools"] if p["role"] in LENDABLE and p["count"] > 0]
    out = []
    for i, name in enumerate(chosen):
        pool = by_name.get(name)
        if pool is None:
            raise InputError(CLI, f"--pool[{i}]", f"'{name}' is not a pool of site {site['name']}"
                             f"{suggest(name, list(by_name))}", f"use one of: {', '.join(by_name)}")
        if pool["role"] not in LENDABLE:
            raise InputError(CLI, f"--pool[{i}]", f"pool '{name}' has role {pool['role']}: its nodes run this "
                             "platform itself", "lend pools of role cpu, gpu, batch or tryme")
        nodes = {n["name"]: n for n in plan["nodes"]}
        out += [{"name": node, "role": pool["role"], "tags": nodes[node]["nomad"]["meta"].get("tags", "cpu")}
                for node in pool["nodes"]]
    if not out:
        raise InputError(CLI, "--pool", f"site {site['name']} has no node to lend", "name a pool with nodes")
    return out


def offer(inventory: Path, plan: dict[str, Any], site_name: str, borrower: str, namespaces: list[str],
          pools: list[str] | None = None, institution: str | None = None, outbound: list[str] | None = None,
          out: Path | None = None) -> Path:
    """Write the request (and store the nodes' keys); returns the request's path."""
    sites = {s["name"]: s for s in plan["sites"]}
    site = sites.get(site_name)
    if site is None:
        raise InputError(CLI, "--site", f"'{site_name}' is not a site of {inventory}{suggest(site_name, list(sites))}",
                         f"use one of: {', '.join(sites)}")
    if not LABEL.match(borrower):
        raise InputError(CLI, "--to", f"'{borrower}' is not a DNS label", "give the borrowing platform's name "
                         "(its ai4os_platform_name)")
    if not namespaces:
        raise InputError(CLI, "--namespaces", "no namespace offered", "name the borrower's VO namespaces the nodes "
                         "may serve, e.g. --namespaces ai4eosc")
    nodes = _lent_nodes(plan, site, list(pools or []))
    addresses = public_addresses(inventory, plan, site, [n["name"] for n in nodes], list(outbound or []))
    if not addresses:
        raise InputError(CLI, "--outbound-address", f"site {site_name} has no known public address: the borrower's "
                         "Nomad servers could admit none of its nodes (private networks are not routed between clouds)",
                         "provision the site first (its router's or floating addresses are read from Terraform and "
                         "hosts.yml), set network.outbound_addresses in sites.yml, or pass --outbound-address")
    private = [a for a in addresses if public_network(a) is None]
    if private:
        raise InputError(SITES_HINT, "network.outbound_addresses", f"'{private[0]}' is not a public address: no "
                         "other cloud can reach it", "give the router's external (public) address")
    keys: dict[str, str] = {}
    entries = []
    for node in nodes:
        key = bundle.new_key()
        keys[node["name"]] = bundle.key_pem(key)
        entries.append({"name": node["name"], "role": node["role"], "tags": node["tags"],
                        "csr": bundle.csr_pem(key, node["name"])})
    request = {
        "kind": bundle.REQUEST_KIND, "version": bundle.VERSION,
        "lender": institution or plan["platform"]["name"], "lender_platform": plan["platform"]["name"],
        "borrower": borrower, "site": site_name, "created": bundle.iso(bundle.now()),
        "namespaces": list(dict.fromkeys(namespaces)), "public_addresses": addresses, "nodes": entries,
    }
    write_keys(inventory, borrower, keys)
    bundle.write_doc(exchange_dir(inventory, borrower) / REQUEST_FILE, request)
    return bundle.write_doc(out, request) if out else exchange_dir(inventory, borrower) / REQUEST_FILE


# ------------------------------------------------------------------ join

def _bundle_error(path: Path, key: str, problem: str, fix: str) -> InputError:
    return InputError(str(path), key, problem, fix)


def check_bundle(inventory: Path, path: Path, ca_fingerprint: str, at: dt.datetime | None = None) -> dict[str, Any]:
    """Every check of a bundle against B's own request and keys; the bundle if it passes."""
    doc = bundle.read_doc(path, bundle.BUNDLE_KIND, "a join bundle")
    borrower = str(doc.get("platform", ""))
    if not LABEL.match(borrower):
        raise _bundle_error(path, "platform", f"'{borrower}' is not a platform name", "ask for the bundle again")
    request_file = exchange_dir(inventory, borrower) / REQUEST_FILE
    if not request_file.is_file():
        raise _bundle_error(path, "platform", f"this inventory made no request to platform '{borrower}' "
                            f"({request_file} is missing)", "join with the inventory that made the offer")
    request = bundle.read_doc(request_file, bundle.REQUEST_KIND, "a request")
    if doc.get("request_digest") != bundle.digest(request):
        raise _bundle_error(path, "request_digest", "the bundle answers another request than this inventory's "
                            f"last one to '{borrower}' ({request_file})", "ask the borrower to accept the request you "
                            "sent last, or send it again")
    ca_pem = str(doc.get("ca_cert", ""))
    try:
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
    except ValueError:
        raise _bundle_error(path, "ca_cert", "is not a PEM certificate", "ask for the bundle again") from None
    wanted = ca_fingerprint.lower().removeprefix("sha256:").replace(":", "")
    got = bundle.fingerprint(ca_pem)
    if got.removeprefix("sha256:") != wanted:
        raise _bundle_error(path, "ca_cert", f"the bundle is signed by another CA ({got}) than the one you expect "
                            f"(sha256:{wanted})", "check the fingerprint with the borrower's operator over a "
                            "channel you trust; never join a bundle of an unknown CA")
    if not bundle.signature_valid(doc, ca_pem):
        raise _bundle_error(path, "signature", "does not verify with the bundle's CA: the bundle was changed after "
                            "it was signed, or signed by another key", "ask the borrower for the bundle again")
    when = at or bundle.now()
    not_after = bundle.parse_iso(str(doc.get("not_after")))
    if not_after <= when:
        raise _bundle_error(path, "not_after", f"the bundle expired on {doc['not_after']}",
                            "ask the borrower to accept your request again (certificates are short-lived on purpose)")
    keys = read_keys(inventory, borrower)
    region = str(doc.get("region"))
    offered = {n["name"] for n in request["nodes"]}
    certs = {n.get("name"): n for n in doc.get("nodes") or []}
    if set(certs) != offered:
        raise _bundle_error(path, "nodes", f"certifies {sorted(certs)}, but the request lent {sorted(offered)}",
                            "ask the borrower to accept the request unchanged")
    for name, entry in certs.items():
        cert = x509.load_pem_x509_certificate(str(entry.get("certificate", "")).encode())
        key = serialization.load_pem_private_key(keys[name].encode(), password=None)
        problems = []
        if not bundle.signed_by(cert, ca):
            problems.append("not signed by the bundle's CA")
        if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
            problems.append("not for the key this inventory made for the node")
        if sorted(bundle.dns_names(cert)) != sorted(bundle.node_names(name, region)):
            problems.append(f"names {bundle.dns_names(cert)} instead of exactly {bundle.node_names(name, region)}")
        if cert.not_valid_after_utc <= when:
            problems.append(f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")
        if problems:
            raise _bundle_error(path, f"nodes[{name}].certificate", "; ".join(problems),
                                "ask the borrower for the bundle again; never use it as it is")
    scope = doc.get("scope") or {}
    wider = sorted(set(scope.get("namespaces") or []) - set(request["namespaces"]))
    if wider or not scope.get("namespaces"):
        raise _bundle_error(path, "scope.namespaces", f"serves {wider or 'no namespace'} beyond what was offered "
                            f"({request['namespaces']})", "ask the borrower to accept within the offered namespaces")
    if not doc.get("servers"):
        raise _bundle_error(path, "servers", "names no Nomad server", "ask the borrower for the bundle again")
    return doc


def join(inventory: Path, path: Path, ca_fingerprint: str) -> Path:
    doc = check_bundle(inventory, path, ca_fingerprint)
    return bundle.write_doc(exchange_dir(inventory, str(doc["platform"])) / JOINED_FILE, doc)


__all__ = ["offer", "join", "check_bundle", "read_keys", "exchange_dir"]
