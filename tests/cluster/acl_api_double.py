"""TEST DOUBLE of the Nomad and Consul ACL/namespace HTTP API endpoints that the roles'
acl.yml call, served over HTTPS that requires a client certificate (as the agents do with
tls.verify_https_client / tls.https.verify_incoming).

Nomad and Consul cannot run on the test machines (no registry carries their binaries). The
double answers only what roles/nomad/tasks/acl.yml and roles/consul/tasks/acl.yml call, with
the behaviour of the real endpoints:

Nomad (hashicorp/nomad v2.0.4):
- ``POST /v1/acl/bootstrap`` with ``BootstrapSecret``: 200 and the management token once,
  then 400 (nomad/acl_endpoint.go Bootstrap: "ACL bootstrap already done");
- ``GET /v1/acl/token/self``: the token of ``X-Nomad-Token``, 403 "ACL token not found";
- ``GET /v1/acl/tokens``: stubs without SecretID (structs.ACLTokenListStub);
- ``POST /v1/acl/token``: creates; an unknown AccessorID with a SecretID, both UUIDs, of a
  client token, is kept as given (acl_endpoint.go:637-649); a known AccessorID updates it;
- ``POST /v1/acl/token/<accessor>``: updates (the body's AccessorID must match the path:
  command/agent/acl_endpoint.go:303); ``DELETE /v1/acl/token/<accessor>``;
- ``GET/POST /v1/acl/policy/<name>``, ``GET/POST /v1/namespace/<name>`` (404 when absent;
  Capabilities returned with all four lists, null when unset: structs.NamespaceCapabilities).

Consul (developer.hashicorp.com/consul/api-docs/acl, /acl/tokens, /acl/policies):
- ``PUT /v1/acl/bootstrap`` with ``BootstrapSecret``: the management token once, then 403;
- ``GET /v1/acl/token/self``: 403 "ACL not found" for an unknown secret;
- ``GET /v1/acl/tokens``; ``PUT /v1/acl/token`` (SecretID/AccessorID kept when given);
  ``PUT /v1/acl/token/<accessor>``; ``DELETE /v1/acl/token/<accessor>``;
- ``GET /v1/acl/policy/name/<name>`` (404 when absent), ``PUT /v1/acl/policy``,
  ``PUT /v1/acl/policy/<id>``, ``DELETE /v1/acl/policy/<id>``.
Every call but bootstrap and self needs the management token (403 otherwise).
"""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GLOBAL_MANAGEMENT = "00000000-0000-0000-0000-000000000001"


class AclApiDouble:
    """One agent's API (flavor "nomad" or "consul") on 127.0.0.1 over mutual TLS."""

    def __init__(self, flavor: str, cert: Path, key: Path, ca: Path) -> None:
        self.flavor = flavor
        self.header = "X-Nomad-Token" if flavor == "nomad" else "X-Consul-Token"
        self.tokens: dict[str, dict[str, Any]] = {}  # by AccessorID
        self.policies: dict[str, dict[str, Any]] = {}  # by name
        self.namespaces: dict[str, dict[str, Any]] = {"default": {"Name": "default", "Description": "Default shared namespace"}}
        self.bootstrapped = False
        self.requests: list[tuple[str, str, int]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def api(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, status in self.requests if m != "GET" and status == 200 and not p.endswith("/bootstrap")]

    # ------------------------------------------------------------------ model

    def _by_secret(self, secret: str | None) -> dict[str, Any] | None:
        return next((t for t in self.tokens.values() if t["SecretID"] == secret), None)

    def _is_management(self, secret: str | None) -> bool:
        token = self._by_secret(secret)
        if token is None:
            return False
        if self.flavor == "nomad":
            return token["Type"] == "management"
        return any(p.get("ID") == GLOBAL_MANAGEMENT for p in token["Policies"])

    def _token(self, body: dict[str, Any]) -> dict[str, Any]:
        token = {"AccessorID": body.get("AccessorID") or str(uuid.uuid4()),
                 "SecretID": body.get("SecretID") or str(uuid.uuid4())}
        if self.flavor == "nomad":
            token.update(Name=body.get("Name", ""), Type=body.get("Type", "client"),
                         Policies=body.get("Policies") or [], Roles=body.get("Roles") or [],
                         Global=bool(body.get("Global")))
        else:
            policies = [{"ID": self.policies[p["Name"]]["ID"], "Name": p["Name"]} if "Name" in p else p
                        for p in body.get("Policies") or []]
            token.update(Description=body.get("Description", ""), Policies=policies, Local=bool(body.get("Local")),
                         Roles=body.get("Roles") or [], ServiceIdentities=body.get("ServiceIdentities") or [],
                         NodeIdentities=body.get("NodeIdentities") or [])
        return token

    def _existing_token(self, method: str, accessor: str, body: dict[str, Any], *, update: str, refusal: str | bool,
                        not_found: tuple[int, str], deleted: Any) -> tuple[int, Any]:
        """Read, update (the SecretID never changes) or delete the token with this AccessorID."""
        if accessor not in self.tokens:
            return not_found
        if method == "DELETE":
            del self.tokens[accessor]
            return 200, deleted
        if method == update:
            if refusal:
                return 400, refusal
            token = self._token(dict(body, AccessorID=accessor, SecretID=self.tokens[accessor]["SecretID"]))
            self.tokens[accessor] = token
            return 200, token
        return 200, self.tokens[accessor]

    def respond(self, method: str, path: str, secret: str | None, body: Any) -> tuple[int, Any]:
        if path == "/v1/acl/bootstrap":
            if self.bootstrapped:
                return (400, "ACL bootstrap already done (reset index: 7)") if self.flavor == "nomad" else \
                    (403, "Permission denied: ACL bootstrap no longer allowed (reset index: 7)")
            self.bootstrapped = True
            management = {"AccessorID": str(uuid.uuid4()), "SecretID": body["BootstrapSecret"]}
            if self.flavor == "nomad":
                management.update(Name="Bootstrap Token", Type="management", Policies=[], Roles=[], Global=True)
            else:
                management.update(Description="Bootstrap Token (Global Management)", Local=False, Roles=[],
                                  Policies=[{"ID": GLOBAL_MANAGEMENT, "Name": "global-management"}],
                                  ServiceIdentities=[], NodeIdentities=[])
            self.tokens[management["AccessorID"]] = management
            return 200, management
        if path == "/v1/acl/token/self":
            token = self._by_secret(secret)
            return (200, token) if token else (403, "ACL token not found" if self.flavor == "nomad" else "ACL not found")
        if not self._is_management(secret):
            return 403, "Permission denied"
        return self._nomad(method, path, body) if self.flavor == "nomad" else self._consul(method, path, body)

    def _nomad(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/acl/tokens":
            return 200, [{k: v for k, v in t.items() if k != "SecretID"} for t in self.tokens.values()]
        if path == "/v1/acl/token" and method == "POST":
            accessor = body.get("AccessorID")
            given_ids_refused = not (_is_uuid(accessor or "") and _is_uuid(body.get("SecretID", ""))) \
                or body.get("Type") == "management"
            if accessor and accessor not in self.tokens and given_ids_refused:
                return 400, f"cannot find token {accessor}"
            if accessor in self.tokens:
                body = dict(body, SecretID=self.tokens[accessor]["SecretID"])
            token = self._token(body)
            self.tokens[token["AccessorID"]] = token
            return 200, token
        if path.startswith("/v1/acl/token/"):
            accessor = path.rsplit("/", 1)[1]
            mismatch = body.get("AccessorID") != accessor and "ACL token accessor does not match request path"
            return self._existing_token(method, accessor, body, update="POST", refusal=mismatch,
                                        not_found=(404, "ACL token not found"), deleted=None)
        if path.startswith("/v1/acl/policy/"):
            name = path.rsplit("/", 1)[1]
            if method == "POST":
                self.policies[name] = {"Name": name, "Description": body.get("Description", ""), "Rules": body["Rules"]}
                return 200, None
            return (200, self.policies[name]) if name in self.policies else (404, "ACL policy not found")
        if path.startswith("/v1/namespace/"):
            name = path.rsplit("/", 1)[1]
            if method == "POST":
                caps = body.get("Capabilities") or {}
                self.namespaces[name] = {"Name": name, "Description": body.get("Description", ""),
                                         "Capabilities": {k: caps.get(k) for k in ("EnabledTaskDrivers", "DisabledTaskDrivers",
                                                                                   "EnabledNetworkModes", "DisabledNetworkModes")}}
                return 200, None
            return (200, self.namespaces[name]) if name in self.namespaces else (404, "namespace not found")
        return 404, f"the test double does not implement {method} {path}"

    def _consul(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/v1/acl/tokens":
            return 200, list(self.tokens.values())
        if path == "/v1/acl/token" and method == "PUT":
            missing = [p["Name"] for p in body.get("Policies") or [] if "Name" in p and p["Name"] not in self.policies]
            if missing:
                return 400, f"cannot find policy {missing[0]}"
            token = self._token(body)
            self.tokens[token["AccessorID"]] = token
            return 200, token
        if path.startswith("/v1/acl/token/"):
            accessor = path.rsplit("/", 1)[1]
            known = self.tokens.get(accessor, {}).get("SecretID")
            change = body.get("SecretID") not in (None, known) and "Cannot change the SecretID of an existing token"
            return self._existing_token(method, accessor, body, update="PUT", refusal=change,
                                        not_found=(403, "ACL not found"), deleted=True)
        if path.startswith("/v1/acl/policy/name/"):
            name = path.rsplit("/", 1)[1]
            return (200, self.policies[name]) if name in self.policies else (404, "ACL policy not found")
        if path == "/v1/acl/policy" and method == "PUT":
            policy = {"ID": str(uuid.uuid4()), "Name": body["Name"], "Description": body.get("Description", ""),
                      "Rules": body.get("Rules", "")}
            self.policies[policy["Name"]] = policy
            return 200, policy
        if path.startswith("/v1/acl/policy/"):
            policy_id = path.rsplit("/", 1)[1]
            name = next((n for n, p in self.policies.items() if p["ID"] == policy_id), None)
            if name is None:
                return 403, "ACL not found"
            if method == "DELETE":
                del self.policies[name]
                return 200, True
            if method == "PUT":
                del self.policies[name]
                policy = {"ID": policy_id, "Name": body["Name"], "Description": body.get("Description", ""),
                          "Rules": body.get("Rules", "")}
                self.policies[policy["Name"]] = policy
                return 200, policy
        return 404, f"the test double does not implement {method} {path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = (json.loads(raw) if raw else None) or {}  # uri sends "null" without a body
                path = self.path.split("?", 1)[0]
                try:
                    status, payload = double.respond(method, path, self.headers.get(double.header), body)
                except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a bug of the double: say so
                    status, payload = 500, f"test double error: {exc!r}"
                double.requests.append((method, path, status))
                data = (json.dumps(payload) if not isinstance(payload, str) else payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
