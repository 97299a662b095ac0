"""`ai4os-kit status INVENTORY`: one screen of the running platform, read only.

It asks the Nomad and Consul HTTPS APIs (mutual TLS: a client certificate issued for the run
from the platform CA of secrets.yml, valid one hour, never written outside a private temporary
directory; the read-only `status` ACL tokens of secrets.yml) for the leaders and Raft peers,
autopilot health, members and their versions, Nomad nodes (status, eligibility, drain, node
admission's meta) and the platform's jobs, and compares them with the plan (sites.yml) and the
deployed inventory (hosts.yml): a planned node missing from a cluster, a member the plan does
not know, a server that is not a voter, a version other than the roles' are drift. With
``--nodes`` it also runs playbooks/status.yml (read only, over SSH) for what only the nodes
know: every kit certificate's expiry and when the accounting collector last ran.
Exit codes: 0 healthy and as planned, 3 reachable but unhealthy or drifted, 1 unreachable.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import yaml

from ai4os_kit.errors import KitError
from ai4os_kit.paths import checkout_path

EXIT_DRIFT = 3
TIMEOUT = 10.0
CONSUL_MEMBER_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


class Unreachable(KitError):
    """The API did not answer (or refused the token)."""


@dataclass
class Api:
    """One agent's HTTPS API (mutual TLS, an ACL token)."""

    name: str          # "Nomad" | "Consul"
    url: str           # https://host:port
    header: str        # X-Nomad-Token | X-Consul-Token
    token: str
    context: ssl.SSLContext
    server_name: str   # the name the server's certificate must carry
    peer_not_after: str | None = None
    calls: int = 0

    def get(self, path: str, **query: str) -> tuple[int, Any]:
        parsed = urlparse(self.url)
        conn = _Connection(parsed.hostname or "", parsed.port or 443, self.context, self.server_name)
        target = f"/v1{path}" + (f"?{urlencode(query)}" if query else "")
        try:
            conn.request("GET", target, headers={self.header: self.token})
            if self.peer_not_after is None and conn.sock is not None:
                self.peer_not_after = (conn.sock.getpeercert() or {}).get("notAfter")
            response = conn.getresponse()
            body = response.read()
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            raise Unreachable(f"cannot reach the {self.name} API at {self.url} ({exc})") from None
        finally:
            conn.close()
        self.calls += 1
        if response.status == 403:
            raise Unreachable(f"the {self.name} API at {self.url} refused the status token of secrets.yml "
                              f"({body.decode(errors='replace').strip()})")
        try:
            return response.status, json.loads(body) if body else None
        except ValueError:
            return response.status, body.decode(errors="replace")


class _Connection(http.client.HTTPSConnection):
    """HTTPS to an address, verifying the certificate against another name (a node's name)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(host, port, context=context, timeout=TIMEOUT)
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)  # type: ignore[attr-defined]


def client_certificate(ca_key_pem: str, ca_cert_pem: str, common_name: str, directory: Path) -> tuple[Path, Path]:
    """A client certificate (clientAuth, one hour) from the platform CA, its key mode 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    cert_file, key_file = directory / "status.pem", directory / "status-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def tls_context(ca_pems: list[str], cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata="\n".join(ca_pems))
    context.load_cert_chain(cert, key)
    return context


def wanted_versions(inventory_vars: Mapping[str, Any]) -> dict[str, str]:
    """consul_version / nomad_version as the roles will install them (inventory over role defaults)."""
    out = {}
    for role in ("consul", "nomad"):
        defaults = yaml.safe_load(checkout_path("roles", role, "defaults", "main.yml").read_text(encoding="utf-8"))
        out[role] = str(inventory_vars.get(f"{role}_version", defaults[f"{role}_version"]))
    return out


def _days_left(not_after: str | None, now: dt.datetime) -> int | None:
    if not not_after:
        return None
    for fmt in ("%b %d %H:%M:%S %Y %Z", "%Y%m%d%H%M%SZ"):
        try:
            when = dt.datetime.strptime(not_after, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        return (when - now).days
    return None


@dataclass
class Report:
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _raft(api: Api, **query: str) -> dict[str, Any]:
    _, leader = api.get("/status/leader", **query)
    _, raft = api.get("/operator/raft/configuration", **query)
    status, health = api.get("/operator/autopilot/health", **query)  # 429 while unhealthy
    servers = [{"node": s.get("Node"), "address": s.get("Address"), "voter": s.get("Voter"), "leader": s.get("Leader")}
               for s in (raft or {}).get("Servers", [])]
    health = health if isinstance(health, dict) else {}
    return {"leader": leader or "", "leader_node": next((s["node"] for s in servers if s["leader"]), ""),
            "peers": servers, "healthy": bool(health.get("Healthy")) and status == 200,
            "failure_tolerance": health.get("FailureTolerance"),
            "unhealthy": [s.get("Name") for s in health.get("Servers", []) if not s.get("Healthy")]}


def collect(plan: Mapping[str, Any], deployed: Mapping[str, Mapping[str, Any]], nomad: Api, consul: Api,
            versions: Mapping[str, str], node_facts: Mapping[str, Any] | None = None,
            now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> Report:
    """Everything the screen shows, as data (also what --json prints)."""
    report = Report()
    moment = now()
    region = plan["platform"]["region"]
    planned = {n["name"]: n for n in plan["nodes"]}
    datacenters = sorted({n["datacenter"] for n in plan["nodes"]})

    consul_dcs = []
    for dc in datacenters:
        state = _raft(consul, dc=dc)
        state["datacenter"] = dc
        consul_dcs.append(state)
        if not state["leader"]:
            report.problems.append(f"Consul datacenter {dc} has no leader")
        elif not state["healthy"]:
            report.problems.append(f"Consul datacenter {dc} is not healthy (autopilot): "
                                   f"{', '.join(filter(None, state['unhealthy'])) or 'see its servers'}")
    # Every datacenter's registered nodes and their serfHealth check (alive: passing); the versions
    # of the members of the datacenter whose server answers (the others show none).
    consul_members: dict[str, dict[str, Any]] = {}
    for dc in datacenters:
        _, checks = consul.get("/health/checks/serfHealth", dc=dc)
        for check in checks or []:
            consul_members[check["Node"]] = {"status": "alive" if check.get("Status") == "passing" else "failed",
                                             "version": "", "datacenter": dc}
    _, members = consul.get("/agent/members")
    for m in members or []:
        state = CONSUL_MEMBER_STATUS.get(m.get("Status"), str(m.get("Status")))
        if state == "left" and m["Name"] not in planned:
            continue  # removed gracefully (remove-node); Consul lists it until it reaps it
        entry = consul_members.setdefault(m["Name"], {"datacenter": None})
        entry.update(status=state, version=str((m.get("Tags") or {}).get("build", "")).split(":")[0])

    nomad_state = _raft(nomad)
    if not nomad_state["leader"]:
        report.problems.append(f"Nomad region {region} has no leader")
    elif not nomad_state["healthy"]:
        report.problems.append(f"Nomad region {region} is not healthy (autopilot): "
                               f"{', '.join(filter(None, nomad_state['unhealthy'])) or 'see its servers'}")
    _, nomad_members = nomad.get("/agent/members")
    nomad_servers = {m["Name"].removesuffix(f".{region}"): {"status": m.get("Status"), "version": (m.get("Tags") or {}).get("build", "")}
                     for m in (nomad_members or {}).get("Members", [])
                     if m.get("Status") != "left" or m["Name"].removesuffix(f".{region}") in planned}
    _, stubs = nomad.get("/nodes")
    stubs = stubs or []
    with ThreadPoolExecutor(max_workers=16) as pool:
        details = dict(zip([s["ID"] for s in stubs], pool.map(lambda s: nomad.get(f"/node/{s['ID']}")[1] or {}, stubs)))
    nomad_nodes = {s["Name"]: {"status": s.get("Status"), "eligibility": s.get("SchedulingEligibility"),
                               "drain": bool(s.get("Drain")), "version": s.get("Version"), "datacenter": s.get("Datacenter"),
                               "admission": (details[s["ID"]].get("Meta") or {}).get("status"),
                               "admission_reason": (details[s["ID"]].get("Meta") or {}).get("status_reason")}
                   for s in stubs}
    raft_nodes = {p["node"].removesuffix(f".{region}") for p in nomad_state["peers"] if p["voter"]}
    consul_voters = {p["node"] for dc in consul_dcs for p in dc["peers"] if p["voter"]}

    nodes = []
    for name in sorted(set(planned) | set(deployed) | set(consul_members) | set(nomad_nodes) | set(nomad_servers)):
        node = planned.get(name)
        drift: list[str] = []
        cm, nn, ns = consul_members.get(name), nomad_nodes.get(name), nomad_servers.get(name)
        if node is None:
            drift.append("not in the plan")
        else:
            if name not in deployed:
                drift.append("not provisioned (hosts.yml lacks it)")
            if cm is None or cm["status"] != "alive":
                drift.append("not an alive Consul member" + (f" ({cm['status']})" if cm else ""))
            if node["consul"]["server"] and name not in consul_voters:
                drift.append("not a Consul Raft voter")
            if node["nomad"]["server"] and (ns is None or ns["status"] != "alive" or name not in raft_nodes):
                drift.append("not an alive Nomad server and Raft voter")
            if node["nomad"]["client"] and nn is None:
                drift.append("not a Nomad node")
            if nn and nn["datacenter"] != node["datacenter"]:
                drift.append(f"Nomad datacenter {nn['datacenter']} (plan: {node['datacenter']})")
        for agent, found in (("consul", cm and cm["version"]), ("nomad", (nn and nn["version"]) or (ns and ns["version"]))):
            if found and found != versions[agent]:
                drift.append(f"{agent} {found} (wanted {versions[agent]})")
        if nn and nn["status"] == "ready" and nn["admission"] == "error":
            drift.append(f"admission error: {nn['admission_reason'] or 'no reason given'}")
        nodes.append({"name": name, "site": (node or deployed.get(name) or {}).get("site") or
                      (deployed.get(name) or {}).get("ai4os_node_site"), "role": node["role"] if node else None,
                      "consul": cm, "nomad": nn, "nomad_server": ns, "drift": drift})
        report.problems += [f"{name}: {d}" for d in drift]

    _, jobs = nomad.get("/jobs", namespace="platform")
    job_rows = []
    for job in jobs or []:
        groups = ((job.get("JobSummary") or {}).get("Summary") or {})
        counts = {k: sum(int(g.get(k, 0)) for g in groups.values()) for k in ("Running", "Queued", "Starting", "Failed", "Lost")}
        healthy = job.get("Status") == "running" and counts["Running"] > 0 and not counts["Queued"] and not counts["Lost"]
        if job.get("Type") == "batch" and job.get("Status") == "dead" and not counts["Failed"]:
            healthy = True
        job_rows.append({"id": job.get("ID"), "type": job.get("Type"), "status": job.get("Status"), "healthy": healthy,
                         **{k.lower(): v for k, v in counts.items()}})
        if not healthy:
            report.problems.append(f"platform job {job.get('ID')}: {job.get('Status')}, "
                                   f"{counts['Running']} running, {counts['Queued']} queued, {counts['Lost']} lost")

    certificates = []
    for api in (nomad, consul):
        days = _days_left(api.peer_not_after, moment)
        certificates.append({"node": api.server_name, "what": f"{api.name} API ({api.url})",
                             "not_after": api.peer_not_after, "days_left": days})
    accounting = []
    for host, facts in sorted((node_facts or {}).items()):
        if facts is None:
            report.problems.append(f"{host}: not reachable over SSH (node facts unknown)")
            continue
        for cert in facts.get("certificates", []):
            certificates.append({"node": host, "what": cert["path"], "not_after": cert.get("not_after"),
                                 "days_left": _days_left(cert.get("not_after"), moment)})
        if facts.get("accounting"):
            run = facts["accounting"]
            accounting.append({"node": host, **run})
            if run.get("result") not in (None, "success"):
                report.problems.append(f"{host}: the accounting collector's last run ended with {run.get('result')}")
    for cert in certificates:
        if cert["days_left"] is not None and cert["days_left"] < 30:
            report.problems.append(f"{cert['node']}: certificate {cert['what']} expires in {cert['days_left']} days")

    report.data = {
        "platform": plan["platform"]["name"], "region": region, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions_wanted": dict(versions),
        "sites": [{"name": s["name"], "datacenter": s["datacenter"],
                   "planned": sum(1 for n in plan["nodes"] if n["site"] == s["name"]),
                   "up": sum(1 for n in plan["nodes"] if n["site"] == s["name"]
                             and (consul_members.get(n["name"]) or {}).get("status") == "alive")} for s in plan["sites"]],
        "consul": consul_dcs, "nomad": nomad_state, "nodes": nodes, "jobs": job_rows,
        "certificates": sorted(certificates, key=lambda c: (c["days_left"] is None, c["days_left"] or 0)),
        "accounting": accounting, "node_facts": node_facts is not None,
        "problems": report.problems, "healthy": not report.problems,
    }
    return report


def render(data: Mapping[str, Any]) -> str:
    """The one screen."""
    out = [f"Platform {data['platform']}  Nomad region {data['region']}  {data['time']}", ""]
    out.append("Sites: " + "; ".join(f"{s['name']} ({s['datacenter']}) {s['up']}/{s['planned']} nodes up"
                                     for s in data["sites"]))
    for dc in data["consul"]:
        out.append(f"Consul {dc['datacenter']}: leader {dc['leader_node'] or 'NONE'} {dc['leader']}, "
                   f"{sum(1 for p in dc['peers'] if p['voter'])} voter(s), "
                   f"{'healthy' if dc['healthy'] else 'NOT HEALTHY'} (failure tolerance {dc['failure_tolerance']})")
    n = data["nomad"]
    out.append(f"Nomad {data['region']}: leader {n['leader_node'] or 'NONE'} {n['leader']}, "
               f"{sum(1 for p in n['peers'] if p['voter'])} voter(s), {'healthy' if n['healthy'] else 'NOT HEALTHY'} "
               f"(failure tolerance {n['failure_tolerance']})")
    out += ["", f"{'NODE':<24} {'ROLE':<9} {'CONSUL':<14} {'NOMAD':<22} {'ELIGIBLE':<10} {'ADMISSION':<10} DRIFT"]
    for node in data["nodes"]:
        cm, nn, ns = node["consul"], node["nomad"], node["nomad_server"]
        consul = f"{cm['status']} {cm['version']}" if cm else "-"
        nomad = f"{nn['status']} {nn['version']}" if nn else (f"server {ns['status']} {ns['version']}" if ns else "-")
        eligible = (nn["eligibility"] + (" drain" if nn["drain"] else "")) if nn else "-"
        out.append(f"{node['name']:<24} {node['role'] or '?':<9} {consul:<14} {nomad:<22} {eligible:<10} "
                   f"{(nn or {}).get('admission') or '-':<10} {'; '.join(node['drift']) or 'as planned'}")
    out += ["", "Platform jobs (namespace platform):"]
    out += [f"  {j['id']:<22} {j['status']:<8} {j['running']} running, {j['queued']} queued, {j['failed']} failed"
            f"{'' if j['healthy'] else '  NOT HEALTHY'}" for j in data["jobs"]] or ["  none"]
    out += ["", "Certificates (soonest expiry first):"]
    out += [f"  {c['node']:<24} {c['what']:<48} {c['days_left'] if c['days_left'] is not None else '?'} days"
            for c in data["certificates"][:12]]
    if not data["node_facts"]:
        out.append("  (node certificates and accounting: add --nodes, which reads them over SSH)")
    if data["accounting"]:
        out += ["", "Accounting collector:"] + [f"  {a['node']}: last run {a.get('last_run') or 'never'}, "
                                                f"result {a.get('result') or '?'}" for a in data["accounting"]]
    out += ["", "Problems:" if data["problems"] else "No problems: healthy and as planned."]
    out += [f"  - {p}" for p in data["problems"]]
    return "\n".join(out)


def private_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="ai4os-status-")
