"""Every Nomad/Consul HCL file the roles render, for every node of the sample platform,
parses (python-hcl2) and uses only keys the agents accept (agent_keys/*.yml), and says
what the cluster contract and the security defaults require.

The files are rendered by ansible-playbook from the roles' own templates and defaults,
with the host variables `ai4os-kit plan` writes (ai4os_kit.model.ansible_inventory).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from support import hcl_config
import pytest
import yaml
from support.cluster_helpers import ROOT
from support.cluster_render import render_cluster

from ai4os_kit.model.secrets import CONSUL_TOKENS, NOMAD_TOKENS


def _render(tmp_path: Path, extra: dict[str, Any] | None = None, limit: str = "all") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return render_cluster(tmp_path, extra=extra, limit=limit)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return _render(tmp_path_factory.mktemp("render"))


def _load(out: dict[str, dict[str, str]], node: str, name: str) -> dict[str, Any]:
    return hcl_config.loads(out[node][name])


def test_every_rendered_file_parses_and_uses_only_accepted_keys(rendered: tuple[dict, dict, dict]) -> None:
    plan, _, out = rendered
    nomad_keys, consul_keys = hcl_config.load_keys("nomad"), hcl_config.load_keys("consul")
    checked = 0
    for node in plan["nodes"]:
        for name in sorted(n for n in out[node["name"]] if n.endswith(".hcl")):
            config = hcl_config.loads(out[node["name"]][name])
            keys = consul_keys if name == "consul.hcl" else nomad_keys
            assert hcl_config.unknown_keys(config, keys) == [], f"{node['name']}/{name}"
            checked += 1
    # 13 nodes: consul.hcl each, nomad.hcl on the 12 that run Nomad (cesnet-server-1 is a Consul-only
    # server: ai4os_nomad_server_sites [ifca]), server.hcl on the 3 Nomad servers, client.hcl on 9 clients
    assert checked == 13 + 12 + 3 + 9


def test_an_unknown_key_is_reported(tmp_path: Path) -> None:
    _, _, out = _render(tmp_path, {"nomad_extra_config": {"bogus_key": 1}, "consul_extra_config": {"log_levle": "DEBUG"}}, limit="ifca-server-1")
    nomad = _load(out, "ifca-server-1", "nomad.hcl")
    consul = _load(out, "ifca-server-1", "consul.hcl")
    assert hcl_config.unknown_keys(nomad, hcl_config.load_keys("nomad")) == ["bogus_key"]
    assert hcl_config.unknown_keys(consul, hcl_config.load_keys("consul")) == ["log_levle"]


def test_nested_unknown_keys_are_reported_with_their_path() -> None:
    config = hcl_config.loads('client {\n  reserved {\n    gpu = 1\n  }\n}\nplugin "docker" {\n  config {\n    privileged = true\n  }\n}\nplugin "qemu" {\n}\n')
    assert hcl_config.unknown_keys(config, hcl_config.load_keys("nomad")) == [
        "client.reserved.gpu",
        'plugin "docker".config.privileged',
        'plugin "qemu"',
    ]


def test_consul_security_defaults(rendered: tuple[dict, dict, dict]) -> None:
    plan, secrets, out = rendered
    for node in plan["nodes"]:
        consul = _load(out, node["name"], "consul.hcl")
        first = hcl_config.first
        assert first(consul, "ports.http") == -1, "no plaintext HTTP API"
        assert first(consul, "ports.https") == 8501
        assert first(consul, "client_addr") == "127.0.0.1"
        assert first(consul, "encrypt") == secrets["ai4os_secret_consul_gossip_key"]
        assert first(consul, "tls.defaults.verify_incoming") is True
        assert first(consul, "tls.defaults.verify_outgoing") is True
        assert first(consul, "tls.internal_rpc.verify_server_hostname") is True
        assert first(consul, "tls.defaults.cert_file").endswith("/tls/consul.pem")
        assert first(consul, "acl.enabled") is True
        assert first(consul, "acl.default_policy") == "deny"
        assert first(consul, "tls.https.verify_incoming") is True, "mutual TLS on the HTTPS API"
        assert first(consul, "enable_agent_tls_for_checks") is True
        # the agent and DNS tokens are the random kit tokens of secrets.yml, never the bootstrap token
        assert first(consul, "acl.tokens.agent") == secrets["ai4os_secret_consul_token_agent"]
        assert first(consul, "acl.tokens.dns") == secrets["ai4os_secret_consul_token_dns"]
        assert secrets["ai4os_secret_consul_bootstrap_token"] not in out[node["name"]]["consul.hcl"]
        assert first(consul, "datacenter") == node["datacenter"]
        assert first(consul, "primary_datacenter") == "ifca"


def test_consul_datacenters_and_wan_federation(rendered: tuple[dict, dict, dict]) -> None:
    _, secrets, out = rendered
    ifca = _load(out, "ifca-server-1", "consul.hcl")
    cesnet = _load(out, "cesnet-server-1", "consul.hcl")
    client = _load(out, "ifca-cpu-1", "consul.hcl")
    assert ifca["server"] is True and ifca["bootstrap_expect"] == 3
    assert cesnet["server"] is True and cesnet["bootstrap_expect"] == 1
    assert client["server"] is False and "bootstrap_expect" not in client
    assert ifca["retry_join"] == ["10.0.0.11", "10.0.0.12"]  # the two other ifca servers
    assert sorted(client["retry_join"]) == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    assert ifca["retry_join_wan"] == ["10.0.0.19"]  # cesnet-server-1
    assert cesnet["retry_join_wan"] == ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    assert "retry_join_wan" not in client
    # the secondary datacenter replicates ACLs from the primary
    assert hcl_config.first(cesnet, "acl.enable_token_replication") is True
    assert hcl_config.first(cesnet, "acl.tokens")["replication"] == secrets["ai4os_secret_consul_token_replication"]
    assert "replication" not in hcl_config.first(ifca, "acl.tokens")
    assert "enable_token_replication" not in hcl_config.first(ifca, "acl")


def test_nomad_servers_region_and_tls(rendered: tuple[dict, dict, dict]) -> None:
    plan, secrets, out = rendered
    for node in plan["nodes"]:
        if not (node["nomad"]["server"] or node["nomad"]["client"]):
            continue  # cesnet-server-1: Consul only
        nomad = _load(out, node["name"], "nomad.hcl")
        assert nomad["region"] == "ai4os"
        assert nomad["datacenter"] == node["datacenter"]
        assert hcl_config.first(nomad, "tls.http") is True and hcl_config.first(nomad, "tls.rpc") is True
        assert hcl_config.first(nomad, "tls.verify_server_hostname") is True
        assert hcl_config.first(nomad, "acl.enabled") is True
        assert hcl_config.first(nomad, "consul.ssl") is True
        assert hcl_config.first(nomad, "consul.address") == "127.0.0.1:8501"
        assert hcl_config.first(nomad, "tls.verify_https_client") is True, "mutual TLS on the HTTP API"
        # /v1/metrics has no ACL check (nomad-client-facts.yml): users' allocation metrics are not published
        assert hcl_config.first(nomad, "telemetry.publish_allocation_metrics") is False
        assert hcl_config.first(nomad, "consul.cert_file").endswith("/tls/nomad.pem")
        kind = "nomad_server" if node["nomad"]["server"] else "nomad_client"
        assert hcl_config.first(nomad, "consul.token") == secrets[f"ai4os_secret_consul_token_{kind}"]
        for bootstrap in ("ai4os_secret_consul_bootstrap_token", "ai4os_secret_nomad_bootstrap_token"):
            assert all(secrets[bootstrap] not in text for text in out[node["name"]].values()), bootstrap
    server = _load(out, "ifca-server-3", "server.hcl")
    assert hcl_config.first(server, "server.bootstrap_expect") == len(plan["groups"]["nomad_servers"]) == 3
    assert "nomad.hcl" not in out["cesnet-server-1"], "cesnet's server node is a Consul server only"
    assert hcl_config.first(server, "server.encrypt") == secrets["ai4os_secret_nomad_gossip_key"]
    assert sorted(hcl_config.first(server, "server.server_join.retry_join")) == ["10.0.0.10", "10.0.0.11"]


def test_nomad_client_cluster_contract(rendered: tuple[dict, dict, dict]) -> None:
    plan, _, out = rendered
    for node in (n for n in plan["nodes"] if n["nomad"]["client"]):
        client = _load(out, node["name"], "client.hcl")
        first = hcl_config.first
        assert first(client, "client.enabled") is True
        assert first(client, "client.meta") == node["nomad"]["meta"]
        assert set(first(client, "client.meta")) >= {"type", "tags", "namespace", "domain", "status"}
        assert first(client, "client.node_class") == node["role"]
        assert set(first(client, "client.reserved")) == {"cpu", "memory", "disk"}
        assert hcl_config.labelled(client, "client.host_volume") == {"nomad-storage": {"path": "/nomad-storage", "read_only": False}}
        assert first(client, "client.options")["fingerprint.denylist"] == "env_aws,env_gce,env_azure,env_digitalocean"
        assert first(client, "client.options")["driver.allowlist"] == "docker,raw_exec"
        plugins = hcl_config.labelled(client, "plugin")
        docker = first(plugins["docker"], "config")
        # privileged containers only where PAPI's storage sidecars run (test_client_confinement.py)
        assert docker["allow_privileged"] is (node["role"] in ("cpu", "gpu", "batch"))
        assert "sys_admin" not in docker["allow_caps"]
        assert "exec" not in plugins
        if node["role"] == "gpu":
            assert first(plugins["nomad-device-nvidia"], "config.enabled") is True
            assert docker["allow_runtimes"] == ["runc", "nvidia"]
        else:
            assert "nomad-device-nvidia" not in plugins
            assert docker["allow_runtimes"] == ["runc"]


def test_gpu_facts_reach_the_node_meta(tmp_path: Path) -> None:
    facts = {"present": True, "model": "NVIDIA H100 80GB HBM3", "count": 1, "memory_mib": 81559}
    _, _, out = _render(tmp_path, {"ai4os_gpu": facts}, limit="ifca-gpu-1,ifca-cpu-1")
    meta = hcl_config.first(_load(out, "ifca-gpu-1", "client.hcl"), "client.meta")
    assert meta["gpu_model"] == "NVIDIA H100 80GB HBM3"
    assert meta["gpu_count"] == "1" and meta["gpu_memory_mib"] == "81559"
    assert "gpu_model" not in hcl_config.first(_load(out, "ifca-cpu-1", "client.hcl"), "client.meta")


def test_units_are_hardened(rendered: tuple[dict, dict, dict]) -> None:
    _, _, out = rendered
    consul = out["ifca-server-1"]["consul.service"]
    for line in ("User=consul", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/opt/consul", "CapabilityBoundingSet=\n"):
        assert line in consul
    server = out["ifca-server-1"]["nomad.service"]
    assert "User=nomad" in server and "ProtectSystem=strict" in server
    client = out["ifca-cpu-1"]["nomad.service"]
    assert "User=root" in client and "ProtectSystem=strict" not in client


def test_roles_issue_exactly_the_tokens_the_secrets_command_generates() -> None:
    consul = yaml.safe_load((ROOT / "roles" / "consul" / "defaults" / "main.yml").read_text())
    nomad = yaml.safe_load((ROOT / "roles" / "nomad" / "defaults" / "main.yml").read_text())
    assert sorted(t["name"] for t in consul["consul_acl_tokens"]) == sorted(CONSUL_TOKENS)
    assert sorted(t["name"] for t in nomad["nomad_acl_tokens"]) == sorted(NOMAD_TOKENS)
    policies = {p["name"] for p in nomad["nomad_acl_policies"]}
    assert all(set(t["policies"]) <= policies for t in nomad["nomad_acl_tokens"])
    assert {t["policy"] for t in consul["consul_acl_tokens"]} <= {p["name"] for p in consul["consul_acl_policies"]}


def test_containers_get_the_consul_dns_forwarder_as_their_resolver(rendered: tuple[dict, dict, dict]) -> None:
    """Docker hands containers the bridge address as DNS server (daemon.json `dns`, `bip`), and the
    consul role's forwarder listens on that bridge (Docker's default bridge is docker0) and sends
    *.consul to the agent's DNS port."""
    plan, _, out = rendered
    for node in (n for n in plan["nodes"] if n["nomad"]["client"]):
        daemon = json.loads(out[node["name"]]["daemon.json"])
        bridge = ipaddress.ip_interface(daemon["bip"])
        assert daemon["dns"] == [str(bridge.ip)], node["name"]
        forwarder = out[node["name"]]["dnsmasq.conf"].splitlines()
        assert "interface=docker0" in forwarder and "bind-dynamic" in forwarder
        assert "listen-address=127.0.0.1" in forwarder
        assert "server=/consul/127.0.0.1#8600" in forwarder
        assert "domain-needed" in forwarder and "no-hosts" in forwarder
