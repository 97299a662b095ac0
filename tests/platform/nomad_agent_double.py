"""TEST DOUBLE of a Nomad client agent's dynamic node metadata endpoint, on top of the Nomad
HTTP API test double (nomad_api_double.py). Nomad cannot run on the test machines.

Serves what node admission calls, as Nomad documents and implements it
(https://developer.hashicorp.com/nomad/api-docs/client, "Update Dynamic Node Metadata";
hashicorp/nomad client/meta_endpoint.go: NodeMeta.Apply checks node write):
- ``POST /v1/client/metadata`` with ``{"NodeID": ..., "Meta": {key: value or null}}``: merges
  the keys into the node's dynamic meta (null unsets one) and answers ``{Meta, Dynamic, Static}``;
  only a token with node write (here: ``node_token``) may call it, others get 403;
- ``GET /v1/client/metadata?node_id=...``: the same answer.
Nodes are registered with their static meta (the agent configuration's ``meta``).
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from nomad_api_double import NomadApiDouble


class NomadAgentDouble(NomadApiDouble):
    def __init__(self, token: str, node_token: str) -> None:
        self.node_token = node_token
        self.static_meta: dict[str, dict[str, str]] = {}
        self.dynamic_meta: dict[str, dict[str, str | None]] = {}
        self.meta_requests: list[dict[str, Any]] = []
        super().__init__(token)

    def add_node(self, node_id: str, static_meta: dict[str, str]) -> None:
        self.static_meta[node_id] = dict(static_meta)
        self.dynamic_meta[node_id] = {}

    def meta(self, node_id: str) -> dict[str, str]:
        """The merged meta the scheduler sees (static, then dynamic; null keys removed)."""
        merged: dict[str, str | None] = {**self.static_meta[node_id], **self.dynamic_meta[node_id]}
        return {k: v for k, v in merged.items() if v is not None}

    def _metadata(self, method: str, url: str, token: str | None, body: Any) -> tuple[int, Any]:
        if token != self.node_token:
            return 403, "Permission denied"
        if method == "POST":
            node_id = (body or {}).get("NodeID", "")
            self.meta_requests.append(body)
        else:
            node_id = parse_qs(urlparse(url).query).get("node_id", [""])[0]
        if node_id not in self.static_meta:
            return 404, f"Unknown node {node_id!r}"
        if method == "POST":
            for key, value in (body.get("Meta") or {}).items():
                if value is not None and not isinstance(value, str):
                    return 400, f"meta value of {key} must be a string or null"
                self.dynamic_meta[node_id][key] = value
        return 200, {"Meta": self.meta(node_id), "Dynamic": self.dynamic_meta[node_id],
                     "Static": self.static_meta[node_id]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler()
        double = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def _serve(self, method: str) -> None:
                if urlparse(self.path).path != "/v1/client/metadata":
                    super()._serve(method)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, payload = double._metadata(method, self.path, self.headers.get("X-Nomad-Token"), body)
                data = (json.dumps(payload) if not isinstance(payload, str) else payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
