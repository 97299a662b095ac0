"""Helpers to run real Terraform in tests (no OpenStack provider needed).

* :func:`evaluate_locals` copies a module's ``variables.tf`` and ``locals.tf``
  (pure expressions, no provider) into a scratch root that outputs every
  local, and applies it with real Terraform: the module's own expressions and
  validation blocks run on the test's inputs.
* :func:`fake_site_module` builds the TEST DOUBLE of modules/site used where
  the OpenStack provider would be needed (see fixtures/fake_site/main.tf).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
from support.ci import unavailable

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "terraform"
MODULES = TERRAFORM_DIR / "modules"
FIXTURES = Path(__file__).resolve().parents[1] / "terraform" / "fixtures"


def terraform_bin() -> str:
    """The terraform CLI; missing in CI is a failure, locally a skip."""
    path = shutil.which(os.environ.get("AI4OS_TERRAFORM", "terraform"))
    if path is None:
        message = "the terraform CLI is not on PATH (the test machines carry Terraform 1.11 in /usr/local/bin)"
        unavailable(message)
    return path


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_IN_AUTOMATION="1", TF_INPUT="0", NO_COLOR="1")
    proc = subprocess.run([terraform_bin(), *args], cwd=cwd, env=env, text=True, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"terraform {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def local_names(module: Path) -> list[str]:
    with open(module / "locals.tf", encoding="utf-8") as handle:
        parsed = hcl2.load(handle)
    return [name for block in parsed.get("locals", []) for name in block if not name.startswith("__")]


def evaluate_locals(module: Path, variables: dict[str, Any], workdir: Path,
                    check: bool = True) -> dict[str, Any] | subprocess.CompletedProcess[str]:
    """Apply a scratch root made of the module's variables.tf + locals.tf.

    Returns {local name: value}; with check=False and a failing apply, the
    CompletedProcess (to assert on validation messages).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(module / "variables.tf", workdir / "variables.tf")
    shutil.copy(module / "locals.tf", workdir / "locals.tf")
    outputs = {"output": {name: {"value": f"${{local.{name}}}"} for name in local_names(module)}}
    (workdir / "outputs.tf.json").write_text(json.dumps(outputs), encoding="utf-8")
    (workdir / "terraform.tfvars.json").write_text(json.dumps(variables), encoding="utf-8")
    run(["init", "-input=false", "-no-color"], workdir)
    proc = run(["apply", "-auto-approve", "-input=false", "-no-color"], workdir, check=check)
    if proc.returncode != 0:
        return proc
    shown = run(["output", "-json"], workdir)
    return {name: item["value"] for name, item in json.loads(shown.stdout).items()}


def fake_site_module(target: Path) -> Path:
    """TEST DOUBLE of modules/site: real variables/locals, inventory module and secgroups expressions,
    terraform_data addresses."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(MODULES / "site" / name, target / name)
    shutil.copy(FIXTURES / "fake_site" / "main.tf", target / "main.tf")
    shutil.copytree(MODULES / "inventory", target / "inventory", dirs_exist_ok=True)
    secgroups = target / "secgroups"  # the real expressions, without the OpenStack resources
    secgroups.mkdir(exist_ok=True)
    for name in ("variables.tf", "locals.tf"):
        shutil.copy(MODULES / "secgroups" / name, secgroups / name)
    (secgroups / "outputs.tf").write_text('output "rules" {\n  value = local.rules\n}\n', encoding="utf-8")
    return target


def strip_openstack(root: dict[str, Any], fake_source: Path) -> dict[str, Any]:
    """The rendered root minus the OpenStack provider, pointing at the test double."""
    root = json.loads(json.dumps(root))
    root.pop("provider", None)
    root["terraform"].pop("required_providers", None)
    for call in root["module"].values():
        call.pop("providers", None)
        call["source"] = str(fake_source)
    return root


def public_addresses(plan: dict[str, Any]) -> dict[str, str]:
    """Addresses standing in for the floating IPs and created routers Terraform reports (198.18.0.0/15, a
    test range), keyed as modules/site's public_addresses output keys them."""
    cloud = [s for s in plan["sites"] if not s["testbed"]]
    names = [n["name"] for n in plan["nodes"] if n["floating_ip"] and any(n["site"] == s["name"] for s in cloud)]
    names += [f"{s['name']}-router" for s in cloud if s["network"]["create"]]
    return {name: f"198.18.0.{i}" for i, name in enumerate(sorted(names), start=1)}


def site_variables(call: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """A rendered site module call's arguments as the module's variables: the root's local of every
    site's public addresses (an expression) replaced by stand-in addresses."""
    variables = {k: v for k, v in call.items() if k not in ("source", "providers")}
    if "public_addresses" in variables:
        variables["public_addresses"] = public_addresses(plan)
    return variables
