"""Fixtures of the Terraform tests: the sample plan and the terraform CLI."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "inventories" / "sample"


@pytest.fixture(scope="session")
def sample_plan_frozen() -> dict[str, Any]:
    return build_plan(load_inventory(SAMPLE, check_vault=False))


@pytest.fixture
def sample_plan(sample_plan_frozen: dict[str, Any]) -> dict[str, Any]:
    """The real node plan of inventories/sample (a private copy per test)."""
    return copy.deepcopy(sample_plan_frozen)


@pytest.fixture
def terraform() -> str:
    from support import tfharness
    return tfharness.terraform_bin()
