"""Render the consul/nomad role templates for the nodes of an inventory (ansible-playbook,
tests/cluster/render_config.yml), with the host variables `ai4os-kit plan` writes and random
secrets shaped as `ai4os-kit secrets` writes them. Shared by the rendered-config tests."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path
from typing import Any

import yaml
from support.cluster_helpers import ROOT, run_playbook

from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.model.secrets import CONSUL_TOKENS, NOMAD_TOKENS

SAMPLE = ROOT / "inventories" / "sample"


def test_secrets() -> dict[str, str]:
    """Random secrets with the names and shapes of secrets.yml (CA placeholders: rendering only)."""
    return {
        "ai4os_secret_consul_gossip_key": base64.b64encode(os.urandom(32)).decode(),
        "ai4os_secret_nomad_gossip_key": base64.b64encode(os.urandom(32)).decode(),
        "ai4os_secret_consul_bootstrap_token": str(uuid.uuid4()),
        "ai4os_secret_nomad_bootstrap_token": str(uuid.uuid4()),
        **{f"ai4os_secret_consul_token_{name}": str(uuid.uuid4()) for name in CONSUL_TOKENS},
        **{f"ai4os_secret_nomad_token_{name}": str(uuid.uuid4()) for name in NOMAD_TOKENS},
        **{f"ai4os_secret_nomad_accessor_{name}": str(uuid.uuid4()) for name in NOMAD_TOKENS},
        "ai4os_secret_ca_cert": "-----BEGIN CERTIFICATE-----\n(not used when rendering)\n-----END CERTIFICATE-----\n",
        "ai4os_secret_ca_key": "-----BEGIN EC PRIVATE KEY-----\n(not used)\n-----END EC PRIVATE KEY-----\n",
    }


test_secrets.__test__ = False  # a helper, not a test


def render_cluster(tmp_path: Path, inventory: Path = SAMPLE, extra: dict[str, Any] | None = None,
                   limit: str = "all") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(plan, secrets, {node: {file name: rendered text}}) for the nodes matching ``limit``."""
    plan = build_plan(load_inventory(inventory))
    hosts = ansible_inventory.render(plan)
    for index, (_, hostvars) in enumerate(hosts["all"]["hosts"].items(), start=10):
        hostvars["ansible_host"] = f"10.0.0.{index}"  # stands in for the address the facts give
    (tmp_path / "hosts.yml").write_text(ansible_inventory.dump(hosts))
    secrets = test_secrets()
    platform = yaml.safe_load((inventory / "platform.yml").read_text())
    variables = {**platform, **secrets, "render_out": str(tmp_path / "out.json"), **(extra or {})}
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(variables))
    proc = run_playbook(tmp_path, ROOT / "tests" / "cluster" / "render_config.yml", "--limit", limit,
                        "-e", f"@{tmp_path / 'vars.yml'}", inventory=str(tmp_path / "hosts.yml"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return plan, secrets, json.loads((tmp_path / "out.json").read_text())
