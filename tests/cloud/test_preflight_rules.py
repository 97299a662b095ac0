"""Preflight rules that need no cloud: quota arithmetic and the report table."""

from __future__ import annotations

from ai4os_kit.cloud import preflight

SITE = {"name": "lab", "network": {"create": True}, "pools": [
    {"name": "server", "role": "server", "count": 3, "volume_gb": 0, "floating_ip": False},
    {"name": "ingress", "role": "ingress", "count": 1, "volume_gb": 0, "floating_ip": True},
    {"name": "gpu", "role": "gpu", "count": 2, "volume_gb": 500, "floating_ip": False},
]}
SECGROUPS = [{"name": "demo-lab-server", "rules": [{}, {}, {}]}, {"name": "demo-lab-gpu", "rules": [{}]}]
FLAVORS = {"server": {"vcpus": 2, "ram": 4096}, "ingress": {"vcpus": 2, "ram": 4096},
           "gpu": {"vcpus": 16, "ram": 65536}}


def test_plan_needs_sums_every_pool() -> None:
    assert preflight.plan_needs(SITE, FLAVORS, SECGROUPS) == {
        "instances": 6, "cores": 3 * 2 + 2 + 2 * 16, "ram": 4 * 4096 + 2 * 65536,
        "volumes": 2, "gigabytes": 1000, "floating_ips": 1, "ports": 6,
        "server_groups": 1, "server_group_members": 3,          # the servers' anti-affinity group
        "security_groups": 2, "security_group_rules": 4, "networks": 1, "subnets": 1, "routers": 1}


def test_quota_compares_with_free_not_limit() -> None:
    need = {"instances": 6, "cores": 40, "floating_ips": 1, "volumes": 2}
    limits = {"instances": (10, 5), "cores": (-1, 300), "floating_ips": (1, 0), "volumes": None}
    rows = {f.check: f for f in preflight.check_quota(SITE, 0, need, limits)}
    assert rows["quota instances"].status == "FAIL"
    assert "needs 6, the project has 5 free (limit 10, used 5)" in rows["quota instances"].detail
    assert "at least 11" in rows["quota instances"].fix
    assert rows["quota cores"].status == "OK" and "unlimited" in rows["quota cores"].detail
    assert rows["quota floating_ips"].status == "OK"
    assert rows["quota volumes"].status == "FAIL" and "no volumes service" in rows["quota volumes"].detail


def test_report_puts_the_fix_under_each_failure() -> None:
    rows = [preflight.Finding("lab", "image", "FAIL", "no image", "sites.yml ai4os_sites[0].image: pick one"),
            preflight.Finding("lab", "key pair", "OK", "k")]
    lines = preflight.render(rows)
    assert lines[1].startswith("FAIL  lab  image") and lines[2].strip() == "fix: sites.yml ai4os_sites[0].image: pick one"
    assert lines[-1] == "FAIL  preflight: 1 failure(s) in 2 check(s)"
    assert preflight.render([]) == ["OK    (no cloud sites: nothing to check online)"]


def test_what_exists_already_is_not_needed_again() -> None:
    present = preflight.Present(servers={"server": 3, "gpu": 1}, secgroups=frozenset({"demo-lab-server"}),
                                network=True)
    need = preflight.plan_needs(SITE, FLAVORS, SECGROUPS, present)
    assert need == {
        "instances": 2, "cores": 2 + 16, "ram": 4096 + 65536,   # the ingress and the second GPU node
        "volumes": 1, "gigabytes": 500, "floating_ips": 1, "ports": 2,
        "server_groups": 0, "server_group_members": 3,           # the group exists with its servers
        "security_groups": 1, "security_group_rules": 1, "networks": 0, "subnets": 0, "routers": 0}


def test_more_present_than_planned_needs_nothing_negative() -> None:
    need = preflight.plan_needs(SITE, FLAVORS, [], preflight.Present(servers={"server": 5}))
    assert need["instances"] == 3 and min(need.values()) >= 0
