"""ai4os-provenance: W3C PROV records of the models users deploy from the marketplace.

Shipped with the kit's provenance role and run by its Nomad job (Python standard library only).
It follows Nomad's event stream (topic Allocation) of each VO namespace; when an allocation of a
marketplace deployment (PAPI's module jobs, job name prefix DEPLOYMENT prefixes) is running,
it reads the allocation with its job from the Nomad API and records, as PROV-O in JSON-LD:

- the deployment (prov:Activity): job, allocation, namespace, start time, job spec hash
  (SHA-256 of the job as Nomad runs it, canonical JSON without Nomad's bookkeeping fields),
  the owner (prov:wasAssociatedWith, PAPI's job meta "owner");
- where it ran (prov:atLocation): the Nomad node (id, name, datacenter);
- what it used (prov:used): each task's container image with its registry digest (pinned in
  the image reference, or resolved from the registry's manifest API at recording time), the
  data sources (the Zenodo DOI PAPI's dataset task downloads, the user's storage URL without
  credentials) and the MLflow tracking server (and run id when the job names one).

Records are files under PROV_STORE (<namespace>/<job>/<allocation>.jsonld). HTTP (read-only):
  GET /health
  GET /v1/records                     [{namespace, job, allocations, updated}]          (admin)
  GET /v1/records/<namespace>/<job>   the deployment's PROV graph (application/ld+json) (admin)
"admin" requests are accepted only from PROV_TRUSTED_PROXIES (the site's Traefik, after the
platform's OIDC forward-auth) or loopback.

Environment: NOMAD_ADDR, NOMAD_TOKEN, NOMAD_CACERT, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY,
PROV_NAMESPACES (comma list), PROV_JOB_PREFIXES ("module-"), PROV_STORE (/data), PROV_PORT
(8080), PROV_LISTEN (0.0.0.0), PROV_BASE_IRI (https://<public host>/), PROV_TRUSTED_PROXIES,
PROV_DEFAULT_REGISTRY (registry API host of image names without one; empty: not resolved),
PROV_REGISTRY_SCHEME (https).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

PROV = "http://www.w3.org/ns/prov#"
XSD = "http://www.w3.org/2001/XMLSchema#"
# Job fields Nomad changes without the spec changing (indexes, status, submit time).
VOLATILE = ("Status", "StatusDescription", "Stable", "Version", "SubmitTime", "CreateIndex",
            "ModifyIndex", "JobModifyIndex", "Stop")
MANIFESTS = ", ".join(("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                       "application/vnd.docker.distribution.manifest.list.v2+json",
                       "application/vnd.docker.distribution.manifest.v2+json"))
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def env(name: str, default: str = "") -> str:
    return os.environ.get(name) or default


def log(message: str) -> None:
    print(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- what a record holds

def spec_hash(job: dict[str, Any]) -> str:
    spec = {k: v for k, v in job.items() if k not in VOLATILE}
    return "sha256:" + hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def split_image(image: str) -> tuple[str, str, str]:
    """'[host/]repo[:tag][@digest]' -> (host or '', repository, tag or digest)."""
    ref, _, digest = image.partition("@")
    first, _, rest = ref.partition("/")
    host = first if rest and ("." in first or ":" in first or first == "localhost") else ""
    path = rest if host else ref
    repo, _, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "latest")
    return host, repo, digest or tag


def without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def task_sources(task: dict[str, Any]) -> dict[str, str]:
    """Data sources and MLflow of a task, from the environment PAPI's module template sets."""
    envs = task.get("Env") or {}
    out = {}
    if envs.get("DOI"):
        out["doi"] = str(envs["DOI"])
    if envs.get("RCLONE_CONFIG_RSHARE_URL"):
        out["storage"] = without_credentials(str(envs["RCLONE_CONFIG_RSHARE_URL"]))
    if envs.get("MLFLOW_TRACKING_URI"):
        out["mlflow"] = without_credentials(str(envs["MLFLOW_TRACKING_URI"]))
    if envs.get("MLFLOW_RUN_ID"):
        out["mlflow_run"] = str(envs["MLFLOW_RUN_ID"])
    return out


class Registry:
    """Digest of an image tag from the registry's manifest API (OCI distribution spec)."""

    def __init__(self, default_host: str, scheme: str) -> None:
        self.default_host = default_host
        self.scheme = scheme

    def _request(self, url: str, token: str | None) -> urllib.request.Request:
        headers = {"Accept": MANIFESTS}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return urllib.request.Request(url, headers=headers, method="HEAD")

    @staticmethod
    def _anonymous_token(challenge: str) -> str | None:
        if not challenge.lower().startswith("bearer "):
            return None
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in params:
            return None
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        with urllib.request.urlopen(params["realm"] + ("?" + query if query else ""), timeout=30) as answer:
            doc = json.loads(answer.read())
        return doc.get("token") or doc.get("access_token")

    def digest(self, image: str) -> tuple[str | None, str]:
        """(digest or None, how it was found or why not)."""
        host, repo, tag = split_image(image)
        if tag.startswith("sha256:"):
            return tag, "pinned in the image reference"
        if not host:
            if not self.default_host:
                return None, "image without a registry host and no PROV_DEFAULT_REGISTRY set"
            # An unqualified one-part name is an official image: repository library/<name>.
            host, repo = self.default_host, repo if "/" in repo else f"library/{repo}"
        url = f"{self.scheme}://{host}/v2/{repo}/manifests/{tag}"
        token = None
        for _ in range(2):
            try:
                with urllib.request.urlopen(self._request(url, token), timeout=30) as answer:
                    digest = answer.headers.get("Docker-Content-Digest")
                    return (digest, f"resolved from {host} at recording time") if digest else (
                        None, f"{host} answered without a Docker-Content-Digest header")
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and token is None:
                    token = self._anonymous_token(exc.headers.get("WWW-Authenticate", ""))
                    if token:
                        continue
                return None, f"{host} answered HTTP {exc.code} for {repo}:{tag}"
            except (OSError, ValueError) as exc:
                return None, f"{host} did not answer ({type(exc).__name__})"
        return None, f"{host} refused the anonymous token"


def iri(base: str, *parts: str) -> str:
    return base + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def prov_document(alloc: dict[str, Any], node: dict[str, Any], registry: Registry, base: str) -> dict[str, Any]:
    """The PROV-O graph (JSON-LD) of one running allocation of a deployment."""
    job = alloc["Job"]
    ns, job_id, alloc_id = alloc["Namespace"], alloc["JobID"], alloc["ID"]
    record = iri(base, "records", ns, job_id)
    activity = f"{record}#allocation-{alloc_id}"
    location = iri(base, "nodes", alloc["NodeID"])
    spec = f"{record}#spec-{job.get('Version', 0)}"
    started = [s.get("StartedAt") for s in (alloc.get("TaskStates") or {}).values() if s.get("StartedAt")]
    nodes: dict[str, dict[str, Any]] = {}   # by @id: a resource several tasks use is described once

    def add(node: dict[str, Any]) -> None:
        nodes.setdefault(node["@id"], node)

    used: list[dict[str, str]] = [{"@id": spec}]
    add({"@id": spec, "@type": "prov:Entity", "ai4os:sha256": spec_hash(job),
                  "ai4os:jobVersion": job.get("Version", 0), "ai4os:jobName": job.get("Name", "")})
    meta = job.get("Meta") or {}
    for group in job.get("TaskGroups") or []:
        if group.get("Name") != alloc.get("TaskGroup"):
            continue
        for task in group.get("Tasks") or []:
            image = (task.get("Config") or {}).get("image")
            if task.get("Driver") == "docker" and image:
                digest, how = registry.digest(str(image))
                entity = iri(base, "images", digest) if digest else f"{record}#image-{task['Name']}"
                node_doc = {"@id": entity, "@type": "prov:Entity", "ai4os:imageReference": image,
                            "ai4os:task": task["Name"], "ai4os:digestSource": how}
                if digest:
                    node_doc["ai4os:imageDigest"] = digest
                add(node_doc)
                used.append({"@id": entity})
            sources = task_sources(task)
            if "doi" in sources:
                doi = sources["doi"].removeprefix("https://doi.org/")
                add({"@id": "https://doi.org/" + doi, "@type": "prov:Entity", "ai4os:doi": doi,
                              "ai4os:role": "dataset"})
                used.append({"@id": "https://doi.org/" + doi})
            if "storage" in sources:
                add({"@id": sources["storage"], "@type": "prov:Entity", "ai4os:role": "storage"})
                used.append({"@id": sources["storage"]})
            if "mlflow" in sources:
                run = sources.get("mlflow_run")
                target = sources["mlflow"] + (f"#/runs/{run}" if run else "")
                doc = {"@id": target, "@type": "prov:Entity", "ai4os:role": "mlflow-tracking",
                       "ai4os:mlflowTrackingUri": sources["mlflow"]}
                if run:
                    doc["ai4os:mlflowRunId"] = run
                add(doc)
                used.append({"@id": target})
    activity_doc: dict[str, Any] = {
        "@id": activity, "@type": "prov:Activity", "ai4os:namespace": ns, "ai4os:jobID": job_id,
        "ai4os:allocationID": alloc_id, "prov:atLocation": {"@id": location},
        "prov:used": sorted({u["@id"]: u for u in used}.values(), key=lambda u: u["@id"]),
    }
    if started:
        activity_doc["prov:startedAtTime"] = {"@value": min(started), "@type": "xsd:dateTime"}
    if meta.get("owner"):
        agent = iri(base, "agents", str(meta["owner"]))
        add({"@id": agent, "@type": "prov:Agent", "ai4os:subject": meta["owner"]})
        activity_doc["prov:wasAssociatedWith"] = {"@id": agent}
    if meta.get("title"):
        activity_doc["ai4os:title"] = meta["title"]
    add(activity_doc)
    add({"@id": location, "@type": "prov:Location", "ai4os:nodeName": alloc.get("NodeName", ""),
                  "ai4os:datacenter": node.get("Datacenter", "")})
    return {"@context": {"prov": PROV, "xsd": XSD, "ai4os": base + "ns#"}, "@graph": list(nodes.values())}


def merge(documents: list[dict[str, Any]]) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}
    for doc in documents:
        for node in doc["@graph"]:
            nodes.setdefault(node["@id"], node)
    return {"@context": documents[0]["@context"], "@graph": [nodes[k] for k in sorted(nodes)]}


# ----------------------------------------------------------------- Nomad

class Nomad:
    def __init__(self) -> None:
        self.addr = env("NOMAD_ADDR", "https://nomad.service.consul:4646").rstrip("/")
        self.token = env("NOMAD_TOKEN")
        self.context: ssl.SSLContext | None = None
        if self.addr.startswith("https://"):
            self.context = ssl.create_default_context(cafile=env("NOMAD_CACERT") or None)
            if env("NOMAD_CLIENT_CERT"):
                self.context.load_cert_chain(env("NOMAD_CLIENT_CERT"), env("NOMAD_CLIENT_KEY") or None)

    def _open(self, path: str, timeout: float | None) -> Any:
        request = urllib.request.Request(self.addr + path, headers={"X-Nomad-Token": self.token})
        return urllib.request.urlopen(request, timeout=timeout, context=self.context)

    def get(self, path: str) -> Any:
        with self._open(path, 30) as answer:
            return json.loads(answer.read())

    def events(self, namespace: str, index: int) -> Iterator[dict[str, Any]]:
        """Allocation events of one namespace from ``index`` on (heartbeats skipped)."""
        query = urllib.parse.urlencode({"topic": "Allocation", "namespace": namespace, "index": index})
        with self._open(f"/v1/event/stream?{query}", 120) as stream:
            for line in stream:
                if not line.strip():
                    continue
                batch = json.loads(line)
                for event in batch.get("Events") or []:
                    yield dict(event, _index=batch.get("Index", 0))


# ----------------------------------------------------------------- recorder and store

class Recorder:
    def __init__(self, store: Path, nomad: Nomad, registry: Registry, base: str, prefixes: tuple[str, ...]) -> None:
        self.store, self.nomad, self.registry, self.base, self.prefixes = store, nomad, registry, base, prefixes
        self.lock = threading.Lock()

    def path(self, ns: str, job: str, alloc: str = "") -> Path:
        for part in (ns, job) + ((alloc,) if alloc else ()):
            if not NAME.match(part):
                raise ValueError(f"not a Nomad name: {part!r}")
        return self.store / ns / job / (f"{alloc}.jsonld" if alloc else "")

    def handle(self, event: dict[str, Any]) -> bool:
        """Record the allocation of an event when it belongs to a running deployment; True if recorded."""
        alloc = (event.get("Payload") or {}).get("Allocation") or {}
        if event.get("Topic") != "Allocation" or alloc.get("ClientStatus") != "running":
            return False
        if not str(alloc.get("Name", "")).startswith(self.prefixes):
            return False
        target = self.path(alloc["Namespace"], alloc["JobID"], alloc["ID"])
        if target.exists():
            return False
        ns = urllib.parse.quote(alloc["Namespace"], safe="")
        try:
            full = self.nomad.get(f"/v1/allocation/{urllib.parse.quote(alloc['ID'], safe='')}?namespace={ns}")
            node = self.nomad.get(f"/v1/node/{urllib.parse.quote(full['NodeID'], safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            log(f"allocation {alloc['ID']} or its node is gone (HTTP 404): not recorded")
            return False
        document = prov_document(full, node, self.registry, self.base)
        with self.lock:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(document, sort_keys=True, indent=1))
            os.replace(tmp, target)
        log(f"recorded {alloc['Namespace']}/{alloc['JobID']} allocation {alloc['ID']} on {full.get('NodeName')}")
        return True

    def follow(self, namespace: str) -> None:
        index_file = self.store / f".index-{namespace}"
        backoff = 1.0
        while True:
            index = int(index_file.read_text()) if index_file.is_file() else 0
            try:
                for event in self.nomad.events(namespace, index):
                    try:
                        self.handle(event)
                    except (ValueError, KeyError, TypeError) as exc:  # a malformed event: skipped, logged
                        log(f"event {event.get('Key')} of {namespace} not recorded: {type(exc).__name__}: {exc}")
                    if event["_index"] > index:
                        index = event["_index"]
                        index_file.write_text(str(index))
                    backoff = 1.0
            except (OSError, ValueError) as exc:  # Nomad away or the stream cut: resume from the last index
                log(f"event stream of {namespace}: {type(exc).__name__}: {exc}; reconnecting in {backoff:.0f}s")
                time.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    def records(self) -> list[dict[str, Any]]:
        out = []
        for job_dir in sorted(p for p in self.store.glob("*/*") if p.is_dir()):
            files = sorted(job_dir.glob("*.jsonld"))
            if files:
                out.append({"namespace": job_dir.parent.name, "job": job_dir.name, "allocations": len(files),
                            "updated": max(f.stat().st_mtime for f in files)})
        return out

    def record(self, ns: str, job: str) -> dict[str, Any] | None:
        files = sorted(self.path(ns, job).glob("*.jsonld"))
        return merge([json.loads(f.read_text()) for f in files]) if files else None


def handler(recorder: Recorder, proxies: set[Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ai4os-provenance"

        def _send(self, status: int, payload: Any, kind: str = "application/json") -> None:
            data = json.dumps(payload, sort_keys=True).encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            parts = [urllib.parse.unquote(p) for p in urllib.parse.urlparse(self.path).path.split("/") if p]
            if parts == ["health"]:
                return self._send(200, {"status": "ok"})
            peer = ipaddress.ip_address(self.client_address[0])
            if not (peer.is_loopback or peer in proxies):
                return self._send(403, {"error": "records are read through the platform's Traefik (OIDC forward-auth)"})
            if parts == ["v1", "records"]:
                return self._send(200, recorder.records())
            if len(parts) == 4 and parts[:2] == ["v1", "records"]:
                try:
                    doc = recorder.record(parts[2], parts[3])
                except ValueError as exc:
                    return self._send(400, {"error": str(exc)})
                if doc is None:
                    return self._send(404, {"error": f"no record of {parts[2]}/{parts[3]}"})
                return self._send(200, doc, "application/ld+json")
            return self._send(404, {"error": f"no route GET {self.path}"})

        def log_message(self, fmt: str, *args: Any) -> None:
            log(f"{self.client_address[0]} {fmt % args}")

    return Handler


def main() -> None:
    store = Path(env("PROV_STORE", "/data"))
    store.mkdir(parents=True, exist_ok=True)
    base = env("PROV_BASE_IRI", "https://provenance.invalid/").rstrip("/") + "/"
    recorder = Recorder(store, Nomad(), Registry(env("PROV_DEFAULT_REGISTRY"), env("PROV_REGISTRY_SCHEME", "https")),
                        base, tuple(p for p in env("PROV_JOB_PREFIXES", "module-").split(",") if p))
    for namespace in [n.strip() for n in env("PROV_NAMESPACES").split(",") if n.strip()]:
        threading.Thread(target=recorder.follow, args=(namespace,), daemon=True, name=f"follow-{namespace}").start()
    proxies = {ipaddress.ip_address(a.strip()) for a in env("PROV_TRUSTED_PROXIES").split(",") if a.strip()}
    server = ThreadingHTTPServer((env("PROV_LISTEN", "0.0.0.0"), int(env("PROV_PORT", "8080"))), handler(recorder, proxies))
    log(f"ai4os-provenance listening on {server.server_address[0]}:{server.server_address[1]}")
    server.serve_forever()


if __name__ == "__main__":
    main()
