"""The root module rendered from the node plan matches the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ai4os_kit.errors import InputError
from ai4os_kit.terraform import render

REPO = Path(__file__).resolve().parents[2]


def _root(plan: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return render.render_root(plan, tmp_path / "inv" / "terraform")


def test_one_provider_alias_and_one_site_module_per_cloud_site(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    root = _root(sample_plan, tmp_path)
    sites = [s["name"] for s in sample_plan["sites"]]
    assert [p["alias"] for p in root["provider"]["openstack"]] == sites
    assert {p["alias"]: p["cloud"] for p in root["provider"]["openstack"]} == {"ifca": "ai4os-ifca", "cesnet": "cesnet-prod"}
    assert sorted(root["module"]) == sorted(f"site_{s}" for s in sites)
    for site in sites:
        call = root["module"][f"site_{site}"]
        assert call["providers"] == {"openstack": f"openstack.{site}"}
        assert call["site"] == site and call["platform"] == sample_plan["platform"]["name"]
    assert root["output"]["inventory"]["value"] == {s: f"${{module.site_{s}.inventory}}" for s in sites}
    assert root["terraform"]["required_providers"]["openstack"]["source"] == "terraform-provider-openstack/openstack"


def test_module_source_is_a_relative_path_to_the_site_module(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    root_dir = tmp_path / "inv" / "terraform"
    source = render.render_root(sample_plan, root_dir)["module"]["site_ifca"]["source"]
    assert source.startswith("../")
    assert (root_dir / source / "variables.tf").resolve() == (REPO / "terraform/modules/site/variables.tf").resolve()


def test_every_plan_node_is_in_exactly_one_pool_with_its_groups_meta_volume_and_floating_ip(
        sample_plan: dict[str, Any], tmp_path: Path) -> None:
    root = _root(sample_plan, tmp_path)
    rendered: dict[str, Any] = {}
    for call in root["module"].values():
        for pool_name, pool in call["pools"].items():
            for name, node in pool["nodes"].items():
                assert name not in rendered
                rendered[name] = (call["site"], pool_name, pool["role"], node)
    assert sorted(rendered) == sorted(n["name"] for n in sample_plan["nodes"])
    for node in sample_plan["nodes"]:
        site, pool, role, args = rendered[node["name"]]
        assert (site, pool, role) == (node["site"], node["pool"], node["role"])
        assert args["groups"] == node["groups"]
        assert args["node_meta"] == {k: str(v) for k, v in node["nomad"]["meta"].items()}
        assert args["volume_gb"] == (node["volume"]["size_gb"] if node["volume"] else 0)
        assert args["floating_ip"] is node["floating_ip"]


def test_pools_carry_flavor_requirements_and_servers_get_anti_affinity(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    pools = _root(sample_plan, tmp_path)["module"]["site_ifca"]["pools"]
    assert pools["gpu"]["flavor"] == {"vcpus": 16, "ram_mb": 65536,
                                      "accelerator": {"type": "GPU", "number": 1, "vendor": "NVIDIA", "model": "A100"}}
    assert pools["server"]["flavor"] == {"name": "m1.medium"}
    assert pools["server"]["server_group_policy"] == "anti-affinity"
    assert all(p["server_group_policy"] is None for name, p in pools.items() if name != "server")


def test_explicit_flavor_id_is_passed_through(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    sample_plan["sites"][0]["pools"][-1]["flavor"] = {"id": "c0ffee-private", "accelerator": {"type": "GPU", "number": 2}}
    flavor = _root(sample_plan, tmp_path)["module"]["site_ifca"]["pools"]["gpu"]["flavor"]
    assert flavor == {"id": "c0ffee-private", "accelerator": {"type": "GPU", "number": 2}}


def test_secgroups_are_the_plans_groups_rule_for_rule(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    root = _root(sample_plan, tmp_path)
    for site, groups in sample_plan["secgroups"].items():
        rendered = root["module"][f"site_{site}"]["secgroups"]
        assert sorted(rendered) == sorted(g["name"] for g in groups)
        for group in groups:
            assert rendered[group["name"]]["role"] == group["role"]
            assert [(r["protocol"], r["port_min"], r["port_max"], r["remote_cidr"], r["description"])
                    for r in rendered[group["name"]]["rules"]] == [
                (r["protocol"], r["port_min"], r["port_max"], r["remote_cidr"], f"{r['component']}/{r['port_name']}")
                for r in group["rules"]]


def test_network_image_ssh_bastion_follow_the_site(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    root = _root(sample_plan, tmp_path)
    ifca, cesnet = root["module"]["site_ifca"], root["module"]["site_cesnet"]
    assert ifca["network"] == {"create": True, "cidr": "10.10.0.0/24"}
    assert cesnet["network"] == {"create": False, "existing": "ai4os-net", "cidr": "10.20.0.0/24"}
    assert ifca["image"] == {"properties": {"os_distro": "ubuntu", "os_version": "22.04"}}
    assert cesnet["image"] == {"name": "ubuntu-22.04"}
    assert ifca["ssh"] == {"user": "ubuntu", "key_name": "ai4os-operator", "public_keys": []}
    assert ifca["bastion"] == "ifca-ingress-1"


def test_admin_users_keys_go_to_cloud_init(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    sample_plan["settings"]["ai4os_admin_users"] = [{"name": "ops", "ssh_keys": ["ssh-ed25519 AAAAC3Nza ops@example"]}]
    assert _root(sample_plan, tmp_path)["module"]["site_ifca"]["ssh"]["public_keys"] == ["ssh-ed25519 AAAAC3Nza ops@example"]


def test_testbed_sites_are_not_provisioned(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    sample_plan["sites"][1]["testbed"] = True
    root = _root(sample_plan, tmp_path)
    assert list(root["module"]) == ["site_ifca"]
    assert [p["alias"] for p in root["provider"]["openstack"]] == ["ifca"]


def test_region_goes_to_the_provider(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    sample_plan["sites"][1]["region"] = "brno1"
    providers = _root(sample_plan, tmp_path)["provider"]["openstack"]
    assert providers[1] == {"alias": "cesnet", "cloud": "cesnet-prod", "region": "brno1"}


def test_root_is_written_as_json_with_a_gitignore(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    root_dir = tmp_path / "terraform"
    path = render.write_root(render.render_root(sample_plan, root_dir), root_dir)
    assert json.loads(path.read_text())["module"]["site_ifca"]["site"] == "ifca"
    assert "clouds.yaml" in (root_dir / ".gitignore").read_text().splitlines()


# ------------------------------------------------------------------ backends

def _backend(plan: dict[str, Any], conf: Any) -> dict[str, Any]:
    plan["settings"][render.BACKEND_SETTING] = conf
    return render.render_backend(plan)


def test_backend_defaults_to_local(sample_plan: dict[str, Any]) -> None:
    assert render.render_backend(sample_plan) == {"local": {"path": "terraform.tfstate"}}
    assert _backend(sample_plan, {"type": "local", "path": "state/x.tfstate"}) == {"local": {"path": "state/x.tfstate"}}


def test_s3_backend(sample_plan: dict[str, Any]) -> None:
    backend = _backend(sample_plan, {"type": "s3", "bucket": "tfstate", "region": "eu-west-1"})
    assert backend == {"s3": {"bucket": "tfstate", "key": "ai4os/demo/terraform.tfstate", "region": "eu-west-1",
                              "use_lockfile": True}}


def test_swift_backend_uses_swifts_s3_api(sample_plan: dict[str, Any]) -> None:
    backend = _backend(sample_plan, {"type": "swift", "container": "ai4os-state",
                                     "endpoint": "https://object-store.example.org:8080"})["s3"]
    assert backend["bucket"] == "ai4os-state"
    assert backend["endpoints"] == {"s3": "https://object-store.example.org:8080"}
    assert backend["use_path_style"] is True and backend["skip_credentials_validation"] is True


@pytest.mark.parametrize(("conf", "key", "words"), [
    ({"type": "consul"}, "ai4os_terraform_backend.type", "unknown backend type 'consul'"),
    ({"type": "s3"}, "ai4os_terraform_backend.bucket", "needs `bucket`"),
    ({"type": "swift", "container": "c"}, "ai4os_terraform_backend.endpoint", "needs `endpoint`"),
    ({"type": "s3", "bucket": "b", "endpoint": "http://plain"}, "ai4os_terraform_backend.endpoint", "not an https URL"),
    ({"type": "s3", "bucket": "b", "secret_key": "x"}, "ai4os_terraform_backend.secret_key", "must not be stored"),
    ({"type": "local", "bucket": "b"}, "ai4os_terraform_backend.bucket", "not a setting of the local backend"),
    ("s3", "ai4os_terraform_backend", "must be a mapping"),
])
def test_backend_misconfigured_is_an_input_error(sample_plan: dict[str, Any], conf: Any, key: str, words: str) -> None:
    with pytest.raises(InputError) as err:
        _backend(sample_plan, conf)
    assert err.value.file == "platform.yml" and err.value.key == key
    assert words in err.value.problem
    assert err.value.fix
