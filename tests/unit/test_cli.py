from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from ai4os_kit.cli import main


def test_plan_json_and_writes_inventory(sample_inventory: Path, capsys) -> None:
    assert main(["plan", "--json", str(sample_inventory)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["platform"]["region"] == "ai4os"
    hosts = yaml.safe_load((sample_inventory / "hosts.yml").read_text())
    assert set(hosts["all"]["hosts"]) == {n["name"] for n in plan["nodes"]}


def test_plan_summary_says_why_components_are_on(sample_inventory: Path, capsys) -> None:
    (sample_inventory / "platform.yml").write_text(
        (sample_inventory / "platform.yml").read_text().replace("ai4os_enable_mlflow: false", "ai4os_enable_mlflow: true")
        + "ai4os_mlflow_backend_store_uri: postgresql://mlflow@db.example.org/mlflow\n"
        + "ai4os_mlflow_artifacts_destination: s3://mlflow-artifacts\n")
    rc = main(["plan", "--no-write", str(sample_inventory)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "[on ] mlflow" in out.out and "enabled in" in out.out
    assert "[on ] consul" in out.out and "on by default" in out.out
    assert not (sample_inventory / "hosts.yml").exists()


def test_init_creates_a_valid_inventory(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "acme"]) == 0
    inv = tmp_path / "inventories" / "acme"
    assert "ai4os_platform_name: acme" in (inv / "platform.yml").read_text()
    assert (inv / "group_vars" / "all" / "platform.yml").is_symlink()
    assert main(["check", str(inv)]) == 0
    assert main(["init", "acme"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_help_for_every_command() -> None:
    for cmd in ("init", "check", "plan", "secrets"):
        out = subprocess.run([sys.executable, "-m", "ai4os_kit", cmd, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout


def test_usage_error_exits_2() -> None:
    out = subprocess.run([sys.executable, "-m", "ai4os_kit", "plan"], capture_output=True, text=True)
    assert out.returncode == 2
