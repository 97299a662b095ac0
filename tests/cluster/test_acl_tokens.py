"""The roles' ACL step issues, keeps, corrects, re-issues and deletes the kit's tokens as
designed, over mutual TLS, and prints no secret even at -vvv.

The roles' own tasks (roles/nomad/tasks/acl.yml, roles/consul/tasks/acl.yml) run with
ansible-playbook against acl_api_double.py, a TEST DOUBLE of the Nomad/Consul ACL API (the
binaries cannot be had here) that requires a client certificate as the agents do.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from acl_api_double import AclApiDouble
from support.cluster_helpers import ROOT, run_playbook
from support.cluster_render import test_secrets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ai4os_kit.model.secrets import CONSUL_TOKENS, NOMAD_TOKENS

VOS = [{"name": "vo.ai4eosc.eu", "namespace": "ai4eosc", "domain": "deployments.example.org"},
       {"name": "vo.imagine-ai.eu", "namespace": "imagine", "domain": "imagine.example.org"}]


def _pki(directory: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate (clientAuth)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acl test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, usage, sans in (("server", ExtendedKeyUsageOID.SERVER_AUTH, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                              ("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("client.tb.nomad")])):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(ca_key, hashes.SHA256()))
        files[name] = directory / f"{name}.pem"
        files[f"{name}_key"] = directory / f"{name}-key.pem"
        files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return files


@pytest.fixture()
def pki(tmp_path: Path) -> dict[str, Path]:
    return _pki(tmp_path)


@pytest.fixture()
def double(request: pytest.FixtureRequest, pki: dict[str, Path]) -> Iterator[AclApiDouble]:
    api = AclApiDouble(request.param, pki["server"], pki["server_key"], pki["ca"])
    yield api
    api.close()


def _run(tmp_path: Path, role: str, api: AclApiDouble, pki: dict[str, Path], secrets: dict[str, str]) -> tuple[int, str]:
    """Run the role's ACL step at -vvv; (changed count, full output)."""
    variables = {"acl_role": role, "ai4os_vos": VOS, **secrets, f"{role}_api": api.api, f"{role}_api_ca": str(pki["ca"]),
                 f"{role}_api_client_cert": str(pki["client"]), f"{role}_api_client_key": str(pki["client_key"])}
    extra = tmp_path / "acl-vars.yml"
    extra.write_text(yaml.safe_dump(variables))
    proc = run_playbook(tmp_path, ROOT / "tests" / "cluster" / "acl_play.yml", "-vvv", "-e", f"@{extra}")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    changed = int(re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", output).group(1))
    return changed, output


def _secret_values(secrets: dict[str, str]) -> list[str]:
    return [v for k, v in secrets.items() if k.startswith(("ai4os_secret_nomad_token_", "ai4os_secret_consul_token_"))
            or k.endswith("_bootstrap_token")]


@pytest.mark.parametrize("double", ["nomad"], indirect=True)
def test_nomad_tokens_namespaces_and_policies(tmp_path: Path, double: AclApiDouble, pki: dict[str, Path]) -> None:
    secrets = test_secrets()
    changed, first = _run(tmp_path, "nomad", double, pki, secrets)
    assert changed > 0 and double.bootstrapped
    # every kit token exists with the AccessorID and SecretID of secrets.yml and its policy
    kit = {t["Name"]: t for t in double.tokens.values() if t["Name"].startswith("ai4os-")}
    assert sorted(kit) == sorted(f"ai4os-{name}" for name in NOMAD_TOKENS)
    for name in NOMAD_TOKENS:
        token = kit[f"ai4os-{name}"]
        assert token["AccessorID"] == secrets[f"ai4os_secret_nomad_accessor_{name}"]
        assert token["SecretID"] == secrets[f"ai4os_secret_nomad_token_{name}"]
        assert token["Type"] == "client" and token["Global"] is True
    assert kit["ai4os-papi"]["Policies"] == ["ai4os-papi"]
    assert kit["ai4os-node_admission"]["Policies"] == ["ai4os-node-admission"]
    # VO namespaces limited to PAPI's drivers and network mode; the platform namespace exists
    for vo in VOS:
        caps = double.namespaces[vo["namespace"]]["Capabilities"]
        assert caps["EnabledTaskDrivers"] == ["docker", "raw_exec"] and caps["EnabledNetworkModes"] == ["host"]
    assert "platform" in double.namespaces
    assert 'namespace "platform"' not in double.policies["ai4os-papi"]["Rules"]

    # a second run changes nothing
    writes = len(double.writes())
    changed, second = _run(tmp_path, "nomad", double, pki, secrets)
    assert changed == 0 and len(double.writes()) == writes

    # drift, a token of an older kit version, and a rotation of one token
    kit["ai4os-papi"]["Policies"] = ["ai4os-operators"]
    stale = str(uuid.uuid4())
    double.tokens[stale] = {"AccessorID": stale, "SecretID": str(uuid.uuid4()), "Name": "ai4os-operators", "Type": "client",
                            "Policies": ["ai4os-operators"], "Roles": [], "Global": True}
    old_admission = secrets["ai4os_secret_nomad_accessor_node_admission"]
    secrets["ai4os_secret_nomad_token_node_admission"] = str(uuid.uuid4())
    secrets["ai4os_secret_nomad_accessor_node_admission"] = str(uuid.uuid4())
    untouched = {name: dict(double.tokens[secrets[f"ai4os_secret_nomad_accessor_{name}"]]) for name in ("accounting", "prometheus")}
    changed, third = _run(tmp_path, "nomad", double, pki, secrets)
    assert changed > 0
    assert stale not in double.tokens and old_admission not in double.tokens
    rotated = double.tokens[secrets["ai4os_secret_nomad_accessor_node_admission"]]
    assert rotated["SecretID"] == secrets["ai4os_secret_nomad_token_node_admission"]
    assert double.tokens[secrets["ai4os_secret_nomad_accessor_papi"]]["Policies"] == ["ai4os-papi"]
    for name, token in untouched.items():
        assert double.tokens[token["AccessorID"]] == token, name

    for output in (first, second, third):
        for value in _secret_values(secrets) + [kit["ai4os-papi"]["SecretID"]]:
            assert value not in output, "a secret reached the -vvv output"


@pytest.mark.parametrize("double", ["consul"], indirect=True)
def test_consul_tokens_and_policies(tmp_path: Path, double: AclApiDouble, pki: dict[str, Path]) -> None:
    secrets = test_secrets()
    changed, first = _run(tmp_path, "consul", double, pki, secrets)
    assert changed > 0 and double.bootstrapped
    kit = {t["Description"]: t for t in double.tokens.values() if t["Description"].startswith("ai4os-kit ")}
    assert sorted(kit) == sorted(f"ai4os-kit {name}" for name in CONSUL_TOKENS)
    for name in CONSUL_TOKENS:
        assert kit[f"ai4os-kit {name}"]["SecretID"] == secrets[f"ai4os_secret_consul_token_{name}"]
    assert [p["Name"] for p in kit["ai4os-kit dns"]["Policies"]] == ["ai4os-dns"]
    client_rules = double.policies["ai4os-nomad-client"]["Rules"]
    assert 'service "nomad" { policy = "read" }' in client_rules and 'service "consul" { policy = "read" }' in client_rules
    assert "acl" not in double.policies["ai4os-nomad-server"]["Rules"]  # no service mesh, no ACL rights

    changed, second = _run(tmp_path, "consul", double, pki, secrets)
    assert changed == 0

    # a derived token and the policy of an older kit version, drift, and a rotation
    stale = str(uuid.uuid4())
    double.tokens[stale] = {"AccessorID": stale, "SecretID": str(uuid.uuid4()), "Description": "ai4os traefik",
                            "Policies": [], "Local": False, "Roles": [], "ServiceIdentities": [], "NodeIdentities": []}
    double.policies["ai4os-nomad"] = {"ID": str(uuid.uuid4()), "Name": "ai4os-nomad", "Description": "", "Rules": 'acl = "write"'}
    kit["ai4os-kit traefik"]["Policies"] = [{"ID": double.policies["ai4os-operators"]["ID"], "Name": "ai4os-operators"}]
    old_dns = kit["ai4os-kit dns"]["AccessorID"]
    secrets["ai4os_secret_consul_token_dns"] = str(uuid.uuid4())
    changed, third = _run(tmp_path, "consul", double, pki, secrets)
    assert changed > 0
    assert stale not in double.tokens and old_dns not in double.tokens and "ai4os-nomad" not in double.policies
    by_description = {t["Description"]: t for t in double.tokens.values()}
    assert by_description["ai4os-kit dns"]["SecretID"] == secrets["ai4os_secret_consul_token_dns"]
    assert [p["Name"] for p in by_description["ai4os-kit traefik"]["Policies"]] == ["ai4os-traefik"]
    assert by_description["ai4os-kit traefik"]["AccessorID"] == kit["ai4os-kit traefik"]["AccessorID"]

    for output in (first, second, third):
        for value in _secret_values(secrets):
            assert value not in output, "a secret reached the -vvv output"


@pytest.mark.parametrize("double", ["nomad"], indirect=True)
def test_the_api_refuses_a_caller_without_a_client_certificate(double: AclApiDouble, pki: dict[str, Path]) -> None:
    """The double really requires mutual TLS, so the runs above prove the role presents its certificate."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"{double.api}/acl/token/self", context=context, timeout=5)
    context.load_cert_chain(pki["client"], pki["client_key"])
    with pytest.raises(urllib.error.HTTPError) as refused:  # past TLS: no token, ACL not found
        urllib.request.urlopen(f"{double.api}/acl/token/self", context=context, timeout=5)
    assert refused.value.code == 403
