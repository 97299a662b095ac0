"""Render the platform layer with the real playbook (ansible-playbook playbooks/platform.yml,
submission off: no Nomad is obtainable here) for the sample inventory, and hand the
rendered files to the tests.

The inventory is a copy of inventories/sample with everything switched on, the Ansible
inventory (hosts.yml) written from the plan by the kit itself, test secrets, and the GPU
facts of a real H100 (tests/cluster/data/gpu-h100) as host facts of one GPU node.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.paths import ROOT, SAMPLE_INVENTORY

from support import plugins

PLAYBOOK = ROOT / "playbooks" / "platform.yml"
H100 = ROOT / "tests" / "cluster" / "data" / "gpu-h100" / "nvidia-smi-query.csv"

SECRETS = {
    "ai4os_oidc_oauth2_proxy_client_secret": "test-oauth2-proxy-secret",
    "ai4os_oidc_oauth2_proxy_cookie_secret": "0123456789abcdef0123456789abcdef",
    "ai4os_oidc_nomad_client_secret": "test-nomad-secret",
    "ai4os_secret_consul_token_traefik": "6a0d1c55-1b8e-4f4e-9d0e-8f7c2f9e1a01",
    "ai4os_secret_nomad_token_provenance": "9d2f7a10-5b3c-4e8d-a1f6-0c4b8e2d7f35",
}
# Written into every test inventory's secrets.yml: the tag that marks the platform's own services
# for Traefik (roles/traefik constraints) is, by design, in the platform's rendered job files.
PLATFORM_TAG = {"ai4os_secret_traefik_platform_tag": "test-platform-tag-0123456789abcdef"}
# The components whose output depends on the provider (the Keycloak rendering renders only these).
KEYCLOAK_COMPONENTS = ["oidc", "papi", "dashboard", "monitoring"]
# EGI Check-in directly: possible only without PAPI and the dashboard (PAPI reads Keycloak roles only).
CHECKIN_WITHOUT_PAPI = {"ai4os_enable_papi": False, "ai4os_enable_dashboard": False}
CHECKIN = {"provider": "egi_checkin", "issuer": "https://aai.egi.eu/auth/realms/egi",
           "checkin": {"entitlement_prefix": "urn:mace:egi.eu:group:", "entitlement_authority": "aai.egi.eu",
                       "roles": ["member", "vm_operator"]},
           "operators_group": "urn:mace:egi.eu:group:vo.ai4eosc.eu:role=platform-admin#aai.egi.eu"}
ALL_ON = {
    "ai4os_enable_mlflow": True,
    "ai4os_enable_flower": True,
    "ai4os_enable_vault": True,
    "ai4os_mlflow_backend_store_uri": "sqlite:////mlflow/mlflow.db",
    "ai4os_enable_oscar": True,
    "ai4os_oscar_clusters": {"vo.ai4eosc.eu": {"endpoint": "https://inference.example.org", "cluster_id": "oscar-ai4eosc"}},
    "ai4os_enable_drift": True,
    "ai4os_enable_provenance": True,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def h100_facts() -> dict[str, Any]:
    """GPU facts of a real H100, parsed by the kit's own module_utils."""
    mod = plugins.load("plugins/module_utils/ai4os_gpu.py")
    return dict(mod.summarize(mod.parse_query_csv(H100.read_text())))


@dataclass
class Rendered:
    """One rendering of the platform layer."""

    inventory: Path
    out: Path
    plan: dict[str, Any]
    platform: dict[str, Any]
    result: subprocess.CompletedProcess[str]

    def file(self, component: str, name: str) -> Path:
        return self.out / component / name

    def jobs(self) -> list[Path]:
        return sorted(self.out.rglob("*.nomad.hcl"))


def make_inventory(tmp: Path, overrides: dict[str, Any], secrets: dict[str, Any] | None = None,
                   gpu_facts: bool = True, broken: dict[str, Any] | None = None) -> Path:
    """A copy of the sample inventory with platform.yml overrides and a hosts.yml from the plan.

    ``broken`` overrides are applied after hosts.yml was written (the kit refuses to plan
    an invalid inventory), to test what the checks say about them.
    """
    inv = tmp / "inventory"
    inv.mkdir(parents=True)
    for name in ("platform.yml", "sites.yml"):
        shutil.copy(SAMPLE_INVENTORY / name, inv / name)
    platform = yaml.safe_load((inv / "platform.yml").read_text())
    platform.update(copy.deepcopy(overrides))
    (inv / "platform.yml").write_text(yaml.safe_dump(platform, sort_keys=False))
    plan = build_plan(load_inventory(inv, check_vault=False))
    ansible_inventory.write(inv, ansible_inventory.render(plan))
    group_vars = inv / "group_vars" / "all"
    group_vars.mkdir(parents=True)
    shutil.copy(inv / "platform.yml", group_vars / "platform.yml")
    shutil.copy(inv / "sites.yml", group_vars / "sites.yml")
    if secrets:
        (group_vars / "secrets.yml").write_text(yaml.safe_dump({**PLATFORM_TAG, **secrets}))
    if gpu_facts and plan["groups"].get("gpu"):
        host_vars = inv / "host_vars"
        host_vars.mkdir()
        (host_vars / f"{plan['groups']['gpu'][0]}.yml").write_text(yaml.safe_dump({"ai4os_gpu": h100_facts()}))
    if broken:
        platform.update(copy.deepcopy(broken))
        for target in (inv / "platform.yml", group_vars / "platform.yml"):
            target.write_text(yaml.safe_dump(platform, sort_keys=False))
    return inv


def render(inv: Path, out: Path, extra: dict[str, Any] | None = None,
           check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real platform playbook, submission off (unless ``extra`` says so); return the finished process."""
    extra_vars = {"platform_job_submit": False, "platform_job_render_dir": str(out), **(extra or {})}
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="default",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv / "hosts.yml"), str(PLAYBOOK),
           "-e", json.dumps(extra_vars)] + (["--check"] if check else [])
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def webdav_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory, webdav_port: int) -> Rendered:
    """Everything switched on, the sample's Keycloak, the storage pointing at a local WebDAV port."""
    tmp = tmp_path_factory.mktemp("platform")
    overrides = dict(ALL_ON, ai4os_storage_webdav_url=f"https://127.0.0.1:{webdav_port}/remote.php/dav/files/")
    inv = make_inventory(tmp, overrides, SECRETS)
    result = render(inv, tmp / "out")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    plan = build_plan(load_inventory(inv, check_vault=False))
    return Rendered(inventory=inv, out=tmp / "out", plan=plan,
                    platform=yaml.safe_load((inv / "platform.yml").read_text()), result=result)


@pytest.fixture(scope="session")
def rendered_checkin(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """EGI Check-in directly (entitlements), PAPI and the dashboard off: the OIDC wiring, Vault, monitoring."""
    tmp = tmp_path_factory.mktemp("platform-checkin")
    platform = yaml.safe_load((SAMPLE_INVENTORY / "platform.yml").read_text())
    oidc = {**{k: v for k, v in platform["ai4os_oidc"].items() if k != "keycloak"}, **CHECKIN}
    inv = make_inventory(tmp, {"ai4os_oidc": oidc, "ai4os_enable_vault": True, **CHECKIN_WITHOUT_PAPI}, SECRETS,
                         gpu_facts=False)
    result = render(inv, tmp / "out", {"platform_job_components": ["oidc", "vault", "monitoring"]})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    plan = build_plan(load_inventory(inv, check_vault=False))
    return Rendered(inventory=inv, out=tmp / "out", plan=plan,
                    platform=yaml.safe_load((inv / "platform.yml").read_text()), result=result)


@pytest.fixture(scope="session")
def rendered_keycloak(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The Keycloak variant (roles access:<vo>:<level>, audience)."""
    tmp = tmp_path_factory.mktemp("platform-kc")
    platform = yaml.safe_load((SAMPLE_INVENTORY / "platform.yml").read_text())
    oidc = dict(platform["ai4os_oidc"], provider="keycloak", issuer="https://login.example.org/realms/ai4os",
                keycloak={"audience": "ai4os-api", "role_prefix": "access:", "roles_claim": "realm_access.roles",
                          "levels": ["ap-u"]},
                operators_group="access:vo.ai4eosc.eu:admin")
    oidc.pop("checkin", None)
    inv = make_inventory(tmp, {"ai4os_oidc": oidc}, SECRETS, gpu_facts=False)
    result = render(inv, tmp / "out", {"platform_job_components": KEYCLOAK_COMPONENTS})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    plan = build_plan(load_inventory(inv, check_vault=False))
    return Rendered(inventory=inv, out=tmp / "out", plan=plan,
                    platform=yaml.safe_load((inv / "platform.yml").read_text()), result=result)
