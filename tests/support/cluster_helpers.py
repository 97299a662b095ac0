"""Helpers of the cluster-layer tests (consul, nomad, nvidia, gpu_facts): paths, running ansible."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "cluster" / "data"


def ansible_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running ansible from the repository by path (no Galaxy)."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_LIBRARY": str(ROOT / "plugins" / "modules"),
            "ANSIBLE_ACTION_PLUGINS": str(ROOT / "plugins" / "action"),
            "ANSIBLE_MODULE_UTILS": str(ROOT / "plugins" / "module_utils"),
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "ANSIBLE_LOCALHOST_WARNING": "0",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        }
    )
    return env


def ansible_bin(name: str) -> str:
    """ansible-playbook / ansible from the interpreter's venv."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH: install the kit with `pip install -e .[test]`")
    return found


def run_playbook(tmp_path: Path, playbook: Path, *args: str, inventory: str = "localhost,") -> subprocess.CompletedProcess[str]:
    """Run a playbook (by default against the implicit localhost); returns the finished process."""
    return subprocess.run(
        [ansible_bin("ansible-playbook"), "-i", inventory, "-c", "local", "-f", "20", str(playbook), *args],
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


