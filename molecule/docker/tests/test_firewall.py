"""East-west traffic: real Docker containers on the cpu node against the other test-bed nodes.

Each refusal is checked twice: the connection fails, and the counter of the firewall rule
that refuses it went up (so it was the kit's rule, not a missing listener). Listeners
(prepare.yml): server 4646 (Nomad API) and 22022, services 25000 (a task's dynamic port),
ingress 80 (Traefik), cpu 25001 (a task of its own) and 9100 (node exporter).
"""

from __future__ import annotations

import json
import os

import pytest
import testinfra

testinfra_hosts = ["ai4os-docker-1"]

PROBE = "ai4os-fw-probe:1"
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")


def node(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


def address(name: str) -> str:
    """The node's address on the test-bed network (its default route's address)."""
    return node(name).check_output("ip -4 -o route get 1.1.1.1").split(" src ")[1].split()[0]


@pytest.fixture(scope="module")
def probe_image(host) -> str:
    """A one-binary image (Debian's static busybox): no registry is reachable here."""
    with host.sudo():
        if host.run(f"docker image inspect {PROBE}").rc != 0:
            host.check_output(f"tar -C / -c bin/busybox | docker import - {PROBE}")
    return PROBE


def refused_count(host, chain: str, marker: str) -> int:
    """Packets refused so far by the reject rules of `chain` whose JSON mentions `marker`."""
    with host.sudo():
        listing = json.loads(host.check_output(f"nft -j list chain inet ai4os_firewall {chain}"))
    total = 0
    for item in listing["nftables"]:
        rule = item.get("rule")
        if not rule or marker not in json.dumps(rule):  # the match expressions and the comment
            continue
        if any("reject" in e for e in rule["expr"]):
            total += sum(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    return total


def container_get(host, image: str, url: str) -> tuple[int, str]:
    """wget from a fresh container on the default bridge (docker0): exit code and message."""
    with host.sudo():
        out = host.run(f"docker run --rm {image} /bin/busybox timeout 5 /bin/busybox wget -O /dev/null {url}")
    return out.rc, (out.stdout + out.stderr).strip()


def assert_refused(host, image: str, url: str, chain: str, marker: str, on=None) -> None:
    on = on or host
    before = refused_count(on, chain, marker)
    rc, message = container_get(host, image, url)
    assert rc != 0, f"{url} was reachable from a container"
    assert refused_count(on, chain, marker) > before, f"{url} failed ({message}) but not by the rule {chain}/{marker}"


def test_unit_enabled_and_table_loaded(host):
    assert host.service("ai4os-firewall").is_enabled
    with host.sudo():
        assert host.run("nft list table inet ai4os_firewall").rc == 0


def test_container_refused_on_a_servers_nomad_api(host, probe_image):
    assert_refused(host, probe_image, f"http://{address('ai4os-docker-server')}:4646/", "from_containers_out", "@management_tcp")


def test_container_refused_on_any_other_port_of_a_node(host, probe_image):
    assert_refused(host, probe_image, f"http://{address('ai4os-docker-server')}:22022/", "from_containers_out", "@cluster")


def test_container_refused_on_a_services_nodes_dynamic_port(host, probe_image):
    assert_refused(host, probe_image, f"http://{address('ai4os-docker-services')}:25000/", "from_containers_out", "@cluster")


def test_container_reaches_traefik_on_the_ingress_node(host, probe_image):
    rc, message = container_get(host, probe_image, f"http://{address('ai4os-docker-ingress')}:80/")
    assert rc == 0, message


def test_container_refused_on_its_own_hosts_node_exporter(host, probe_image):
    # by the node's address and by the bridge address (the container's gateway): both are this host
    gateway = host.check_output("ip -4 -o addr show docker0").split()[3].split("/")[0]
    for target in (address("ai4os-docker-1"), gateway):
        assert_refused(host, probe_image, f"http://{target}:9100/", "from_containers_in", "reject")


def test_container_reaches_its_own_hosts_dynamic_ports(host, probe_image):
    """Tasks of one allocation reach each other through the host's address (PAPI's CVAT tool)."""
    gateway = host.check_output("ip -4 -o addr show docker0").split()[3].split("/")[0]
    rc, message = container_get(host, probe_image, f"http://{gateway}:25001/")
    assert rc == 0, message


def test_containers_reach_each_other_only_through_published_ports(host, probe_image):
    with host.sudo():
        host.run("docker rm -f ai4os-fw-target")
        host.check_output(f"docker run -d --name ai4os-fw-target -p 25002:8080 {probe_image} "
                          "/bin/busybox httpd -f -p 8080 -h /etc")
        try:
            target = host.check_output("docker inspect -f '{{.NetworkSettings.IPAddress}}' ai4os-fw-target")
            assert_refused(host, probe_image, f"http://{target}:8080/hostname", "from_containers_out", "another container")
            gateway = host.check_output("ip -4 -o addr show docker0").split()[3].split("/")[0]
            rc, message = container_get(host, probe_image, f"http://{gateway}:25002/hostname")
            assert rc == 0, message
        finally:
            host.run("docker rm -f ai4os-fw-target")


def test_dynamic_ports_only_from_the_ingress_node(host):
    services = node("ai4os-docker-services")
    url = f"http://{address('ai4os-docker-services')}:25000/"
    before = refused_count(services, "to_dynamic_ports", "reject")
    # from the cpu node itself (not a container): refused on the services node
    assert host.run(f"python3 -c \"import urllib.request; urllib.request.urlopen('{url}', timeout=4)\"").rc != 0
    assert refused_count(services, "to_dynamic_ports", "reject") > before
    # from the ingress node (Traefik): allowed
    ingress = node("ai4os-docker-ingress")
    out = ingress.run(f"python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=4).status)\"")
    assert out.rc == 0 and out.stdout.strip() == "200", out.stderr


def test_services_containers_may_call_the_nomad_api_on_the_servers_only():
    services = node("ai4os-docker-services")
    with services.sudo():
        chain = json.loads(services.check_output("nft -j list chain inet ai4os_firewall from_containers_out"))
    accepts = [r["rule"] for r in chain["nftables"] if "rule" in r and any("accept" in e for e in r["rule"]["expr"])
               and "4646" in json.dumps(r["rule"]["expr"])]
    assert len(accepts) == 1 and address("ai4os-docker-server") in json.dumps(accepts[0]["expr"])
    # the cpu node's containers have no such exception
    cpu = node("ai4os-docker-1")
    with cpu.sudo():
        assert '"4646"' not in cpu.check_output("nft -j list chain inet ai4os_firewall from_containers_out").replace(
            "4646-4648", "")


def test_rules_survive_a_docker_restart(host, probe_image):
    with host.sudo():
        host.check_output("systemctl restart docker")
        assert host.run("nft list table inet ai4os_firewall").rc == 0
    assert_refused(host, probe_image, f"http://{address('ai4os-docker-server')}:4646/", "from_containers_out", "@management_tcp")
    rc, message = container_get(host, probe_image, f"http://{address('ai4os-docker-ingress')}:80/")
    assert rc == 0, message
