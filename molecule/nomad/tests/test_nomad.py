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
    checks.assert_node_certificate(host, "/etc/nomad.d/tls", "nomad", f"{kind}.tb.nomad", group)


def test_every_file_is_accepted_by_nomad(host):
    common = checks.assert_accepted_keys(host, "/etc/nomad.d/nomad.hcl", "nomad")
    assert common["region"] == "tb" and common["datacenter"] == "tb"
    assert first(common, "tls.http") is True and first(common, "tls.rpc") is True
    assert first(common, "acl.enabled") is True
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
        "type": "compute", "tags": "cpu", "namespace": "ai4eosc", "domain": "tb.ai4os.test", "status": "test"
    }
    plugins = checks.hcl_config.labelled(client, "plugin")
    assert first(plugins["docker"], "config.allow_privileged") is True
    assert first(plugins["docker"], "config.volumes.enabled") is True
    assert first(plugins["raw_exec"], "config.enabled") is True
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
    anonymous = host.run("curl -s -o /dev/null -w '%{http_code}' --cacert /etc/nomad.d/tls/ca.pem https://127.0.0.1:4646/v1/jobs")
    assert anonymous.stdout == "403"
    plain = host.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:4646/v1/agent/self")
    assert plain.stdout != "200"
