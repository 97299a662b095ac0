"""`ai4os-kit up` / `down`: the local platform on test-bed containers.

`up` validates the inventory (its sites must be `testbed: true`), generates
the secrets if missing, writes hosts.yml, creates one systemd container per
node with the test-bed recipe (molecule/_shared/create.yml, the same one the
molecule scenarios use) and runs playbooks/site.yml. Where the Nomad/Consul
binaries cannot be had, the roles converge everything before the binary
install and print "binaries not available"; `up` then reports exactly that
and exits with code 3 (incomplete, not failed, never reported as success).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ai4os_kit.errors import InputError, KitError
from ai4os_kit.paths import ROOT

EXIT_INCOMPLETE = 3
SKIP_MARKER = re.compile(r"AI4OS-SKIP: (binaries not available: [^\"'\n]+)")


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _platforms(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": n["name"], "hostname": n["name"], "groups": n["groups"]} for n in plan["nodes"]]


def _require_testbed(plan: dict[str, Any], sites_file: Path) -> None:
    for i, site in enumerate(plan["sites"]):
        if not site["testbed"]:
            raise InputError(str(sites_file), f"ai4os_sites[{i}].testbed",
                             f"site '{site['name']}' is not a test-bed site; `up` only creates local containers",
                             "use `ai4os-kit provision` for cloud sites, or set testbed: true")


def _docker_ready() -> None:
    try:
        ok = subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        raise KitError("the Docker daemon is not reachable; start it with scripts/testbed/dockerd.sh "
                       "(or `systemctl start docker`) and re-run")


def _env(scenario: str, vault_pass: Path | None) -> dict[str, str]:
    env = dict(os.environ, MOLECULE_PROJECT_DIRECTORY=str(ROOT), MOLECULE_SCENARIO_NAME=scenario,
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if vault_pass is not None:
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(vault_pass)
    return env


def _containers(action: str, plan: dict[str, Any], env: dict[str, str]) -> None:
    playbook = ROOT / "molecule" / "_shared" / f"{action}.yml"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"molecule_yml": {"platforms": _platforms(plan)}}, fh)
        extra = fh.name
    try:
        print(f"== {action} {len(plan['nodes'])} test-bed container(s)", flush=True)
        rc = subprocess.run([_bin("ansible-playbook"), "-i", "localhost,", str(playbook), "-e", f"@{extra}",
                             "-e", f"ansible_python_interpreter={sys.executable}"],
                            env=env, cwd=ROOT).returncode
    finally:
        os.unlink(extra)
    if rc != 0:
        raise KitError(f"{action} of the test-bed containers failed (see the Ansible output above)")


def _run_site(inventory: Path, env: dict[str, str], check: bool) -> tuple[int, list[str]]:
    cmd = [_bin("ansible-playbook"), "-i", str(inventory / "hosts.yml"), str(ROOT / "playbooks" / "site.yml")]
    if check:
        cmd += ["--check", "--diff"]
    print("== " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    missing: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        match = SKIP_MARKER.search(line)
        if match and match.group(1) not in missing:
            missing.append(match.group(1))
    return proc.wait(), missing


def cmd_up(args: argparse.Namespace) -> int:
    from ai4os_kit import ansible_inventory, secrets
    from ai4os_kit.inventory import load_inventory
    from ai4os_kit.plan import build_plan

    inv = load_inventory(args.inventory)
    plan = build_plan(inv)
    _require_testbed(plan, inv.sites_file)
    _docker_ready()
    created, _ = secrets.ensure_secrets(inv.path, plan["platform"]["name"])
    if created:
        print(f"generated {len(created)} secret(s) in {inv.secrets_file}")
    ansible_inventory.write(inv.path, ansible_inventory.render(plan))
    pw_file, _ = secrets.password_file(inv.path, create=False)
    env = _env(f"platform-{plan['platform']['name']}", pw_file.resolve())
    _containers("create", plan, env)
    if args.no_deploy:
        print(f"containers are up; deploy with: ansible-playbook -i {inv.path / 'hosts.yml'} playbooks/site.yml")
        return 0
    rc, missing = _run_site(inv.path, env, args.check)
    if rc != 0:
        raise KitError(f"playbooks/site.yml failed (exit {rc}); the message above names the host and the fix")
    if missing:
        print("\nstopped: " + "; ".join(missing) + ".\n"
              "Everything that needs no Nomad/Consul binary is converged (users, directories, certificates, "
              "configuration, units); the agents were not started and no platform job was submitted.\n"
              "fix: set ai4os_artifacts_url (or ai4os_artifacts_dir) to a mirror holding those releases, then re-run "
              f"`ai4os-kit up {args.inventory}`.", file=sys.stderr)
        return EXIT_INCOMPLETE
    print(f"the local platform is up ({len(plan['nodes'])} node(s)); remove it with `ai4os-kit down {args.inventory}`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from ai4os_kit.inventory import load_inventory
    from ai4os_kit.plan import build_plan

    inv = load_inventory(args.inventory, check_vault=False)
    plan = build_plan(inv)
    _require_testbed(plan, inv.sites_file)
    _docker_ready()
    _containers("destroy", plan, _env(f"platform-{plan['platform']['name']}", None))
    print(f"removed the test-bed containers of {args.inventory}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("up", help="create the local platform on test-bed containers and deploy it",
                       description="Create one systemd container per node of a test-bed inventory "
                                   "(sites with testbed: true) and run playbooks/site.yml on them. "
                                   "Exit 3: stopped because Nomad/Consul binaries are not available.")
    p.add_argument("inventory", metavar="INVENTORY", help="test-bed inventory directory (e.g. inventories/local)")
    p.add_argument("--no-deploy", action="store_true", help="only create the containers and hosts.yml")
    p.add_argument("--check", action="store_true", help="run site.yml with --check --diff (changes nothing on the nodes)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="remove the local platform's test-bed containers",
                       description="Remove the containers and the network `ai4os-kit up` created.")
    p.add_argument("inventory", metavar="INVENTORY", help="test-bed inventory directory")
    p.set_defaults(func=cmd_down)
