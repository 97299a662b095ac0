"""TEST DOUBLE for Nomad's HTTP API — the one double the accounting tests use.

Nomad cannot run on the test machines (no package registry carries its
binary), so this serves recorded responses built from Nomad's documented
response shapes (fixtures/, see fixtures/README.md) over real HTTP on
127.0.0.1, so that python-nomad's own request code, paging headers and
error statuses are exercised. It implements only what the collector calls:

- ``GET /v1/allocations`` with ``namespace``, ``resources`` (adds
  ``AllocatedResources``), ``task_states``, ``per_page``/``next_token``
  paging (``X-Nomad-NextToken``) and ``X-Nomad-Index``;
- ``GET /v1/jobs`` with ``namespace``, ``meta`` (adds the job's ``Meta``) and
  the same paging: the jobs of the allocations it holds (their ``Job``);
- ``GET /v1/allocation/:id`` (404 once garbage-collected);
- ``GET /v1/node/:id``.

Tests change its state (create, start, finish, garbage-collect allocations)
and can make it fail after N requests to cut a collector run short.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

FIXTURES = Path(__file__).parent / "fixtures"
ZERO_TIME = "0001-01-01T00:00:00Z"
STUB_FIELDS = ("ID", "EvalID", "Name", "Namespace", "NodeID", "NodeName", "JobID", "JobType", "JobVersion",
               "TaskGroup", "DesiredStatus", "DesiredDescription", "ClientStatus", "ClientDescription",
               "CreateIndex", "ModifyIndex", "AllocModifyIndex", "CreateTime", "ModifyTime")
# the job list stub (api-docs/jobs, "List Jobs"); Meta only with meta=true
JOB_STUB_FIELDS = ("ID", "ParentID", "Name", "Namespace", "Type", "Priority", "Status", "StatusDescription",
                   "CreateIndex", "ModifyIndex", "JobModifyIndex")


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def rfc3339(epoch: int) -> str:
    """Nomad's time format: RFC 3339 with nanoseconds."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + ".123456789Z"


class NomadDouble:
    """State of the fake cluster plus the HTTP server that serves it."""

    def __init__(self, page_size: int | None = None, port: int = 0) -> None:
        self.allocs: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.index = 1000
        self.requests = 0
        self.fail_after: int | None = None
        self.page_size = page_size
        self.token: str | None = None
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def reset(self) -> None:
        """Forget every allocation and node (a new, empty cluster)."""
        with self.lock:
            self.allocs.clear()
            self.nodes.clear()
            self.fail_after = None
            self.token = None

    # -- lifecycle
    def __enter__(self) -> "NomadDouble":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- state changes (each bumps the Raft-like index, as Nomad does)
    def _bump(self, doc: dict[str, Any], now: int) -> None:
        self.index += 1
        doc["ModifyIndex"] = self.index
        doc["ModifyTime"] = now * 1_000_000_000

    def add_node(self, doc: dict[str, Any]) -> None:
        self.nodes[doc["ID"]] = copy.deepcopy(doc)

    def create(self, template: dict[str, Any], now: int, namespace: str | None = None,
               alloc_id: str | None = None, node: dict[str, Any] | None = None) -> str:
        doc = copy.deepcopy(template)
        doc["ID"] = alloc_id or str(uuid.uuid4())
        if namespace:
            doc["Namespace"] = namespace
        if node:
            doc["NodeID"], doc["NodeName"] = node["ID"], node["Name"]
        doc["ClientStatus"] = "pending"
        doc["CreateTime"] = now * 1_000_000_000
        for state in doc["TaskStates"].values():
            state.update(State="pending", StartedAt=ZERO_TIME, FinishedAt=ZERO_TIME, Failed=False)
        self.index += 1
        doc["CreateIndex"] = self.index
        self._bump(doc, now)
        self.allocs[doc["ID"]] = doc
        return doc["ID"]

    def start(self, alloc_id: str, now: int) -> None:
        doc = self.allocs[alloc_id]
        doc["ClientStatus"] = "running"
        for state in doc["TaskStates"].values():
            state.update(State="running", StartedAt=rfc3339(now))
        self._bump(doc, now)

    def finish(self, alloc_id: str, now: int, failed: bool = False) -> None:
        doc = self.allocs[alloc_id]
        doc["ClientStatus"] = "failed" if failed else "complete"
        for state in doc["TaskStates"].values():
            state.update(State="dead", FinishedAt=rfc3339(now), Failed=failed)
        self._bump(doc, now)

    def garbage_collect(self, alloc_id: str) -> None:
        """Nomad's GC: a terminal allocation disappears from the API."""
        del self.allocs[alloc_id]
        self.index += 1

    # -- HTTP
    def _respond(self, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests += 1
            if self.fail_after is not None and self.requests > self.fail_after:
                return 500, "injected failure (test double)", {}
            if self.token and headers.get("X-Nomad-Token") != self.token:
                return 403, "Permission denied", {}
            parts = path.strip("/").split("/")
            if parts == ["v1", "allocations"]:
                return self._list(query)
            if parts == ["v1", "jobs"]:
                return self._jobs(query)
            if len(parts) == 3 and parts[:2] == ["v1", "allocation"]:
                doc = self.allocs.get(parts[2])
                return (200, doc, {"X-Nomad-Index": str(self.index)}) if doc else (404, "alloc not found", {})
            if len(parts) == 3 and parts[:2] == ["v1", "node"]:
                doc = self.nodes.get(parts[2])
                return (200, doc, {"X-Nomad-Index": str(self.index)}) if doc else (404, "node not found", {})
            return 404, "Invalid URL", {}

    def _page(self, query: dict[str, list[str]], keyed: list[tuple[str, Any]]) -> tuple[list[Any], dict[str, str]]:
        """One page of (token key, item) sorted by key, as Nomad pages with per_page and next_token."""
        token = query.get("next_token", [""])[0]
        items = [(k, v) for k, v in keyed if not token or k >= token]
        per_page = int(query.get("per_page", ["0"])[0] or 0)
        if self.page_size:
            per_page = min(per_page or self.page_size, self.page_size)
        headers = {"X-Nomad-Index": str(self.index)}
        if per_page and len(items) > per_page:
            headers["X-Nomad-NextToken"] = items[per_page][0]
            items = items[:per_page]
        return [v for _, v in items], headers

    def _list(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        namespace = query.get("namespace", ["default"])[0]
        docs, headers = self._page(query, [(a, d) for a, d in sorted(self.allocs.items())
                                           if namespace == "*" or d["Namespace"] == namespace])
        with_states = query.get("task_states", ["true"])[0] != "false"
        with_resources = query.get("resources", ["false"])[0] == "true"
        stubs = []
        for doc in docs:
            stub = {k: doc.get(k) for k in STUB_FIELDS}
            if with_states:
                stub["TaskStates"] = doc["TaskStates"]
            if with_resources:
                stub["AllocatedResources"] = doc.get("AllocatedResources")
            stubs.append(stub)
        return 200, stubs, headers

    def _jobs(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        namespace = query.get("namespace", ["default"])[0]
        jobs: dict[str, dict[str, Any]] = {}
        for doc in self.allocs.values():
            job = doc.get("Job") or {}
            if namespace in ("*", doc["Namespace"]):
                stub = {k: job.get(k) for k in JOB_STUB_FIELDS}
                stub.update(ID=doc["JobID"], Namespace=doc["Namespace"])
                if query.get("meta", ["false"])[0] == "true":
                    stub["Meta"] = job.get("Meta")
                jobs[f"{doc['Namespace']}.{doc['JobID']}"] = stub
        page, headers = self._page(query, sorted(jobs.items()))
        return 200, page, headers

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                status, body, headers = double._respond(url.path, parse_qs(url.query), self.headers)
                data = (json.dumps(body) if not isinstance(body, str) else body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
