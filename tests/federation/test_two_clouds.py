"""Two clouds on one machine (scripts/testbed/two_clouds.py): two internal Docker networks, each
behind a router container that NATs as an OpenStack router does and enforces the security groups
the plan makes for that site, resolved by the REAL modules/secgroups expressions (Terraform) with
the test-bed's public addresses. What the network model needs passes (Consul WAN between the
servers' floating IPs, Nomad RPC from every node of the other site to the Nomad servers), what it
does not need is refused, and no path to a private address of the other cloud exists, even with a
route forced towards it. A lent site's address is admitted once accepted and refused again once
revoked.

Consul and Nomad cannot run here (no binaries): the listeners on their ports are Python sockets
in the nodes. One bed is shared by every test of this module (set-up ~20 s on the 2-core machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from federation_bed import SAMPLE

from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.terraform import render
from support import plugins, tfharness

two_clouds = plugins.load("scripts/testbed/two_clouds.py")

SERVER_PORTS = [("tcp", p) for p in (8300, 8301, 8302, 4646, 4647, 4648, 8501)] + [("udp", 8302), ("udp", 4648)]


def _problem() -> str | None:
    if shutil.which("docker") is None or shutil.which("nsenter") is None or shutil.which("nft") is None:
        return "docker, nsenter or nft is missing (Debian packages docker.io, util-linux, nftables)"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "dockerd is not running (scripts/testbed/dockerd.sh)"
    if subprocess.run(["docker", "image", "inspect", two_clouds.IMAGE], capture_output=True, check=False).returncode:
        return f"the test-bed image {two_clouds.IMAGE} is not built (scripts/testbed/build-image.sh)"
    return None


def _inventory(tmp: Path, bed: two_clouds.Bed) -> Path:
    """Sites a and b on the bed's networks: Nomad servers at a; b's existing network leaves through
    its router's address (sites.yml outbound_addresses); a's is a created one (Terraform's router)."""
    inventory = tmp / "inv"
    inventory.mkdir()
    (inventory / "platform.yml").write_text((SAMPLE / "platform.yml").read_text())
    sample = yaml.safe_load((SAMPLE / "sites.yml").read_text())
    a = yaml.safe_load(yaml.safe_dump(sample["ai4os_sites"][0]))
    a.update(name="a", network={"create": True, "cidr": bed.cloud("a").cidr})
    a["pools"] = [p for p in a["pools"] if p["role"] != "gpu"]
    a["pools"][0]["count"] = 1
    a["pools"][3]["count"] = 1  # cpu
    b = yaml.safe_load(yaml.safe_dump(sample["ai4os_sites"][1]))
    b.update(name="b", network={"existing": "b-net", "cidr": bed.cloud("b").cidr,
                                "outbound_addresses": [f"{bed.cloud('b').router_public}/32"]})
    b["pools"][2]["count"] = 1  # cpu
    (inventory / "sites.yml").write_text(yaml.safe_dump({"ai4os_sites": [a, b], "ai4os_nomad_server_sites": ["a"]}))
    return inventory


def _load_security_groups(bed: two_clouds.Bed, inventory: Path, work: Path) -> dict[str, str]:
    """Plan -> rendered root -> the real secgroups expressions (Terraform) -> each router's rules."""
    plan = build_plan(load_inventory(inventory, check_vault=False))
    public = bed.public_addresses()
    spare = iter(f"{bed.internet_cidr.rsplit('.', 1)[0]}.{i}" for i in range(250, 200, -1))
    for node in plan["nodes"]:  # nodes the bed has no container for (the ingress nodes) still get an address
        if node["floating_ip"] and node["name"] not in public:
            public[node["name"]] = next(spare)
    root = render.render_root(plan, work / "root")
    rulesets = {}
    for call in root["module"].values():
        groups = {n: {"description": g["description"], "rules": g["rules"]} for n, g in call["secgroups"].items()}
        values = tfharness.evaluate_locals(tfharness.MODULES / "secgroups", {"groups": groups, "public_addresses": public},
                                           work / f"{call['site']}-{uuid.uuid4().hex[:6]}")
        assert isinstance(values, dict)
        roles = {name: spec["role"] for name, spec in call["secgroups"].items()}
        cloud = bed.cloud(call["site"])
        allows = [two_clouds.Allow(node.private, r["protocol"], r["port_min"], r["port_max"], r["remote_cidr"])
                  for r in values["rules"].values() if r["direction"] == "ingress" and r["remote_cidr"]
                  for node in cloud.nodes if node.role == roles[r["group"]]]
        rulesets[cloud.site] = two_clouds.load_rules(cloud, bed.internet_cidr, allows)
    return rulesets


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[two_clouds.Bed, Path, Path]]:
    problem = _problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"two-cloud test-bed unavailable in CI: {problem}")
        pytest.skip(f"two-cloud test-bed unavailable: {problem}")
    tfharness.terraform_bin()
    prefix = f"f-tc-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp("two-clouds")
    started = time.monotonic()
    try:
        bed = two_clouds.up(prefix, {"a": [("server", True), ("cpu", False)], "b": [("server", True), ("cpu", False)]})
        for cloud in bed.clouds:
            for node in cloud.nodes:
                two_clouds.listen(node.name, SERVER_PORTS if node.role == "server" else [("tcp", 4646), ("tcp", 20000)])
        inventory = _inventory(tmp, bed)
        _load_security_groups(bed, inventory, tmp)
        print(f"\ntwo-cloud test-bed up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield bed, inventory, tmp
    finally:
        two_clouds.down(prefix)


def _probe(bed: two_clouds.Bed, source: str, targets: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], bool]:
    name = source if source.startswith(bed.prefix) else f"{bed.prefix}-{source}"
    return dict(zip(targets, two_clouds.probe(name, targets), strict=True))


def test_consul_wan_between_the_servers_public_addresses(bed: Any) -> None:
    bed, _, _ = bed
    a, b = bed.node("a-server-1"), bed.node("b-server-1")
    wan = [("tcp", a.public, 8300), ("tcp", a.public, 8302), ("udp", a.public, 8302)]
    assert all(_probe(bed, "b-server-1", wan).values()), "b's Consul server reaches a's over WAN"
    back = [("tcp", b.public, 8300), ("tcp", b.public, 8302), ("udp", b.public, 8302)]
    assert all(_probe(bed, "a-server-1", back).values()), "and a's reaches b's"
    # What a server needs from its own site only stays closed to the other site's server.
    closed = [("tcp", a.public, p) for p in (8301, 8501, 4646)]
    assert not any(_probe(bed, "b-server-1", closed).values())
    # b's server node runs no Nomad agent: nothing opens Nomad's ports there.
    assert not any(_probe(bed, "a-server-1", [("tcp", b.public, 4647), ("tcp", b.public, 4648)]).values())


def test_clients_of_every_site_reach_the_nomad_servers_and_nothing_else(bed: Any) -> None:
    bed, _, _ = bed
    a = bed.node("a-server-1")
    # b's client leaves through b's router (sites.yml outbound_addresses), a's through its own router
    # back to its server's floating IP (hairpin, from the router's address Terraform reports).
    for client in ("b-cpu-1", "a-cpu-1"):
        found = _probe(bed, client, [("tcp", a.public, 4647), ("tcp", a.public, 8302), ("udp", a.public, 8302),
                                     ("tcp", a.public, 4648)])
        assert found[("tcp", a.public, 4647)], f"{client}: Nomad RPC to the servers' public address"
        assert not any(v for k, v in found.items() if k[2] != 4647), f"{client}: only Nomad RPC is open to it"


def test_no_path_to_a_private_address_of_the_other_cloud(bed: Any) -> None:
    bed, _, _ = bed
    a_server, b_cpu = bed.node("a-server-1"), bed.node("b-cpu-1")
    private = [("tcp", a_server.private, 4647), ("tcp", a_server.private, 8302), ("udp", a_server.private, 8302)]
    assert not any(_probe(bed, "b-server-1", private).values())
    assert not any(_probe(bed, bed.stranger.name, private).values())
    assert not any(_probe(bed, "a-server-1", [("tcp", b_cpu.private, 4646)]).values())
    # Even with b's router told to route a's CIDR towards a's router: a's router forwards nothing from
    # the internet to a private address that no floating IP maps.
    two_clouds.in_netns(bed.cloud("b").router, "ip", "route", "replace", bed.cloud("a").cidr, "via",
                        bed.cloud("a").router_public)
    try:
        assert not any(_probe(bed, "b-server-1", private).values())
    finally:
        two_clouds.in_netns(bed.cloud("b").router, "ip", "route", "del", bed.cloud("a").cidr)
    # Inside a cloud the private network is a network: a's client reaches its server directly.
    assert all(_probe(bed, "a-cpu-1", [("tcp", a_server.private, 4647)]).values())


def test_a_stranger_on_the_internet_reaches_nothing(bed: Any) -> None:
    bed, _, _ = bed
    a, b = bed.node("a-server-1"), bed.node("b-server-1")
    targets = [("tcp", a.public, 4647), ("tcp", a.public, 8302), ("udp", a.public, 8302), ("tcp", b.public, 8300)]
    assert not any(_probe(bed, bed.stranger.name, targets).values())


def test_a_lent_site_is_admitted_once_accepted_and_refused_once_revoked(bed: Any) -> None:
    bed, inventory, tmp = bed
    a = bed.node("a-server-1")
    record = {"kind": "ai4os_federation_lent", "site": "lab", "lender": "beta", "not_after": "2099-01-01T00:00:00Z",
              "public_addresses": [f"{bed.stranger.public}/32"], "scope": {"namespaces": ["ai4eosc"], "type": "batch"},
              "nodes": [{"name": "lab-cpu-1", "tags": "cpu", "serial": "01"}]}
    lent = inventory / "federation" / "lent" / "lab.yml"
    lent.parent.mkdir(parents=True)
    lent.write_text(yaml.safe_dump(record))
    try:
        rules = _load_security_groups(bed, inventory, tmp)
        assert f"ip saddr {bed.stranger.public}/32 tcp dport 4647-4647 accept" in rules["a"]
        found = _probe(bed, bed.stranger.name, [("tcp", a.public, 4647), ("tcp", a.public, 8302)])
        assert found == {("tcp", a.public, 4647): True, ("tcp", a.public, 8302): False}
    finally:
        lent.unlink()
        _load_security_groups(bed, inventory, tmp)
    assert not any(_probe(bed, bed.stranger.name, [("tcp", a.public, 4647)]).values())
