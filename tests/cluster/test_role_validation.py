"""The consul and nomad roles stop on missing or shared token secrets with one message that
names secrets.yml, the keys and the fix, and print no secret value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.cluster_helpers import ROOT, run_playbook
from support.cluster_render import test_secrets

NODE = {
    "ai4os_node_site": "tb", "ai4os_node_datacenter": "tb", "ai4os_node_role": "server",
    "ai4os_node_consul_server": True, "ai4os_node_nomad_server": True, "ai4os_node_nomad_client": False,
    "ai4os_node_meta": {}, "ansible_architecture": "x86_64",
    "ai4os_node_certs": [{"name": "tb-server-1-consul", "common_name": "server.tb.consul", "sans": []},
                         {"name": "tb-server-1-nomad", "common_name": "server.tb.nomad", "sans": []}],
}


def _check(tmp_path: Path, role: str, secrets: dict[str, str]) -> tuple[int, str]:
    inventory = {"all": {"hosts": {"tb-server-1": NODE}, "children": {
        group: {"hosts": {"tb-server-1": None}} for group in ("consul_servers", "nomad_servers", "site_tb", "server")}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "vars.yml").write_text(yaml.safe_dump({"check_role": role, "ai4os_nomad_region": "tb", **secrets,
                                                       "ansible_facts": {"architecture": "x86_64"}}))
    proc = run_playbook(tmp_path, ROOT / "tests" / "cluster" / "validate_play.yml", "-vvv",
                        "-e", f"@{tmp_path / 'vars.yml'}", inventory=str(tmp_path / "hosts.yml"))
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(("role", "missing"), [("consul", "ai4os_secret_consul_token_dns"),
                                               ("nomad", "ai4os_secret_nomad_accessor_papi")])
def test_a_missing_token_secret_is_named_with_the_fix(tmp_path: Path, role: str, missing: str) -> None:
    secrets = test_secrets()
    del secrets[missing]
    rc, output = _check(tmp_path, role, secrets)
    assert rc != 0
    assert f"secrets.yml: {missing} missing or not a UUID." in output
    assert "Fix: run `ai4os-kit secrets INVENTORY`" in output
    assert not any(value in output for key, value in secrets.items() if "token" in key or "accessor" in key)


def test_a_token_sharing_the_bootstrap_secret_is_refused(tmp_path: Path) -> None:
    secrets = test_secrets()
    secrets["ai4os_secret_consul_token_agent"] = secrets["ai4os_secret_consul_bootstrap_token"]
    rc, output = _check(tmp_path, "consul", secrets)
    assert rc != 0 and "each token needs its own secret" in output
    assert secrets["ai4os_secret_consul_bootstrap_token"] not in output


def test_complete_secrets_pass(tmp_path: Path) -> None:
    rc, output = _check(tmp_path, "nomad", test_secrets())
    assert rc == 0, output[-3000:]
