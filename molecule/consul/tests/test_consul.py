"""Role consul on the test-bed: what is in place without the binary, and, with it, the agent."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "molecule" / "cluster" / "shared"))

import checks  # noqa: E402

GOSSIP_KEY = "dGVzdGJlZC1vbmx5IGNvbnN1bCBnb3NzaXAga2V5ISE="
# test-bed secrets (molecule/cluster/shared/vars.yml)
BOOTSTRAP_TOKEN = "7e57bed0-0000-4000-8000-00000000c001"
AGENT_TOKEN = "7e57bed0-0000-4000-8000-00000000c0a2"
DNS_TOKEN = "7e57bed0-0000-4000-8000-00000000c0a3"
MTLS = "--cacert /etc/consul.d/tls/ca.pem --cert /etc/consul.d/tls/consul.pem --key /etc/consul.d/tls/consul-key.pem"


def test_user_and_directories(host):
    user = host.user("consul")
    assert user.shell == "/usr/sbin/nologin" and user.group == "consul"
    config_dir = host.file("/etc/consul.d")
    assert (config_dir.user, config_dir.group, config_dir.mode) == ("root", "consul", 0o750)
    data_dir = host.file("/opt/consul")
    assert (data_dir.user, data_dir.group, data_dir.mode) == ("consul", "consul", 0o750)


def test_node_certificate(host):
    # a server's certificate also names the catalog service platform clients call
    checks.assert_node_certificate(host, "/etc/consul.d/tls", "consul", "server.tb.consul", "consul",
                                   service_names=("consul.service.consul",))


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
    leader = host.run(f"curl -sf {MTLS} https://127.0.0.1:8501/v1/status/leader")
    assert leader.rc == 0 and leader.stdout.strip() not in ("", '""')
    # without a client certificate from the platform CA the TLS handshake is refused
    anonymous = host.run("curl -s -o /dev/null --cacert /etc/consul.d/tls/ca.pem https://127.0.0.1:8501/v1/status/leader")
    assert anonymous.rc != 0


def test_anonymous_requests_are_denied(host):
    checks.require_binary(host, "consul", "2.0.2")
    keys = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {MTLS} https://127.0.0.1:8501/v1/kv/?keys")
    assert keys.stdout in ("403", "404")
    acl = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {MTLS} https://127.0.0.1:8501/v1/acl/tokens")
    assert acl.stdout == "403"


def test_kit_tokens_are_issued_with_their_own_scope(host):
    checks.require_binary(host, "consul", "2.0.2")
    self_ = host.run(f"curl -sf {MTLS} -H 'X-Consul-Token: {DNS_TOKEN}' https://127.0.0.1:8501/v1/acl/token/self")
    assert self_.rc == 0
    token = json.loads(self_.stdout)
    assert [p["Name"] for p in token["Policies"]] == ["ai4os-dns"]
    # the DNS token reads the catalog but cannot write it
    write = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {MTLS} -X PUT -H 'X-Consul-Token: {DNS_TOKEN}' "
                     "-d '{\"Name\": \"x\"}' https://127.0.0.1:8501/v1/agent/service/register")
    assert write.stdout == "403"


# A tiny DNS query (standard library only) run on the node: rcode and A records of a name,
# asked of one server, so a broken forwarder cannot be hidden by glibc trying the next one.
DNS_QUERY = """
import random, socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
ident = random.randrange(65536)
question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question, (server, 53))
data = s.recv(4096)
assert struct.unpack(">H", data[:2])[0] == ident
rcode, count = data[3] & 15, struct.unpack(">H", data[6:8])[0]
pos, answers = 12 + len(question), []
for _ in range(count):
    while data[pos] and data[pos] < 192:
        pos += data[pos] + 1
    pos += 2 if data[pos] else 1
    kind, _, _, size = struct.unpack(">HHIH", data[pos:pos + 10])
    if kind == 1:
        answers.append(socket.inet_ntoa(data[pos + 10:pos + 14]))
    pos += 10 + size
print(rcode, " ".join(answers))
"""
BRIDGE, BRIDGE_IP, CONTAINER_IP = "docker0", "10.77.0.1", "10.77.0.2"


def _ask(host, server: str, name: str, netns: str = "") -> tuple[int, list[str]]:
    host.run("install -m 0644 /dev/stdin /root/dnsq.py <<'EOF'\n" + DNS_QUERY + "\nEOF")
    prefix = f"ip netns exec {netns} " if netns else ""
    out = host.run(f"{prefix}python3 /root/dnsq.py {server} {name}")
    assert out.rc == 0, out.stderr
    rcode, *answers = out.stdout.split()
    return int(rcode), answers


def test_consul_dns_forwarder_answers_the_host_and_containers(host):
    """*.service.consul through the kit's forwarder (real dnsmasq, consul-dns.service), from the
    host and from a container's network namespace.

    STAND-IN: no Consul binary can be had here, so the Consul agent's DNS interface on
    127.0.0.1:8600 is stood in for by a second dnsmasq answering web.service.consul (only).
    The container path is wired the way Docker wires its default bridge: a bridge named docker0
    created after the forwarder started (it must bind it when it appears), a network namespace
    with a veth on it, and a resolv.conf naming the bridge address (Docker's `dns` setting)."""
    assert host.service("consul-dns").is_running and host.service("consul-dns").is_enabled
    checks.assert_hardened_unit(host, "consul-dns.service", 2.5)
    first_line = host.file("/etc/resolv.conf").content_string.splitlines()[0]
    assert first_line == "nameserver 127.0.0.1"
    standin = host.run("dnsmasq --port=8600 --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts "
                       "--address=/web.service.consul/192.0.2.10 --pid-file=/run/consul-dns-standin.pid")
    assert standin.rc == 0, standin.stderr
    mirror = host.run("sed -n 's|^deb \\(\\[[^]]*\\] \\)\\?[a-z]*://\\([^/:]*\\).*|\\2|p' "
                      "/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1").stdout.strip()
    try:
        # the host: its resolver asks the forwarder first
        assert host.run("getent hosts web.service.consul").stdout.split()[0] == "192.0.2.10"
        assert _ask(host, "127.0.0.1", "web.service.consul") == (0, ["192.0.2.10"])
        # a name the stand-in does not know gets no address (not one from the host's upstream resolvers)
        assert _ask(host, "127.0.0.1", "nothing.service.consul")[1] == []
        # a container: bridge, veth, namespace, resolv.conf with the bridge address
        for command in (f"ip link add {BRIDGE} type bridge", f"ip addr add {BRIDGE_IP}/24 dev {BRIDGE}",
                        f"ip link set {BRIDGE} up", "ip netns add tbctr",
                        "ip link add tbveth type veth peer name eth0 netns tbctr",
                        f"ip link set tbveth master {BRIDGE} up",
                        f"ip -n tbctr addr add {CONTAINER_IP}/24 dev eth0", "ip -n tbctr link set eth0 up",
                        "ip -n tbctr link set lo up", "mkdir -p /etc/netns/tbctr",
                        f"sh -c 'echo nameserver {BRIDGE_IP} > /etc/netns/tbctr/resolv.conf'"):
            result = host.run(command)
            assert result.rc == 0, f"{command}: {result.stderr}"
        answered = host.run(f"for i in $(seq 20); do ss -lnu | grep -q '{BRIDGE_IP}:53 ' && break; sleep 0.5; done; "
                            f"ss -lnu | grep '{BRIDGE_IP}:53 '")
        assert answered.rc == 0, "the forwarder did not bind the bridge when it appeared"
        inside = host.run("ip netns exec tbctr getent hosts web.service.consul")
        assert inside.rc == 0 and inside.stdout.split()[0] == "192.0.2.10"
        assert _ask(host, BRIDGE_IP, "web.service.consul", netns="tbctr") == (0, ["192.0.2.10"])
        if mirror and not mirror.replace(".", "").isdigit():
            # any other name goes to the host's own resolvers (here: the apt mirror's name)
            rcode, answers = _ask(host, BRIDGE_IP, mirror, netns="tbctr")
            assert rcode == 0 and answers, mirror
    finally:
        host.run("ip netns del tbctr; ip link del tbveth; ip link del docker0; rm -rf /etc/netns/tbctr /root/dnsq.py; "
                 "kill $(cat /run/consul-dns-standin.pid)")

