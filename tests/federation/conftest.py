"""Fixtures of the federation tests: two platform installations, A (borrower) and B (lender).

A is a copy of inventories/sample (two sites, Nomad servers at ifca) with secrets as
`ai4os-kit secrets` makes them (its own CA, vault password in <inventory>/.vault-pass)
and a hosts.yml as `provision` writes it (public addresses from the test range
198.18.0.0/15). B is a one-site platform of its own ('beta', another CA and vault
password) whose site b-lab lends its cpu pool.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from federation_bed import copy_sample, lender_sites, public_hosts

from ai4os_kit.model import secrets


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
