"""Flavor choice for pools that give requirements (vcpus/RAM/disk minimums, accelerator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import openstack_testbed

from ai4os_kit.cloud import flavors
from ai4os_kit.errors import InputError
from ai4os_kit.terraform import render

A100 = {"Accelerator:Type": "GPU", "Accelerator:Vendor": "NVIDIA", "Accelerator:Model": "A100 80GB PCIe"}
# Shaped like `openstack flavor list --long` on a GPU site.
TABLE = [
    {"id": "f-s", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "extra_specs": {}},
    {"id": "f-l", "name": "m1.large", "vcpus": 4, "ram": 8192, "disk": 40, "extra_specs": {}},
    {"id": "f-xl", "name": "m1.xlarge", "vcpus": 8, "ram": 16384, "disk": 80, "extra_specs": {}},
    {"id": "f-2xl", "name": "m1.2xlarge", "vcpus": 16, "ram": 32768, "disk": 80, "extra_specs": {}},
    {"id": "g-1", "name": "g1.a100.1", "vcpus": 8, "ram": 32768, "disk": 80,
     "extra_specs": {**A100, "Accelerator:Number": "1", "pci_passthrough:alias": "nvidia-a100:1"}},
    {"id": "g-2", "name": "g1.a100.2", "vcpus": 16, "ram": 65536, "disk": 80,
     "extra_specs": {**A100, "Accelerator:Number": "2.0", "pci_passthrough:alias": "nvidia-a100:2"}},
    {"id": "g-t4", "name": "g1.t4", "vcpus": 16, "ram": 65536, "disk": 80,
     "extra_specs": {"Accelerator:Type": "GPU", "Accelerator:Vendor": "NVIDIA", "Accelerator:Model": "Tesla T4",
                     "Accelerator:Number": "4"}},
]


@pytest.mark.parametrize(("wanted", "chosen"), [
    ({"vcpus": 4, "ram_mb": 8192}, "m1.large"),
    ({"vcpus": 8, "ram_mb": 32768}, "m1.2xlarge"),          # never a GPU flavor for a CPU pool
    ({"vcpus": 2}, "m1.large"),
    ({"accelerator": {"type": "GPU", "number": 1}}, "g1.a100.1"),
    ({"vcpus": 16, "ram_mb": 65536, "accelerator": {"type": "GPU", "number": 1, "vendor": "NVIDIA", "model": "A100"}},
     "g1.a100.2"),                                           # Accelerator:Number 2 >= 1
    ({"accelerator": {"type": "gpu", "number": 3}}, "g1.t4"),
    ({"accelerator": {"type": "GPU", "number": 1, "model": "t4"}}, "g1.t4"),
])
def test_pick_the_smallest_flavor_that_meets_every_requirement(wanted: dict[str, Any], chosen: str) -> None:
    best = flavors.pick(wanted, TABLE)
    assert best is not None and best["name"] == chosen


@pytest.mark.parametrize("wanted", [
    {"vcpus": 64},
    {"accelerator": {"type": "GPU", "number": 8}},
    {"accelerator": {"type": "GPU", "number": 1, "vendor": "AMD"}},
    {"accelerator": {"type": "FPGA", "number": 1}},
])
def test_nothing_fits(wanted: dict[str, Any]) -> None:
    assert flavors.pick(wanted, TABLE) is None


def test_mismatches_say_why() -> None:
    g1 = TABLE[4]
    assert flavors.mismatches({"accelerator": {"type": "GPU", "number": 2, "model": "H100"}}, g1) == [
        "Accelerator:Number 1 < 2", "Accelerator:Model 'A100 80GB PCIe' does not contain 'H100'"]
    assert flavors.mismatches({"vcpus": 4}, g1) == ["has an accelerator the pool does not ask for"]


def test_choose_gives_ids_only_for_requirement_pools(sample_plan: dict[str, Any]) -> None:
    chosen = flavors.choose(sample_plan, {"ifca": TABLE})
    assert chosen == {("ifca", "services"): "f-l", ("ifca", "cpu"): "f-2xl", ("ifca", "gpu"): "g-2"}
    root = render.render_root(sample_plan, Path("/tmp/x/terraform"), flavor_ids=chosen)
    pools = root["module"]["site_ifca"]["pools"]
    assert pools["gpu"]["flavor"] == {"id": "g-2", "accelerator": {"type": "GPU", "number": 1, "vendor": "NVIDIA",
                                                                    "model": "A100"}}
    assert pools["cpu"]["flavor"] == {"id": "f-2xl"}
    assert pools["server"]["flavor"] == {"name": "m1.medium"}


def test_no_fitting_flavor_is_an_input_error_naming_the_pool(sample_plan: dict[str, Any]) -> None:
    with pytest.raises(InputError) as err:
        flavors.choose(sample_plan, {"ifca": [f for f in TABLE if f["name"] != "g1.a100.2"]})
    assert err.value.file == "sites.yml" and err.value.key == "ai4os_sites[0].pools[4].flavor"
    assert "no flavor at site ifca offers >= 16 vCPU, >= 65536 MiB RAM, >= 1 x GPU NVIDIA A100" in err.value.problem
    assert "g1.t4: Accelerator:Model 'Tesla T4' does not contain 'A100'" in err.value.problem
    assert "flavor.id" in err.value.fix


# ------------------------------------------------------------------ against the local OpenStack


@pytest.fixture
def testbed_clouds() -> Path:
    """The test-bed's clouds.yaml (.ci/setup.d starts it): missing or silent fails in CI, skips elsewhere."""
    return openstack_testbed.require()


@pytest.mark.integration
def test_resolve_against_the_local_openstack(testbed_clouds: Path, sample_plan: dict[str, Any]) -> None:
    site = sample_plan["sites"][0]
    site.update(egi_site=None, cloud="ai4os-testbed", auth="application_credential")
    sample_plan["sites"] = [site]
    listed = flavors.list_flavors("ai4os-testbed", testbed_clouds)
    names = {f["name"]: f for f in listed}
    assert names["g1.a100.2"]["extra_specs"]["Accelerator:Number"] == "2"
    chosen = flavors.resolve(sample_plan, testbed_clouds)
    assert chosen[("ifca", "gpu")] == names["g1.a100.2"]["id"]
    assert chosen[("ifca", "cpu")] == names["m1.2xlarge"]["id"]
    assert chosen[("ifca", "services")] == names["m1.large"]["id"]
