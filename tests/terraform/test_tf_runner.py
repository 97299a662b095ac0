"""The Terraform runner against real Terraform (roots of built-in resources only)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest

from ai4os_kit.errors import KitError
from ai4os_kit.terraform import render
from ai4os_kit.terraform.runner import PLAN_FILE, Terraform, find_terraform

ROOT = {
    "variable": {"names": {"type": "list(string)", "default": ["a", "b"]}},
    "resource": {"terraform_data": {"node": {"for_each": "${toset(var.names)}", "input": "${each.key}-addr"}}},
    "output": {"inventory": {"value": {"hosts": "${{for k, v in terraform_data.node : k => v.output}}"}}},
}


def _root(tmp_path: Path, root: dict | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "main.tf.json").write_text(json.dumps(root or ROOT))
    return tmp_path


def test_init_plan_apply_output_then_no_changes(terraform: str, tmp_path: Path) -> None:
    lines: list[str] = []
    tf = Terraform(_root(tmp_path), echo=lines.append)
    tf.init()
    result = tf.plan()
    assert (result.add, result.change, result.remove) == (2, 0, 0)
    assert [(c.address, c.action) for c in result.changes] == [
        ('terraform_data.node["a"]', "create"), ('terraform_data.node["b"]', "create")]
    tf.apply()
    assert not (tmp_path / PLAN_FILE).exists(), "the saved plan must be removed after apply"
    assert tf.output() == {"inventory": {"hosts": {"a": "a-addr", "b": "b-addr"}}}
    assert any(line.startswith('  create: terraform_data.node["a"]') for line in lines)
    assert any(line.startswith('  done: terraform_data.node["b"]') for line in lines)
    assert "  Plan: 2 to add, 0 to change, 0 to destroy." in lines
    assert not tf.plan().has_changes


def test_destroy_plan_and_apply(terraform: str, tmp_path: Path) -> None:
    tf = Terraform(_root(tmp_path), echo=lambda _: None)
    tf.init()
    tf.plan()
    tf.apply()
    result = tf.plan(destroy=True)
    assert result.remove == 2 and {c.action for c in result.changes} == {"delete"}
    tf.apply()
    assert tf.output() == {}


def test_errors_become_one_kit_error_with_terraforms_diagnostics(terraform: str, tmp_path: Path) -> None:
    bad = {"output": {"x": {"value": "${var.missing}"}}}
    tf = Terraform(_root(tmp_path, bad), echo=lambda _: None)
    tf.init()
    with pytest.raises(KitError) as err:
        tf.plan()
    text = str(err.value)
    assert "terraform plan failed" in text and "Reference to undeclared input variable" in text
    assert "Traceback" not in text


def test_a_failing_precondition_stops_the_plan(terraform: str, tmp_path: Path) -> None:
    root = {"variable": {"fip": {"type": "string", "default": None, "nullable": True}},
            "resource": {"terraform_data": {"x": {"input": 1, "lifecycle": [{"precondition": [
                {"condition": "${var.fip != null}", "error_message": "The bastion has no floating IP."}]}]}}}}
    tf = Terraform(_root(tmp_path, root), echo=lambda _: None)
    tf.init()
    with pytest.raises(KitError, match="The bastion has no floating IP"):
        tf.plan()


def test_init_reports_an_unsupported_backend(terraform: str, tmp_path: Path) -> None:
    tf = Terraform(_root(tmp_path, {"terraform": {"backend": {"swift": {"container": "x"}}}}), echo=lambda _: None)
    with pytest.raises(KitError, match="swift.* backend is not supported"):
        tf.init()


class _Refuse(http.server.BaseHTTPRequestHandler):
    """An object store that refuses every request (as with wrong EC2 credentials)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_init_reports_a_refusing_state_backend_before_any_plan(terraform: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        plan = {"platform": {"name": "demo"}, "settings": {render.BACKEND_SETTING: {
            "type": "swift", "container": "state", "endpoint": "https://object-store.example.org"}}}
        backend = render.render_backend(plan)
        # The kit only accepts https endpoints; the local stand-in speaks plain http.
        backend["s3"]["endpoints"] = {"s3": f"http://127.0.0.1:{server.server_port}"}
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        tf = Terraform(_root(tmp_path, {"terraform": {"backend": backend}}), echo=lambda _: None)
        with pytest.raises(KitError) as err:
            tf.init()
        assert "terraform init failed" in str(err.value) and "403" in str(err.value)
    finally:
        server.shutdown()


def test_openstack_environment_does_not_leak_into_terraform(terraform: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A sourced openrc would override clouds.yaml in the provider; only the kit's settings pass."""
    monkeypatch.setenv("OS_AUTH_URL", "https://keystone.example.org/v3")
    monkeypatch.setenv("OS_TOKEN", "leftover")
    root = {"variable": {"probe": {"type": "string", "default": "none"}},
            "output": {"probe": {"value": "${var.probe}"}}}
    monkeypatch.setenv("TF_VAR_probe", "kept")
    tf = Terraform(_root(tmp_path, root), env={"OS_CLIENT_CONFIG_FILE": "/kit/clouds.yaml"}, echo=lambda _: None)
    assert "OS_AUTH_URL" not in tf.env and "OS_TOKEN" not in tf.env
    assert tf.env["OS_CLIENT_CONFIG_FILE"] == "/kit/clouds.yaml"
    tf.init()
    tf.plan()
    tf.apply()
    assert tf.output() == {"probe": "kept"}


def test_slow_resources_report_progress(terraform: str, tmp_path: Path) -> None:
    """Terraform reports every 10 s while a resource is created (a server booting); so does the kit."""
    root = {"resource": {"terraform_data": {"slow": {
        "input": "x", "provisioner": [{"local-exec": [{"command": "sleep 11"}]}]}}}}
    lines: list[str] = []
    tf = Terraform(_root(tmp_path, root), echo=lines.append)
    tf.init()
    tf.plan()
    tf.apply()
    assert "  still create: terraform_data.slow (10s)" in lines
    assert any(line.startswith("  done: terraform_data.slow (1") for line in lines)


def test_missing_terraform_cli_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI4OS_TERRAFORM", "terraform-not-installed-here")
    with pytest.raises(KitError, match="is not installed or not on PATH"):
        find_terraform()
