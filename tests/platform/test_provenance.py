"""Provenance: the provenance role's recorder (roles/provenance/files/ai4os_provenance.py) run for real
on a deployment event. Nomad is a TEST DOUBLE (tests/platform/nomad_events_double.py: event stream,
allocation and node endpoints as recorded from Nomad's source, HTTPS with client certificates,
calls granted by the kit's own ACL policy); the image registry is the real one (Debian package
docker-registry, TLS, token authentication with the test as its token server). The record is
parsed as JSON-LD by rdflib and read as PROV by the `prov` library."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import hcl2
import jinja2
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from nomad_events_double import FACTS, NomadEventsDouble, Policy
from support.platform_render import Rendered, free_port
from service_pki import TestCA, reply, serve_https
from support.service_venv import Service
from support.ci import unavailable

from ai4os_kit.paths import ROOT
from ai4os_kit.platform.nomad_job import hcl_attr, hcl_blocks

RECORDER = ROOT / "roles" / "provenance" / "files" / "ai4os_provenance.py"
BASE = "https://provenance.ifca.ai4os.example.org/"
TOKEN = "5d0c3a52-8f1e-4c55-9a7b-0e6d2f4b1c90"
NAMESPACES = ["ai4eosc", "imagine"]
PROV_NS = "http://www.w3.org/ns/prov#"


# ----------------------------------------------------------------- the real registry

class TokenServer:
    """The registry's token service (the registry checks the tokens for real): anonymous pull and
    push for every scope asked, ES256 with the signing certificate in the JWT's x5c header."""

    def __init__(self, ca: TestCA, issued: Any) -> None:
        self.key = serialization.load_pem_private_key(issued.key.read_bytes(), None)
        cert_pem = issued.cert.read_bytes()
        self.x5c = base64.b64encode(ssl.PEM_cert_to_DER_cert(cert_pem.decode())).decode()
        self.issued = 0
        self.server = serve_https(self._handler(), ca.issue("token-server"))

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/token"

    def token(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        self.issued += 1
        return jwt.encode({"iss": "ai4os-test-issuer", "sub": "", "aud": "ai4os-test-registry", "iat": now,
                           "nbf": now - 60, "exp": now + 300, "jti": str(uuid.uuid4()), "access": access},
                          self.key, algorithm="ES256", headers={"x5c": [self.x5c]})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                from urllib.parse import parse_qs, urlparse

                reply(self, 200, {"token": server.token(parse_qs(urlparse(self.path).query).get("scope", []))})

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


class Registry:
    """The real distribution registry (Debian docker-registry) over TLS with token authentication."""

    def __init__(self, binary: str, tmp: Path, ca: TestCA, tokens: TokenServer) -> None:
        self.port = free_port()
        tls = ca.issue("registry")
        config = {"version": 0.1, "log": {"level": "warn"},
                  "storage": {"filesystem": {"rootdirectory": str(tmp / "registry")}},
                  "http": {"addr": f"127.0.0.1:{self.port}", "tls": {"certificate": str(tls.cert), "key": str(tls.key)}},
                  "auth": {"token": {"realm": tokens.realm, "service": "ai4os-test-registry",
                                     "issuer": "ai4os-test-issuer", "rootcertbundle": str(ca.cert)}}}
        (tmp / "registry.yml").write_text(yaml.safe_dump(config))
        self.tokens = tokens
        self.log = open(tmp / "registry.log", "w")
        self.process = subprocess.Popen([binary, "serve", str(tmp / "registry.yml")], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.context = ssl.create_default_context(cafile=str(ca.cert))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/v2/", context=self.context, timeout=2)
            except urllib.error.HTTPError as exc:
                if exc.code == 401:    # up, and asking for a token
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("docker-registry did not start:\n" + (tmp / "registry.log").read_text())
            time.sleep(0.2)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def _call(self, method: str, url: str, repo: str, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> Any:
        token = self.tokens.token([f"repository:{repo}:pull,push"])
        request = urllib.request.Request(url if url.startswith("http") else self.url + url, data=data, method=method,
                                         headers={"Authorization": f"Bearer {token}", **(headers or {})})
        return urllib.request.urlopen(request, context=self.context, timeout=30)

    def push(self, repo: str, tag: str, payload: bytes) -> str:
        """Upload a one-layer OCI image; its manifest digest (what a pull by tag resolves to)."""
        blobs = []
        for blob in (payload, json.dumps({"architecture": "amd64", "os": "linux",
                                          "rootfs": {"type": "layers", "diff_ids": []}}).encode()):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            with self._call("POST", f"/v2/{repo}/blobs/uploads/", repo) as answer:
                location = answer.headers["Location"]
            separator = "&" if "?" in location else "?"
            with self._call("PUT", f"{location}{separator}digest={digest}", repo, blob,
                            {"Content-Type": "application/octet-stream"}):
                pass
            blobs.append({"digest": digest, "size": len(blob)})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blobs[1]},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blobs[0]}]}).encode()
        with self._call("PUT", f"/v2/{repo}/manifests/{tag}", repo, manifest,
                        {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}) as answer:
            assert answer.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
            return answer.headers["Docker-Content-Digest"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


def registry_binary() -> str:
    exe = shutil.which("docker-registry") or shutil.which("registry")
    if not exe:
        unavailable("docker-registry is not installed", "Debian package docker-registry: .ci/setup.d/15-host-tools.sh")
    return exe


# ----------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("provenance-pki"))


@pytest.fixture(scope="module")
def registry(pki: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = registry_binary()
    tokens = TokenServer(pki, pki.issue("token-signer"))
    reg = Registry(binary, tmp_path_factory.mktemp("registry"), pki, tokens)
    yield reg
    reg.stop()
    tokens.server.shutdown()


def kit_policy() -> Policy:
    """The policy the nomad role writes for the recorder (its template, rendered as the role does)."""
    text = (ROOT / "roles" / "nomad" / "templates" / "provenance-policy.hcl.j2").read_text()
    return Policy(jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(text)
                  .render(nomad_namespaces=NAMESPACES))


@pytest.fixture
def nomad(pki: TestCA) -> Iterator[NomadEventsDouble]:
    double = NomadEventsDouble(pki.issue("nomad-server"), pki.cert, {TOKEN: kit_policy()})
    yield double
    double.close()


def start_recorder(nomad: NomadEventsDouble, registry: Registry, pki: TestCA, tmp: Path) -> Service:
    client = pki.issue("provenance-client", server=False)
    port = free_port()
    env = {"NOMAD_ADDR": nomad.address, "NOMAD_TOKEN": TOKEN, "NOMAD_CACERT": str(pki.cert),
           "NOMAD_CLIENT_CERT": str(client.cert), "NOMAD_CLIENT_KEY": str(client.key),
           "PROV_NAMESPACES": ",".join(NAMESPACES), "PROV_JOB_PREFIXES": "module-", "PROV_STORE": str(tmp / "store"),
           "PROV_PORT": str(port), "PROV_LISTEN": "127.0.0.1", "PROV_BASE_IRI": BASE,
           "PROV_DEFAULT_REGISTRY": registry.host, "SSL_CERT_FILE": str(pki.cert)}
    return Service([sys.executable, str(RECORDER)], env, port, tmp / f"recorder-{port}.log")


@pytest.fixture
def recorder(nomad: NomadEventsDouble, registry: Registry, pki: TestCA, tmp_path: Path) -> Iterator[Service]:
    service = start_recorder(nomad, registry, pki, tmp_path)
    yield service
    service.stop()


# ----------------------------------------------------------------- a deployment as PAPI makes it

def module_deployment(registry: Registry, namespace: str = "ai4eosc") -> dict[str, Any]:
    """A running allocation of PAPI's module job (tests/data/nomad/provenance-api.yml papi_module_job),
    as GET /v1/allocation/<id> returns it, with its images pushed to the real registry."""
    papi = FACTS["papi_module_job"]
    job_id = str(uuid.uuid4())
    digests = {"main": registry.push("ai4oshub/flood-model", "1.2", b"model weights v1.2"),
               "storage_mount": registry.push("ai4os/docker-storage", "latest", b"rclone sidecar")}
    images = {"main": "ai4oshub/flood-model:1.2", "storage_mount": f"{registry.host}/ai4os/docker-storage:latest",
              "dataset_download": f"{registry.host}/ai4os/docker-zenodo@sha256:" + "a" * 64,
              "email-notification": f"{registry.host}/ai4os/docker-mail:client",   # not in the registry
              "ui": f"{registry.host}/ai4os/deepaas_ui:latest"}
    digests["ui"] = registry.push("ai4os/deepaas_ui", "latest", b"gradio ui")
    storage = "https://user%40egi.eu:app-password@share.example.org/remote.php/dav/files/user@egi.eu/"
    env = {"storage_mount": {"RCLONE_CONFIG_RSHARE_URL": storage, "RCLONE_CONFIG_RSHARE_PASS": "obscured-secret"},
           "dataset_download": {"DOI": "10.5281/zenodo.1234567"},
           "email-notification": {"MAILING_TOKEN": "mailing-secret"},
           "main": {"jupyterPASSWORD": "jupyter-secret", "RCLONE_CONFIG_RSHARE_URL": storage,
                    "RCLONE_CONFIG_RSHARE_PASS": "obscured-secret",
                    "MLFLOW_TRACKING_URI": "https://mlflow.ifca.ai4os.example.org/",
                    "MLFLOW_TRACKING_PASSWORD": "mlflow-secret"}}
    tasks = []
    for name, task in papi["tasks"].items():
        driver = task.get("driver", "docker")
        config = {"command": "/bin/bash"} if driver == "raw_exec" else {"image": images[name], "force_pull": True}
        tasks.append({"Name": name, "Driver": driver, "Config": config, "Env": env.get(name)})
    job = {"ID": job_id, "Name": papi["name"].replace("${JOB_UUID}", job_id), "Namespace": namespace,
           "Type": "service", "Region": "global", "Priority": 50, "Version": 0, "Status": "running",
           "SubmitTime": 1796400000000000000, "CreateIndex": 40, "ModifyIndex": 41, "JobModifyIndex": 40,
           "Meta": {"owner": "7d1f0c5e@egi.eu", "owner_name": "A. User", "owner_email": "user@example.org",
                    "title": "flood forecast", "description": ""},
           "TaskGroups": [{"Name": papi["group"], "Count": 1, "Tasks": tasks}]}
    alloc_id = str(uuid.uuid4())
    alloc = {"ID": alloc_id, "Namespace": namespace, "JobID": job_id, "Name": f"{job['Name']}.{papi['group']}[0]",
             "TaskGroup": papi["group"], "NodeID": "5a1d7c9e-0b3f-4e2a-8c6d-1f9e2b7a4c30", "NodeName": "ifca-gpu-1",
             "ClientStatus": "running", "DesiredStatus": "run", "JobVersion": 0, "Job": job,
             "TaskStates": {"main": {"State": "running", "StartedAt": "2026-12-04T10:15:02.5Z"},
                            "ui": {"State": "running", "StartedAt": "2026-12-04T10:15:04Z"}}}
    return {"alloc": alloc, "digests": digests, "job": job}


def get(service: Service, path: str) -> tuple[int, Any, str]:
    try:
        with urllib.request.urlopen(service.url + path, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), ""


def wait_for_record(service: Service, namespace: str, job: str, timeout: float = 30) -> tuple[dict[str, Any], str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, doc, kind = get(service, f"/v1/records/{namespace}/{job}")
        if status == 200:
            return doc, kind
        time.sleep(0.3)
    raise AssertionError(f"no record of {namespace}/{job}:\n{service.log.read_text()[-3000:]}")


# ----------------------------------------------------------------- tests

def test_a_deployment_event_becomes_a_prov_record(nomad: NomadEventsDouble, registry: Registry,
                                                 recorder: Service) -> None:
    import rdflib
    from prov.model import ProvActivity, ProvDocument

    d = module_deployment(registry)
    alloc, job = d["alloc"], d["job"]
    node = {"ID": alloc["NodeID"], "Name": "ifca-gpu-1", "Datacenter": "ifca"}
    nomad.allocations[alloc["ID"]], nomad.nodes[node["ID"]] = alloc, node
    pending = dict(alloc, ClientStatus="pending")
    tokens = registry.tokens.issued
    nomad.emit("ai4eosc", 50, pending, "AllocationCreated")
    nomad.emit("ai4eosc", 51, alloc)
    doc, kind = wait_for_record(recorder, "ai4eosc", job["ID"])
    assert kind == "application/ld+json"
    # one anonymous token per image resolved by tag (main, storage_mount, email-notification, ui)
    assert registry.tokens.issued - tokens == 4

    graph = rdflib.Graph().parse(data=json.dumps(doc), format="json-ld")
    prov, ai4os = rdflib.Namespace(PROV_NS), rdflib.Namespace(BASE + "ns#")
    record = f"{BASE}records/ai4eosc/{job['ID']}"
    activity = rdflib.URIRef(f"{record}#allocation-{alloc['ID']}")
    assert (activity, rdflib.RDF.type, prov.Activity) in graph
    assert graph.value(activity, prov.startedAtTime).toPython().isoformat().startswith("2026-12-04T10:15:02.5")
    assert str(graph.value(activity, ai4os.jobID)) == job["ID"]
    owner = graph.value(activity, prov.wasAssociatedWith)
    assert (owner, rdflib.RDF.type, prov.Agent) in graph and str(graph.value(owner, ai4os.subject)) == "7d1f0c5e@egi.eu"

    # where: the node
    location = graph.value(activity, prov.atLocation)
    assert (location, rdflib.RDF.type, prov.Location) in graph
    assert (str(graph.value(location, ai4os.nodeName)), str(graph.value(location, ai4os.datacenter))) == ("ifca-gpu-1", "ifca")

    # what: images with the digests the registry serves, the job spec hash, data, MLflow
    used = set(graph.objects(activity, prov.used))
    images = {str(graph.value(u, ai4os.task)): u for u in used if graph.value(u, ai4os.imageReference)}
    assert str(graph.value(images["main"], ai4os.imageDigest)) == d["digests"]["main"]      # via the default registry
    assert str(graph.value(images["storage_mount"], ai4os.imageDigest)) == d["digests"]["storage_mount"]
    assert str(graph.value(images["dataset_download"], ai4os.imageDigest)) == "sha256:" + "a" * 64
    assert "pinned" in str(graph.value(images["dataset_download"], ai4os.digestSource))
    assert graph.value(images["email-notification"], ai4os.imageDigest) is None
    assert "HTTP 404" in str(graph.value(images["email-notification"], ai4os.digestSource))
    assert "storage_cleanup" not in images                                              # raw_exec: no image
    spec = [u for u in used if graph.value(u, ai4os.sha256)]
    assert len(spec) == 1 and str(graph.value(spec[0], ai4os.sha256)).startswith("sha256:")
    assert rdflib.URIRef("https://doi.org/10.5281/zenodo.1234567") in used
    assert rdflib.URIRef("https://share.example.org/remote.php/dav/files/user@egi.eu/") in used
    assert rdflib.URIRef("https://mlflow.ifca.ai4os.example.org/") in used
    text = json.dumps(doc)
    for secret in ("obscured-secret", "mailing-secret", "jupyter-secret", "mlflow-secret", "app-password"):
        assert secret not in text                                          # no credential of the job

    # the same graph read as W3C PROV
    document = ProvDocument.deserialize(content=graph.serialize(format="turtle"), format="rdf", rdf_format="turtle")
    activities = [r for r in document.get_records(ProvActivity)]
    assert [str(a.identifier.uri) for a in activities] == [str(activity)]
    kinds = {type(r).__name__ for r in document.get_records()}
    assert {"ProvActivity", "ProvEntity", "ProvAgent", "ProvUsage", "ProvAssociation"} <= kinds
    assert len([r for r in document.get_records() if type(r).__name__ == "ProvUsage"]) == len(used)


def test_the_recorder_is_read_only_and_records_deployments_only(nomad: NomadEventsDouble, registry: Registry,
                                                               recorder: Service) -> None:
    d = module_deployment(registry, "imagine")
    tool = module_deployment(registry, "imagine")
    tool["alloc"]["Name"] = tool["alloc"]["Name"].replace("module-", "tool-")
    for x in (d, tool):
        serve(nomad, x)
    nomad.emit("imagine", 10, tool["alloc"])
    nomad.emit("imagine", 11, d["alloc"])
    wait_for_record(recorder, "imagine", d["job"]["ID"])
    status, records, _ = get(recorder, "/v1/records")
    assert [(r["namespace"], r["job"]) for r in records] == [("imagine", d["job"]["ID"])]
    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(recorder.url + "/v1/records", data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=10)
        assert err.value.code == 501                          # no write route at all
    assert get(recorder, "/v1/records/imagine/..%2Fetc")[0] == 400


def test_the_kit_policy_is_what_the_recorder_needs_and_no_more(nomad: NomadEventsDouble, registry: Registry,
                                                              recorder: Service) -> None:
    """Every call the recorder made passed the kit's policy; another namespace does not."""
    d = module_deployment(registry)
    serve(nomad, d)
    nomad.emit("ai4eosc", 70, d["alloc"])
    wait_for_record(recorder, "ai4eosc", d["job"]["ID"])
    calls = {path.split("/")[2] for path, _ in nomad.requests}
    assert calls == {"event", "allocation", "node"} and all(status == 200 for _, status in nomad.requests)
    policy = kit_policy()
    assert policy.namespaces == {ns: {"read-job"} for ns in NAMESPACES} and policy.node == "read"
    assert not policy.allows({"namespace": "read-job"}, "platform")
    text = jinja2.Environment().from_string((ROOT / "roles" / "nomad" / "templates" / "provenance-policy.hcl.j2")
                                            .read_text()).render(nomad_namespaces=NAMESPACES)
    assert set(hcl2.loads(text)) == {"namespace", "node"}     # no agent, operator, variables, write rights


def serve(nomad: NomadEventsDouble, deployment: dict[str, Any]) -> None:
    alloc = deployment["alloc"]
    nomad.allocations[alloc["ID"]] = alloc
    nomad.nodes[alloc["NodeID"]] = {"ID": alloc["NodeID"], "Datacenter": "ifca"}


def test_a_restarted_recorder_resumes_at_its_last_index(nomad: NomadEventsDouble, registry: Registry, pki: TestCA,
                                                        tmp_path: Path) -> None:
    first, second = module_deployment(registry), module_deployment(registry)
    serve(nomad, first)
    serve(nomad, second)
    service = start_recorder(nomad, registry, pki, tmp_path)
    try:
        nomad.emit("ai4eosc", 90, first["alloc"])
        wait_for_record(service, "ai4eosc", first["job"]["ID"])
        deadline = time.monotonic() + 10
        while not (tmp_path / "store" / ".index-ai4eosc").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        service.stop()
    assert (tmp_path / "store" / ".index-ai4eosc").read_text() == "90"
    nomad.emit("ai4eosc", 95, second["alloc"])        # while the recorder was down
    streams_before = sum(1 for path, _ in nomad.requests if path == "/v1/event/stream")
    service = start_recorder(nomad, registry, pki, tmp_path)
    try:
        wait_for_record(service, "ai4eosc", second["job"]["ID"])
    finally:
        service.stop()
    assert sum(1 for path, _ in nomad.requests if path == "/v1/event/stream") > streams_before
    # the first allocation, streamed again from index 90, is still one record
    assert len(list((tmp_path / "store" / "ai4eosc" / first["job"]["ID"]).glob("*.jsonld"))) == 1


# ----------------------------------------------------------------- the rendered job

def test_the_job_runs_the_repositorys_recorder_with_its_token_from_a_variable(rendered: Rendered) -> None:
    hcl = rendered.file("provenance", "provenance.nomad.hcl").read_text()
    _, job = hcl_blocks(hcl2.loads(hcl), "job")[0]
    _, group = hcl_blocks(job, "group")[0]
    task = dict(hcl_blocks(group, "task"))["provenance"]
    templates = {hcl_attr(t, "destination"): str(hcl_attr(t, "data")) for _, t in hcl_blocks(task, "template")}
    script = textwrap.dedent(templates["local/ai4os_provenance.py"]).replace("$${", "${").replace("%%{", "%{")
    assert script.strip() == RECORDER.read_text().strip()
    assert 'nomadVar "nomad/jobs/provenance"' in templates["secrets/nomad.env"] and "NOMAD_TOKEN=" in templates["secrets/nomad.env"]
    env = {k: v[0] if isinstance(v, list) else v for k, v in hcl_blocks(task, "env")[0][1].items()}
    assert env["PROV_NAMESPACES"] == ",".join(vo["namespace"] for vo in rendered.plan["platform"]["vos"])
    assert env["NOMAD_ADDR"] == "https://nomad.service.consul:4646"
    assert "9d2f7a10" not in hcl                              # the token itself never in the job file
    tags = [line.strip().strip('",') for line in hcl.splitlines() if "traefik.http.routers.ai4os-provenance." in line]
    assert any(t.endswith("middlewares=ai4os-admin-auth@consulcatalog") for t in tags)
