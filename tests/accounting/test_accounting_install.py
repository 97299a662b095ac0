"""The accounting role installs the collector from the kit's wheel on the operator's mirror, checked against its
pinned SHA-256, never by name from a package index.

The role's install tasks run on localhost (connection local) against a mirror directory holding the kit's real
wheel, built from this checkout; the virtualenv and the host's cache are in the test's directory. pip runs with
--no-deps (the dependencies are published projects; fetching them is not what is tested here).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VERSION = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
WHEEL = f"ai4os_kit-{VERSION}-py3-none-any.whl"

PLAYBOOK = """\
- name: Install tasks of the accounting role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The role's install tasks
      ansible.builtin.include_role:
        name: accounting
        tasks_from: install.yml
"""


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<mirror>/ai4os-kit/<version>/<wheel>: the wheel of this checkout, as an operator would publish it."""
    root = tmp_path_factory.mktemp("mirror")
    release = root / "ai4os-kit" / VERSION
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(release), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (release / WHEEL).is_file(), sorted(p.name for p in release.iterdir())
    return root


def _run(tmp_path: Path, mirror: Path, sha256: str) -> subprocess.CompletedProcess[str]:
    book = tmp_path / "install.yml"
    book.write_text(PLAYBOOK)
    extra = {
        "ai4os_artifacts_url": str(mirror),
        "accounting_kit_wheel_sha256": sha256,
        "accounting_ssm_install": False,
        "accounting_pip_packages": [],
        "accounting_pip_extra_args": "--no-deps",
        "accounting_venv": str(tmp_path / "venv"),
        "accounting_cache_dir": str(tmp_path / "host-cache"),
        "accounting_controller_cache_dir": str(tmp_path / "controller-cache"),
        "accounting_python": "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable,
    }
    (tmp_path / "host-cache").mkdir(exist_ok=True)
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default")
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", f"ansible_python_interpreter={sys.executable}", "-e", json.dumps(extra),
                           str(book)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_the_pinned_wheel_is_installed_by_path_and_a_rerun_changes_nothing(mirror: Path, tmp_path: Path) -> None:
    pin = hashlib.sha256((mirror / "ai4os-kit" / VERSION / WHEEL).read_bytes()).hexdigest()
    first = _run(tmp_path, mirror, pin)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    venv_python = tmp_path / "venv" / "bin" / "python"
    show = subprocess.run([str(venv_python), "-m", "pip", "show", "-f", "ai4os-kit"], capture_output=True, text=True)
    assert show.returncode == 0 and f"Version: {VERSION}" in show.stdout, show.stdout + show.stderr
    # installed from the verified copy on the host, not from an index
    direct = subprocess.run([str(venv_python), "-c", "import importlib.metadata as m; "
                             "print(m.distribution('ai4os-kit').read_text('direct_url.json'))"], capture_output=True, text=True)
    assert f"{tmp_path / 'host-cache' / WHEEL}" in direct.stdout, direct.stdout + direct.stderr
    assert hashlib.sha256((tmp_path / "host-cache" / WHEEL).read_bytes()).hexdigest() == pin
    second = _run(tmp_path, mirror, pin)
    assert second.returncode == 0, second.stdout[-4000:]
    assert "changed=0" in second.stdout.split("PLAY RECAP")[-1], second.stdout[-3000:]


def test_a_wheel_that_does_not_match_the_pin_installs_nothing(mirror: Path, tmp_path: Path) -> None:
    proc = _run(tmp_path, mirror, "0" * 64)
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    assert "accounting: CHECKSUM MISMATCH for" in out and "accounting_kit_wheel_sha256" in out and "Fix:" in out
    assert not (tmp_path / "venv").exists()
    assert not any((tmp_path / "host-cache").iterdir())
    assert not (tmp_path / "controller-cache" / WHEEL).exists()
