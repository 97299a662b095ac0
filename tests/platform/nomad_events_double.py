"""TEST DOUBLE of the Nomad HTTP API endpoints the provenance recorder calls (Nomad cannot run on
the test machines): the Allocation event stream, allocations and nodes, as recorded from Nomad's
source in tests/data/nomad/provenance-api.yml. Over real HTTPS on 127.0.0.1 with client
certificates required (the cluster's API verifies them); a request passes only with the token of
a policy (HCL, as the nomad role writes it) that holds the capability Nomad checks for it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import hcl2
import yaml
from service_pki import reply, serve_https

FACTS = yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "nomad" / "provenance-api.yml").read_text())


class Policy:
    """The namespace capabilities and node policy of a Nomad ACL policy text."""

    def __init__(self, text: str) -> None:
        doc = hcl2.loads(text)
        self.namespaces: dict[str, set[str]] = {}
        for block in doc.get("namespace", []):
            for name, body in block.items():
                caps = body.get("capabilities", [])
                self.namespaces[name.strip('"')] = set(caps[0] if caps and isinstance(caps[0], list) else caps)
        node = doc.get("node", [{}])[0].get("policy")
        self.node = (node[0] if isinstance(node, list) else node) or "deny"

    def allows(self, need: dict[str, str], namespace: str) -> bool:
        if "namespace" in need:
            return need["namespace"] in self.namespaces.get(namespace, set())
        return need["node"] == "read" and self.node in ("read", "write")


class NomadEventsDouble:
    def __init__(self, server_cert: Any, ca: Path, tokens: dict[str, Policy]) -> None:
        self.tokens = tokens
        self.allocations: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, int]] = []
        self.closed = threading.Event()
        self.server = serve_https(self._handler(), server_cert, client_ca=ca)

    @property
    def address(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()

    def emit(self, namespace: str, index: int, alloc: dict[str, Any], kind: str = "AllocationUpdated") -> None:
        """An Allocation event as Nomad publishes it: the allocation without its job."""
        payload = {k: v for k, v in alloc.items() if k != "Job"}
        payload["Job"] = None
        self.events.setdefault(namespace, []).append({"Index": index, "Events": [{
            "Topic": "Allocation", "Type": kind, "Key": alloc["ID"], "FilterKeys": [alloc["JobID"], ""],
            "Index": index, "Payload": {"Allocation": payload}}]})

    def _need(self, path: str) -> dict[str, str] | None:
        endpoints = {e["call"]: e["capability"] for e in FACTS["endpoints"]}
        if path == "/v1/event/stream":
            return endpoints["GET /v1/event/stream"]
        if path.startswith("/v1/allocation/"):
            return endpoints["GET /v1/allocation/<id>"]
        if path.startswith("/v1/node/"):
            return endpoints["GET /v1/node/<id>"]
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _json(self, status: int, payload: Any) -> None:
                reply(self, status, payload)       # errors as text, as Nomad's HTTP API writes them

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                need = double._need(url.path)
                policy = double.tokens.get(self.headers.get("X-Nomad-Token") or "")
                alloc = double.allocations.get(url.path.rsplit("/", 1)[-1], {})
                namespace = query.get("namespace") or alloc.get("Namespace") or "default"
                if need is None:
                    double.requests.append((url.path, 404))
                    return self._json(404, f"the test double does not implement GET {url.path}")
                if policy is None or not policy.allows(need, namespace):
                    double.requests.append((url.path, 403))
                    return self._json(403, "Permission denied")
                double.requests.append((url.path, 200))
                if url.path.startswith("/v1/allocation/"):
                    return self._json(200, alloc) if alloc else self._json(404, "alloc not found")
                if url.path.startswith("/v1/node/"):
                    node = double.nodes.get(url.path.rsplit("/", 1)[-1])
                    return self._json(200, node) if node else self._json(404, "node not found")
                if query.get("topic") != "Allocation":
                    return self._json(400, "the test double streams topic Allocation only")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                start = int(query.get("index", "0"))
                sent = 0
                try:
                    while not double.closed.is_set():
                        lines = [e for e in double.events.get(namespace, []) if e["Index"] >= start]
                        for line in lines[sent:]:
                            self.wfile.write(json.dumps(line).encode() + b"\n")
                        sent = len(lines)
                        self.wfile.write(FACTS["endpoints"][0]["heartbeat"].encode() + b"\n")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    return

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
