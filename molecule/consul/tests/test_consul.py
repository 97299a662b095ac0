"""Role consul on the test-bed: what is in place without the binary, and, with it, the agent."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "molecule" / "cluster" / "shared"))

import checks  # noqa: E402

GOSSIP_KEY = "dGVzdGJlZC1vbmx5IGNvbnN1bCBnb3NzaXAga2V5ISE="


def test_user_and_directories(host):
    user = host.user("consul")
    assert user.shell == "/usr/sbin/nologin" and user.group == "consul"
    config_dir = host.file("/etc/consul.d")
    assert (config_dir.user, config_dir.group, config_dir.mode) == ("root", "consul", 0o750)
    data_dir = host.file("/opt/consul")
    assert (data_dir.user, data_dir.group, data_dir.mode) == ("consul", "consul", 0o750)


def test_node_certificate(host):
    checks.assert_node_certificate(host, "/etc/consul.d/tls", "consul", "server.tb.consul", "consul")


def test_configuration_is_accepted_and_secure(host):
    config = checks.assert_accepted_keys(host, "/etc/consul.d/consul.hcl", "consul")
    first = checks.hcl_config.first
    assert config["datacenter"] == "tb" and config["server"] is True and config["bootstrap_expect"] == 1
    assert config["encrypt"] == GOSSIP_KEY
    assert first(config, "ports.http") == -1
    assert first(config, "acl.default_policy") == "deny"
    assert first(config, "tls.defaults.verify_incoming") is True
    assert host.file("/etc/consul.d/consul.hcl").mode == 0o640


def test_unit_is_hardened(host):
    unit = host.file("/etc/systemd/system/consul.service")
    assert "User=consul" in unit.content_string
    checks.assert_hardened_unit(host, "consul.service", 3.0)


def test_agent_runs_with_https_api_only(host):
    checks.require_binary(host, "consul", "2.0.2")
    assert host.service("consul").is_running
    assert host.socket("tcp://0.0.0.0:8501").is_listening
    assert not host.socket("tcp://0.0.0.0:8500").is_listening
    leader = host.run("curl -sf --cacert /etc/consul.d/tls/ca.pem https://127.0.0.1:8501/v1/status/leader")
    assert leader.rc == 0 and leader.stdout.strip() not in ("", '""')


def test_anonymous_requests_are_denied(host):
    checks.require_binary(host, "consul", "2.0.2")
    keys = host.run("curl -s -o /dev/null -w '%{http_code}' --cacert /etc/consul.d/tls/ca.pem https://127.0.0.1:8501/v1/kv/?keys")
    assert keys.stdout in ("403", "404")
    acl = host.run("curl -s -o /dev/null -w '%{http_code}' --cacert /etc/consul.d/tls/ca.pem https://127.0.0.1:8501/v1/acl/tokens")
    assert acl.stdout == "403"
