"""The two-site cluster: per-node material on every node, and, with binaries, membership,
region, WAN federation, ACL denial for anonymous requests and node meta."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "molecule" / "cluster" / "shared"))

import checks  # noqa: E402

first = checks.hcl_config.first
# The APIs require client certificates from the platform CA (mutual TLS): the node's own.
CONSUL_CA = "--cacert /etc/consul.d/tls/ca.pem --cert /etc/consul.d/tls/consul.pem --key /etc/consul.d/tls/consul-key.pem"
NOMAD_CA = "--cacert /etc/nomad.d/tls/ca.pem --cert /etc/nomad.d/tls/nomad.pem --key /etc/nomad.d/tls/nomad-key.pem"
MANAGEMENT_CONSUL = "7e57bed0-0000-4000-8000-00000000c001"  # test-bed bootstrap tokens (shared/vars.yml)
MANAGEMENT_NOMAD = "7e57bed0-0000-4000-8000-00000000a001"


def _node(host) -> tuple[str, str, str]:
    """(name, site, role) from the node name ai4os-cluster-<a|b>-<role>-1."""
    name = host.backend.get_hostname()
    parts = name.split("-")
    return name, "-".join(parts[:3]), parts[3]


def _address(host, name: str) -> str:
    """The test-bed address of node ``name``, as Docker gave it (read on the controller: the nodes'
    resolver is the kit's dnsmasq, which by design never forwards plain host names upstream)."""
    out = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[0]


# The region's only Nomad server is site a's server node (ai4os_nomad_server_sites of
# tests/cluster/data/cluster-inventory); site b's server node runs Consul only.
NOMAD_SERVER_SITE = "ai4os-cluster-a"


def _runs_nomad(site: str, role: str) -> bool:
    return role != "server" or site == NOMAD_SERVER_SITE


def test_certificates_per_node(host):
    name, site, role = _node(host)
    kind = "server" if role == "server" else "client"
    server = role == "server"
    checks.assert_node_certificate(host, "/etc/consul.d/tls", "consul", f"{kind}.{site}.consul", "consul",
                                   service_names=("consul.service.consul",) if server else ())
    if not _runs_nomad(site, role):
        assert not host.file("/etc/nomad.d/tls/nomad.pem").exists, "a Consul-only server holds no Nomad certificate"
        return
    checks.assert_node_certificate(host, "/etc/nomad.d/tls", "nomad", f"{kind}.tb.nomad", "nomad" if server else "root",
                                   service_names=("nomad.service.consul",) if server else ())


def test_consul_datacenter_per_site_and_wan_federation(host):
    name, site, role = _node(host)
    consul = checks.assert_accepted_keys(host, "/etc/consul.d/consul.hcl", "consul")
    assert consul["datacenter"] == site and consul["primary_datacenter"] == "ai4os-cluster-a"
    own_server = _address(host, f"{site}-server-1")
    other = "ai4os-cluster-b" if site == "ai4os-cluster-a" else "ai4os-cluster-a"
    if role == "server":
        assert consul["bootstrap_expect"] == 1 and consul["retry_join"] == []
        assert consul["retry_join_wan"] == [_address(host, f"{other}-server-1")]
    else:
        assert consul["retry_join"] == [own_server] and "retry_join_wan" not in consul


def test_nomad_region_servers_and_client_meta(host):
    name, site, role = _node(host)
    if not _runs_nomad(site, role):
        assert not host.file("/etc/nomad.d/nomad.hcl").exists
        return
    common = checks.assert_accepted_keys(host, "/etc/nomad.d/nomad.hcl", "nomad")
    assert common["region"] == "tb" and common["datacenter"] == site
    if role == "server":
        server = checks.assert_accepted_keys(host, "/etc/nomad.d/server.hcl", "nomad")
        assert first(server, "server.bootstrap_expect") == 1
    else:
        client = checks.assert_accepted_keys(host, "/etc/nomad.d/client.hcl", "nomad")
        meta = first(client, "client.meta")
        assert meta["type"] == ("ingress" if role == "ingress" else "compute")
        assert meta["domain"] == site and meta["namespace"] == "ai4eosc"
        servers = sorted(first(client, "client.server_join.retry_join"))
        assert servers == [f"{_address(host, NOMAD_SERVER_SITE + '-server-1')}:4647"]


def test_consul_membership_lan_and_wan(host):
    checks.require_binary(host, "consul", "2.0.2")
    name, site, role = _node(host)
    members = host.run(f"curl -sf {CONSUL_CA} -H 'X-Consul-Token: {MANAGEMENT_CONSUL}' https://127.0.0.1:8501/v1/agent/members")
    assert members.rc == 0
    lan = {m["Name"] for m in json.loads(members.stdout) if m["Status"] == 1}
    assert lan == {f"{site}-server-1", f"{site}-ingress-1", f"{site}-cpu-1"}
    if role == "server":
        wan = host.run(f"curl -sf {CONSUL_CA} -H 'X-Consul-Token: {MANAGEMENT_CONSUL}' 'https://127.0.0.1:8501/v1/agent/members?wan=1'")
        assert {m["Name"].split(".")[0] for m in json.loads(wan.stdout)} == {"ai4os-cluster-a-server-1", "ai4os-cluster-b-server-1"}


def test_nomad_region_membership_and_meta(host):
    checks.require_binary(host, "nomad", "2.0.4")
    name, site, role = _node(host)
    if not _runs_nomad(site, role):
        return
    nodes = host.run(f"curl -sf {NOMAD_CA} -H 'X-Nomad-Token: {MANAGEMENT_NOMAD}' https://127.0.0.1:4646/v1/nodes")
    ready = {n["Name"]: n for n in json.loads(nodes.stdout) if n["Status"] == "ready"}
    assert set(ready) == {f"ai4os-cluster-{s}-{r}-1" for s in "ab" for r in ("ingress", "cpu")}
    members = host.run(f"curl -sf {NOMAD_CA} -H 'X-Nomad-Token: {MANAGEMENT_NOMAD}' https://127.0.0.1:4646/v1/agent/members")
    assert {m["Tags"]["region"] for m in json.loads(members.stdout)["Members"]} == {"tb"}
    if role != "server":
        node = json.loads(host.run(f"curl -sf {NOMAD_CA} -H 'X-Nomad-Token: {MANAGEMENT_NOMAD}' https://127.0.0.1:4646/v1/node/{ready[name]['ID']}").stdout)
        assert node["Meta"]["domain"] == site


def test_anonymous_requests_are_denied(host):
    checks.require_binary(host, "consul", "2.0.2")
    checks.require_binary(host, "nomad", "2.0.4")
    name, site, role = _node(host)
    consul = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {CONSUL_CA} https://127.0.0.1:8501/v1/acl/tokens")
    assert consul.stdout == "403"
    if _runs_nomad(site, role):
        nomad = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {NOMAD_CA} https://127.0.0.1:4646/v1/jobs")
        assert nomad.stdout == "403"


def test_traefik_on_the_ingress_redirects_to_https(host):
    name, site, role = _node(host)
    if role != "ingress":
        return
    assert host.service("traefik").is_running
    code = host.run("curl -s -o /dev/null -w '%{http_code}' -H 'Host: app.testbed.ai4os.test' http://127.0.0.1/")
    assert code.stdout in ("301", "302", "307", "308")


def test_traefik_reads_the_catalog_with_the_consul_roles_traefik_token(host):
    """playbooks/cluster.yml passes no token: the role's default is the traefik token of secrets.yml,
    which the consul role issues."""
    name, site, role = _node(host)
    if role != "ingress":
        return
    token = "7e57bed0-0000-4000-8000-00000000c0a1"  # ai4os_secret_consul_token_traefik (shared/vars.yml)
    env = host.file("/etc/traefik/traefik.env")
    assert env.mode == 0o600, oct(env.mode)
    assert f"CONSUL_HTTP_TOKEN={token}" in env.content_string.splitlines()


def test_traefik_routes_a_service_from_the_consul_catalog(host):
    checks.require_binary(host, "consul", "2.0.2")
    name, site, role = _node(host)
    if role != "ingress":
        return
    service = {
        "Name": "catalog-route",
        "Address": "127.0.0.1",
        "Port": 8081,
        # a platform service: only those carrying the platform tag may claim a platform host name
        "Tags": ["traefik.enable=true", "ai4os.platform=testbed-only-platform-tag-0001",
                 "traefik.http.routers.catalog-route.rule=Host(`route.testbed.ai4os.test`)",
                 "traefik.http.routers.catalog-route.tls=true"],
    }
    register = host.run(
        f"curl -sf {CONSUL_CA} -X PUT -H 'X-Consul-Token: {MANAGEMENT_CONSUL}' "
        f"-d '{json.dumps(service)}' https://127.0.0.1:8501/v1/agent/service/register"
    )
    assert register.rc == 0
    routed = host.run(
        "for i in $(seq 30); do code=$(curl -sk -o /dev/null -w '%{http_code}' --resolve route.testbed.ai4os.test:443:127.0.0.1 "
        "https://route.testbed.ai4os.test/api/version); [ \"$code\" = 200 ] && break; sleep 2; done; echo $code"
    )
    assert routed.stdout.strip() == "200"
