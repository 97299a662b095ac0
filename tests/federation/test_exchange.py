"""Sharing resources between installations: B offers, A accepts, B joins; every certificate and
signature checked for real (the cryptography library and the OpenSSL command line), and every bad
input refused with exit 2, the fix, and nothing written."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ai4os_kit.cli import main
from ai4os_kit.federation import borrower as borrowing
from ai4os_kit.federation import bundle
from ai4os_kit.model import secrets
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

OUTBOUND = "198.51.100.30/32"


def _offer(lender: Path, capsys: pytest.CaptureFixture[str], namespaces: str = "ai4eosc,imagine",
           outbound: str = OUTBOUND) -> Path:
    assert main(["federation", "offer", str(lender), "--site", "b-lab", "--to", "demo", "--namespaces", namespaces,
                 "--outbound-address", outbound]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return lender / "federation" / "demo" / "request.yml"


def _accept(borrower: Path, request: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["federation", "accept", str(borrower), str(request), *args]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    return next(w for w in out.split() if w.startswith("sha256:"))


def _fail(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and "fix:" in err
    return err


def _snapshot(*dirs: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in dirs for p in sorted(d.rglob("*")) if p.is_file() and not p.is_symlink()}


def _secrets(inventory: Path) -> dict[str, Any]:
    return secrets.read_secrets(inventory, secrets.password_file(inventory, create=False)[0])


def _openssl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("the openssl command line is not installed (Debian package openssl)")
    return subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, check=False)


def test_offer_accept_join(borrower: Path, lender: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request_file = _offer(lender, capsys)
    request = bundle.read_doc(request_file, bundle.REQUEST_KIND, "a request")
    # The request: B's site, its cpu nodes with a CSR each (whose signature proves the key), B's public
    # address, the offered namespaces; no private key (those are vault-encrypted, 0600).
    assert [n["name"] for n in request["nodes"]] == ["b-lab-cpu-1", "b-lab-cpu-2"]
    assert request["public_addresses"] == [OUTBOUND] and request["namespaces"] == ["ai4eosc", "imagine"]
    assert "PRIVATE KEY" not in request_file.read_text()
    keys = lender / "federation" / "demo" / "keys.vault"
    assert keys.read_bytes().startswith(b"$ANSIBLE_VAULT;") and keys.stat().st_mode & 0o777 == 0o600
    for node in request["nodes"]:
        assert "verify OK" in (_openssl("req", "-verify", "-noout", stdin=node["csr"])).stderr + \
            _openssl("req", "-verify", "-noout", stdin=node["csr"]).stdout

    fingerprint = _accept(borrower, request_file, capsys, "--namespaces", "ai4eosc", "--days", "7")
    a_secrets = _secrets(borrower)
    assert fingerprint == bundle.fingerprint(a_secrets["ai4os_secret_ca_cert"])
    bundle_file = borrower / "federation" / "bundles" / "b-lab.yml"
    doc = bundle.read_doc(bundle_file, bundle.BUNDLE_KIND, "a bundle")
    # Nothing secret of A leaves A: no key, token or gossip key of secrets.yml is in the bundle.
    text = bundle_file.read_text()
    for name, value in a_secrets.items():
        if name != "ai4os_secret_ca_cert" and isinstance(value, str) and len(value) > 8:
            assert value not in text, f"{name} is in the bundle"
    assert "PRIVATE KEY" not in text
    # A's servers at their public addresses, A's CA, the scope A chose (no wider than offered).
    plan = build_plan(load_inventory(borrower))
    hosts = yaml.safe_load((borrower / "hosts.yml").read_text())["all"]["hosts"]
    assert doc["servers"] == [f"{hosts[s]['ai4os_node_public_address']}:4647" for s in plan["groups"]["nomad_servers"]]
    assert doc["scope"] == {"namespaces": ["ai4eosc"], "type": "batch"}
    assert doc["region"] == "ai4os" and doc["datacenter"] == "b-lab"
    assert bundle.signature_valid(doc, a_secrets["ai4os_secret_ca_cert"])
    # Each certificate: signed by A's CA (checked by OpenSSL), for that node's key only, client of A's
    # region, no other node's name, short-lived.
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(doc["ca_cert"])
    for entry in doc["nodes"]:
        cert_file = tmp_path / f"{entry['name']}.pem"
        cert_file.write_text(entry["certificate"])
        verified = _openssl("verify", "-CAfile", str(ca_file), "-purpose", "sslclient", str(cert_file))
        assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified.stdout + verified.stderr
        cert = x509.load_pem_x509_certificate(entry["certificate"].encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(["client.ai4os.nomad", entry["name"], "localhost"])
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        assert not any("server" in name for name in sans.get_values_for_type(x509.DNSName))
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usage) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=7, minutes=5)
        assert entry["meta"] == {"type": "batch", "tags": "cpu", "namespace": "ai4eosc", "domain": "b-lab",
                                 "status": "test", "lent_by": "beta", "lent_site": "b-lab",
                                 "lent_until": doc["not_after"]}
    # A's record: its plan opens the Nomad servers' RPC port to B's address, nothing else.
    rules = [(site, g["role"], r["port_name"]) for site, groups in plan["secgroups"].items() for g in groups
             for r in g["rules"] if r["remote_cidr"] == OUTBOUND]
    assert rules == [("ifca", "server", "nomad-rpc")]
    assert plan["topology"]["lent_sites"] == {"b-lab": "beta"}
    # B checks the bundle against its request, its keys and the CA fingerprint A told it, and keeps it.
    assert main(["federation", "join", str(lender), str(bundle_file), "--ca-fingerprint", fingerprint]) == 0
    assert (lender / "federation" / "demo" / "joined.yml").is_file()
    assert main(["federation", "status", str(borrower)]) == 0
    assert "b-lab: lent by beta, 2 node(s), namespaces ai4eosc, type batch" in capsys.readouterr().out


def test_a_bundle_signed_by_another_ca_is_refused(borrower: Path, lender: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fingerprint = _accept(borrower, _offer(lender, capsys), capsys)
    bundle_file = borrower / "federation" / "bundles" / "b-lab.yml"
    # An impostor platform C signs the same content with its own CA.
    impostor = tmp_path / "c"
    impostor.mkdir()
    secrets.ensure_secrets(impostor, "impostor")
    c_secrets = _secrets(impostor)
    doc = bundle.read_doc(bundle_file, bundle.BUNDLE_KIND, "a bundle")
    doc["ca_cert"] = c_secrets["ai4os_secret_ca_cert"]
    doc["signature"] = bundle.sign(doc, c_secrets["ai4os_secret_ca_key"])
    forged = bundle.write_doc(tmp_path / "forged.yml", doc)
    before = _snapshot(lender)
    err = _fail(capsys, "federation", "join", str(lender), str(forged), "--ca-fingerprint", fingerprint)
    assert "ca_cert: the bundle is signed by another CA" in err and "never join a bundle of an unknown CA" in err
    # Keeping A's CA certificate but signing with another key: the signature does not verify.
    doc["ca_cert"] = bundle.read_doc(bundle_file, bundle.BUNDLE_KIND, "a bundle")["ca_cert"]
    bundle.write_doc(forged, doc)
    err = _fail(capsys, "federation", "join", str(lender), str(forged), "--ca-fingerprint", fingerprint)
    assert "signature: does not verify with the bundle's CA" in err
    assert _snapshot(lender) == before


def test_a_changed_bundle_is_refused(borrower: Path, lender: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    fingerprint = _accept(borrower, _offer(lender, capsys), capsys, "--namespaces", "ai4eosc")
    doc = bundle.read_doc(borrower / "federation" / "bundles" / "b-lab.yml", bundle.BUNDLE_KIND, "a bundle")
    doc["scope"]["namespaces"].append("imagine")  # widened in transit
    changed = bundle.write_doc(tmp_path / "changed.yml", doc)
    err = _fail(capsys, "federation", "join", str(lender), str(changed), "--ca-fingerprint", fingerprint)
    assert "signature: does not verify" in err


def test_an_expired_bundle_is_refused(borrower: Path, lender: Path, capsys: pytest.CaptureFixture[str]) -> None:
    request = _offer(lender, capsys)
    inv = load_inventory(borrower)
    long_ago = bundle.now() - dt.timedelta(days=40)
    written, _, fingerprint = borrowing.accept(inv, build_plan(inv), request, days=30, at=long_ago)
    err = _fail(capsys, "federation", "join", str(lender), str(written), "--ca-fingerprint", fingerprint)
    assert "not_after: the bundle expired on" in err and "accept your request again" in err
    assert not (lender / "federation" / "demo" / "joined.yml").exists()


def test_a_scope_naming_a_namespace_the_borrower_lacks_is_refused(borrower: Path, lender: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    request = _offer(lender, capsys, namespaces="ai4eosc,astro")
    before = _snapshot(borrower)
    err = _fail(capsys, "federation", "accept", str(borrower), str(request))
    assert "namespaces: offers namespace 'astro', which this platform does not have" in err
    assert "accept with --namespaces naming only this platform's namespaces" in err
    err = _fail(capsys, "federation", "accept", str(borrower), str(request), "--namespaces", "ai4eosc,imagin")
    assert "--namespaces[1]: 'imagin' is not a namespace of this platform (did you mean 'imagine'?)" in err
    request = _offer(lender, capsys, namespaces="ai4eosc")
    err = _fail(capsys, "federation", "accept", str(borrower), str(request), "--namespaces", "imagine")
    assert "'imagine' was not offered by the lender" in err
    assert _snapshot(borrower) == before, "nothing is written"


def test_a_lender_without_public_reachability_is_refused(borrower: Path, lender: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(lender)
    err = _fail(capsys, "federation", "offer", str(lender), "--site", "b-lab", "--to", "demo", "--namespaces", "ai4eosc")
    assert "site b-lab has no known public address" in err and "private networks are not routed" in err
    err = _fail(capsys, "federation", "offer", str(lender), "--site", "b-lab", "--to", "demo", "--namespaces",
                "ai4eosc", "--outbound-address", "10.30.0.1")
    assert "'10.30.0.1' is not a public IPv4 address" in err
    assert _snapshot(lender) == before
    # A request edited by hand to name a private address: the borrower refuses it.
    request = yaml.safe_load(_offer(lender, capsys).read_text())
    request["public_addresses"] = ["192.168.1.7/32"]
    edited = tmp_path / "edited.yml"
    edited.write_text(yaml.safe_dump(request))
    err = _fail(capsys, "federation", "accept", str(borrower), str(edited))
    assert "public_addresses: '192.168.1.7/32' is not a public address" in err


def test_a_borrower_whose_servers_have_no_public_address_is_refused(borrower: Path, lender: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    request = _offer(lender, capsys)
    (borrower / "hosts.yml").unlink()  # never provisioned: no public address known
    err = _fail(capsys, "federation", "accept", str(borrower), str(request))
    assert "the Nomad servers have no public address in hosts.yml" in err
    assert not (borrower / "federation").exists()


def test_a_request_whose_csr_does_not_prove_its_key_is_refused(borrower: Path, lender: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    request = yaml.safe_load(_offer(lender, capsys).read_text())
    csr = request["nodes"][0]["csr"]
    body = csr.splitlines()
    body[3] = body[3][:10] + ("A" if body[3][10] != "A" else "B") + body[3][11:]  # one byte of the signed data
    request["nodes"][0]["csr"] = "\n".join(body) + "\n"
    edited = tmp_path / "edited.yml"
    edited.write_text(yaml.safe_dump(request))
    err = _fail(capsys, "federation", "accept", str(borrower), str(edited))
    assert "nodes[0].csr: is not a CSR whose signature proves the key" in err


def test_a_lent_site_named_like_a_site_of_the_borrower_is_refused(borrower: Path, lender: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    request = yaml.safe_load(_offer(lender, capsys).read_text())
    request["site"] = "ifca"
    for node in request["nodes"]:
        node["name"] = node["name"].replace("b-lab", "ifca")
    edited = tmp_path / "edited.yml"
    edited.write_text(yaml.safe_dump(request))
    err = _fail(capsys, "federation", "accept", str(borrower), str(edited))
    assert "site: 'ifca' is a site of this platform too" in err


def test_the_lent_nodes_join_the_borrowers_region(borrower: Path, lender: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """After `join`, the lender's plan takes the nodes out of its own Nomad region (group federation_lent)
    and the nomad role, given the bundle as playbooks/federation-join.yml gives it, renders a client of
    the borrower's region: its servers, region, datacenter, the scope's meta, no Consul integration."""
    import json
    from support import hcl_config
    from support.cluster_helpers import ROOT, run_playbook
    from support.cluster_render import test_secrets

    fingerprint = _accept(borrower, _offer(lender, capsys), capsys, "--namespaces", "ai4eosc")
    bundle_file = borrower / "federation" / "bundles" / "b-lab.yml"
    assert main(["federation", "join", str(lender), str(bundle_file), "--ca-fingerprint", fingerprint]) == 0
    capsys.readouterr()
    plan = build_plan(load_inventory(lender))
    doc = bundle.read_doc(bundle_file, bundle.BUNDLE_KIND, "a bundle")
    assert plan["groups"]["federation_lent"] == ["b-lab-cpu-1", "b-lab-cpu-2"]
    assert not {"b-lab-cpu-1", "b-lab-cpu-2"} & set(plan["groups"]["nomad"] + plan["groups"]["nomad_clients"])
    nodes = {n["name"]: n for n in plan["nodes"]}
    assert nodes["b-lab-cpu-1"]["nomad"]["meta"] == doc["nodes"][0]["meta"]
    assert nodes["b-lab-cpu-1"]["nomad"]["lent_to"] == "demo"
    assert "consul" in nodes["b-lab-cpu-1"]["groups"], "the node keeps the lender's Consul agent"
    hosts = yaml.safe_load((lender / "hosts.yml").read_text())["all"]
    assert set(hosts["children"]["federation_lent"]["hosts"]) == {"b-lab-cpu-1", "b-lab-cpu-2"}
    # The role's templates with the values playbooks/federation-join.yml passes (extra vars here).
    entry = doc["nodes"][0]
    extra = {"nomad_region": doc["region"], "nomad_datacenter": doc["datacenter"], "nomad_server": False,
             "nomad_client": True, "nomad_client_servers": doc["servers"], "nomad_node_meta": entry["meta"],
             "nomad_consul_integration": False, "render_out": str(tmp_path / "out.json"),
             **yaml.safe_load((lender / "platform.yml").read_text()), **test_secrets()}
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(extra))
    shutil.copy(lender / "hosts.yml", tmp_path / "hosts.yml")  # without the inventory's (vaulted) group_vars
    proc = run_playbook(tmp_path, ROOT / "tests" / "cluster" / "render_config.yml", "--limit", entry["name"],
                        "-e", f"@{tmp_path / 'vars.yml'}", inventory=str(tmp_path / "hosts.yml"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())[entry["name"]]
    nomad = hcl_config.loads(out["nomad.hcl"])
    assert nomad["region"] == "ai4os" and nomad["datacenter"] == "b-lab"
    assert "consul" not in nomad, "no Consul integration on a lent node"
    client = hcl_config.loads(out["client.hcl"])
    assert hcl_config.first(client, "client.server_join.retry_join") == doc["servers"]
    assert hcl_config.first(client, "client.meta") == entry["meta"]
    assert hcl_config.unknown_keys(nomad, hcl_config.load_keys("nomad")) == []
