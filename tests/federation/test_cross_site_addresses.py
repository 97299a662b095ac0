"""Addresses known only after provisioning reach the other sites' rules in one `provision`, and adding
a site is one more apply: real Terraform applies the rendered root, whose site modules are the TEST
DOUBLE of modules/site (tests/terraform/fixtures/fake_site: terraform_data stands for floating IPs
and routers, the security-group rules come from the REAL modules/secgroups expressions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from federation_bed import copy_sample

from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.terraform import render
from support import tfharness


def _apply(plan: dict[str, Any], root_dir: Path, fake: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]], str]:
    """Apply the rendered root; (public addresses, {site: effective rules}, apply output)."""
    root = tfharness.strip_openstack(render.render_root(plan, root_dir), fake)
    for name in root["module"]:
        root["output"][f"rules_{name}"] = {"value": f"${{module.{name}.secgroup_rules}}"}
    render.write_root(root, root_dir)
    tfharness.run(["init", "-input=false"], root_dir)
    applied = tfharness.run(["apply", "-auto-approve", "-input=false"], root_dir)
    outputs = {k: v["value"] for k, v in json.loads(tfharness.run(["output", "-json"], root_dir).stdout).items()}
    rules = {name.removeprefix("rules_site_"): value for name, value in outputs.items() if name.startswith("rules_")}
    return outputs["public_addresses"], rules, applied.stdout


def _check(plan: dict[str, Any], public: dict[str, str], rules: dict[str, dict[str, Any]]) -> None:
    """Every rule naming a public address admits exactly that address; no rule names another site's CIDR."""
    cidrs = {s["name"]: s["network"]["cidr"] for s in plan["sites"]}
    for site, effective in rules.items():
        named = [r for r in effective.values() if r["remote_address"]]
        assert named, f"{site}: no rule admits another site's public address"
        for rule in named:
            assert rule["remote_cidr"] == f"{public[rule['remote_address']]}/32", rule
        others = {c for s, c in cidrs.items() if s != site}
        assert not {r["remote_cidr"] for r in effective.values()} & others


def test_one_provision_puts_every_sites_addresses_into_the_others_rules(tmp_path: Path) -> None:
    tfharness.terraform_bin()
    inventory = copy_sample(tmp_path / "inv")
    fake = tfharness.fake_site_module(tmp_path / "fake_site")
    root_dir = inventory / "terraform"
    plan = build_plan(load_inventory(inventory))
    public, rules, _ = _apply(plan, root_dir, fake)
    _check(plan, public, rules)
    # cesnet's server admits ifca's Consul servers at their floating IPs (and ifca's Nomad servers cesnet's
    # nodes, router and outbound address), though both were created in that same apply.
    wan = {r["remote_address"] for r in rules["cesnet"].values() if r["port_min"] == 8302 and r["remote_address"]}
    assert wan == {"ifca-server-1", "ifca-server-2", "ifca-server-3", "cesnet-server-1"}
    rpc = {r["remote_address"] or r["remote_cidr"] for r in rules["ifca"].values()
           if r["port_min"] == 4647 and r["group"] == "demo-ifca-server"}
    assert {"cesnet-ingress-1", "cesnet-server-1", "ifca-router", "198.51.100.20/32"} <= rpc

    # A third site: sites.yml gains it, one more apply admits its addresses everywhere; the rules the
    # first two sites had keep their keys (nothing of theirs is replaced).
    sites = yaml.safe_load((inventory / "sites.yml").read_text())
    third = yaml.safe_load(yaml.safe_dump(sites["ai4os_sites"][1]))
    third.update(name="tubs", cloud="tubs-cloud", network={"create": True, "cidr": "10.40.0.0/24"})
    sites["ai4os_sites"].append(third)
    (inventory / "sites.yml").write_text(yaml.safe_dump(sites, sort_keys=False))
    grown = build_plan(load_inventory(inventory))
    public2, rules2, applied = _apply(grown, root_dir, fake)
    _check(grown, public2, rules2)
    assert "0 destroyed" in applied
    for site in ("ifca", "cesnet"):
        assert set(rules[site]) <= set(rules2[site]), f"{site}: a rule was replaced"
        assert any(r["remote_address"] == "tubs-server-1" for r in rules2[site].values())
    assert {k: v for k, v in public2.items() if k in public} == public  # existing addresses kept
