"""Checks of the Terraform code that run without the OpenStack provider.

terraform fmt, python-hcl2 parsing, the modules' documented interface, and
checkov (zero failed checks) over the modules and over a root rendered from
the sample plan.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest
from support import tfharness
from ai4os_kit.terraform import render

MODULES = tfharness.MODULES
MODULE_NAMES = sorted(p.name for p in MODULES.iterdir() if p.is_dir())
TF_FILES = sorted([*tfharness.TERRAFORM_DIR.rglob("*.tf"), *tfharness.TERRAFORM_DIR.rglob("*.tftest.hcl")])


def _parse(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return hcl2.load(handle)


def _blocks(module: Path, kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(module.glob("*.tf")):
        for block in _parse(path).get(kind, []):
            found.update(block)
    return found


def test_the_four_modules_and_the_inventory_helper_exist() -> None:
    assert MODULE_NAMES == ["inventory", "network", "node_pool", "secgroups", "site"]


def test_terraform_fmt_check_recursive(terraform: str) -> None:
    proc = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(tfharness.TERRAFORM_DIR)],
                          text=True, capture_output=True, check=False)
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}"


def test_terraform_init_reads_the_rendered_root_and_its_modules(terraform: str, sample_plan: dict[str, Any],
                                                               tmp_path: Path) -> None:
    """`terraform init` parses the rendered JSON root and installs every module it calls;
    the only error left is the OpenStack provider, which cannot be obtained here
    (an empty -plugin-dir keeps Terraform from asking the registry)."""
    root_dir = tmp_path / "inv" / "terraform"
    render.write_root(render.render_root(sample_plan, root_dir), root_dir)
    (tmp_path / "no-plugins").mkdir()
    proc = tfharness.run(["init", "-backend=false", "-input=false", "-json", f"-plugin-dir={tmp_path / 'no-plugins'}"],
                         root_dir, check=False)
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    installed = {m["@message"].split()[1] for m in messages if m.get("@message", "").startswith("- site_")}
    assert installed == {f"site_{s}{sub}" for s in ("ifca", "cesnet")
                         for sub in ("", ".network", ".secgroups", ".node_pool", ".inventory")}
    errors = [m["diagnostic"]["summary"] for m in messages if m.get("type") == "diagnostic" and m["@level"] == "error"]
    assert errors == ["Failed to query available provider packages"], errors


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(tfharness.TERRAFORM_DIR)))
def test_every_terraform_file_parses_with_python_hcl2(path: Path) -> None:
    assert isinstance(_parse(path), dict)


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_variables_are_typed_described_and_validated(name: str) -> None:
    variables = _blocks(MODULES / name, "variable")
    assert variables, f"module {name} has no variables"
    for var, spec in variables.items():
        assert spec.get("type") is not None, f"{name}: variable {var} has no type"
        assert str(spec.get("description", "")).strip(), f"{name}: variable {var} has no description"
    validated = [var for var, spec in variables.items() if spec.get("validation")]
    assert validated, f"module {name} validates none of its variables"


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_outputs_are_documented_and_module_has_a_readme(name: str) -> None:
    outputs = _blocks(MODULES / name, "output")
    assert outputs, f"module {name} has no outputs"
    for out, spec in outputs.items():
        assert str(spec.get("description", "")).strip(), f"{name}: output {out} has no description"
    readme = (MODULES / name / "README.md").read_text(encoding="utf-8")
    for item in [*_blocks(MODULES / name, "variable"), *outputs]:
        assert f"`{item}`" in readme, f"{name}/README.md does not document `{item}`"


def test_terraform_test_files_mock_the_openstack_provider_and_cover_every_module() -> None:
    """tests/openstack: shipped for operators with the provider; not run here (it cannot be downloaded)."""
    tests = sorted((tfharness.TERRAFORM_DIR / "tests" / "openstack").glob("*.tftest.hcl"))
    assert tests
    parsed = [_parse(path) for path in tests]
    assert all(any("openstack" in block for block in doc.get("mock_provider", [])) for doc in parsed)
    runs = [run for doc in parsed for block in doc.get("run", []) for run in block.values()]
    sources = {str(m.get("source")).strip("[]'\"") for run in runs for m in run.get("module", [])}
    assert sources == {f"./modules/{name}" for name in ("site", "node_pool", "secgroups", "network")}
    assert all(run.get("module") for run in runs), "every run names the module it tests"
    assert any("expect_failures" in run for run in runs)


def test_terraform_test_of_the_pure_inventory_module(terraform: str, tmp_path: Path) -> None:
    """`terraform test` itself, on the module that needs no provider (tests/inventory)."""
    work = tmp_path / "terraform"
    shutil.copytree(tfharness.TERRAFORM_DIR, work, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    tfharness.run(["init", "-input=false", "-test-directory=tests/inventory"], work)
    proc = tfharness.run(["test", "-no-color", "-test-directory=tests/inventory"], work, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success! 4 passed, 0 failed." in proc.stdout


META_ARGUMENTS = {"source", "for_each", "count", "providers", "depends_on", "version", "__start_line__", "__end_line__"}


def test_site_wires_its_modules_by_their_declared_interfaces() -> None:
    """Every module call passes only declared variables and all required ones; every
    `module.<name>.<output>` reference names a declared output (what `terraform
    validate` would check, which needs the provider here)."""
    site = MODULES / "site"
    calls = _blocks(site, "module")
    assert sorted(calls) == ["inventory", "network", "node_pool", "secgroups"]
    for name, call in calls.items():
        source = call["source"][0] if isinstance(call["source"], list) else call["source"]
        target = (site / source).resolve()
        variables = _blocks(target, "variable")
        passed = set(call) - META_ARGUMENTS
        assert passed <= set(variables), f"module {name} gets undeclared {passed - set(variables)}"
        required = {v for v, spec in variables.items() if "default" not in spec}
        assert required <= passed, f"module {name} lacks required {required - passed}"
    text = "\n".join(p.read_text() for p in sorted(site.glob("*.tf")))
    refs = set(re.findall(r"module\.([a-z_]+)(?:\[[^\]]+\])?\.([a-z_]+)", text))
    assert refs
    for module_name, output in refs:
        source = calls[module_name]["source"]
        target = (site / (source[0] if isinstance(source, list) else source)).resolve()
        assert output in _blocks(target, "output"), f"module.{module_name}.{output} is not an output"


@pytest.mark.parametrize("name", ["network", "secgroups", "node_pool", "site"])
def test_provider_modules_pin_the_openstack_provider(name: str) -> None:
    terraform_blocks = [b for p in sorted((MODULES / name).glob("*.tf")) for b in _parse(p).get("terraform", [])]
    openstack = terraform_blocks[0]["required_providers"][0]["openstack"]
    openstack = openstack[0] if isinstance(openstack, list) else openstack
    assert openstack["source"] == render.PROVIDER_SOURCE
    assert openstack["version"] == render.PROVIDER_VERSION


# ------------------------------------------------------------------ checkov

def _checkov(directory: Path, tmp_path: Path, frameworks: tuple[str, ...] = ("terraform",)) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("checkov")
    if not exe.exists():
        pytest.fail("checkov is not installed (it is in the `test` extra: pip install -e .[test])")
    out = tmp_path / "checkov"
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false", LOG_LEVEL="ERROR")
    proc = subprocess.run([str(exe), "-d", str(directory), "--framework", *frameworks, "--skip-download",
                           "--download-external-modules", "false", "--compact", "-o", "json",
                           "--output-file-path", str(out)],
                          text=True, capture_output=True, check=False, env=env, timeout=600)
    report = out / "results_json.json"
    assert report.is_file(), f"checkov wrote no report (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    data = json.loads(report.read_text())
    runs = data if isinstance(data, list) else [data]
    summary: dict[str, Any] = {"passed": 0, "failed": 0, "skipped": 0, "failed_checks": [], "checked": set()}
    for run_ in runs:
        assert not run_.get("summary", {}).get("parsing_errors"), f"checkov could not parse: {run_.get('summary')}"
        results = run_.get("results", {})
        summary["passed"] += len(results.get("passed_checks", []))
        summary["failed"] += len(results.get("failed_checks", []))
        summary["skipped"] += len(results.get("skipped_checks", []))
        summary["failed_checks"] += [(c["check_id"], c["resource"], c["file_path"]) for c in results.get("failed_checks", [])]
        summary["checked"] |= {c["check_id"] for c in results.get("passed_checks", [])}
    return summary


def test_checkov_finds_no_failed_check_in_the_modules(tmp_path: Path) -> None:
    summary = _checkov(tfharness.TERRAFORM_DIR, tmp_path)
    assert summary["failed"] == 0, summary["failed_checks"]
    assert summary["passed"] > 0


def test_checkov_finds_no_failed_check_in_the_rendered_root(sample_plan: dict[str, Any], tmp_path: Path) -> None:
    """The root as `provision` writes it, with the modules it calls (local paths)."""
    root_dir = tmp_path / "inv" / "terraform"
    # Same relative layout as in the repository, so the module source resolves.
    kit = tmp_path / "kit"
    shutil.copytree(tfharness.TERRAFORM_DIR / "modules", kit / "terraform" / "modules")
    render.write_root(render.render_root(sample_plan, root_dir, modules_dir=kit / "terraform" / "modules"), root_dir)
    summary = _checkov(tmp_path, tmp_path / "out", ("terraform", "terraform_json"))
    assert summary["failed"] == 0, summary["failed_checks"]
    # The provider credentials check ran on the rendered provider blocks.
    assert "CKV_OPENSTACK_1" in summary["checked"]


def _hcl(rules: dict[str, Any]) -> str:
    """Literal resources in HCL (checkov's JSON reader mis-reads string values)."""
    blocks = []
    for name, attrs in rules["resource"]["openstack_networking_secgroup_rule_v2"].items():
        body = "".join(f"  {key} = {json.dumps(value)}\n" for key, value in attrs.items() if value is not None)
        blocks.append(f'resource "openstack_networking_secgroup_rule_v2" "{name}" {{\n{body}}}\n')
    return "\n".join(blocks)


def _literal_rules(plan: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Every security-group rule Terraform would create for the plan, as literal resources.

    The rules come from the real secgroups module's expressions, evaluated by
    Terraform on the rendered root's arguments; checkov then sees concrete
    values (it cannot expand for_each over module inputs).
    """
    root = render.render_root(plan, tmp_path / "root")
    resources: dict[str, Any] = {}
    for call in root["module"].values():
        groups = {n: {"description": g["description"], "rules": g["rules"]} for n, g in call["secgroups"].items()}
        variables = {"groups": groups, "public_addresses": tfharness.public_addresses(plan)}
        values = tfharness.evaluate_locals(MODULES / "secgroups", variables, tmp_path / call["site"])
        for index, rule in enumerate(values["rules"].values()):
            resources[f"{call['site']}_{index}"] = {
                "security_group_id": rule["group"], "direction": rule["direction"], "ethertype": rule["ethertype"],
                "protocol": rule["protocol"], "port_range_min": rule["port_min"], "port_range_max": rule["port_max"],
                "remote_ip_prefix": rule["remote_cidr"], "remote_group_id": rule["remote_group"],
                "description": rule["description"]}
    return {"resource": {"openstack_networking_secgroup_rule_v2": resources}}


def test_checkov_passes_every_concrete_security_group_rule(terraform: str, sample_plan: dict[str, Any],
                                                          tmp_path: Path) -> None:
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "rules.tf").write_text(_hcl(_literal_rules(sample_plan, tmp_path)))
    summary = _checkov(scan, tmp_path / "out")
    assert summary["failed"] == 0, summary["failed_checks"]
    assert {"CKV_OPENSTACK_2", "CKV_OPENSTACK_3"} <= summary["checked"]


def test_checkov_catches_ssh_open_to_the_world_control(terraform: str, sample_plan: dict[str, Any],
                                                      tmp_path: Path) -> None:
    """Negative control: the same scan fails on a world-open SSH rule."""
    rules = _literal_rules(sample_plan, tmp_path)
    first = next(iter(rules["resource"]["openstack_networking_secgroup_rule_v2"].values()))
    rules["resource"]["openstack_networking_secgroup_rule_v2"]["bad"] = dict(
        first, direction="ingress", ethertype="IPv4", protocol="tcp", port_range_min=22, port_range_max=22,
        remote_ip_prefix="0.0.0.0/0")
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "rules.tf").write_text(_hcl(rules))
    summary = _checkov(scan, tmp_path / "out")
    assert [c[0] for c in summary["failed_checks"]] == ["CKV_OPENSTACK_2"]
