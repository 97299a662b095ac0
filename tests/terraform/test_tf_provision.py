"""`provision` / `destroy` end to end with real Terraform.

The OpenStack provider and the sites' Keystones cannot be reached from the
test machines, so two steps are replaced, and only those: the root's site
module is the TEST DOUBLE from tfharness.fake_site_module (real site
variables and validations, real inventory module, terraform_data instead of
servers), credentials are not refreshed and the cloud preflight is skipped
(it runs against the local OpenStack in tests/cloud/test_provision_preflight.py). The plan, the rendered root's
arguments, the runner, Terraform itself, the `inventory` output and
hosts.yml are all real.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Mapping

import pytest
from support import tfharness
import yaml

from ai4os_kit.cli import main
from ai4os_kit.errors import InputError, KitError
from ai4os_kit.model import ansible_inventory
from ai4os_kit.terraform import provision, render


def _double_steps(fake: Path, plan_override: Any = None) -> provision.Steps:
    def prepare(plan: Mapping[str, Any], directory: Path, flavor_ids: Any) -> None:
        root = render.render_root(plan, directory, flavor_ids=flavor_ids)
        root = tfharness.strip_openstack(root, fake)
        for call in root["module"].values():
            call["source"] = os.path.relpath(fake, directory.resolve())
        render.write_root(root, directory)

    def load(inventory: Path) -> dict[str, Any]:
        plan = provision.load_plan(inventory)
        return plan_override(plan) if plan_override else plan

    # The test double's resources stand where node_pool's server and data volume stand.
    guarded = {("terraform_data", "node"): "server", ("terraform_data", "volume"): provision.VOLUME}
    return provision.Steps(load_plan=load, prepare_root=prepare, credentials=lambda plan, directory: {},
                           flavors=lambda plan, env: {}, preflight=lambda plan, env, echo: None, guarded=guarded)


def _volumes(plan: Mapping[str, Any]) -> int:
    return sum(1 for n in plan["nodes"] if n["volume"] and n["site"] != "local")


def _routers(plan: Mapping[str, Any]) -> int:
    """The test double's stand-ins for the routers of created networks."""
    return sum(1 for s in plan["sites"] if not s["testbed"] and s["network"]["create"])


CONNECTION = ("ansible_", "ai4os_node_public_address")  # what provision adds to the plan's host variables


@pytest.fixture
def fake_site(tmp_path: Path, terraform: str) -> Path:
    return tfharness.fake_site_module(tmp_path / "fake_site")


def _hosts(inventory: Path) -> dict[str, Any]:
    return yaml.safe_load((inventory / "hosts.yml").read_text())["all"]


def test_provision_writes_the_inventory_from_terraforms_output(sample_inventory: Path, fake_site: Path) -> None:
    lines: list[str] = []
    assert provision.provision(sample_inventory, echo=lines.append, steps=_double_steps(fake_site)) == 0
    plan = provision.load_plan(sample_inventory)
    hosts = _hosts(sample_inventory)
    # Same structure and host vars as the plan-rendered inventory, plus connection variables.
    plain = ansible_inventory.render(plan)["all"]
    assert hosts["children"] == plain["children"]
    assert sorted(hosts["hosts"]) == sorted(plain["hosts"])
    for site in plan["sites"]:
        bastion = hosts["hosts"][site["bastion"]]
        assert bastion["ansible_host"].startswith("198.18.")
        for node in (n for n in plan["nodes"] if n["site"] == site["name"]):
            hv = hosts["hosts"][node["name"]]
            assert {k: v for k, v in hv.items() if not k.startswith(CONNECTION)} == plain["hosts"][node["name"]]
            assert hv["ansible_user"] == site["ssh"]["user"]
            if node["floating_ip"]:
                assert "ansible_ssh_common_args" not in hv
                assert hv["ai4os_node_public_address"] == hv["ansible_host"]
            else:
                assert hv["ansible_host"].startswith(site["network"]["cidr"].rsplit(".", 1)[0] + ".")
                assert hv["ansible_ssh_common_args"] == f"-o ProxyJump=ubuntu@{bastion['ansible_host']}"
    # The test double has one terraform_data per node and one per data volume.
    assert any(f"Plan: {len(plan['nodes']) + _volumes(plan) + _routers(plan)} to add" in line for line in lines)
    assert any(line.startswith("  done: module.site_ifca.terraform_data.node") for line in lines)
    assert lines[-1] == f"wrote the Ansible inventory {sample_inventory / 'hosts.yml'}"
    # Commands that rewrite hosts.yml can keep the addresses (from `terraform output`).
    current = provision.current_addresses(plan, sample_inventory)
    assert current == {name: {k: v for k, v in hv.items() if k.startswith(CONNECTION)}
                       for name, hv in hosts["hosts"].items()}
    # A second run changes nothing and writes the same inventory.
    before = (sample_inventory / "hosts.yml").read_text()
    lines.clear()
    provision.provision(sample_inventory, echo=lines.append, steps=_double_steps(fake_site))
    assert "no changes: the clouds match the plan" in lines
    assert (sample_inventory / "hosts.yml").read_text() == before


def test_plan_only_changes_nothing(sample_inventory: Path, fake_site: Path) -> None:
    lines: list[str] = []
    provision.provision(sample_inventory, plan_only=True, echo=lines.append, steps=_double_steps(fake_site))
    plan = provision.load_plan(sample_inventory)
    assert lines[-1] == (f"plan only: {len(plan['nodes']) + _volumes(plan) + _routers(plan)} to add, 0 to change, "
                         "0 to destroy; nothing was changed")
    assert not (sample_inventory / "hosts.yml").exists()
    assert not (sample_inventory / "terraform" / "terraform.tfstate").exists()


def test_destroy_asks_and_only_yes_destroys(sample_inventory: Path, fake_site: Path) -> None:
    steps = _double_steps(fake_site)
    provision.provision(sample_inventory, echo=lambda _: None, steps=steps)
    state = sample_inventory / "terraform" / "terraform.tfstate"
    lines: list[str] = []
    assert provision.destroy(sample_inventory, echo=lines.append, steps=steps, ask=lambda q: "no") == 1
    assert "not confirmed: nothing was destroyed" in lines
    assert json.loads(state.read_text())["resources"]
    questions: list[str] = []
    assert provision.destroy(sample_inventory, echo=lines.append, steps=steps,
                             ask=lambda q: questions.append(q) or "yes") == 0
    plan = provision.load_plan(sample_inventory)
    assert questions and f"Destroy {len(plan['nodes']) + _routers(plan)} resource(s)" in questions[0]  # the data volumes stay
    assert sum(line.startswith("kept the data volume ") for line in lines) == _volumes(plan)
    assert not json.loads(state.read_text())["resources"]
    assert all("ansible_host" not in hv for hv in _hosts(sample_inventory)["hosts"].values())
    assert provision.destroy(sample_inventory, yes=True, echo=lines.append, steps=steps) == 0
    assert lines[-1] == "nothing to destroy"


def _shrink(site: str, role: str, count: int) -> Any:
    def change(plan: dict[str, Any]) -> dict[str, Any]:
        changed = copy.deepcopy(plan)
        pool = next(p for s in changed["sites"] if s["name"] == site for p in s["pools"] if p["role"] == role)
        gone = pool["nodes"][count:]
        pool["nodes"], pool["count"] = pool["nodes"][:count], count
        changed["nodes"] = [n for n in changed["nodes"] if n["name"] not in gone]
        for group, names in changed["groups"].items():
            changed["groups"][group] = [n for n in names if n not in gone]
        return changed
    return change


def _state_keys(inventory: Path) -> set[str]:
    state = json.loads((inventory / "terraform" / "terraform.tfstate").read_text())
    return {f"{r['name']}:{i['index_key']}" for r in state["resources"] if r["type"] == "terraform_data"
            for i in r["instances"]}


def test_a_plan_that_loses_a_node_is_refused_unless_named(sample_inventory: Path, fake_site: Path) -> None:
    """Shrinking a pool would destroy cesnet-cpu-2's server and volume: refused, nothing changes; allowed by name."""
    provision.provision(sample_inventory, echo=lambda _: None, steps=_double_steps(fake_site))
    before = _state_keys(sample_inventory)
    assert {"node:cesnet-cpu-2", "volume:cesnet-cpu-2"} <= before
    shrunk = _double_steps(fake_site, _shrink("cesnet", "cpu", 1))
    lines: list[str] = []
    provision.provision(sample_inventory, plan_only=True, echo=lines.append, steps=shrunk)
    assert any("would go: data volume of cesnet-cpu-2" in line for line in lines), lines
    with pytest.raises(InputError) as err:
        provision.provision(sample_inventory, echo=lines.append, steps=shrunk)
    assert "cesnet-cpu-2" in str(err.value) and "--allow-destroy cesnet-cpu-2" in str(err.value)
    assert _state_keys(sample_inventory) == before, "a refused plan must change nothing"
    with pytest.raises(InputError, match="no server or data volume of that name exists"):
        provision.provision(sample_inventory, echo=lines.append, steps=shrunk, allow_destroy=["ifca-cpu-9"])
    lines.clear()
    assert provision.provision(sample_inventory, echo=lines.append, steps=shrunk, allow_destroy=["cesnet-cpu-2"]) == 0
    assert any("allowed: server of cesnet-cpu-2 would be destroyed" in line for line in lines), lines
    assert any(line.startswith("kept the data volume cesnet-cpu-2-data") for line in lines), lines
    assert _state_keys(sample_inventory) == before - {"node:cesnet-cpu-2", "volume:cesnet-cpu-2"}
    assert "cesnet-cpu-2" not in _hosts(sample_inventory)["hosts"]


def test_a_replacement_is_refused_like_a_destruction(tmp_path: Path, terraform: str) -> None:
    """A server that would be destroyed and created anew counts as lost (real Terraform, `replace`)."""
    from ai4os_kit.terraform.runner import Terraform

    (tmp_path / "main.tf").write_text(
        'variable "zone" { default = "a" }\n'
        'resource "terraform_data" "this" {\n  for_each = toset(["lab-cpu-1"])\n  triggers_replace = var.zone\n}\n')
    tf = Terraform(tmp_path, echo=lambda _: None)
    tf.init()
    tf.plan()
    tf.apply()
    (tmp_path / "main.tf").write_text((tmp_path / "main.tf").read_text().replace('default = "a"', 'default = "b"'))
    found = provision.doomed(tf.plan(), {("terraform_data", "this"): "server"})
    assert [(d.name, d.action) for d in found] == [("lab-cpu-1", "replace")]
    assert "replaced (destroyed and created anew)" in str(found[0])
    with pytest.raises(InputError, match="--allow-destroy lab-cpu-1"):
        provision.refuse_unallowed(found, [], False, lambda _: None)
    provision.refuse_unallowed(found, ["lab-cpu-1"], False, lambda _: None)
    provision.refuse_unallowed(found, [], True, lambda _: None)


def test_data_volumes_are_protected_in_the_real_module() -> None:
    main = (Path(__file__).resolve().parents[2] / "terraform" / "modules" / "node_pool" / "main.tf").read_text()
    block = main.split('resource "openstack_blockstorage_volume_v3" "data"', 1)[1].split("\nresource ", 1)[0]
    assert "prevent_destroy = true" in block
    assert provision.GUARDED[("openstack_blockstorage_volume_v3", "data")] == provision.VOLUME
    assert 'resource "openstack_compute_instance_v2" "this"' in main


def test_destroy_without_a_terminal_needs_yes(sample_inventory: Path, fake_site: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    steps = _double_steps(fake_site)
    provision.provision(sample_inventory, echo=lambda _: None, steps=steps)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(InputError, match="re-run with --yes"):
        provision.destroy(sample_inventory, echo=lambda _: None, steps=steps)


def test_no_addresses_before_the_first_provision(sample_inventory: Path, sample_plan: dict[str, Any]) -> None:
    assert provision.current_addresses(sample_plan, sample_inventory) == {}


def test_output_missing_a_node_is_an_error(sample_plan: dict[str, Any]) -> None:
    with pytest.raises(KitError, match="lacks ifca-server-1"):
        provision.addresses_from_output(sample_plan, {"ifca": {"hosts": {}}, "cesnet": {"hosts": {}}})
    with pytest.raises(KitError, match="no `inventory` output"):
        provision.addresses_from_output(sample_plan, None)
    partial = {"ifca": {"hosts": {"ifca-server-1": {"ansible_host": "10.10.0.5", "vars": {"ansible_user": "ubuntu"}}}}}
    assert provision.addresses_from_output(sample_plan, partial, strict=False) == {
        "ifca-server-1": {"ansible_host": "10.10.0.5", "ansible_user": "ubuntu"}}


# ------------------------------------------------------------------ bad input stops before Terraform

def _backend(conf: Any) -> Any:
    def override(plan: dict[str, Any]) -> dict[str, Any]:
        plan["settings"][render.BACKEND_SETTING] = conf
        return plan
    return override


@pytest.mark.parametrize("conf", [{"type": "consul"}, {"type": "s3"}, {"type": "s3", "bucket": "b", "secret_key": "x"}])
def test_misconfigured_backend_fails_before_anything_is_written(sample_inventory: Path, tmp_path: Path, conf: Any) -> None:
    steps = _double_steps(tmp_path / "unused", plan_override=_backend(conf))
    with pytest.raises(InputError) as err:
        provision.provision(sample_inventory, echo=lambda _: None, steps=steps)
    assert err.value.key.startswith("ai4os_terraform_backend")
    assert not (sample_inventory / "terraform").exists()


def test_remote_backend_without_credentials_in_the_environment(sample_inventory: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    conf = {"type": "swift", "container": "state", "endpoint": "https://swift.example.org"}
    steps = _double_steps(tmp_path / "unused", plan_override=_backend(conf))
    with pytest.raises(InputError) as err:
        provision.provision(sample_inventory, echo=lambda _: None, steps=steps)
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in err.value.problem
    assert "ec2 credentials create" in err.value.fix
    assert not (sample_inventory / "terraform").exists()


def test_only_testbed_sites_is_an_input_error(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    for site in sample_plan["sites"]:
        site["testbed"] = True
    with pytest.raises(InputError, match="no cloud site to provision"):
        provision.check_inputs(sample_plan, {})


# ------------------------------------------------------------------ credentials

def test_unknown_operator_cloud_is_an_input_error(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    clouds = tmp_path / "operator-clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"other": {"auth": {"auth_url": "https://k.example.org"}}}}))
    with pytest.raises(InputError) as err:
        provision.cloud_credentials(sample_plan, tmp_path / "terraform", {"OS_CLIENT_CONFIG_FILE": str(clouds)})
    assert err.value.key == "ai4os_sites[1].cloud" and "cesnet-prod" in err.value.problem
    assert not (tmp_path / "terraform" / "clouds.yaml").exists()


def test_operator_clouds_are_copied_and_checkin_sites_need_a_token(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    clouds = tmp_path / "operator-clouds.yaml"
    entry = {"auth_type": "v3applicationcredential",
             "auth": {"auth_url": "https://keystone.example.org:5000/v3", "application_credential_id": "id",
                      "application_credential_secret": "secret"}}
    clouds.write_text(yaml.safe_dump({"clouds": {"cesnet-prod": entry}}))
    # ifca is an EGI Check-in site: without any access token the refresh stops with a clear error.
    with pytest.raises(InputError, match="no EGI Check-in access token found"):
        provision.cloud_credentials(sample_plan, tmp_path / "terraform", {"OS_CLIENT_CONFIG_FILE": str(clouds)})
    kit_clouds = tmp_path / "terraform" / "clouds.yaml"
    assert yaml.safe_load(kit_clouds.read_text())["clouds"] == {"cesnet-prod": entry}
    assert kit_clouds.stat().st_mode & 0o777 == 0o600
    # Without Check-in sites the environment points Terraform at the kit's clouds.yaml.
    sample_plan["sites"] = [s for s in sample_plan["sites"] if s["name"] == "cesnet"]
    env = provision.cloud_credentials(sample_plan, tmp_path / "terraform", {"OS_CLIENT_CONFIG_FILE": str(clouds)})
    assert env == {"OS_CLIENT_CONFIG_FILE": str(kit_clouds)}


def test_operator_secure_yaml_is_merged_into_the_copied_cloud(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    clouds, secure = tmp_path / "clouds.yaml", tmp_path / "secure.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"cesnet-prod": {"auth": {
        "auth_url": "https://keystone.example.org:5000/v3", "username": "ops", "project_name": "ai4os"}}}}))
    secure.write_text(yaml.safe_dump({"clouds": {"cesnet-prod": {"auth": {"password": "from-secure-yaml"}}}}))
    sample_plan["sites"] = [s for s in sample_plan["sites"] if s["name"] == "cesnet"]
    provision.cloud_credentials(sample_plan, tmp_path / "terraform",
                                {"OS_CLIENT_CONFIG_FILE": str(clouds), "OS_CLIENT_SECURE_FILE": str(secure)})
    copied = yaml.safe_load((tmp_path / "terraform" / "clouds.yaml").read_text())["clouds"]["cesnet-prod"]
    assert copied["auth"]["password"] == "from-secure-yaml" and copied["auth"]["username"] == "ops"


# ------------------------------------------------------------------ CLI

def test_cli_provision_bad_inventory_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["provision", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "inventory directory not found" in err and "Traceback" not in err


def test_cli_registers_provision_and_destroy(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("provision", "destroy"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    out = capsys.readouterr().out
    assert "--plan-only" in out and "--yes" in out
