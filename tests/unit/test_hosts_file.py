"""hosts.yml as write_plan writes it holds exactly the inventory render() gives, for YAML and for Ansible.

write_plan streams hosts.yml in a compact form (a pool's shared variables anchored once and
merged with YAML's merge key, a group's hosts as a flow mapping): these tests load the file
back with PyYAML (libyaml's loader and the pure-Python one) and with Ansible itself
(`ansible-inventory`, the YAML inventory plugin) and compare with render()'s dict.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
LOADERS = [yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)]

# Connection variables as Terraform's inventory output and discovery give them, and values
# YAML would read as something else if they were written plain.
ADDRESSES = {"ansible_host": "10.10.0.5", "ansible_user": "ubuntu", "ansible_port": 2222,
             "ansible_ssh_common_args": "-o ProxyJump=ubuntu@192.0.2.10 -o 'StrictHostKeyChecking=accept-new'"}
AWKWARD = ["yes", "No", "ON", "y", "~", "null", "", " lead", "trail ", "a: b", "a #c", "#x", "-x", "- x", "1e3",
           "1e-05", "0o17", "0x1F", "012", "12:30", "2024-01-01", "1_000", ".inf", "é", "😀", "a\x7fb", "line\nbreak",
           "tab\tx", "\u2028", "\x85", "\ufeff", 'quote"s', "back\\slash", "{a}", "[b]", "a,b", "*x", "&y", "!t", "%p",
           "@a", "|", ">", "<<", "=", "/srv/ai4os", "x" * 300, 0, -1, 10**30, True, None, 1.5, 1e-05, 1e16, -0.0,
           float("inf"), [], {}, [1, "yes", None, {"k": ["on"]}], {1: "int key", None: "null key", "a b": "yes"}]


def _plan_scale() -> Any:
    """benchmarks/plan_scale.py, whose generated inventories these tests write too."""
    spec = importlib.util.spec_from_file_location("plan_scale", ROOT / "benchmarks" / "plan_scale.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generated(tmp_path: Path, sites: int, per_site: int) -> dict[str, Any]:
    inv = tmp_path / "generated"
    inv.mkdir()
    _plan_scale().generate(inv, sites, per_site)
    return build_plan(load_inventory(inv, check_vault=False))


def _loaded(path: Path, loader: Any) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


def _written(tmp_path: Path, plan: dict[str, Any], addresses: dict[str, dict[str, Any]] | None = None) -> Path:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return ansible_inventory.write_plan(out, plan, addresses)


@pytest.mark.parametrize("addressed", [False, True])
@pytest.mark.parametrize("inventory", ["sample", "local"])
def test_hosts_file_loads_to_the_rendered_inventory(tmp_path: Path, inventory: str, addressed: bool) -> None:
    plan = build_plan(load_inventory(ROOT / "inventories" / inventory, check_vault=False))
    addresses = {n["name"]: dict(ADDRESSES, ansible_host=f"10.10.0.{i}") for i, n in enumerate(plan["nodes"][1:], 10)} \
        if addressed else None
    hosts = _written(tmp_path, plan, addresses)
    for loader in LOADERS:
        assert _loaded(hosts, loader) == ansible_inventory.render(plan, addresses)
    text = hosts.read_text(encoding="utf-8")
    for pool in (p for s in plan["sites"] for p in s["pools"] if p["count"] > 1):  # a pool's variables, written once
        assert text.count(f"<<: &{pool['nodes'][0]}\n") == 1
        assert text.count(f"<<: *{pool['nodes'][0]},") == pool["count"] - 1


def test_large_generated_inventory_loads_to_the_rendered_inventory(tmp_path: Path) -> None:
    """2 sites x 2,000 nodes, from the benchmark's generator (cpu nodes split over pools of 999 at most)."""
    plan = _generated(tmp_path, 2, 2000)
    assert len(plan["nodes"]) == 4_000 and [p["count"] for p in plan["sites"][0]["pools"]][3:5] == [999, 497]
    hosts = _written(tmp_path, plan)
    assert _loaded(hosts, LOADERS[-1]) == ansible_inventory.render(plan)
    # Each pool's variables are anchored once: a line per host, not a block of 13 variables.
    text = hosts.read_text(encoding="utf-8")
    pools = sum(len(s["pools"]) for s in plan["sites"])
    assert text.count("<<: &") == pools
    host_lines = text[text.index("\n  hosts:\n"):text.index("\n  children:\n")].count("\n")
    assert host_lines < len(plan["nodes"]) + 20 * pools


def test_views_that_differ_from_the_plan_and_awkward_values_are_written_exactly(tmp_path: Path) -> None:
    """A view unlike build_plan's (a node whose meta the server changed, a node gone, renamed nodes,
    other certificates, a second bastion) and connection variables of every kind: still exactly
    render()'s inventory."""
    plan = build_plan(load_inventory(ROOT / "inventories" / "sample", check_vault=False))
    view = copy.deepcopy(plan)
    nodes = view["nodes"]
    cpu = [n for n in nodes if n["pool"] == "cpu" and n["site"] == "ifca"]
    cpu[1]["nomad"] = dict(cpu[1]["nomad"], meta=dict(cpu[1]["nomad"]["meta"], status="ready"))
    nodes[1]["certs"] = [dict(nodes[1]["certs"][0], sans=["extra.example.org"])]
    next(n for n in nodes if n["name"] == "ifca-gpu-2")["bastion"] = True  # not its pool's first node
    gone = nodes.pop(2)["name"]
    renames = {nodes[3]["name"]: "yes", nodes[4]["name"]: "10.0.0.1", nodes[5]["name"]: "a b: c"}
    for node in nodes:
        node["name"] = renames.get(node["name"], node["name"])
    view["groups"] = {g: [renames.get(n, n) for n in names if n != gone] for g, names in view["groups"].items()}
    addresses = {nodes[0]["name"]: {f"awkward_{i}": value for i, value in enumerate(AWKWARD)},
                 nodes[6]["name"]: {"k" * 200: "a key longer than libyaml's simple keys", 7: "an int key"},
                 "yes": {"ai4os_node_meta": {"overridden": True}}}
    hosts = _written(tmp_path, view, addresses)
    for loader in LOADERS:
        assert _loaded(hosts, loader) == ansible_inventory.render(view, addresses)


def _ansible_list(hosts: Path, *extra: str) -> Any:
    done = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(hosts), "--list", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("inventory", ["sample", "local"])
def test_ansible_reads_the_same_inventory_from_both_writers(tmp_path: Path, inventory: str) -> None:
    plan = build_plan(load_inventory(ROOT / "inventories" / inventory, check_vault=False))
    addresses = {plan["nodes"][1]["name"]: ADDRESSES}
    fast = _written(tmp_path, plan, addresses)
    (tmp_path / "block").mkdir()
    block = ansible_inventory.write(tmp_path / "block", ansible_inventory.render(plan, addresses))
    assert "<<:" not in block.read_text(encoding="utf-8")
    assert _ansible_list(fast) == _ansible_list(block)


def test_ansible_reads_a_generated_inventory_as_rendered(tmp_path: Path) -> None:
    """Ansible's own view (--export: host variables as given, group variables per group) of a
    generated 600-node hosts.yml is render()'s inventory, host order in each group included."""
    plan = _generated(tmp_path, 2, 300)
    rendered = ansible_inventory.render(plan)["all"]
    seen = _ansible_list(_written(tmp_path, plan), "--export")
    assert seen["_meta"]["hostvars"] == rendered["hosts"]
    assert seen["all"]["vars"] == rendered["vars"]
    assert seen["all"]["children"] == ["ungrouped", *rendered["children"]]
    for group, entry in rendered["children"].items():
        assert seen[group]["hosts"] == list(entry["hosts"])
        assert seen[group].get("vars") == entry.get("vars")
