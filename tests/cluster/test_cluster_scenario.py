"""The molecule `cluster` scenario's nodes carry exactly what `ai4os-kit plan` makes
from tests/cluster/data/cluster-inventory: node names, groups and host variables."""

from __future__ import annotations

import yaml
from support.cluster_helpers import DATA, ROOT

from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan


def test_scenario_matches_the_plan() -> None:
    scenario = yaml.safe_load((ROOT / "molecule" / "cluster" / "molecule.yml").read_text())
    inventory = ansible_inventory.render(build_plan(load_inventory(DATA / "cluster-inventory")))
    hosts = inventory["all"]["hosts"]
    groups = {name: set(members["hosts"]) for name, members in inventory["all"]["children"].items()}
    assert [p["name"] for p in scenario["platforms"]] == list(hosts)
    for platform in scenario["platforms"]:
        assert set(platform["groups"]) == {g for g, members in groups.items() if platform["name"] in members}
    for name, hostvars in hosts.items():
        expected = {k: v for k, v in hostvars.items() if not k.startswith("ansible_")}
        assert scenario["provisioner"]["inventory"]["host_vars"][name] == expected
