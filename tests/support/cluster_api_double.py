"""TEST DOUBLE of the Nomad and Consul agents' operator HTTP APIs that the day-2 tasks call
(roles/{nomad,consul}/tasks/{health,snapshot,restore,drain,ready,leave,keyring}.yml) and
that `ai4os-kit status` reads, served over HTTPS that requires a client certificate (as the
agents do with tls.verify_https_client / tls.https.verify_incoming).

Nomad and Consul cannot run on the test machines (no registry carries their binaries). One
``Cluster`` holds what every server of a Nomad region or Consul datacenter answers alike; one
``Agent`` per node serves it as that node's local agent (127.0.0.1 on a random port), so a
test can take one agent down in the middle of a run. Behaviour, with its source:

Nomad (hashicorp/nomad v2.0.4, command/agent/*_endpoint.go and api/*.go;
developer.hashicorp.com/nomad/api-docs/{status,agent,operator/raft,operator/autopilot,
operator/snapshot,nodes,jobs}):
- ``GET /v1/status/leader`` the leader's RPC address as a JSON string ("" without one);
  ``GET /v1/status/peers``; ``GET /v1/agent/self`` (``config.Version.Version``);
  ``GET /v1/agent/members`` (ServerMembers: Members named ``<node>.<region>``, Tags.build,
  Status alive|failed|left);
- ``GET /v1/operator/raft/configuration`` (Servers: ID, Node, Address, Leader, Voter,
  RaftProtocol); ``DELETE /v1/operator/raft/peer?id=`` (by address is refused: 400);
- ``GET /v1/operator/autopilot/health``: Healthy, FailureTolerance, Leader, Voters, Servers;
  **429** when unhealthy (operator_endpoint.go OperatorServerHealth);
- ``GET /v1/operator/snapshot``: the snapshot with header ``Digest: sha-256=<base64>``
  (helper/snapshot/snapshot.go); ``PUT /v1/operator/snapshot`` restores;
- ``PUT /v1/agent/force-leave?node=``; ``GET /v1/agent/keyring/list``,
  ``PUT /v1/agent/keyring/{install,use,remove}`` with ``{"Key": ...}`` (Keys: key -> nodes);
- ``GET /v1/nodes`` (NodeListStub: ID, Name, Datacenter, NodeClass, Version, Drain,
  SchedulingEligibility, Status, LastDrain), ``GET /v1/node/<id>`` (+ Meta, DrainStrategy),
  ``POST /v1/node/<id>/eligibility`` ({"Eligibility": "eligible"|"ineligible"}; eligible
  while draining is refused: nomad/node_endpoint.go), ``POST /v1/node/<id>/drain``
  ({"DrainSpec": {"Deadline": ns, "IgnoreSystemJobs": b}, "MarkEligible", "Meta"}; a nil
  DrainSpec cancels; LastDrain.Status draining -> complete), ``POST /v1/node/<id>/purge``;
- ``GET /v1/jobs?namespace=`` (JobListStub with JobSummary.Summary per group).

Consul (developer.hashicorp.com/consul/api-docs/{status,agent,operator/raft,
operator/autopilot,snapshot,operator/keyring}; hashicorp/consul agent/operator_endpoint.go):
- ``GET /v1/status/leader`` / ``peers``; ``GET /v1/agent/self`` (Config.Version);
  ``GET /v1/agent/members`` (list; Status 1 alive, 3 left, 4 failed; Tags.build, role);
- ``PUT /v1/agent/leave`` (the local agent leaves gracefully: a server leaves Raft too, and
  the agent stops answering); ``PUT /v1/agent/force-leave/<node>``;
- ``GET /v1/operator/raft/configuration``, ``DELETE /v1/operator/raft/peer?id=|address=``;
- ``GET /v1/operator/autopilot/health`` (429 when unhealthy);
- ``GET /v1/snapshot`` (header X-Consul-Index), ``PUT /v1/snapshot``;
- ``GET|POST|PUT|DELETE /v1/operator/keyring`` (list, install, use, remove; list answers
  one entry per pool: WAN, Datacenter, Keys, PrimaryKeys, NumNodes).

Tokens (header X-Nomad-Token / X-Consul-Token): the management token may do everything; a
read token (the kit's status token) only GETs, and never the snapshot. 403 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import ssl
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

CONSUL_STATUS = {"alive": 1, "left": 3, "failed": 4}


class Cluster:
    """What every server of one Nomad region (flavor "nomad") or Consul datacenter answers."""

    def __init__(self, flavor: str, servers: list[str], clients: list[str] = (), *, version: str,
                 region: str = "tb", datacenter: str = "tb", gossip_key: str = "", management: str = "",
                 read_tokens: tuple[str, ...] = ()) -> None:
        self.flavor = flavor
        self.region, self.datacenter = region, datacenter
        self.lock = threading.RLock()
        rpc = 4647 if flavor == "nomad" else 8300
        self.servers: dict[str, dict[str, Any]] = {
            name: {"ID": str(uuid.uuid4()), "Address": f"10.0.0.{i}:{rpc}", "Version": version, "Status": "alive",
                   "Voter": True, "Raft": True}
            for i, name in enumerate(servers, start=1)}
        self.leader = servers[0] if servers else ""
        self.members: dict[str, dict[str, Any]] = {
            name: {"Addr": f"10.0.1.{i}", "Version": version, "Status": "alive", "Server": False}
            for i, name in enumerate(clients, start=1)}
        for name, server in self.servers.items():
            self.members[name] = {"Addr": server["Address"].split(":")[0], "Version": version, "Status": "alive",
                                  "Server": True}
        self.nodes: dict[str, dict[str, Any]] = {}
        if flavor == "nomad":
            for name in clients:
                self.add_node(name, version)
        self.snapshot = os.urandom(2048) if flavor == "nomad" else consul_snapshot_archive(os.urandom(2048))
        self.restored: list[bytes] = []
        self.digest_override: str | None = None  # a Digest header that does not match (a corrupted transfer)
        self.keys: list[str] = [gossip_key] if gossip_key else []  # primary first
        self.jobs: dict[str, dict[str, Any]] = {}
        self.drain_polls = 2  # reads of a draining node before its drain completes
        self.stuck_drains: set[str] = set()
        self.tokens = {management: "management", **{t: "read" for t in read_tokens}}
        self.log: list[tuple[float, str, str, str, int]] = []  # (time, agent, method, path, status)

    # ------------------------------------------------------------------ model

    def add_node(self, name: str, version: str, meta: dict[str, str] | None = None) -> dict[str, Any]:
        node = {"ID": str(uuid.uuid4()), "Name": name, "Datacenter": self.datacenter, "NodeClass": "",
                "Version": version, "Status": "ready", "SchedulingEligibility": "eligible", "Drain": False,
                "DrainStrategy": None, "LastDrain": None, "Meta": dict(meta or {"status": "ready"}),
                "_polls": 0, "_deadline": None}
        self.nodes[node["ID"]] = node
        return node

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.nodes.values() if n["Name"] == name)

    def health(self) -> dict[str, Any]:
        voters = [n for n, s in self.servers.items() if s["Raft"] and s["Voter"]]
        healthy = [n for n in voters if self.servers[n]["Status"] == "alive"]
        quorum = len(voters) // 2 + 1
        report = {
            "Healthy": bool(voters) and len(healthy) == len(voters) and self.leader in healthy,
            "FailureTolerance": max(0, len(healthy) - quorum),
            "Servers": [{"ID": s["ID"], "Name": self._member_name(n), "Address": s["Address"], "SerfStatus": s["Status"],
                         "Version": s["Version"], "Leader": n == self.leader, "Voter": s["Voter"],
                         "Healthy": s["Status"] == "alive", "LastContact": "0s", "LastTerm": 2, "LastIndex": 100}
                        for n, s in self.servers.items() if s["Raft"]],
        }
        if self.flavor == "nomad":
            report.update(Leader=self.servers[self.leader]["ID"] if self.leader else "",
                          Voters=[self.servers[n]["ID"] for n in voters])
        return report

    def fail_server(self, name: str) -> None:
        """The agent of ``name`` died: it stays a Raft peer but is failed; a new leader is elected."""
        with self.lock:
            self.servers[name]["Status"] = "failed"
            self.members[name]["Status"] = "failed"
            if self.leader == name:
                alive = [n for n, s in self.servers.items() if s["Status"] == "alive" and s["Raft"]]
                self.leader = alive[0] if len(alive) > len(self.servers) // 2 else ""

    def _step_admission(self, node: dict[str, Any]) -> None:
        """Node admission (a system job on the node) sets meta status after a while."""
        if node.get("_admit"):
            node["_admit_polls"] = node.get("_admit_polls", 0) + 1
            if node["_admit_polls"] >= 2:
                status, reason = node.pop("_admit")
                node["Meta"].update(status=status, **({"status_reason": reason} if reason else {}))

    def _step_drain(self, node: dict[str, Any]) -> None:
        if not node["Drain"] or node["Name"] in self.stuck_drains:
            return
        node["_polls"] += 1
        if node["_polls"] >= self.drain_polls or (node["_deadline"] and time.time() >= node["_deadline"]):
            node.update(Drain=False, DrainStrategy=None,
                        LastDrain=dict(node["LastDrain"], Status="complete", UpdatedAt=_now()))

    # ------------------------------------------------------------------ answers

    def answer(self, agent: Agent, method: str, url: str, token: str | None, body: bytes) -> tuple[int, Any, dict[str, str]]:
        parsed = urlparse(url)
        path, query = parsed.path, parse_qs(parsed.query)
        kind = self.tokens.get(token or "")
        snapshot_path = path in ("/v1/operator/snapshot", "/v1/snapshot")
        if kind is None or (kind == "read" and (method != "GET" or snapshot_path)):
            return 403, "Permission denied", {}
        with self.lock:
            handler = self._nomad if self.flavor == "nomad" else self._consul
            return handler(agent, method, path, query, body)

    def _common(self, agent: Agent, method: str, path: str) -> tuple[int, Any, dict[str, str]] | None:
        if path == "/v1/status/leader":
            return 200, self.servers[self.leader]["Address"] if self.leader else "", {}
        if path == "/v1/status/peers":
            return 200, [s["Address"] for s in self.servers.values() if s["Raft"]], {}
        if path == "/v1/operator/raft/configuration":
            return 200, {"Index": 200, "Servers": [
                {"ID": s["ID"], "Node": self._member_name(n), "Address": s["Address"], "Leader": n == self.leader,
                 "Voter": s["Voter"], **({"RaftProtocol": "3"} if self.flavor == "nomad" else {"ProtocolVersion": "3"})}
                for n, s in self.servers.items() if s["Raft"]]}, {}
        if path == "/v1/operator/autopilot/health":
            report = self.health()
            return (200 if report["Healthy"] else 429), report, {}
        return None

    def _member_name(self, name: str) -> str:
        return f"{name}.{self.region}" if self.flavor == "nomad" else name

    def _remove_peer(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        if "address" in query and self.flavor == "nomad":
            return 400, "Removing a peer by address is not supported in the current raft protocol version", {}
        key, value = ("ID", query["id"][0]) if "id" in query else ("Address", query.get("address", [""])[0])
        found = [n for n, s in self.servers.items() if s["Raft"] and s[key] == value]
        if not found:
            return 500, f"id {value!r} was not found in the Raft configuration", {}
        self.servers[found[0]]["Raft"] = False
        return 200, None, {}

    def _snapshot(self, method: str, body: bytes, digest: bool) -> tuple[int, Any, dict[str, str]]:
        if method == "GET":
            headers = {"Digest": self.digest_override or
                       "sha-256=" + base64.b64encode(hashlib.sha256(self.snapshot).digest()).decode()} \
                if digest else {"X-Consul-Index": "200"}
            return 200, self.snapshot, headers
        self.restored.append(body)
        self.snapshot = body
        return 200, None, {}

    def _nomad(self, agent: Agent, method: str, path: str, query: dict[str, list[str]],
               body: bytes) -> tuple[int, Any, dict[str, str]]:
        common = self._common(agent, method, path)
        if common:
            return common
        data = json.loads(body) if body and path != "/v1/operator/snapshot" else {}
        if path == "/v1/agent/self":
            version = self.members[agent.name]["Version"]
            return 200, {"config": {"Region": self.region, "Datacenter": self.datacenter, "NodeName": agent.name,
                                    "Version": {"Version": version, "VersionPrerelease": "", "Revision": "double"}},
                         "member": {"Name": self._member_name(agent.name)}, "stats": {}}, {}
        if path == "/v1/agent/members":
            return 200, {"ServerName": agent.name, "ServerRegion": self.region, "ServerDC": self.datacenter, "Members": [
                {"Name": self._member_name(n), "Addr": s["Address"].split(":")[0], "Port": 4648, "Status": s["Status"],
                 "Tags": {"build": s["Version"], "region": self.region, "dc": self.datacenter, "role": "nomad", "id": s["ID"]}}
                for n, s in self.servers.items()]}, {}
        if path == "/v1/operator/raft/peer" and method == "DELETE":
            return self._remove_peer(query)
        if path == "/v1/operator/snapshot":
            return self._snapshot(method, body, digest=True)
        if path == "/v1/agent/force-leave" and method == "PUT":
            name = query["node"][0].removesuffix(f".{self.region}")
            if name not in self.servers:
                return 500, f"agent: No node found with name '{query['node'][0]}'", {}
            self.servers[name]["Status"] = "left"
            self.members[name]["Status"] = "left"
            return 200, None, {}
        if path.startswith("/v1/agent/keyring/"):
            return self._keyring(path.rsplit("/", 1)[1], method, data)
        if path == "/v1/nodes":
            return 200, [self._stub(n) for n in self.nodes.values()], {}
        if path.startswith("/v1/node/"):
            return self._node(method, path[len("/v1/node/"):], data)
        if path == "/v1/jobs":
            namespace = query.get("namespace", ["default"])[0]
            return 200, [dict(j, Namespace=namespace) for j in self.jobs.values()
                         if j["Namespace"] == namespace or namespace == "*"], {}
        return 404, f"the test double does not implement {method} {path}", {}

    def _stub(self, node: dict[str, Any]) -> dict[str, Any]:
        return {k: node[k] for k in ("ID", "Name", "Datacenter", "NodeClass", "Version", "Drain", "SchedulingEligibility",
                                     "Status", "LastDrain")} | {"Address": "10.0.1.1", "StatusDescription": ""}

    def _node(self, method: str, rest: str, data: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        node_id, _, action = rest.partition("/")
        node = self.nodes.get(node_id)
        if node is None:
            return 404, "node not found", {}
        if not action:
            self._step_drain(node)
            self._step_admission(node)
            return 200, {k: v for k, v in node.items() if not k.startswith("_")}, {}
        if method not in ("PUT", "POST"):
            return 405, "Invalid method", {}
        if action == "eligibility":
            wanted = data.get("Eligibility")
            if wanted not in ("eligible", "ineligible"):
                return 400, f"invalid scheduling eligibility {wanted!r}", {}
            if wanted == "eligible" and node["Drain"]:
                return 500, "can not set node's scheduling eligibility to eligible while it is draining", {}
            node["SchedulingEligibility"] = wanted
            return 200, {"NodeModifyIndex": 300, "EvalIDs": []}, {}
        if action == "drain":
            spec = data.get("DrainSpec")
            if spec is None:
                node.update(Drain=False, DrainStrategy=None)
                if node["LastDrain"]:
                    node["LastDrain"]["Status"] = "canceled"
                if data.get("MarkEligible"):
                    node["SchedulingEligibility"] = "eligible"
            else:
                deadline = int(spec.get("Deadline", 0))
                node.update(Drain=True, SchedulingEligibility="ineligible", _polls=0,
                            _deadline=time.time() + deadline / 1e9 if deadline > 0 else None,
                            DrainStrategy={"Deadline": deadline, "IgnoreSystemJobs": bool(spec.get("IgnoreSystemJobs")),
                                           "ForceDeadline": "", "StartedAt": _now()},
                            LastDrain={"Status": "draining", "StartedAt": _now(), "UpdatedAt": _now(),
                                       "AccessorID": "", "Meta": data.get("Meta") or {}})
            return 200, {"NodeModifyIndex": 301, "EvalIDs": []}, {}
        if action == "purge":
            del self.nodes[node_id]
            return 200, {"NodeModifyIndex": 302}, {}
        return 404, f"the test double does not implement {action}", {}

    def _keyring(self, op: str, method: str, data: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """Nomad's /v1/agent/keyring/<op> and Consul's /v1/operator/keyring (op from the method)."""
        members = sum(1 for s in self.servers.values() if s["Status"] == "alive") if self.flavor == "nomad" else \
            sum(1 for m in self.members.values() if m["Status"] == "alive")
        key = data.get("Key", "")
        if op == "install":
            if key not in self.keys:
                self.keys.append(key)
        elif op == "use":
            if key not in self.keys:
                return 500, "1 error occurred: key not found in keyring", {}
            self.keys.remove(key)
            self.keys.insert(0, key)
        elif op == "remove":
            if self.keys and key == self.keys[0]:
                return 500, "1 error occurred: Removing the primary key is not allowed", {}
            if key in self.keys:
                self.keys.remove(key)
        counts = {k: members for k in self.keys}
        if self.flavor == "nomad":
            return 200, {"Messages": {}, "Keys": counts, "NumNodes": members}, {}
        primary = {self.keys[0]: members} if self.keys else {}
        return 200, [{"WAN": wan, "Datacenter": self.datacenter, "Segment": "", "Keys": counts, "PrimaryKeys": primary,
                      "NumNodes": members} for wan in (True, False)] if op == "list" else None, {}

    def _consul(self, agent: Agent, method: str, path: str, query: dict[str, list[str]],
                body: bytes) -> tuple[int, Any, dict[str, str]]:
        common = self._common(agent, method, path)
        if common:
            return common
        data = json.loads(body) if body and path != "/v1/snapshot" else {}
        if path == "/v1/agent/self":
            member = self.members[agent.name]
            return 200, {"Config": {"Datacenter": self.datacenter, "NodeName": agent.name, "Server": member["Server"],
                                    "Version": member["Version"]}, "Member": {"Name": agent.name}}, {}
        if path == "/v1/agent/members":
            return 200, [{"Name": n, "Addr": m["Addr"], "Port": 8301, "Status": CONSUL_STATUS[m["Status"]],
                          "Tags": {"build": f"{m['Version']}:double", "dc": self.datacenter,
                                   "role": "consul" if m["Server"] else "node"}} for n, m in self.members.items()], {}
        if path == "/v1/health/checks/serfHealth":
            return 200, [{"Node": n, "CheckID": "serfHealth", "Name": "Serf Health Status",
                          "Status": "passing" if m["Status"] == "alive" else "critical"}
                         for n, m in self.members.items() if m["Status"] != "left"], {}
        if path == "/v1/agent/leave" and method == "PUT":
            self.members[agent.name]["Status"] = "left"
            if agent.name in self.servers:
                self.servers[agent.name].update(Status="left", Raft=False)
                if self.leader == agent.name:
                    self.leader = next((n for n, s in self.servers.items() if s["Raft"] and s["Status"] == "alive"), "")
            agent.stop_after_reply = True
            return 200, None, {}
        if path.startswith("/v1/agent/force-leave/") and method == "PUT":
            name = path.rsplit("/", 1)[1]
            if name not in self.members:
                return 500, f"agent: No node found with name '{name}'", {}
            self.members[name]["Status"] = "left"
            return 200, None, {}
        if path == "/v1/operator/raft/peer" and method == "DELETE":
            return self._remove_peer(query)
        if path == "/v1/snapshot":
            return self._snapshot(method, body, digest=False)
        if path == "/v1/operator/keyring":
            op = {"GET": "list", "POST": "install", "PUT": "use", "DELETE": "remove"}[method]
            return self._keyring(op, method, data)
        return 404, f"the test double does not implement {method} {path}", {}


def consul_snapshot_archive(state: bytes) -> bytes:
    """A snapshot as Consul writes it: a gzipped tar of meta.json, state.bin and their SHA256SUMS
    (developer.hashicorp.com/consul/commands/snapshot: "a gzipped tar archive")."""
    meta = json.dumps({"ID": "2-200-double", "Size": len(state), "Index": 200, "Term": 2, "Version": 1}).encode()
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in
                   (("meta.json", meta), ("state.bin", state))).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in (("meta.json", meta), ("state.bin", state), ("SHA256SUMS", sums)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Agent:
    """One node's local agent API of ``cluster`` over mutual TLS on 127.0.0.1 (or ``host``)."""

    def __init__(self, cluster: Cluster, name: str, cert: Path, key: Path, ca: Path, host: str = "127.0.0.1") -> None:
        self.cluster, self.name = cluster, name
        self.crash_on: Callable[[str, str], bool] | None = None  # (method, path) -> die now
        self.stop_after_reply = False
        self.down = False
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def api(self) -> str:
        host, port = self.server.server_address[:2]
        return f"https://{host}:{port}/v1"

    def close(self) -> None:
        if not self.down:
            self.down = True
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        agent = self
        header = "X-Nomad-Token" if agent.cluster.flavor == "nomad" else "X-Consul-Token"

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if body == b"null":  # ansible's uri sends "null" without a body
                    body = b""
                path = urlparse(self.path).path
                headers: dict[str, str] = {}
                if agent.down or (agent.crash_on and agent.crash_on(method, path)):
                    if agent.name in agent.cluster.servers:
                        agent.cluster.fail_server(agent.name)
                    status, payload = 500, "agent is not running (test double: stopped)"
                    agent.close()
                else:
                    try:
                        status, payload, headers = agent.cluster.answer(agent, method, self.path,
                                                                        self.headers.get(header), body)
                    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a bug of the double: say so
                        status, payload = 500, f"test double error: {exc!r}"
                agent.cluster.log.append((time.time(), agent.name, method, path, status))
                if isinstance(payload, bytes):
                    data, kind = payload, "application/octet-stream"
                elif isinstance(payload, str) and status >= 400:
                    data, kind = payload.encode(), "text/plain"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if agent.stop_after_reply:
                    agent.close()

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
