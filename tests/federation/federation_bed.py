"""Helpers of the federation tests: copies of the sample inventory and a lender's sites."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "inventories" / "sample"


def copy_sample(dest: Path) -> Path:
    """inventories/sample copied to ``dest`` (without generated files)."""
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
