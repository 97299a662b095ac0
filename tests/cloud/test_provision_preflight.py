"""`provision` runs the cloud preflight before Terraform, against the local OpenStack test-bed.

Only the plan loader skips the vault check (these inventories have no
secrets); credentials, the preflight and its quota arithmetic are the real
ones against real keystone/nova/neutron/cinder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cloudbed import QUOTA_INSTANCES, lab_site, plan_for, write_inventory
from servers import create_pool_servers

from ai4os_kit.cloud import preflight
from ai4os_kit.errors import InputErrors
from ai4os_kit.terraform import provision

pytestmark = pytest.mark.integration


def _load(inventory: Path) -> dict[str, Any]:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    return build_plan(load_inventory(inventory, check_vault=False))


def _never(*_: Any) -> None:
    raise AssertionError("Terraform's root must not be rendered when the preflight fails")


def test_quota_exceeded_stops_provision_before_terraform(os_env: Path, tmp_path: Path) -> None:
    pools = lab_site()["pools"]
    pools[2] = {**pools[2], "count": QUOTA_INSTANCES}
    inventory = write_inventory(tmp_path, [lab_site(pools=pools)])
    lines: list[str] = []
    with pytest.raises(InputErrors) as err:
        provision.provision(inventory, echo=lines.append, steps=provision.Steps(load_plan=_load, prepare_root=_never))
    keys = [e.key for e in err.value.errors]
    assert "site lab: quota instances" in keys
    assert any("raise the project's instances quota" in e.fix for e in err.value.errors)
    assert not (inventory / "terraform" / "main.tf.json").exists()
    assert not (inventory / "hosts.yml").exists()
    assert lines[0].startswith("preflight:")


def test_servers_of_the_plan_already_there_are_not_counted_twice(member_conn: Any, site_name: str,
                                                                   tmp_path: Path) -> None:
    plan = plan_for(tmp_path, [lab_site(site_name)])
    site = plan["sites"][0]
    create_pool_servers(member_conn, plan, site, pools=["server", "ingress"])
    findings = {f.check: f for f in preflight.preflight(plan)}
    assert findings["present"].detail.startswith("2 server(s) of this plan exist already")
    # 4 nodes planned, 2 there: the quota must cover 2 more, not 4
    assert findings["quota instances"].detail.startswith("needs 2 of ")
    assert "quota floating_ips" not in findings  # the ingress has its floating IP: none more needed
    assert not any(f.status == preflight.FAIL for f in findings.values()), findings
