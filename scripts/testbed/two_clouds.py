#!/usr/bin/env python3
"""Two clouds on one machine, reachable from each other only through NAT'd public addresses.

Each cloud is a Docker network whose only way out is its router (the router has no default
route, the nodes route through the router); one more, internal, network stands for the internet. A router container per cloud sits on both: it holds the
cloud's public addresses (its own, for the nodes without a floating IP, and one floating IP
per node that has one), translates them as an OpenStack router does (1:1 DNAT/SNAT for floating
IPs, source NAT to the router's address for the other nodes, hairpin for a node that reaches a
floating IP of its own cloud) and applies the security groups it is given to every new
connection to a floating IP, after the translation (as Neutron does at the node's port: the
source a node sees is the other side's public address). A connection from outside to a
private address of a cloud is forwarded by no router: that path does not exist.

Nodes and routers are containers of the test-bed image (scripts/testbed/build-image.sh; PID 1
is a sleep: nothing here needs systemd); rules are loaded with the host's `nft` inside the
router's network namespace (nsenter), so the image needs no firewall tools. Test processes
(Python from the image) listen and probe.

Usage from a shell (what tests/federation/test_two_clouds.py does in Python):
  scripts/testbed/two_clouds.py up PREFIX      # prints the bed as JSON
  scripts/testbed/two_clouds.py down PREFIX
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

IMAGE = "ai4os-testbed:debian12"
TABLE = "two_clouds"


@dataclass
class Node:
    name: str           # container name
    site: str
    role: str
    private: str
    public: str | None  # floating IP, or None (leaves through the router's address)


@dataclass
class Cloud:
    site: str
    network: str
    cidr: str
    router: str         # container name
    router_private: str
    router_public: str
    nodes: list[Node] = field(default_factory=list)


@dataclass
class Bed:
    prefix: str
    internet: str       # network name
    internet_cidr: str
    clouds: list[Cloud]
    stranger: Node      # a host on the internet that belongs to no cloud

    def node(self, name: str) -> Node:
        return next(n for c in self.clouds for n in c.nodes if n.name.endswith(name))

    def cloud(self, site: str) -> Cloud:
        return next(c for c in self.clouds if c.site == site)

    def public_addresses(self) -> dict[str, str]:
        """Node name / <site>-router -> public address, keyed as Terraform's public_addresses output."""
        out = {f"{c.site}-router": c.router_public for c in self.clouds}
        out.update({n.name.removeprefix(self.prefix + "-"): n.public for c in self.clouds for n in c.nodes if n.public})
        return out


def sh(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _used_subnets() -> list[ipaddress.IPv4Network]:
    ids = sh("docker", "network", "ls", "-q").stdout.split()
    out = sh("docker", "network", "inspect", *ids, "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}").stdout
    return [ipaddress.ip_network(s) for s in out.split() if ":" not in s]


def _free(candidates: list[str], used: list[ipaddress.IPv4Network]) -> str:
    for text in candidates:
        net = ipaddress.ip_network(text)
        if not any(net.overlaps(u) for u in used):
            used.append(net)
            return text
    raise RuntimeError(f"no free subnet among {candidates}")


def _pid(container: str) -> str:
    return sh("docker", "inspect", "-f", "{{.State.Pid}}", container).stdout.strip()


def in_netns(container: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """A host program run in the container's network namespace (the host's nft and ip)."""
    return sh("nsenter", "-t", _pid(container), "-n", *args, stdin=stdin)


def _interface(container: str, address: str) -> str:
    for line in in_netns(container, "ip", "-o", "-4", "addr", "show").stdout.splitlines():
        parts = line.split()
        if parts[3].split("/")[0] == address:
            return parts[1].split("@")[0]
    raise RuntimeError(f"{container} has no interface with {address}")


def _run(name: str, network: str, address: str, *extra: str) -> None:
    sh("docker", "run", "-d", "--name", name, "--hostname", name, "--network", network, "--ip", address,
       "--label", "ai4os-two-clouds", *extra, "--entrypoint", "sleep", IMAGE, "infinity")


def up(prefix: str, sites: dict[str, list[tuple[str, bool]]]) -> Bed:
    """Create the bed: ``sites`` maps a site name to its nodes (role, has a floating IP)."""
    used = _used_subnets()
    internet_cidr = _free([f"198.18.{i}.0/24" for i in range(100, 200)], used)
    internet = f"{prefix}-internet"
    sh("docker", "network", "create", "--internal", "--subnet", internet_cidr, internet)
    net = ipaddress.ip_network(internet_cidr)
    public = iter(str(net[i]) for i in range(10, 250))
    clouds: list[Cloud] = []
    for site, nodes in sites.items():
        cidr = _free([f"10.{i}.{j}.0/24" for i in range(240, 250) for j in range(0, 250, 10)], used)
        lan = ipaddress.ip_network(cidr)
        network = f"{prefix}-{site}"
        # Not --internal: Docker drops bridged packets whose source lies outside an internal network's
        # subnet (the other cloud's public addresses arrive through the router with theirs). Nothing
        # leaves through Docker's gateway: the router has no default route, the nodes route via it.
        sh("docker", "network", "create", "--subnet", cidr, network)
        cloud = Cloud(site, network, cidr, f"{prefix}-{site}-router", str(lan[2]), next(public))
        _run(cloud.router, network, cloud.router_private, "--cap-add", "NET_ADMIN",
             "--sysctl", "net.ipv4.ip_forward=1")
        sh("docker", "network", "connect", "--ip", cloud.router_public, internet, cloud.router)
        in_netns(cloud.router, "ip", "route", "del", "default")
        counts: dict[str, int] = {}
        for i, (role, floating) in enumerate(nodes, start=10):
            counts[role] = counts.get(role, 0) + 1
            node = Node(f"{prefix}-{site}-{role}-{counts[role]}", site, role, str(lan[i]), next(public) if floating else None)
            _run(node.name, network, node.private)
            in_netns(node.name, "ip", "route", "replace", "default", "via", cloud.router_private)
            cloud.nodes.append(node)
        wan = _interface(cloud.router, cloud.router_public)
        for node in cloud.nodes:
            if node.public:
                in_netns(cloud.router, "ip", "addr", "add", f"{node.public}/{net.prefixlen}", "dev", wan)
        clouds.append(cloud)
    stranger = Node(f"{prefix}-stranger", "internet", "stranger", next(public), None)
    _run(stranger.name, internet, stranger.private)
    stranger.public = stranger.private
    return Bed(prefix, internet, internet_cidr, clouds, stranger)


def down(prefix: str) -> None:
    """Remove every container and network of the bed (by name prefix)."""
    names = sh("docker", "ps", "-aq", "--filter", f"name=^{prefix}-", "--filter", "label=ai4os-two-clouds").stdout.split()
    if names:
        sh("docker", "rm", "-f", *names, check=False)
    for net in sh("docker", "network", "ls", "-q", "--filter", f"name=^{prefix}-").stdout.split():
        sh("docker", "network", "rm", net, check=False)


@dataclass(frozen=True)
class Allow:
    """One security-group rule, resolved: to ``node`` (private address), from ``source`` (CIDR)."""
    node: str
    protocol: str
    port_min: int
    port_max: int
    source: str


def router_ruleset(cloud: Cloud, internet_cidr: str, allows: list[Allow]) -> str:
    """The nft ruleset of a cloud's router: NAT as an OpenStack router, then the security groups."""
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{",
             "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;"]
    lines += [f"    ip daddr {n.public} dnat ip to {n.private}" for n in cloud.nodes if n.public]
    lines += ["  }", "  chain postrouting_nat {", "    type nat hook postrouting priority srcnat; policy accept;"]
    lines += [f"    ip saddr {n.private} ip daddr != {cloud.cidr} snat ip to {n.public}" for n in cloud.nodes if n.public]
    lines += [f"    ip saddr {cloud.cidr} ip daddr != {cloud.cidr} snat ip to {cloud.router_public}",
              # hairpin: a node reaching a floating IP of its own cloud comes from the router's address
              f"    ip saddr {cloud.cidr} ip daddr {cloud.cidr} ct status dnat snat ip to {cloud.router_public}",
              "  }", "  chain forward {", "    type filter hook forward priority filter; policy drop;",
              "    ct state established,related accept",
              f"    ip saddr {cloud.cidr} ip daddr {internet_cidr} accept comment \"out to the internet\"",
              "    ct status dnat accept comment \"to a floating IP: the security groups decide after NAT\"",
              "  }",
              "  chain security_groups {"]
    lines += [f"    ip daddr {a.node} ip saddr {a.source} {a.protocol} dport {a.port_min}-{a.port_max} accept"
              for a in allows]
    lines += ["    drop", "  }", "  chain postrouting_filter {",
              "    type filter hook postrouting priority srcnat + 10; policy accept;",
              f"    ct status dnat ct state new ip daddr {cloud.cidr} jump security_groups", "  }", "}"]
    return "\n".join(lines) + "\n"


def load_rules(cloud: Cloud, internet_cidr: str, allows: list[Allow]) -> str:
    ruleset = router_ruleset(cloud, internet_cidr, allows)
    in_netns(cloud.router, "nft", "-f", "-", stdin=ruleset)
    return ruleset


LISTEN = r"""
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        _, peer = s.recvfrom(512); s.sendto(b"ok", peer)
for spec in sys.argv[1:]:
    proto, port = spec.split("/")
    threading.Thread(target=tcp if proto == "tcp" else udp, args=(int(port),), daemon=True).start()
threading.Event().wait()
"""

PROBE = r"""
import json, socket, sys, concurrent.futures as cf
def probe(t):
    proto, host, port = t
    try:
        if proto == "tcp":
            with socket.create_connection((host, port), timeout=1.5) as s:
                s.settimeout(1.5); return s.recv(2) == b"ok"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
        s.sendto(b"hi", (host, port)); return s.recvfrom(8)[0] == b"ok"
    except OSError:
        return False
targets = json.loads(sys.argv[1])
with cf.ThreadPoolExecutor(len(targets) or 1) as pool:
    print(json.dumps(list(pool.map(probe, targets))))
"""


def listen(container: str, ports: list[tuple[str, int]]) -> None:
    sh("docker", "exec", "-d", container, "python3", "-c", LISTEN, *[f"{p}/{n}" for p, n in ports])


def probe(container: str, targets: list[tuple[str, str, int]]) -> list[bool]:
    """Connect from ``container`` to each (protocol, address, port) at once; True where the listener answered."""
    out = sh("docker", "exec", container, "python3", "-c", PROBE, json.dumps(targets)).stdout
    return json.loads(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "down":
        down(argv[1])
        return 0
    bed = up(argv[1], {"a": [("server", True), ("cpu", False)], "b": [("server", True), ("cpu", False)]})
    json.dump(asdict(bed), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))
