"""Bad component settings stop `ai4os-kit check` and the platform playbook before anything is submitted."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.platform_render import SECRETS, make_inventory, render

from ai4os_kit.cli import main
from ai4os_kit.model.component_rules import (
    RULES,
    check_component_settings,
    known_settings,
)
from ai4os_kit.paths import ROOT, SAMPLE_INVENTORY

FILE = "inv/platform.yml"


@pytest.fixture
def platform() -> dict[str, Any]:
    return dict(yaml.safe_load((SAMPLE_INVENTORY / "platform.yml").read_text()))


ENABLED = {"oidc", "papi", "dashboard", "storage", "mlflow", "vault", "monitoring", "docuum", "node_admission"}


def errors_for(platform: dict[str, Any], enabled: set[str] = ENABLED, secrets: dict[str, Any] | None = None) -> list[str]:
    return [e.render() for e in check_component_settings(platform, enabled, FILE, secrets=secrets)]


def test_sample_settings_pass(platform: dict[str, Any]) -> None:
    assert errors_for(platform, {"oidc", "papi", "dashboard", "storage", "monitoring", "docuum", "node_admission"},
                      secrets=SECRETS) == []


@pytest.mark.parametrize(("change", "key", "problem"), [
    ({}, "ai4os_mlflow_backend_store_uri", "mlflow is switched on but ai4os_mlflow_backend_store_uri is not set"),
    ({"ai4os_mlflow_backend_store_uri": "mlflow.db"}, "ai4os_mlflow_backend_store_uri", "has scheme '(none)'"),
    ({"ai4os_storage_webdav_url": None}, "ai4os_storage_webdav_url", "storage is switched on but ai4os_storage_webdav_url is not set"),
    ({"ai4os_storage_webdav_url": "http://share.example.org/dav"}, "ai4os_storage_webdav_url", "is not an https:// URL"),
    ({"ai4os_oidc": {"provider": "egi_checkin", "clients": {"papi": "a", "dashboard": "b", "nomad": "c", "oauth2_proxy": "d"},
                     "operators_group": "x"}},
     "ai4os_vault_jwt_issuer", "vault is switched on but ai4os_vault_jwt_issuer (nor ai4os_oidc.issuer) is not set"),
    ({"ai4os_vault_jwt_issuer": "http://login.example.org/"}, "ai4os_vault_jwt_issuer", "is not an https:// URL"),
    ({"ai4os_oidc": {"provider": "keycloak", "issuer": "https://kc.example.org/realms/x",
                     "clients": {"papi": "a", "dashboard": "b", "nomad": "c", "oauth2_proxy": "d"}, "operators_group": "x"}},
     "ai4os_oidc.keycloak.audience", "provider is keycloak but ai4os_oidc.keycloak.audience is not set"),
    ({"ai4os_oidc_ca_file": "missing-ca.pem"}, "ai4os_oidc_ca_file", "file 'missing-ca.pem' does not exist"),
    ({"ai4os_papi_oscar_clusters": {"vo.ai4eosc.eu": {"endpoint": "https://oscar.example.org"}}},
     "ai4os_papi_oscar_clusters", "papi has no setting 'oscar_clusters'"),
    ({"ai4os_storage_webdav_ur": "https://x.example.org/"}, "ai4os_storage_webdav_ur",
     "storage has no setting 'webdav_ur'"),
])
def test_bad_setting_is_named_with_file_key_problem_fix(platform: dict[str, Any], change: dict[str, Any],
                                                        key: str, problem: str) -> None:
    platform.update(copy.deepcopy(change))
    errors = [e for e in check_component_settings(platform, ENABLED, FILE, secrets=SECRETS) if e.key == key]
    assert errors, errors_for(platform)
    err = errors[0]
    assert problem in err.problem
    assert err.file == FILE and err.fix
    assert f"{FILE}: {key}: " in err.render() and "\n  fix: " in err.render()


def test_unknown_setting_suggests_the_right_name(platform: dict[str, Any]) -> None:
    platform["ai4os_storage_webdav_ur"] = "https://x.example.org/"
    assert "did you mean ai4os_storage_webdav_url?" in "".join(errors_for(platform, secrets=SECRETS))


@pytest.mark.parametrize("secret", sorted(r.key for r in RULES if r.kind == "secret"))
def test_missing_client_secret(platform: dict[str, Any], secret: str) -> None:
    secrets = {k: v for k, v in SECRETS.items() if k != secret}
    component = next(r.component for r in RULES if r.key == secret)
    errors = check_component_settings(platform, {"oidc", component}, FILE, secrets=secrets)
    assert [e.key for e in errors] == [secret]
    assert errors[0].file.endswith("secrets.yml") and "is missing" in errors[0].problem


def test_rules_only_apply_to_switched_on_components(platform: dict[str, Any]) -> None:
    platform["ai4os_storage_webdav_url"] = "http://plain.example.org/"
    assert errors_for(platform, {"papi"}) == []


def test_every_rule_names_a_documented_setting() -> None:
    """Flat ai4os_<component>_<setting> keys of the rules exist in the role defaults and in docs/platform.md."""
    docs = (ROOT / "docs" / "platform.md").read_text()
    for rule in RULES:
        if "." in rule.key or rule.key.startswith("ai4os_secret_"):
            continue
        setting = rule.key[len(f"ai4os_{rule.component}_"):]
        assert setting in (known_settings(rule.component) or []), rule.key
        assert rule.key in docs, f"{rule.key} is not documented in docs/platform.md"


def test_every_setting_is_documented() -> None:
    docs = (ROOT / "docs" / "platform.md").read_text()
    for component in ("papi", "dashboard", "storage", "flower", "mlflow", "vault", "monitoring", "docuum",
                      "node_admission", "oidc", "oscar", "drift", "provenance"):
        for setting in known_settings(component) or []:
            assert f"ai4os_{component}_{setting}" in docs, f"ai4os_{component}_{setting} is not in docs/platform.md"


def test_cli_check_reports_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = make_inventory(tmp_path, {}, gpu_facts=False,
                         broken={"ai4os_enable_mlflow": True, "ai4os_storage_webdav_url": "http://dav.example.org/"})
    assert main(["check", str(inv)]) == 2
    err = capsys.readouterr().err
    assert f"{inv}/platform.yml" in err and "ai4os_storage_webdav_url: 'http://dav.example.org/' is not an https:// URL" in err
    assert "ai4os_mlflow_backend_store_uri: mlflow is switched on" in err and "fix: " in err and "Traceback" not in err


def test_playbook_stops_before_rendering_or_submitting(tmp_path: Path) -> None:
    """The real playbook, submission on: bad settings of platform.yml stop it in its first play (the
    validation, `ai4os-kit check`), a secret missing from the vault in the settings checks of the
    platform play; nothing is written either way."""
    secrets = {k: v for k, v in SECRETS.items() if k != "ai4os_oidc_nomad_client_secret"}
    broken = {"ai4os_enable_mlflow": True, "ai4os_storage_webdav_url": "http://dav.example.org/"}
    cases = {
        "settings": (make_inventory(tmp_path / "settings", {}, SECRETS, gpu_facts=False, broken=broken),
                     ("ai4os_mlflow_backend_store_uri: mlflow is switched on but ai4os_mlflow_backend_store_uri is not set",
                      "ai4os_storage_webdav_url: 'http://dav.example.org/' is not an https:// URL")),
        "secret": (make_inventory(tmp_path / "secret", {}, secrets, gpu_facts=False),
                   ("ai4os_oidc_nomad_client_secret: oidc is switched on but secret ai4os_oidc_nomad_client_secret "
                    "is missing",)),
    }
    for case, (inv, expected) in cases.items():
        out = inv.parent / "out"
        result = render(inv, out, {"platform_job_submit": True, "platform_job_nomad_addr": "https://127.0.0.1:1"})
        assert result.returncode != 0, case
        text = result.stdout + result.stderr
        for message in expected:
            assert message in text, text[-3000:]
        # Bad settings never reach the platform play; a missing secret passes the validation.
        assert ("PLAY [Platform jobs" in text) is (case == "secret"), text[-3000:]
        assert "Traceback" not in text
        assert not out.exists()
        assert "test-oauth2-proxy-secret" not in text     # no secret printed


def test_playbook_stops_when_the_issuer_is_unreachable(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    platform = yaml.safe_load((SAMPLE_INVENTORY / "platform.yml").read_text())
    oidc = dict(platform["ai4os_oidc"], issuer=f"https://127.0.0.1:{port}/realms/ai4os")
    inv = make_inventory(tmp_path, {"ai4os_oidc": oidc}, SECRETS, gpu_facts=False)
    result = render(inv, tmp_path / "out", {"platform_job_submit": True, "platform_job_nomad_addr": "https://127.0.0.1:1",
                                            "platform_job_components": ["oidc", "papi"]})
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"ai4os_oidc.issuer: https://127.0.0.1:{port}/realms/ai4os does not answer" in text, text[-3000:]
    assert not (tmp_path / "out" / "oidc").exists() and not (tmp_path / "out" / "papi").exists()


def test_images_pinned_by_digest_pass_and_tags_are_named() -> None:
    """Every image setting of a switched-on component must end in @sha256:<digest> unless tags are allowed."""
    platform = yaml.safe_load((SAMPLE_INVENTORY / "platform.yml").read_text())
    platform.pop("ai4os_allow_unpinned_images")
    digest = "@sha256:" + "ab" * 32
    tagged = {e.key for e in check_component_settings(platform, {"papi", "monitoring"}, "platform.yml")}
    assert tagged == {"ai4os_papi_image", "ai4os_monitoring_grafana_image", "ai4os_monitoring_prometheus_image",
                      "ai4os_monitoring_node_exporter_image"}
    pinned = {key: f"registry.example.org/x{digest}" for key in tagged}
    assert not check_component_settings({**platform, **pinned}, {"papi", "monitoring"}, "platform.yml")
    bad = {**platform, **pinned, "ai4os_papi_image": "registry.example.org/x@sha256:abc"}   # a digest cut short
    assert [e.key for e in check_component_settings(bad, {"papi", "monitoring"}, "platform.yml")] == ["ai4os_papi_image"]


def test_playbook_stops_on_a_hosts_file_without_the_plans_facts(tmp_path: Path) -> None:
    """The job templates read sites, datacenters and topology from hosts.yml (the plan's facts, never
    re-derived): a hosts.yml of an older kit stops the platform play with the fix, nothing rendered."""
    inv = make_inventory(tmp_path, {}, SECRETS, gpu_facts=False)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    for key in [k for k in hosts["all"]["vars"] if k.startswith("ai4os_plan_")]:
        del hosts["all"]["vars"][key]
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    result = render(inv, tmp_path / "out", {"platform_job_components": ["node_admission"]})
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "all.vars lacks the plan's facts (ai4os_plan_sites, ai4os_plan_datacenters, ai4os_plan_topology)" in text
    assert f"Fix: write it again with `ai4os-kit plan {inv}`" in text, text[-3000:]
    assert not (tmp_path / "out" / "node_admission").exists()
