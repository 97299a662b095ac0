"""Shared fixtures: a private copy of the sample inventory per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "inventories" / "sample"


def copy_sample(dest: Path) -> Path:
    target = dest / "inv"
    shutil.copytree(SAMPLE, target, symlinks=True,
                    ignore=shutil.ignore_patterns("hosts.yml", "secrets.yml", ".vault-pass", "*.tmp", "terraform"))
    return target


@pytest.fixture
def sample_inventory(tmp_path: Path) -> Path:
    """A writable copy of inventories/sample (without generated files)."""
    return copy_sample(tmp_path)
