"""Testinfra checks shared by the consul, nomad and cluster scenarios.

Everything up to the binary install is checked on every node; checks that need
a running agent skip with the "binaries not available" reason when the release
could not be fetched (no registry carries Nomad/Consul on the test machines).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests"))  # molecule's verifier runs outside the suite's pytest configuration

from support import hcl_config  # noqa: E402

CA_FILE = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "pki" / "ca.crt"


def require_binary(host: Any, name: str, version: str) -> None:
    """Skip (with the reason the roles print) when the agent binary is not installed."""
    if not host.file(f"/usr/local/bin/{name}").exists:
        pytest.skip(
            f"binaries not available: {name} {version} could not be fetched (no registry carries it here; "
            "set AI4OS_ARTIFACTS_URL to a mirror or the official release location to run this check)"
        )


def hcl(host: Any, path: str) -> dict[str, Any]:
    """A rendered HCL file of the node, parsed."""
    file = host.file(path)
    assert file.exists, path
    return hcl_config.loads(file.content_string)


def assert_accepted_keys(host: Any, path: str, agent: str) -> dict[str, Any]:
    config = hcl(host, path)
    assert hcl_config.unknown_keys(config, hcl_config.load_keys(agent)) == [], path
    return config


def assert_node_certificate(host: Any, directory: str, basename: str, common_name: str, group: str,
                            service_names: tuple[str, ...] = ()) -> x509.Certificate:
    """The node certificate: signed by the platform CA, right names (the service names platform
    clients call included), usable as server and client certificate (mutual TLS), key on the
    node only and matching."""
    ca = x509.load_pem_x509_certificate(CA_FILE.read_bytes())
    assert host.file(f"{directory}/ca.pem").content_string.strip() == CA_FILE.read_text().strip()
    cert_file = host.file(f"{directory}/{basename}.pem")
    key_file = host.file(f"{directory}/{basename}-key.pem")
    assert key_file.user == "root" and key_file.group == group and key_file.mode == 0o640
    cert = x509.load_pem_x509_certificate(cert_file.content_string.encode())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == common_name
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = sans.get_values_for_type(x509.DNSName)
    addresses = [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
    assert common_name in names and "localhost" in names
    assert set(service_names) <= set(names), f"{basename}.pem lacks {sorted(set(service_names) - set(names))}"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert "127.0.0.1" in addresses
    node_ip = host.interface.default().addresses[0]
    assert str(ipaddress.ip_address(node_ip)) in addresses
    key = serialization.load_pem_private_key(key_file.content_string.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    return cert


def assert_hardened_unit(host: Any, unit: str, max_exposure: float) -> None:
    """The unit is loaded by systemd and its exposure score is at most max_exposure."""
    result = host.run(f"systemd-analyze security --no-pager {unit}")
    assert result.rc == 0, result.stderr
    last = [line for line in result.stdout.splitlines() if "Overall exposure level" in line][0]
    score = float(last.split(":")[1].split()[0])
    assert score <= max_exposure, last
