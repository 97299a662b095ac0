"""playbooks/hosts.yml on hosts that cannot be reached: the first play stops on each, naming it and the fix.

One real test-bed container with sshd answers for the reachable host (root with a key) and for
the wrong SSH user (same address, user ubuntu: refused); a port nobody listens on stands for a
node that is down, a container that does not exist for a test-bed node that was never started.
Nothing after the reach play may run (any_errors_fatal: a half-prepared cluster is worse).
With CI=true a missing Docker daemon is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.testbed import require_docker

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NODE = "ai4os-reach-1"
SCENARIO = "reach"

pytestmark = pytest.mark.integration


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, MOLECULE_PROJECT_DIRECTORY=str(ROOT), MOLECULE_SCENARIO_NAME=SCENARIO,
                ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="False",
                ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
                PATH=f"{BIN}:{os.environ.get('PATH', '')}")


def _shared_playbook(name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    extra = json.dumps({"molecule_yml": {"platforms": [{"name": NODE}]}})
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(ROOT / "playbooks" / "testbed" / name),
                           "-e", extra, "-e", f"ansible_python_interpreter={sys.executable}"],
                          env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture
def sshd_node(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A test-bed container whose sshd lets root in with a fresh key: (address, private key)."""
    require_docker()
    created = _shared_playbook("create.yml", tmp_path)
    try:
        assert created.returncode == 0, created.stdout[-3000:] + created.stderr[-2000:]
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        setup = ("install -d -m 0700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 0600 /root/.ssh/authorized_keys"
                 " && systemctl start ssh")
        subprocess.run(["docker", "exec", "-i", NODE, "sh", "-c", setup], input=key.with_suffix(".pub").read_text(),
                       text=True, check=True)
        address = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", NODE],
                                 capture_output=True, text=True, check=True).stdout.strip()
        yield address, key
    finally:
        _shared_playbook("destroy.yml", tmp_path)


def test_the_reach_play_stops_on_each_unreachable_host_naming_it_and_the_fix(sshd_node: tuple[str, Path],
                                                                              tmp_path: Path) -> None:
    address, key = sshd_node
    ssh = {"ansible_host": address, "ansible_ssh_private_key_file": str(key),
           "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10",
           "ansible_python_interpreter": "/usr/bin/python3"}
    hosts = {
        "good-1": {**ssh, "ansible_user": "root"},
        "wronguser-1": {**ssh, "ansible_user": "ubuntu", "ai4os_node_site": "ifca"},
        "down-1": {**ssh, "ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "root"},
        "gone-1": {"ansible_connection": "community.docker.docker", "ansible_host": "ai4os-reach-never-started"},
    }
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"base": {"hosts": hosts}}}}))
    # --skip-tags validate: this inventory is hosts.yml alone, not a kit inventory `ai4os-kit check` would pass.
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / "hosts.yml"),
                          "--skip-tags", "validate"],
                         env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    out = " ".join(run.stdout.split())  # messages are folded over lines
    assert run.returncode != 0, out
    assert "Traceback" not in run.stdout + run.stderr
    # The reachable host answered the same play.
    assert "ok: [good-1]" in run.stdout, out
    assert f"preflight: wronguser-1 cannot be reached (ssh to {address} as ubuntu)" in out, out
    assert "log in as the user of the node's image: set ssh.user of site ifca in sites.yml" in out
    assert "preflight: down-1 cannot be reached (ssh to 127.0.0.1 as root)" in out
    assert "check that the node is running and that 127.0.0.1 is its address" in out
    assert "preflight: gone-1 cannot be reached (container ai4os-reach-never-started (community.docker.docker))" in out
    assert "start the test-bed containers (ai4os-kit up INVENTORY)" in out
    assert "preflight: good-1 cannot be reached" not in out
    # Stopped there: no fact gathering, no host checks, nothing installed anywhere.
    assert "PLAY [Host checks and OS baseline]" not in run.stdout
    assert "NO MORE HOSTS LEFT" in run.stdout
