"""The documents two platform installations exchange, and the cryptography behind them.

- a **request** (``offer``, on the lender B's controller): B's site, the lent nodes
  with one certificate signing request (CSR) each, B's public addresses and the
  namespaces offered. The private keys of the CSRs stay with B (ansible-vault).
- a **bundle** (``accept``, on the borrower A's controller): A's CA certificate, the
  public addresses of A's Nomad servers, the scope (namespaces, node meta), one
  certificate per lent node signed by A's CA for exactly that node (SANs: the
  node's name and ``client.<region>.nomad``; client and server authentication, as
  Nomad agents use them; valid for a few days), the digest of the request it
  answers, and a signature by A's CA key over all of it.

Both are YAML, for an operator to read before sending. Nothing secret is in
either: keys never leave the side that made them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ai4os_kit.errors import InputError
from ai4os_kit.yamlio import load_yaml

REQUEST_KIND = "ai4os_federation_request"
BUNDLE_KIND = "ai4os_federation_bundle"
VERSION = 1
MAX_DAYS = 90


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a signature covers: the document without its signature, as sorted compact JSON."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digest(doc: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()


def fingerprint(cert_pem: str) -> str:
    """sha256:<hex> of the certificate's DER encoding (what `openssl x509 -fingerprint -sha256` shows)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


# ------------------------------------------------------------------ keys and CSRs

def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def csr_pem(key: ec.EllipticCurvePrivateKey, node: str) -> str:
    """A CSR naming the node; A decides the certificate's names itself and uses it for the key."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(node)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def load_csr(text: str) -> x509.CertificateSigningRequest | None:
    """The CSR if it parses and its signature proves the requester holds the key, else None."""
    try:
        csr = x509.load_pem_x509_csr(text.encode())
        return csr if csr.is_signature_valid else None
    except (ValueError, TypeError):  # not a CSR, or a public key that does not parse
        return None


# ------------------------------------------------------------------ certificates

LOOPBACK = "127.0.0.1"


def node_names(node: str, region: str) -> list[str]:
    """The DNS names a lent node's Nomad certificate carries (plus the IP 127.0.0.1): what a client of
    the region needs (Nomad checks client.<region>.nomad), its own name, nothing of another node."""
    return [f"client.{region}.nomad", node, "localhost"]


def issue(csr: x509.CertificateSigningRequest, node: str, region: str, ca_key_pem: str, ca_cert_pem: str,
          not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    """A's certificate for one lent node: its key (from the CSR), names chosen by A, short-lived."""
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in node_names(node, region)]
    sans.append(x509.IPAddress(ipaddress.ip_address(LOOPBACK)))
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"client.{region}.nomad")]))
            .issuer_name(ca_cert.subject).public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before - dt.timedelta(minutes=5)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """``cert``'s signature verifies with ``ca``'s public key (and names it as issuer)."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ext.value.get_values_for_type(x509.DNSName)


# ------------------------------------------------------------------ document signatures

def sign(doc: dict[str, Any], ca_key_pem: str) -> str:
    key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    data = canonical(doc)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        from cryptography.hazmat.primitives.asymmetric import padding

        raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise TypeError(f"unsupported CA key type {type(key).__name__}")
    return base64.b64encode(raw).decode()


def signature_valid(doc: dict[str, Any], ca_cert_pem: str) -> bool:
    public = x509.load_pem_x509_certificate(ca_cert_pem.encode()).public_key()
    try:
        raw = base64.b64decode(str(doc.get("signature", "")), validate=True)
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(raw, canonical(doc), ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, rsa.RSAPublicKey):
            from cryptography.hazmat.primitives.asymmetric import padding

            public.verify(raw, canonical(doc), padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


# ------------------------------------------------------------------ files

HEADERS = {
    REQUEST_KIND: "# A request to lend nodes to another AI4OS platform (`ai4os-kit federation offer`).\n"
                  "# Review it, then send it to the borrowing platform's operator. It holds no secret:\n"
                  "# the nodes' private keys stay in this inventory (federation/<platform>/keys.vault).\n",
    BUNDLE_KIND: "# A join bundle (`ai4os-kit federation accept`): the borrowing platform's CA, server\n"
                 "# addresses, the scope and one certificate per lent node, signed by that CA. Review it,\n"
                 "# then send it back to the lender, who applies it with `ai4os-kit federation join`.\n",
}


def write_doc(path: Path, doc: dict[str, Any]) -> Path:
    """Write a request or bundle as YAML (literal blocks for the PEM texts), atomically."""
    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    _Dumper.add_representer(str, _str)
    text = "---\n" + HEADERS[doc["kind"]] + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1 << 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def read_doc(path: Path, kind: str, what: str) -> dict[str, Any]:
    """A request or bundle file, its kind and version checked (InputError otherwise)."""
    data, _ = load_yaml(Path(path))
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise InputError(str(path), "kind", f"is not {what} (kind: {kind})",
                         f"give the file `ai4os-kit federation {'offer' if kind == REQUEST_KIND else 'accept'}` wrote")
    if data.get("version") != VERSION:
        raise InputError(str(path), "version", f"version {data.get('version')!r} is not one this kit reads ({VERSION})",
                         "produce it again with this version of ai4os-kit")
    return data


__all__ = ["REQUEST_KIND", "BUNDLE_KIND", "canonical", "digest", "fingerprint", "issue", "sign", "signature_valid",
           "read_doc", "write_doc", "load_csr", "signed_by", "dns_names"]
