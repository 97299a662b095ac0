"""A real OpenID provider (npm oidc-provider, tests/oidc/op/op.mjs) for the OIDC tests.

Started per test session over HTTPS with a throw-away CA. `.ci/setup.d/30-oidc.sh`
installs Node.js and the provider; in CI (CI=true) a missing provider is a failure,
locally the tests skip and say why.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests

from support.ci import unavailable

OP_DIR = Path(__file__).resolve().parents[1] / "oidc" / "op"
REDIRECT = "https://client.test/callback"
PAPI = "ai4os-papi"
RESOURCE_SERVER = "keystone"

ACCOUNTS: dict[str, dict[str, Any]] = {
    # EGI Check-in-like members
    "alice": {"email": "alice@example.org", "name": "Alice",
              "eduperson_entitlement": ["urn:mace:egi.eu:group:vo.ai4eosc.eu:role=member#aai.egi.eu",
                                        "urn:mace:egi.eu:group:vo.ai4eosc.eu:role=platform-admin#aai.egi.eu"]},
    "bob": {"email": "bob@example.org", "name": "Bob",
            "eduperson_entitlement": ["urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu"]},
    # Keycloak-like realm roles
    "carol": {"email": "carol@example.org", "name": "Carol",
              "realm_access": {"roles": ["access:vo.imagine-ai.eu:user", "offline_access"]}},
    "dave": {"email": "dave@example.org", "name": "Dave", "realm_access": {"roles": ["offline_access"]}},
}

CLIENTS = [
    {"client_id": PAPI, "client_secret": "papi-secret", "redirect_uris": [REDIRECT]},
    {"client_id": "some-other-app", "client_secret": "other-secret", "redirect_uris": [REDIRECT]},
    {"client_id": "short-lived", "client_secret": "short-secret", "redirect_uris": [REDIRECT], "id_token_ttl": 1},
    # a resource server: introspects access tokens, gets none itself (Keystone's mod_auth_openidc)
    {"client_id": RESOURCE_SERVER, "client_secret": "keystone-secret", "redirect_uris": [], "grant_types": [],
     "response_types": []},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1/localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ai4os-kit test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, cert_pem, key_pem = tmp / "ca.pem", tmp / "op.pem", tmp / "op.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


@dataclass
class OP:
    """A running provider."""

    issuer: str
    ca_file: Path
    process: subprocess.Popen[bytes]

    def token(self, account: str, client_id: str = PAPI, scope: str = "openid email profile eduperson_entitlement roles",
              kind: str = "id_token") -> str:
        """A token (``kind``: id_token or access_token) for ``account`` through the real
        authorization code flow (with PKCE)."""
        secret = next(c["client_secret"] for c in CLIENTS if c["client_id"] == client_id)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        session = requests.Session()
        session.trust_env = False   # no proxy, no CA bundle from the environment
        session.verify = str(self.ca_file)
        url = f"{self.issuer}/auth?" + urlencode({
            "client_id": client_id, "response_type": "code", "scope": scope, "redirect_uri": REDIRECT,
            "login_hint": account, "state": secrets.token_hex(8), "nonce": secrets.token_hex(8),
            "code_challenge": challenge, "code_challenge_method": "S256"})
        for _ in range(10):
            resp = session.get(url, allow_redirects=False, timeout=10)
            location = resp.headers.get("location")
            if resp.status_code not in (302, 303) or not location:
                raise AssertionError(f"authorization flow stopped at {url}: {resp.status_code} {resp.text[:300]}")
            url = location if location.startswith("http") else self.issuer + location
            if url.startswith(REDIRECT):
                break
        query = parse_qs(urlparse(url).query)
        if "code" not in query:
            raise AssertionError(f"no code in the redirect: {url}")
        resp = session.post(f"{self.issuer}/token", data={
            "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT,
            "code_verifier": verifier}, auth=(client_id, secret), timeout=10)
        resp.raise_for_status()
        return str(resp.json()[kind])


def _node_ready() -> str | None:
    if not shutil.which("node"):
        return "node is not installed (.ci/setup.d/30-oidc.sh installs it)"
    if not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
        return "oidc-provider is not installed in tests/oidc/op (run .ci/setup.d/30-oidc.sh)"
    return None


def _start(tmp: Path, ca: Path, cert: Path, key: Path) -> OP:
    port = _free_port()
    issuer = f"https://127.0.0.1:{port}"
    (tmp / "accounts.json").write_text(json.dumps(ACCOUNTS))
    (tmp / "clients.json").write_text(json.dumps(CLIENTS))
    env = dict(os.environ, OP_ISSUER=issuer, OP_PORT=str(port), OP_CERT=str(cert), OP_KEY=str(key),
               OP_ACCOUNTS=str(tmp / "accounts.json"), OP_CLIENTS=str(tmp / "clients.json"))
    log = open(tmp / f"op-{port}.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(["node", str(OP_DIR / "op.mjs")], cwd=OP_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the OpenID provider exited: {(tmp / f'op-{port}.log').read_text()}")
        try:
            urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", context=ctx, timeout=2)
            return OP(issuer=issuer, ca_file=ca, process=proc)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the OpenID provider did not answer within 30 s")


def require_node() -> None:
    """Node.js and oidc-provider installed, or stop the test (fail in CI, skip elsewhere)."""
    missing = _node_ready()
    if missing:
        unavailable(f"OpenID provider unavailable: {missing}")


def start_providers(tmp: Path, count: int = 1) -> list[OP]:
    """``count`` providers over HTTPS, their certificates from one fresh CA under ``tmp``; stop them after use."""
    require_node()
    ca, cert, key = _make_ca(tmp)
    return [_start(tmp, ca, cert, key) for _ in range(count)]


def stop(*ops: OP) -> None:
    for op in ops:
        op.process.terminate()
        op.process.wait(timeout=10)


@pytest.fixture(scope="session")
def op_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OP, OP]]:
    """Two independent providers: the platform's issuer and a foreign one."""
    first, second = start_providers(tmp_path_factory.mktemp("op"), 2)
    yield first, second
    stop(first, second)


@pytest.fixture(scope="session")
def op(op_pair: tuple[OP, OP]) -> OP:
    return op_pair[0]
