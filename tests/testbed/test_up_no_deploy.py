"""`ai4os-kit up` / `down` on real test-bed containers (needs dockerd, started by .ci/setup.d/10-docker.sh)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.testbed import require_docker

from ai4os_kit.model.inventory import copy_inventory

ROOT = Path(__file__).resolve().parents[2]


def kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ai4os_kit", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture
def local_copy(tmp_path: Path) -> Path:
    target = tmp_path / "tb"
    copy_inventory(ROOT / "inventories" / "local", target)
    sites = target / "sites.yml"
    sites.write_text(sites.read_text().replace("- name: local", "- name: uptest"))
    platform = target / "platform.yml"
    platform.write_text(platform.read_text().replace("ai4os_platform_name: local", "ai4os_platform_name: uptest"))
    return target


def test_up_refuses_cloud_sites(sample_inventory: Path) -> None:
    result = kit("up", str(sample_inventory))
    assert result.returncode == 2
    assert "ai4os_sites[0].testbed" in result.stderr and "ai4os-kit provision" in result.stderr
    assert not (sample_inventory / "secrets.yml").exists()


def test_up_creates_and_down_removes_the_containers(local_copy: Path) -> None:
    require_docker()
    names = ["uptest-server-1", "uptest-ingress-1", "uptest-cpu-1"]
    try:
        up = kit("up", "--no-deploy", str(local_copy))
        assert up.returncode == 0, up.stdout + up.stderr
        assert (local_copy / "secrets.yml").read_text().startswith("$ANSIBLE_VAULT;")
        assert (local_copy / "hosts.yml").exists()
        # the loopback mirror's Traefik release comes with its pin (role artifacts installs nothing without one)
        all_vars = yaml.safe_load((local_copy / "hosts.yml").read_text())["all"]["vars"]
        # the test-bed's variables sit beside the plan's facts, which the roles and platform jobs read
        assert {"ai4os_plan_sites", "ai4os_plan_datacenters", "ai4os_plan_topology"} <= set(all_vars)
        version = all_vars["traefik_version"]
        archive = Path(all_vars["ai4os_artifacts_url"]) / "traefik" / f"v{version}" / f"traefik_v{version}_linux_amd64.tar.gz"
        assert all_vars["artifacts_pins"]["traefik"][version]["amd64"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        for name in names:
            state = subprocess.run(["docker", "exec", name, "systemctl", "is-system-running"],
                                   capture_output=True, text=True)
            assert state.stdout.strip() in ("running", "degraded"), (name, state.stdout, state.stderr)
        ping = subprocess.run(["ansible", "-i", str(local_copy / "hosts.yml"), "all", "-m", "ansible.builtin.ping"],
                              capture_output=True, text=True, cwd=ROOT,
                              env=dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=str(local_copy / ".vault-pass"),
                                       PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert ping.stdout.count("SUCCESS") == 3
    finally:
        down = kit("down", str(local_copy))
    assert down.returncode == 0, down.stdout + down.stderr
    left = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout.split()
    assert not set(names) & set(left)
