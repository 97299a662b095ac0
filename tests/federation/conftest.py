"""Fixtures of the federation tests: two platform installations, A (borrower) and B (lender).

A is a copy of inventories/sample (two sites, Nomad servers at ifca) with secrets as
`ai4os-kit secrets` makes them (its own CA, vault password in <inventory>/.vault-pass)
and a hosts.yml as `provision` writes it (public addresses from the test range
198.18.0.0/15). B is a one-site platform of its own ('beta', another CA and vault
password) whose site b-lab lends its cpu pool.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ai4os_kit.model import ansible_inventory, secrets
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "inventories" / "sample"


def copy_sample(dest: Path) -> Path:
    shutil.copytree(SAMPLE, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("hosts.yml", "secrets.yml", ".vault-pass", "*.tmp", "terraform"))
    return dest


def public_hosts(path: Path, base: str = "198.18.0") -> dict[str, dict[str, str]]:
    """hosts.yml as provision writes it: every node with a floating IP has a public address."""
    plan = build_plan(load_inventory(path))
    addresses = {node["name"]: {"ansible_host": f"{base}.{i}", "ai4os_node_public_address": f"{base}.{i}"}
                 for i, node in enumerate(plan["nodes"], start=10) if node["floating_ip"]}
    ansible_inventory.write_plan(path, plan, addresses)
    return addresses


def lender_sites() -> dict:
    sample = yaml.safe_load((SAMPLE / "sites.yml").read_text())
    site = dict(next(s for s in sample["ai4os_sites"] if s["name"] == "cesnet"), name="b-lab", cloud="b-cloud")
    site["network"] = {"create": True, "cidr": "10.30.0.0/24"}
    site["pools"] = [*site["pools"], {"role": "services", "count": 1, "flavor": {"name": "standard.xlarge"},
                                      "volume_gb": 100}]
    return {"ai4os_sites": [site]}


@pytest.fixture(autouse=True)
def _own_vault_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each inventory uses its own .vault-pass (never a password file from the environment)."""
    monkeypatch.delenv(secrets.VAULT_PASSWORD_ENV, raising=False)


@pytest.fixture
def borrower(tmp_path: Path) -> Path:
    """Platform A: the sample (platform 'demo'), provisioned."""
    path = copy_sample(tmp_path / "a")
    secrets.ensure_secrets(path, "demo")
    public_hosts(path)
    return path


@pytest.fixture
def lender(tmp_path: Path) -> Path:
    """Platform B ('beta'): one site, b-lab."""
    path = copy_sample(tmp_path / "b")
    platform = (path / "platform.yml").read_text().replace("ai4os_platform_name: demo", "ai4os_platform_name: beta")
    (path / "platform.yml").write_text(platform)
    (path / "sites.yml").write_text(yaml.safe_dump(lender_sites(), sort_keys=False))
    secrets.ensure_secrets(path, "beta")
    return path
