"""Running the kit's playbooks against an inventory's hosts.yml, in the open."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.errors import InputError, KitError
from ai4os_kit.paths import HOSTS_FILE, PASS_FILE, VAULT_PASSWORD_ENV, checkout_path


def hosts_file(inventory: Path) -> Path:
    hosts = Path(inventory) / HOSTS_FILE
    if not hosts.is_file():
        raise InputError(str(hosts), "", "no Ansible inventory: this platform was never provisioned or planned",
                         "run `ai4os-kit provision INVENTORY` (cloud sites) or `ai4os-kit up INVENTORY` (test-bed) first")
    return hosts


def inventory_hosts(inventory: Path) -> dict[str, dict[str, Any]]:
    """Every host of hosts.yml with its host variables (hosts.yml is the deployed state)."""
    data = yaml.safe_load(hosts_file(inventory).read_text(encoding="utf-8")) or {}
    found: dict[str, dict[str, Any]] = {}

    def walk(group: dict[str, Any]) -> None:
        for name, hostvars in (group.get("hosts") or {}).items():
            found.setdefault(name, {}).update(hostvars or {})
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(data.get("all") or {})
    return found


def forget_hosts(inventory: Path, names: Sequence[str]) -> None:
    """Take hosts out of hosts.yml (every group), keeping everything else as it is."""
    file = hosts_file(inventory)
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}

    def walk(group: dict[str, Any]) -> None:
        hosts = group.get("hosts") or {}
        for name in names:
            hosts.pop(name, None)
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk(data.get("all") or {})
    tmp = file.with_suffix(".yml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    tmp.replace(file)


def ansible_playbook() -> str:
    candidate = Path(sys.executable).parent / "ansible-playbook"
    found = str(candidate) if candidate.exists() else shutil.which("ansible-playbook")
    if not found:
        raise KitError("ansible-playbook is not installed next to the kit nor on PATH; install the kit with "
                       "`pip install -e .` in a checkout")
    return found


def run(inventory: Path, playbook: str, extra: dict[str, Any] | None = None, ansible_args: Sequence[str] = (),
        to_stderr: bool = False) -> int:
    """ansible-playbook -i <inventory>/hosts.yml playbooks/<playbook> [-e <extra>] [ansible_args]; its exit code.
    to_stderr: its output goes to stderr (stdout is the command's own, e.g. JSON)."""
    inventory = Path(inventory).resolve()
    root = checkout_path("playbooks").parent
    argv = [ansible_playbook(), "-i", str(hosts_file(inventory)), str(root / "playbooks" / playbook)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    argv += list(ansible_args)
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"))
    password = inventory / PASS_FILE
    if VAULT_PASSWORD_ENV not in env and password.is_file():
        env[VAULT_PASSWORD_ENV] = str(password)
    out = sys.stderr if to_stderr else sys.stdout
    print("== " + shlex.join(argv), file=out, flush=True)
    return subprocess.run(argv, env=env, cwd=root, check=False, stdout=out.fileno()).returncode
