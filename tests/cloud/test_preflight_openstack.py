"""`check --online` against the local OpenStack test-bed (real keystone, nova, glance, neutron, cinder-api)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cloudbed import QUOTA_GIGABYTES, QUOTA_INSTANCES, lab_site, plan_for

from ai4os_kit.cloud import preflight

pytestmark = pytest.mark.integration


def _run(tmp_path: Path, **changes: Any) -> tuple[list[preflight.Finding], list[str]]:
    plan = plan_for(tmp_path, [lab_site(**changes)])
    findings = preflight.preflight(plan)
    return findings, preflight.render(findings)


def _failed(findings: list[preflight.Finding]) -> dict[str, preflight.Finding]:
    return {f.check: f for f in findings if f.status == preflight.FAIL}


def _pools_with(index: int, **pool_changes: Any) -> list[dict[str, Any]]:
    pools = lab_site()["pools"]
    pools[index] = {**pools[index], **pool_changes}
    return pools


def test_preflight_passes_and_reports_every_check(os_env: Path, tmp_path: Path) -> None:
    findings, lines = _run(tmp_path)
    assert _failed(findings) == {}
    checks = {f.check for f in findings}
    assert {"flavor server", "flavor gpu", "image", "network", "external network", "key pair",
            "quota instances", "quota cores", "quota ram", "quota volumes", "quota gigabytes",
            "quota floating_ips", "quota ports", "quota security_groups", "quota security_group_rules"} <= checks
    gpu = next(f for f in findings if f.check == "flavor gpu")
    # the smallest GPU flavor that offers one A100, with its PCI alias shown
    assert gpu.detail.startswith("g1.a100.1:") and "pci_passthrough:alias=nvidia-a100:1" in gpu.detail
    cpu = next(f for f in findings if f.check == "flavor cpu")
    assert cpu.detail.startswith("m1.medium:"), "a CPU pool must never get a GPU flavor"
    assert lines[-1].startswith("OK") and not any(line.startswith("FAIL") for line in lines)


def test_missing_gpu_flavor_says_what_to_change(os_env: Path, tmp_path: Path) -> None:
    pools = _pools_with(3, flavor={"vcpus": 8, "ram_mb": 32768,
                                   "accelerator": {"type": "GPU", "number": 1, "vendor": "NVIDIA", "model": "H100"}})
    findings, lines = _run(tmp_path, pools=pools)
    failed = _failed(findings)
    assert set(failed) == {"flavor gpu"}
    assert "H100" in failed["flavor gpu"].detail and "Accelerator:Model" in failed["flavor gpu"].detail
    assert "ai4os_sites[0].pools[3].flavor" in failed["flavor gpu"].fix
    assert any(line.startswith("FAIL") and "flavor gpu" in line for line in lines)


def test_gpu_flavor_named_without_enough_gpus_fails(os_env: Path, tmp_path: Path) -> None:
    pools = _pools_with(3, flavor={"name": "g1.a100.1",
                                   "accelerator": {"type": "GPU", "number": 2, "vendor": "NVIDIA"}})
    failed = _failed(_run(tmp_path, pools=pools)[0])
    assert set(failed) == {"flavor gpu"}
    assert "Accelerator:Number 1 < 2" in failed["flavor gpu"].detail
    assert "g1.a100.2" in failed["flavor gpu"].fix   # the flavor that would fit


def test_flavor_name_not_found(os_env: Path, tmp_path: Path) -> None:
    failed = _failed(_run(tmp_path, pools=_pools_with(0, flavor={"name": "m1.nonexistent"}))[0])
    assert set(failed) == {"flavor server"}
    assert "m1.nonexistent" in failed["flavor server"].detail
    assert "ai4os_sites[0].pools[0].flavor.name" in failed["flavor server"].fix


def test_private_flavor_by_id(os_env: Path, admin_conn: Any, tmp_path: Path) -> None:
    private = admin_conn.compute.find_flavor("p1.a100.1", ignore_missing=False)
    pools = _pools_with(3, flavor={"id": private.id, "accelerator": {"type": "GPU", "number": 1}})
    findings, _ = _run(tmp_path, pools=pools)
    assert _failed(findings) == {}
    assert next(f for f in findings if f.check == "flavor gpu").detail.startswith("p1.a100.1:")


@pytest.mark.parametrize(("pool_changes", "resource", "needed"), [
    ({"count": QUOTA_INSTANCES}, "quota instances", QUOTA_INSTANCES + 3),
    ({"volume_gb": QUOTA_GIGABYTES}, "quota gigabytes", QUOTA_GIGABYTES + 100),
])
def test_quota_too_small(os_env: Path, tmp_path: Path, pool_changes: dict[str, Any], resource: str,
                         needed: int) -> None:
    failed = _failed(_run(tmp_path, pools=_pools_with(2, **pool_changes))[0])
    assert resource in failed
    assert f"the plan needs {needed}" in failed[resource].detail
    assert "raise the project's" in failed[resource].fix and "shrink" in failed[resource].fix


def test_image_missing(os_env: Path, tmp_path: Path) -> None:
    failed = _failed(_run(tmp_path, image={"properties": {"os_distro": "ubuntu", "os_version": "24.04"}})[0])
    assert set(failed) == {"image"}
    assert "os_version=24.04" in failed["image"].detail
    assert "ubuntu-22.04" in failed["image"].detail          # what there is instead
    assert "ai4os_sites[0].image" in failed["image"].fix


def test_network_and_keypair_missing(os_env: Path, tmp_path: Path) -> None:
    site = lab_site()
    failed = _failed(_run(tmp_path, network={"existing": "no-such-net", "cidr": "10.10.0.0/24"},
                          ssh={**site["ssh"], "key_name": "no-such-key"})[0])
    assert set(failed) == {"network", "key pair"}
    assert "openstack keypair create" in failed["key pair"].fix


def test_unknown_cloud_is_reported_per_site(os_env: Path, tmp_path: Path) -> None:
    failed = _failed(_run(tmp_path, cloud="not-in-clouds-yaml")[0])
    assert set(failed) == {"connect"}
    assert "clouds.yaml" in failed["connect"].fix


def test_require_ready_raises_every_failure_as_input_errors(os_env: Path, tmp_path: Path) -> None:
    from ai4os_kit.errors import InputErrors

    plan = plan_for(tmp_path, [lab_site(image={"name": "no-such-image"},
                                        pools=_pools_with(2, volume_gb=QUOTA_GIGABYTES))])
    with pytest.raises(InputErrors) as err:
        preflight.require_ready(plan, {"OS_CLIENT_CONFIG_FILE": str(os_env)})
    keys = [e.key for e in err.value.errors]
    assert keys == ["site lab: image", "site lab: quota gigabytes"]
    assert err.value.exit_code == 2


def test_check_online_command(os_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloudbed import write_inventory

    from ai4os_kit.cli import main

    good = write_inventory(tmp_path / "good", [lab_site()])
    main(["check", "--online", str(good)])
    out = capsys.readouterr().out
    assert "OK    preflight: 0 failure(s) in 17 check(s)" in out
    bad = write_inventory(tmp_path / "bad", [lab_site(image={"name": "no-such-image"})])
    assert main(["check", "--online", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  lab  image" in out and "fix: sites.yml ai4os_sites[0].image" in out
