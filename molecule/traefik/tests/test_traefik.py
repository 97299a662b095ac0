"""Traefik for real on the test-bed: routing, HTTP->HTTPS, test CA, dashboard
refused outside the site network; the Nomad-job mode's rendered job."""

from __future__ import annotations

import os
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import hcl2
import pytest
import yaml

PKI = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki"
APP = "app.testbed.ai4os.test"
SYSTEMD_NODE = "ai4os-traefik-1"
JOB_NODE = "ai4os-traefik-job"

testinfra_hosts = [f"ansible://{SYSTEMD_NODE}", f"ansible://{JOB_NODE}"]

# Two distributions provide the `hcl2` module (python-hcl2, and checkov's
# bc-python-hcl2, which wraps every attribute value in a list): accept both.
_WRAPPED = hcl2.loads("a = 1\n")["a"] == [1]


def attr(value):
    """An attribute's value, whichever hcl2 parsed it (quotes stripped)."""
    value = value[0] if _WRAPPED else value
    return value.strip('"') if isinstance(value, str) else value


def only(host, name: str) -> None:
    if host.backend.get_hostname() != name:
        pytest.skip(f"checks {name} only")


def node_ip(host) -> str:
    return host.interface("eth0").addresses[0]


def https_get(ip: str, server_name: str, path: str = "/") -> tuple[str, str]:
    """GET over TLS to ip:443 with SNI/verification for server_name, trusting only the test CA."""
    context = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    with socket.create_connection((ip, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.splitlines()[0], body


def test_service_hardened_and_listening(host):
    only(host, SYSTEMD_NODE)
    service = host.service("traefik")
    assert service.is_running and service.is_enabled
    assert host.check_output("systemctl show -p User --value traefik") == "traefik"
    for port in (80, 443, 8081):
        assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or host.socket(f"tcp://:::{port}").is_listening


def test_routes_host_name_to_backend_with_test_ca(host):
    only(host, SYSTEMD_NODE)
    status, body = https_get(node_ip(host), APP)
    assert status.split()[1] == "200", status
    assert body.strip() == "hello from the test-bed backend"


def test_unknown_host_not_routed(host):
    only(host, SYSTEMD_NODE)
    status, _ = https_get(node_ip(host), "other.testbed.ai4os.test")
    assert status.split()[1] == "404", status


def test_certificate_rejected_without_test_ca(host):
    only(host, SYSTEMD_NODE)
    context = ssl.create_default_context()  # system trust only
    with socket.create_connection((node_ip(host), 443), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname=APP)


@pytest.mark.parametrize(("method", "status"), [("GET", 301), ("POST", 308)])
def test_http_redirects_to_https(host, method, status):
    only(host, SYSTEMD_NODE)
    out = host.check_output(
        "python3 -c \"import http.client as h; c=h.HTTPConnection('127.0.0.1', 80); "
        f"c.request('{method}', '/x?y=1', headers={{'Host': '{APP}'}}); r=c.getresponse(); "
        "print(r.status, r.getheader('Location'))\""
    )
    # Permanent redirect: 301 for GET, 308 (method kept) otherwise.
    assert out == f"{status} https://{APP}/x?y=1"


def test_dashboard_for_site_network_only(host):
    only(host, SYSTEMD_NODE)
    inside = host.check_output(
        "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:8081/api/version').status)\""
    )
    assert inside == "200"
    # The controller is outside the allowed CIDR (127.0.0.1/32 on the node).
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{node_ip(host)}:8081/api/version", timeout=10)  # noqa: S310
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as refused_ui:
        urllib.request.urlopen(f"http://{node_ip(host)}:8081/dashboard/", timeout=10)  # noqa: S310
    assert refused_ui.value.code == 403


def test_key_not_world_readable(host):
    only(host, SYSTEMD_NODE)
    key = host.file("/etc/traefik/tls/site.key")
    assert key.mode == 0o640 and key.group == "traefik"


def test_nomad_job_rendered_and_parses(host):
    only(host, JOB_NODE)
    assert not host.file("/etc/systemd/system/traefik.service").exists
    job = hcl2.loads(host.file("/etc/ai4os/jobs/traefik.nomad.hcl").content_string)["job"][0]["traefik"]
    assert attr(job["type"]) == "system"
    assert attr(job["datacenters"]) == ["site-a"]
    assert attr(job["constraint"][0]["value"]) == "ingress"
    group = job["group"][0]["traefik"]
    ports = {name: attr(spec["static"]) for port in group["network"][0]["port"] for name, spec in port.items()}
    assert ports == {"http": 80, "https": 443, "dashboard": 8081}
    task = group["task"][0]["traefik"]
    assert attr(task["driver"]) == "docker"
    assert attr(task["config"][0]["args"]) == ["--configFile=/etc/traefik/traefik.yml"]


def test_nomad_mode_static_config(host):
    only(host, JOB_NODE)
    static = yaml.safe_load(host.file("/etc/traefik/traefik.yml").content_string)
    web = static["entryPoints"]["web"]
    assert web["http"]["redirections"]["entryPoint"] == {"to": "websecure", "scheme": "https", "permanent": True}
    assert static["api"] == {"dashboard": True}
    assert "insecure" not in static["api"]
