"""`ai4os-kit up` on a copy of inventories/local, for real: three systemd containers, playbooks/site.yml.

Nomad and Consul binaries cannot be had on these machines, so `up` must converge
everything that needs none of them (Docker running on the Docker nodes, its data
root on the xfs loop device), then stop with the "binaries not available"
message and exit 3 (incomplete: never 0). `down` must remove the containers and
detach their loop devices. With CI=true a missing Docker daemon is a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from support.testbed import require_docker

ROOT = Path(__file__).resolve().parents[2]
# Renamed from "local" so that the test never touches containers of an
# operator's own `ai4os-kit up inventories/local`.
NAME = "upfull"
NODES = [f"{NAME}-server-1", f"{NAME}-ingress-1", f"{NAME}-cpu-1"]
DOCKER_NODES = NODES[1:]

pytestmark = pytest.mark.integration


def kit(*args: str, timeout: int = 2400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ai4os_kit", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, check=False)


def node(name: str, *argv: str) -> str:
    return subprocess.run(["docker", "exec", name, *argv], capture_output=True, text=True, check=False).stdout.strip()


def attached_loops() -> set[tuple[str, str]]:
    """(device, backing inode) of every loop device attached on this machine."""
    out = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-INO"],
                         capture_output=True, text=True, check=True).stdout
    return {tuple(line.split()[:2]) for line in out.splitlines() if len(line.split()) >= 2}  # type: ignore[misc]


@pytest.fixture
def local_copy(tmp_path: Path) -> Path:
    require_docker()
    target = tmp_path / NAME
    shutil.copytree(ROOT / "inventories" / "local", target, symlinks=True,
                    ignore=shutil.ignore_patterns("hosts.yml", "secrets.yml", ".vault-pass", "*.tmp"))
    sites = target / "sites.yml"
    sites.write_text(sites.read_text().replace("- name: local", f"- name: {NAME}"))
    platform = target / "platform.yml"
    platform.write_text(platform.read_text().replace("ai4os_platform_name: local", f"ai4os_platform_name: {NAME}"))
    return target


def test_up_converges_what_needs_no_binary_then_stops_and_down_cleans_up(local_copy: Path) -> None:
    loops: dict[str, tuple[str, str]] = {}
    try:
        up = kit("up", str(local_copy))
        log = up.stdout + up.stderr
        (ROOT / ".cache").mkdir(exist_ok=True)
        (ROOT / ".cache" / "up-local.log").write_text(log)
        assert up.returncode == 3, f"`ai4os-kit up` exit {up.returncode}, expected 3 (stopped for binaries):\n{log[-6000:]}"
        assert "AI4OS-SKIP: binaries not available: consul" in up.stdout
        assert re.search(r"stopped: binaries not available: consul \S+", up.stderr), up.stderr
        assert "Traceback" not in log
        # Every play up to the binaries converged without a failure on any node.
        recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", up.stdout, re.M)
        assert {h for h, _, _ in recap} >= set(NODES), recap
        assert all(u == "0" and f == "0" for _, u, f in recap), recap

        hosts = yaml.safe_load((local_copy / "hosts.yml").read_text())["all"]
        assert set(hosts["children"]["volumes"]["hosts"]) == set(DOCKER_NODES)
        for name in DOCKER_NODES:
            device = hosts["hosts"][name]["volumes_device"]
            assert node(name, "cat", "/etc/ai4os-testbed/loop-data") == device
            # The engine really runs, its data root on the xfs data volume.
            assert node(name, "systemctl", "is-active", "docker") == "active", node(name, "journalctl", "-u", "docker", "-n", "30")
            assert node(name, "docker", "info", "--format", "{{.Driver}} {{.DockerRootDir}}") == "overlay2 /data/docker"
            assert node(name, "findmnt", "-n", "-o", "SOURCE,FSTYPE", "--mountpoint", "/data").split() == [device, "xfs"]
            assert node(name, "stat", "-f", "-c", "%T", "/data/docker") == "xfs"
            loops[name] = (device, node(name, "stat", "-c", "%i", "/var/lib/ai4os-testbed/data.img"))
        # Traefik needs no Nomad/Consul binary: it runs on the ingress node (binary from the test-bed
        # mirror, the site's wildcard certificate from the platform CA).
        ingress = NODES[1]
        assert node(ingress, "systemctl", "is-active", "traefik") == "active"
        assert node(ingress, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8081/ping") == "200"
        served = x509.load_pem_x509_certificate(node(ingress, "cat", "/etc/traefik/tls/site.crt").encode())
        assert served.subject.rfc4514_string() == f"CN=*.{NAME}.ai4os.test"
        # The server runs no Docker; on every node the Consul agent is prepared (unit, configuration), not started.
        assert node(NODES[0], "systemctl", "is-active", "docker") != "active"
        for name in NODES:
            assert node(name, "systemctl", "show", "-p", "FragmentPath", "--value", "consul") == "/etc/systemd/system/consul.service"
            assert node(name, "systemctl", "is-active", "consul") != "active"
        assert set(loops.values()) <= attached_loops(), (loops, attached_loops())
    finally:
        down = kit("down", str(local_copy), timeout=600)
    assert down.returncode == 0, down.stdout + down.stderr
    left = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert not set(NODES) & set(left)
    assert not set(loops.values()) & attached_loops(), "down left loop devices attached"
