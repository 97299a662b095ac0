"""Node names are stable: changing one pool never renames a node of another pool.

A node's name is its server's name and its Terraform key; a renamed node is a
destroyed and re-created server (and data volume). The property is checked on
the real plan built from generated inventories (hypothesis), by adding and
removing a node in one pool at a time.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai4os_kit.errors import InputErrors
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

CLIENT_ROLES = ["services", "cpu", "gpu", "batch"]  # tryme pools need the tryme component on


def _pool(role: str, name: str | None, count: int) -> dict[str, Any]:
    pool: dict[str, Any] = {"role": role, "count": count}
    if name:
        pool["name"] = name
    if role == "gpu":
        pool["flavor"] = {"accelerator": {"type": "GPU", "number": 1}}
    return pool


@st.composite
def site_pools(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A test-bed site: server, ingress, services and cpu nodes, and 1-4 more client pools (some sharing a role)."""
    pools = [_pool("server", None, 1), _pool("ingress", None, 1), _pool("services", None, 1), _pool("cpu", None, 1)]
    for k in range(draw(st.integers(1, 4))):
        role = draw(st.sampled_from(CLIENT_ROLES))
        named = draw(st.booleans()) or any(p["role"] == role for p in pools)
        pools.append(_pool(role, f"{role}-p{k}" if named else None, draw(st.integers(0, 4))))
    return pools


def _names(inventory: Path, sites: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    # the region's servers: the first site's (an explicit choice is required with several sites)
    (inventory / "sites.yml").write_text(yaml.safe_dump({"ai4os_sites": sites,
                                                         "ai4os_nomad_server_sites": [sites[0]["name"]]}))
    plan = build_plan(load_inventory(inventory, check_vault=False, resolve_egi=None))
    return {(s["name"], p["name"]): list(p["nodes"]) for s in plan["sites"] for p in s["pools"]}


def _testbed(name: str, pools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "testbed": True, "location": {"country": "ES", "lat": 43.5, "lon": -3.8, "pue": 1.3},
            "pools": pools}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pools=site_pools(), other=site_pools(), data=st.data())
def test_changing_one_pool_renames_no_node_of_another(sample_inventory: Path, pools: list[dict[str, Any]],
                                                      other: list[dict[str, Any]], data: st.DataObject) -> None:
    sites = [_testbed("alpha", pools), _testbed("beta", other)]
    before = _names(sample_inventory, sites)
    site_index = data.draw(st.sampled_from([0, 1]))
    pool_index = data.draw(st.integers(3, len(sites[site_index]["pools"]) - 1))  # any client pool
    delta = data.draw(st.sampled_from([-1, 1]))
    changed = copy.deepcopy(sites)
    target = changed[site_index]["pools"][pool_index]
    target["count"] = max(0 if pool_index > 3 else 1, target["count"] + delta)
    after = _names(sample_inventory, changed)
    key = (changed[site_index]["name"], target.get("name") or target["role"])
    for pool_key, names in before.items():
        if pool_key != key:
            assert after[pool_key] == names, f"{pool_key} renamed by changing {key}"
    kept = min(len(before[key]), len(after[key]))
    assert after[key][:kept] == before[key][:kept], "the changed pool renamed its remaining nodes"


def test_a_second_pool_of_a_role_gets_its_own_names(sample_inventory: Path) -> None:
    sites = [_testbed("lab", [_pool("server", None, 1), _pool("ingress", None, 1), _pool("services", None, 1),
                              _pool("cpu", None, 2), _pool("cpu", "cpu-big", 1)])]
    names = _names(sample_inventory, sites)
    assert names[("lab", "cpu")] == ["lab-cpu-1", "lab-cpu-2"]
    assert names[("lab", "cpu-big")] == ["lab-cpu-big-1"]
    grown = copy.deepcopy(sites)
    grown[0]["pools"][3]["count"] = 3  # the first cpu pool grows: the second keeps its name
    assert _names(sample_inventory, grown)[("lab", "cpu-big")] == ["lab-cpu-big-1"]


def test_node_names_that_collide_across_sites_are_refused(sample_inventory: Path) -> None:
    """Site "a" with pool "b-cpu" and site "a-b" with pool "cpu" would both have a node a-b-cpu-1."""
    sites = [_testbed("a", [_pool("server", None, 1), _pool("ingress", None, 1), _pool("services", None, 1),
                            _pool("cpu", "b-cpu", 1)]),
             _testbed("a-b", [_pool("server", None, 1), _pool("ingress", None, 1), _pool("cpu", None, 1)])]
    (sample_inventory / "sites.yml").write_text(yaml.safe_dump({"ai4os_sites": sites}))
    try:
        load_inventory(sample_inventory, check_vault=False, resolve_egi=None)
    except InputErrors as err:
        text = str(err)
    else:
        raise AssertionError("colliding node names were accepted")
    assert "node name 'a-b-cpu-1' is also a node of ai4os_sites[0].pools[3]" in text and "rename this pool" in text
