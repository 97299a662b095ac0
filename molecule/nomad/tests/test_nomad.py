"""Role nomad on the test-bed: what is in place without the binary, and, with it, the agents."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "molecule" / "cluster" / "shared"))

import checks  # noqa: E402

first = checks.hcl_config.first


def _is_server(host) -> bool:
    return host.backend.get_hostname().endswith("-s1")


def test_directories(host):
    group = "nomad" if _is_server(host) else "root"
    for path in ("/etc/nomad.d", "/etc/nomad.d/tls"):
        item = host.file(path)
        assert (item.user, item.group, item.mode) == ("root", group, 0o750)
    assert host.file("/opt/nomad/data").is_directory and host.file("/opt/nomad/plugins").is_directory


def test_node_certificate(host):
    kind = "server" if _is_server(host) else "client"
    group = "nomad" if _is_server(host) else "root"
    # a server's certificate also names the Consul service PAPI calls (nomad.service.consul)
    names = ("nomad.service.consul",) if _is_server(host) else ()
    checks.assert_node_certificate(host, "/etc/nomad.d/tls", "nomad", f"{kind}.tb.nomad", group, service_names=names)
    if not _is_server(host):  # a client must not pass for a server of the nomad service
        x509 = checks.x509
        cert = x509.load_pem_x509_certificate(host.file("/etc/nomad.d/tls/nomad.pem").content_string.encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "nomad.service.consul" not in sans.get_values_for_type(x509.DNSName)


def test_every_file_is_accepted_by_nomad(host):
    common = checks.assert_accepted_keys(host, "/etc/nomad.d/nomad.hcl", "nomad")
    assert common["region"] == "tb" and common["datacenter"] == "tb"
    assert first(common, "tls.http") is True and first(common, "tls.rpc") is True
    assert first(common, "acl.enabled") is True
    assert first(common, "tls.verify_https_client") is True  # mutual TLS on the HTTP API
    # Nomad's Consul token is the kit's scoped token of servers / clients (shared/vars.yml)
    token = "7e57bed0-0000-4000-8000-00000000c0a4" if _is_server(host) else "7e57bed0-0000-4000-8000-00000000c0a5"
    assert first(common, "consul.token") == token
    assert first(common, "consul.cert_file") == "/etc/nomad.d/tls/nomad.pem"
    if _is_server(host):
        server = checks.assert_accepted_keys(host, "/etc/nomad.d/server.hcl", "nomad")
        assert first(server, "server.bootstrap_expect") == 1
        assert first(server, "server.encrypt") == "dGVzdGJlZC1vbmx5IG5vbWFkIGdvc3NpcCBrZXkhISE="
        assert not host.file("/etc/nomad.d/client.hcl").exists
    else:
        checks.assert_accepted_keys(host, "/etc/nomad.d/client.hcl", "nomad")
        assert not host.file("/etc/nomad.d/server.hcl").exists


def test_client_fulfils_the_cluster_contract(host):
    if _is_server(host):
        return
    client = checks.hcl(host, "/etc/nomad.d/client.hcl")
    assert first(client, "client.meta") == {
        "type": "compute", "tags": "cpu", "namespace": "ai4eosc", "domain": "tb", "status": "test"
    }
    plugins = checks.hcl_config.labelled(client, "plugin")
    # a cpu (compute) node runs PAPI's privileged storage sidecars, /nomad-storage binds and
    # raw_exec clean-up tasks (tests/platform/test_client_confinement.py): exactly those allowed
    assert first(plugins["docker"], "config.allow_privileged") is True
    assert first(plugins["docker"], "config.volumes.enabled") is True
    assert "sys_admin" not in first(plugins["docker"], "config.allow_caps")
    assert first(plugins["raw_exec"], "config.enabled") is True
    assert first(client, "client.options")["driver.allowlist"] == "docker,raw_exec"
    assert "nomad-device-nvidia" not in plugins
    assert host.file("/nomad-storage").is_directory
    assert checks.hcl_config.labelled(client, "client.host_volume")["nomad-storage"]["path"] == "/nomad-storage"


def test_unit(host):
    unit = host.file("/etc/systemd/system/nomad.service").content_string
    if _is_server(host):
        assert "User=nomad" in unit
        checks.assert_hardened_unit(host, "nomad.service", 3.5)
    else:
        assert "User=root" in unit and "Delegate=yes" in unit


def test_agent_runs_with_tls_and_acls(host):
    checks.require_binary(host, "nomad", "2.0.4")
    assert host.service("nomad").is_running
    mtls = "--cacert /etc/nomad.d/tls/ca.pem --cert /etc/nomad.d/tls/nomad.pem --key /etc/nomad.d/tls/nomad-key.pem"
    anonymous = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {mtls} https://127.0.0.1:4646/v1/jobs")
    assert anonymous.stdout == "403"
    # without a client certificate from the platform CA, not even /v1/metrics (no ACL check) answers
    no_cert = host.run("curl -s -o /dev/null --cacert /etc/nomad.d/tls/ca.pem https://127.0.0.1:4646/v1/metrics")
    assert no_cert.rc != 0
    plain = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:4646/v1/agent/self")
    assert plain.stdout != "200"
