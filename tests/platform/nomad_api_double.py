"""TEST DOUBLE of the Nomad HTTP API endpoints the platform_job role submits through.

Nomad cannot run on the test machines (no registry carries its binary). This double
serves, over real HTTP on 127.0.0.1, only what tasks/submit.yml calls, so that the
role's requests, token header, idempotence conditions and Nomad variables are
exercised for real by ansible's uri module:

- ``GET/PUT /v1/var/<path>`` (Nomad variables, per namespace);
- ``POST /v1/jobs/parse``: HCL -> JSON. Real Nomad returns the full canonical job; the
  double parses the HCL with python-hcl2 and returns ID, Name, Namespace, Region,
  Datacenters, Type and a digest of the spec (what the plan below compares);
- ``POST /v1/job/<id>/plan`` with ``Diff``: ``Added`` / ``Edited`` / ``None``;
- ``POST /v1/jobs``: registers the job;
- ``GET/POST /v1/acl/auth-method[/<name>]`` (answered with MaxTokenTTL as Go's Duration
  String(), nomad api/acl.go ACLAuthMethod.MarshalJSON), ``GET /v1/acl/binding-rules``
  (stubs: ID, Description, AuthMethod, indexes — api/acl.go ACLBindingRuleListStub),
  ``POST /v1/acl/binding-rule``, ``GET/POST/DELETE /v1/acl/binding-rule/<id>`` (the oidc
  role's OIDC login for operators).
Every request must carry the expected ``X-Nomad-Token`` (403 otherwise).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import hcl2

from ai4os_kit.platform.nomad_job import hcl_attr, hcl_blocks


def _go_duration(value: str) -> str:
    """Go's time.Duration String() of an h/m/s duration ("8h" -> "8h0m0s")."""
    units = {"h": 3600, "m": 60, "s": 1}
    seconds = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", value))
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m}m{sec}s" if h else (f"{m}m{sec}s" if m else f"{sec}s")


class NomadApiDouble:
    def __init__(self, token: str) -> None:
        self.token = token
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.variables: dict[tuple[str, str], dict[str, str]] = {}
        self.auth_methods: dict[str, dict[str, Any]] = {}
        self.binding_rules: list[dict[str, Any]] = []
        self._rule_ids = 0
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] == "PUT" or r[1] == "/v1/jobs" or r[1].startswith("/v1/acl/")
                and r[0] == "POST"]

    @staticmethod
    def _parse(hcl: str) -> dict[str, Any]:
        name, body = hcl_blocks(hcl2.loads(hcl), "job")[0]
        return {"ID": name, "Name": name, "Namespace": hcl_attr(body, "namespace", "default"),
                "Region": hcl_attr(body, "region", "global"), "Datacenters": hcl_attr(body, "datacenters", []),
                "Type": hcl_attr(body, "type", "service"), "Digest": hashlib.sha256(hcl.encode()).hexdigest()}

    def respond(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        namespace = query.get("namespace", ["default"])[0]
        self.requests.append((method, path))
        if path.startswith("/v1/var/"):
            key = (namespace, path[len("/v1/var/"):])
            if method == "GET":
                return (200, {"Path": key[1], "Items": self.variables[key]}) if key in self.variables else (404, "not found")
            self.variables[key] = dict(body["Items"])
            return 200, {"Path": key[1], "Items": self.variables[key]}
        if path == "/v1/jobs/parse" and method == "POST":
            return 200, self._parse(body["JobHCL"])
        if path.startswith("/v1/job/") and path.endswith("/plan") and method == "POST":
            job = body["Job"]
            current = self.jobs.get((job["Namespace"], job["ID"]))
            kind = "Added" if current is None else ("None" if current["Digest"] == job["Digest"] else "Edited")
            return 200, {"Diff": {"Type": kind, "ID": job["ID"]}}
        if path == "/v1/jobs" and method == "POST":
            job = body["Job"]
            self.jobs[(job["Namespace"], job["ID"])] = job
            return 200, {"EvalID": "eval-" + job["ID"]}
        if path.startswith("/v1/acl/auth-method"):
            name = path[len("/v1/acl/auth-method/"):] if path.startswith("/v1/acl/auth-method/") else None
            if method == "GET":
                return (200, self.auth_methods[name]) if name in self.auth_methods else (404, "ACL auth-method not found")
            if name is None and body["Name"] in self.auth_methods:
                return 400, "auth method already exists"
            self.auth_methods[body["Name"]] = dict(body, MaxTokenTTL=_go_duration(body["MaxTokenTTL"]))
            return 200, self.auth_methods[body["Name"]]
        if path == "/v1/acl/binding-rules" and method == "GET":
            return 200, [{k: r[k] for k in ("ID", "Description", "AuthMethod")} for r in self.binding_rules]
        if path == "/v1/acl/binding-rule" and method == "POST":
            if body["AuthMethod"] not in self.auth_methods:
                return 400, "auth method does not exist"
            self._rule_ids += 1
            self.binding_rules.append(dict(body, ID=f"rule-{self._rule_ids}"))
            return 200, self.binding_rules[-1]
        if path.startswith("/v1/acl/binding-rule/"):
            rule_id = path.rsplit("/", 1)[1]
            found = [i for i, r in enumerate(self.binding_rules) if r["ID"] == rule_id]
            if not found:
                return 404, "ACL binding rule not found"
            if method == "GET":
                return 200, self.binding_rules[found[0]]
            if method == "DELETE":
                del self.binding_rules[found[0]]
                return 200, None
            self.binding_rules[found[0]] = dict(body, ID=rule_id)
            return 200, self.binding_rules[found[0]]
        return 404, f"the test double does not implement {method} {path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                if self.headers.get("X-Nomad-Token") != double.token:
                    status, payload = 403, "Permission denied"
                else:
                    status, payload = double.respond(method, self.path, body)
                data = (json.dumps(payload) if not isinstance(payload, str) else payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._serve("PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
