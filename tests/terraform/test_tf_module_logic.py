"""The modules' own expressions and validations, evaluated by real Terraform.

Each module keeps its provider-free logic in locals.tf; tfharness applies it
in a scratch root (no provider needed). The inventory module is pure and is
applied whole.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import tfharness
import yaml

from ai4os_kit.model import node_contract
from ai4os_kit.terraform import render

MODULES = tfharness.MODULES


def _pool_vars(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "platform": "demo", "site": "ifca", "pool": "gpu", "role": "gpu",
        "nodes": {
            "ifca-gpu-1": {"groups": ["gpu", "nvidia", "site_ifca"], "volume_gb": 500,
                           "node_meta": {"type": "compute", "tags": "gpu", "namespace": "ai4eosc"}},
            "ifca-gpu-2": {"groups": ["gpu", "nvidia", "site_ifca"], "floating_ip": True},
        },
        "flavor": {"vcpus": 16, "ram_mb": 65536, "accelerator": {"type": "GPU", "number": 2, "vendor": "NVIDIA"}},
        "image": {"properties": {"os_distro": "ubuntu"}},
        "network_id": "net", "subnet_id": "sub", "security_group_ids": ["sg"], "key_pair": "ops",
        "ssh_public_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests ops@example"],
    }
    base.update(over)
    return base


def test_node_pool_metadata_is_the_discovery_contract(terraform: str, tmp_path: Path) -> None:
    values = tfharness.evaluate_locals(MODULES / "node_pool", _pool_vars(), tmp_path)
    assert isinstance(values, dict)
    assert values["metadata"]["ifca-gpu-1"] == {
        "ai4os_platform": "demo", "ai4os_site": "ifca", "ai4os_pool": "gpu", "ai4os_role": "gpu",
        "ai4os_groups": "gpu,nvidia,site_ifca",
        "ai4os_node_meta": json.dumps({"namespace": "ai4eosc", "tags": "gpu", "type": "compute"}, separators=(",", ":")),
    }
    assert json.loads(values["metadata"]["ifca-gpu-2"]["ai4os_node_meta"]) == {}
    assert sorted(values["with_volume"]) == ["ifca-gpu-1"]
    assert sorted(values["with_floating"]) == ["ifca-gpu-2"]


def test_python_server_metadata_equals_what_node_pool_sets(terraform: str, sample_plan: dict[str, Any],
                                                          tmp_path: Path) -> None:
    """node_contract.server_metadata (used by discovery and its tests) is what Terraform computes."""
    root = render.render_root(sample_plan, tmp_path / "root")
    platform = sample_plan["platform"]["name"]
    checked = 0
    for call in root["module"].values():
        for pool_name in ("server", "gpu", "cpu"):
            if pool_name not in call["pools"]:
                continue
            pool = call["pools"][pool_name]
            variables = _pool_vars(site=call["site"], pool=pool_name, role=pool["role"], nodes=pool["nodes"],
                                   flavor={"name": "any"})
            values = tfharness.evaluate_locals(MODULES / "node_pool", variables, tmp_path / call["site"] / pool_name)
            assert isinstance(values, dict)
            for node in (n for n in sample_plan["nodes"] if n["site"] == call["site"] and n["pool"] == pool_name):
                assert node_contract.server_metadata(platform, node) == values["metadata"][node["name"]]
                checked += 1
    assert checked == sum(1 for n in sample_plan["nodes"] if n["pool"] in ("server", "gpu", "cpu"))


def test_node_pool_accelerator_requirements_are_normalised(terraform: str, tmp_path: Path) -> None:
    values = tfharness.evaluate_locals(MODULES / "node_pool", _pool_vars(), tmp_path / "gpu")
    assert isinstance(values, dict)
    assert values["flavor_by_size"] is True
    assert values["wanted_accelerator"] == {"type": "gpu", "number": 2, "vendor": "nvidia", "model": ""}
    plain = tfharness.evaluate_locals(MODULES / "node_pool", _pool_vars(flavor={"name": "m1.medium"}), tmp_path / "cpu")
    assert isinstance(plain, dict)
    assert plain["flavor_by_size"] is False
    assert plain["wanted_accelerator"] == {"type": "", "number": 0, "vendor": "", "model": ""}


def test_node_pool_cloud_init_is_minimal(terraform: str, tmp_path: Path) -> None:
    values = tfharness.evaluate_locals(MODULES / "node_pool", _pool_vars(admin_user="ops"), tmp_path)
    assert isinstance(values, dict)
    text = values["user_data"]
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc == {
        "users": ["default", {"name": "ops", "sudo": "ALL=(ALL) NOPASSWD:ALL", "shell": "/bin/bash", "lock_passwd": True,
                              "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests ops@example"]}],
        "ssh_pwauth": False, "disable_root": True,
    }


@pytest.mark.parametrize(("over", "message"), [
    ({"flavor": {}}, "flavor needs id, name, or vcpus"),
    ({"role": "worker"}, "role must be one of"),
    ({"nodes": {"Bad_Name": {"groups": []}}}, "Node names must be DNS labels"),
    ({"nodes": {"n-1": {"groups": [], "volume_gb": 1.5}}}, "volume_gb must be a whole number"),
    ({"security_group_ids": []}, "At least one security group is needed"),
    ({"ssh_public_keys": ["not a key"]}, "ssh_public_keys must be OpenSSH public keys"),
    ({"server_group_policy": "affinity"}, "server_group_policy must be"),
    ({"nodes": {"n-1": {"groups": ["g" * 300]}}}, "Nova's metadata limit"),
])
def test_node_pool_validation_rejects_bad_input(terraform: str, tmp_path: Path, over: dict[str, Any], message: str) -> None:
    proc = tfharness.evaluate_locals(MODULES / "node_pool", _pool_vars(**over), tmp_path, check=False)
    assert not isinstance(proc, dict), f"accepted {over}"
    assert message in " ".join(proc.stderr.split())


def test_site_gives_each_pool_the_security_groups_of_its_role(terraform: str, sample_plan: dict[str, Any],
                                                             tmp_path: Path) -> None:
    args = render.render_root(sample_plan, tmp_path / "root")["module"]["site_ifca"]
    variables = tfharness.site_variables(args, sample_plan)
    values = tfharness.evaluate_locals(MODULES / "site", variables, tmp_path / "eval")
    assert isinstance(values, dict)
    assert values["pool_secgroups"] == {p: [f"demo-ifca-{p}"] for p in ("cpu", "gpu", "ingress", "server", "services")}
    assert values["needs_floating_ip"] is True
    assert values["name"] == "demo-ifca"


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(bastion="nowhere-1"), "bastion must be the name of one of the site's nodes"),
    (lambda a: a["network"].update(existing="net"), "set create = true, or create = false with existing"),
    (lambda a: a["pools"]["cpu"]["nodes"].update(a["pools"]["gpu"]["nodes"]), "Node names must be unique"),
])
def test_site_validation_rejects_inconsistent_arguments(terraform: str, sample_plan: dict[str, Any], tmp_path: Path,
                                                        change: Any, message: str) -> None:
    args = render.render_root(sample_plan, tmp_path / "root")["module"]["site_ifca"]
    variables = tfharness.site_variables(args, sample_plan)
    change(variables)
    proc = tfharness.evaluate_locals(MODULES / "site", variables, tmp_path / "eval", check=False)
    assert not isinstance(proc, dict)
    assert message in " ".join(proc.stderr.split())


# ------------------------------------------------------------------ inventory module (pure: applied whole)

def _apply_inventory(tmp_path: Path, variables: dict[str, Any], check: bool = True) -> Any:
    work = tmp_path / "inventory"
    shutil.copytree(MODULES / "inventory", work)
    (work / "terraform.tfvars.json").write_text(json.dumps(variables))
    tfharness.run(["init", "-input=false"], work)
    proc = tfharness.run(["apply", "-auto-approve", "-input=false"], work, check=check)
    if proc.returncode != 0:
        return proc
    return json.loads(tfharness.run(["output", "-json"], work).stdout)["inventory"]["value"]


HOSTS = {
    "s-ingress-1": {"private_ip": "10.0.0.5", "floating_ip": "203.0.113.7", "groups": ["ingress", "site_s", "traefik"],
                    "pool": "ingress", "role": "ingress"},
    "s-cpu-1": {"private_ip": "10.0.0.6", "groups": ["cpu", "site_s", "docker"], "pool": "cpu", "role": "cpu",
                "volume_id": "0a1b2c3d-0000-4000-8000-000000000001"},
}


def test_inventory_output_reaches_private_nodes_through_the_bastion(terraform: str, tmp_path: Path) -> None:
    inv = _apply_inventory(tmp_path, {"site": "s", "ssh_user": "ubuntu", "bastion": "s-ingress-1", "hosts": HOSTS})
    assert inv["bastion"] == {"name": "s-ingress-1", "address": "203.0.113.7"}
    assert inv["hosts"]["s-ingress-1"]["ansible_host"] == "203.0.113.7"
    # reached directly; its public address is what the roles advertise across sites
    assert inv["hosts"]["s-ingress-1"]["vars"] == {"ansible_user": "ubuntu", "ai4os_node_public_address": "203.0.113.7"}
    cpu = inv["hosts"]["s-cpu-1"]
    assert cpu["ansible_host"] == "10.0.0.6" and cpu["floating_ip"] is None
    assert cpu["vars"] == {"ansible_user": "ubuntu", "ansible_ssh_common_args": "-o ProxyJump=ubuntu@203.0.113.7"}
    assert cpu["volume_id"] == "0a1b2c3d-0000-4000-8000-000000000001"
    assert inv["groups"] == {"cpu": ["s-cpu-1"], "docker": ["s-cpu-1"], "ingress": ["s-ingress-1"],
                             "site_s": ["s-cpu-1", "s-ingress-1"], "traefik": ["s-ingress-1"]}


def test_inventory_refuses_a_bastion_without_floating_ip(terraform: str, tmp_path: Path) -> None:
    hosts = json.loads(json.dumps(HOSTS))
    hosts["s-ingress-1"]["floating_ip"] = None
    proc = _apply_inventory(tmp_path, {"site": "s", "ssh_user": "ubuntu", "bastion": "s-ingress-1", "hosts": hosts},
                            check=False)
    assert not isinstance(proc, dict)
    assert "give the bastion's pool floating_ip: true" in " ".join(proc.stderr.split())
