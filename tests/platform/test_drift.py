"""Drift detection: the drift role's service (roles/drift/files/ai4os_drift.py) run for real with the
packages its job installs (files/requirements.txt, hash-checked, from PyPI: frouros, numpy, scipy)
on data sets the test makes, over its HTTP API; and its Nomad job as rendered for the sample plan."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import hcl2
import numpy as np
import pytest
from support.platform_render import Rendered, free_port
from support.service_venv import Service, drift_python, mlflow_python

from ai4os_kit.paths import ROOT
from ai4os_kit.platform.nomad_job import hcl_attr, hcl_blocks

FILES = ROOT / "roles" / "drift" / "files"
RNG = np.random.default_rng(20261204)


def reference(n: int = 600) -> dict[str, Any]:
    return {"features": {"temperature": RNG.normal(15.0, 4.0, n).round(3).tolist(),
                         "humidity": RNG.uniform(20, 90, n).round(2).tolist(),
                         "land_cover": RNG.choice(["forest", "crop", "urban", "water"], n, p=[.4, .3, .2, .1]).tolist()}}


def same_distribution(n: int = 300) -> dict[str, Any]:
    return reference(n)


def shifted(n: int = 300) -> dict[str, Any]:
    """Warmer, and more urban: a covariate shift in one numerical and one categorical feature."""
    batch = reference(n)
    batch["features"]["temperature"] = RNG.normal(19.0, 4.0, n).round(3).tolist()
    batch["features"]["land_cover"] = RNG.choice(["forest", "crop", "urban", "water"], n, p=[.2, .2, .5, .1]).tolist()
    return batch


def call(base: str, method: str, path: str, body: Any = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {}),
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            raw, status, kind = answer.read(), answer.status, answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in kind else raw.decode()


@pytest.fixture(scope="module")
def python() -> Path:
    return drift_python()


def start(python: Path, data: Path, tmp: Path, **extra: str) -> Service:
    port = free_port()
    env = {"DRIFT_PORT": str(port), "DRIFT_LISTEN": extra.pop("listen", "127.0.0.1"), "DRIFT_DATA_DIR": str(data),
           "DRIFT_ALPHA": "0.01", **extra}
    return Service([str(python), str(FILES / "ai4os_drift.py")], env, port, tmp / f"drift-{port}.log")


@pytest.fixture(scope="module")
def drift(python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the API tests (each test uses models of its own)."""
    tmp = tmp_path_factory.mktemp("drift")
    service = start(python, tmp / "data", tmp)
    yield service
    service.stop()


def register(base: str, model: str = "flood-forecast") -> str:
    status, answer = call(base, "PUT", f"/v1/models/{model}/reference", reference())
    assert status == 201, answer
    assert answer["features"] == {"temperature": {"type": "numerical", "size": 600},
                                  "humidity": {"type": "numerical", "size": 600},
                                  "land_cover": {"type": "categorical", "size": 600}}
    return answer["ingest_token"]


def test_shifted_data_drifts_and_the_same_distribution_does_not(drift: Service) -> None:
    token = register(drift.url)
    status, same = call(drift.url, "POST", "/v1/ingest/flood-forecast", same_distribution(), token)
    assert status == 201, same
    assert same["drift"] is False
    assert {f: r["detector"] for f, r in same["features"].items()} == {
        "temperature": "KSTest", "humidity": "KSTest", "land_cover": "ChiSquareTest"}
    assert all(r["p_value"] >= 0.01 and r["drift"] is False for r in same["features"].values())

    status, moved = call(drift.url, "POST", "/v1/ingest/flood-forecast", shifted(), token)
    assert status == 201 and moved["drift"] is True
    assert {f for f, r in moved["features"].items() if r["drift"]} == {"temperature", "land_cover"}
    assert moved["features"]["temperature"]["p_value"] < 1e-6 and moved["features"]["land_cover"]["p_value"] < 1e-6

    status, reports = call(drift.url, "GET", "/v1/models/flood-forecast/reports?limit=10")
    assert status == 200 and [r["id"] for r in reports] == [moved["id"], same["id"]]
    status, one = call(drift.url, "GET", f"/v1/models/flood-forecast/reports/{same['id']}")
    assert status == 200 and one == same
    status, models = call(drift.url, "GET", "/v1/models")
    assert ("flood-forecast", 2, True) in [(m["model"], m["checks"], m["last_check"]["drift"]) for m in models]


def promtool() -> str | None:
    return shutil.which("promtool") or next((str(p) for p in [ROOT / ".cache" / "promtool" / "usr" / "bin" / "promtool"]
                                             if p.is_file()), None)


def test_metrics_show_the_last_check_per_model_and_feature(drift: Service) -> None:
    token = register(drift.url, "m1")
    call(drift.url, "POST", "/v1/ingest/m1", shifted(), token)
    status, text = call(drift.url, "GET", "/metrics")
    assert status == 200
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['ai4os_drift_checks_total{model="m1"}'] == 1
    assert samples['ai4os_drift_detected{model="m1"}'] == 1
    assert samples['ai4os_drift_feature_detected{model="m1",feature="temperature",detector="KSTest"}'] == 1
    assert samples['ai4os_drift_feature_detected{model="m1",feature="humidity",detector="KSTest"}'] == 0
    assert samples['ai4os_drift_feature_p_value{model="m1",feature="land_cover",detector="ChiSquareTest"}'] < 1e-6
    tool = promtool()
    if tool:  # Prometheus's own linter of the exposition format
        lint = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_batch_needs_the_models_token_and_a_new_reference_rotates_it(drift: Service) -> None:
    old = register(drift.url, "rotating")
    assert call(drift.url, "POST", "/v1/ingest/rotating", shifted())[0] == 401
    assert call(drift.url, "POST", "/v1/ingest/rotating", shifted(), "not-the-token")[0] == 401
    new = register(drift.url, "rotating")
    assert new != old
    assert call(drift.url, "POST", "/v1/ingest/rotating", shifted(), old)[0] == 401
    assert call(drift.url, "POST", "/v1/ingest/rotating", shifted(), new)[0] == 201
    stored = json.loads((Path(drift.log).parent / "data" / "rotating" / "reference.json").read_text())
    assert new not in json.dumps(stored)      # only its SHA-256 is kept


@pytest.mark.parametrize(("batch", "status", "message"), [
    ({"features": {"temperature": [1.0] * 30}}, 400, "lacks feature(s) humidity, land_cover"),
    ({"features": {"temperature": [1.0] * 5, "humidity": [1.0] * 30, "land_cover": ["crop"] * 30}}, 400,
     "at least 20 values"),
    ({"features": {"temperature": ["warm"] * 30, "humidity": [1.0] * 30, "land_cover": ["crop"] * 30}}, 400,
     "temperature is numerical in the reference, categorical here"),
    ({"features": {"temperature": [1, "a"] * 15, "humidity": [1.0] * 30, "land_cover": ["crop"] * 30}}, 400,
     "all numbers or all strings"),
    ({"rows": []}, 400, 'expected {"features"'),
])
def test_bad_batches_are_refused_with_the_reason(drift: Service, batch: dict[str, Any], status: int, message: str) -> None:
    token = register(drift.url, "strict")
    got, answer = call(drift.url, "POST", "/v1/ingest/strict", batch, token)
    assert got == status and message in answer["error"], answer


def test_unknown_models_and_names(drift: Service) -> None:
    assert call(drift.url, "POST", "/v1/ingest/nothing-here", shifted(), "x")[0] == 404
    status, answer = call(drift.url, "PUT", "/v1/models/Bad Name!/reference".replace(" ", "%20"), reference())
    assert status == 400 and "model name" in answer["error"]


def test_state_survives_a_restart(python: Path, tmp_path: Path) -> None:
    first = start(python, tmp_path / "data", tmp_path)
    token = register(first.url)
    call(first.url, "POST", "/v1/ingest/flood-forecast", shifted(), token)
    first.stop()
    second = start(python, tmp_path / "data", tmp_path)
    try:
        assert call(second.url, "POST", "/v1/ingest/flood-forecast", same_distribution(), token)[0] == 201
        status, text = call(second.url, "GET", "/metrics")
        assert 'ai4os_drift_checks_total{model="flood-forecast"} 2' in text
    finally:
        second.stop()


def outward_address() -> str | None:
    """A non-loopback IPv4 address of this machine (the route's source towards a public address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))   # TEST-NET-1: nothing is sent
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_admin_api_answers_only_through_the_trusted_proxy(python: Path, tmp_path: Path) -> None:
    address = outward_address()
    if not address:
        pytest.skip("no non-loopback IPv4 address on this machine")
    for trusted, expected in ((address, 200), ("192.0.2.7", 403)):
        service = start(python, tmp_path / f"data-{expected}", tmp_path, listen="0.0.0.0", DRIFT_TRUSTED_PROXIES=trusted)
        try:
            status, _ = call(f"http://{address}:{service.port}", "GET", "/v1/models",
                             headers={"X-Auth-Request-User": "operator@example.org"})
            assert status == expected
            # ingest and health do not depend on the proxy
            assert call(f"http://{address}:{service.port}", "GET", "/health")[0] == 200
        finally:
            service.stop()


# ----------------------------------------------------------------- the rendered job

def job_task(rendered: Rendered, task: str) -> dict[str, Any]:
    hcl = rendered.file("drift", "drift.nomad.hcl").read_text()
    _, job = hcl_blocks(hcl2.loads(hcl), "job")[0]
    _, group = hcl_blocks(job, "group")[0]
    return dict(hcl_blocks(group, "task"))[task]


def template_data(task: dict[str, Any], destination: str) -> str:
    """A template's data as Nomad writes it: the <<- heredoc de-indented, HCL's $${ and %%{ undone."""
    for _, template in hcl_blocks(task, "template"):
        if hcl_attr(template, "destination") == destination:
            text = textwrap.dedent(str(hcl_attr(template, "data")))
            return text.replace("$${", "${").replace("%%{", "%{")
    raise AssertionError(f"no template {destination}")


def test_the_job_runs_the_repositorys_service_with_its_pinned_packages(rendered: Rendered) -> None:
    """What Nomad writes into the tasks is the reviewed files of the role."""
    install, service = job_task(rendered, "install"), job_task(rendered, "drift")
    assert template_data(service, "local/ai4os_drift.py").strip() == (FILES / "ai4os_drift.py").read_text().strip()
    assert template_data(install, "local/requirements.txt").strip() == (FILES / "requirements.txt").read_text().strip()
    args = hcl_attr(hcl_blocks(install, "config")[0][1], "args")
    assert {"--require-hashes", "--only-binary=:all:"} <= set(args)
    assert args[args.index("-r") + 1] == "/local/requirements.txt"
    assert hcl_attr(hcl_blocks(service, "config")[0][1], "args") == ["/local/ai4os_drift.py"]
    env = {k: v[0] if isinstance(v, list) else v
           for k, v in hcl_blocks(service, "env")[0][1].items()}
    assert env["PYTHONPATH"] == "/alloc/data/site-packages" and env["DRIFT_DATA_DIR"] == "/data"


def test_admin_routes_sit_behind_forward_auth_and_ingest_does_not(rendered: Rendered) -> None:
    text = rendered.file("drift", "drift.nomad.hcl").read_text()
    tags = [line.strip().strip('",') for line in text.splitlines() if "traefik.http.routers.ai4os-drift" in line]
    admin = {t.split("=", 1)[0].rsplit(".", 1)[1]: t.split("=", 1)[1] for t in tags if ".ai4os-drift." in t}
    ingest = {t.split("=", 1)[0].rsplit(".", 1)[1]: t.split("=", 1)[1] for t in tags if ".ai4os-drift-ingest." in t}
    assert admin["middlewares"].startswith("ai4os-admin-auth")
    assert "middlewares" not in ingest and ingest["rule"].endswith("&& PathPrefix(`/v1/ingest/`)")
    assert ingest["rule"].startswith(admin["rule"]) and ingest["service"] == "ai4os-drift"
    # with MLflow on, every check goes to the platform's MLflow (found in the Consul catalog)
    assert 'MLFLOW_TRACKING_URI=http://{{ .Address }}:{{ .Port }}' in text and 'service "mlflow"' in text


def test_requirements_pin_every_file() -> None:
    """Every line pins one version and at least one hash (pip --require-hashes refuses less)."""
    text = (FILES / "requirements.txt").read_text()
    entries = [e for e in text.replace("\\\n", " ").splitlines() if e.strip() and not e.startswith("#")]
    assert any(e.startswith("frouros==0.9.0 ") for e in entries)
    for entry in entries:
        assert "==" in entry.split()[0] and "--hash=sha256:" in entry, entry


def test_prometheus_scrapes_it_and_grafana_shows_what_it_exports(rendered: Rendered, drift: Service) -> None:
    """The monitoring component's scrape job finds the service in the Consul catalog, and every metric
    the Grafana dashboard queries is one the running service really exports."""
    import re

    import yaml

    prometheus = yaml.safe_load(rendered.file("monitoring", "prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "drift")
    assert [(sd["services"], sd["datacenter"]) for sd in job["consul_sd_configs"]] == [(["drift"], "ifca")]
    assert "scheme" not in job and job.get("metrics_path", "/metrics") == "/metrics"

    token = register(drift.url, "dashboard-model")
    call(drift.url, "POST", "/v1/ingest/dashboard-model", shifted(), token)
    exported = set(re.findall(r"^# TYPE (\S+) ", call(drift.url, "GET", "/metrics")[1], re.M))
    dashboard = json.loads(rendered.file("monitoring", "ai4os-drift.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    used = {m for q in queries for m in re.findall(r"\b(ai4os_drift_\w+)", q)}
    assert used and used <= exported, used - exported
    hcl = rendered.file("monitoring", "monitoring.nomad.hcl").read_text()
    assert 'destination     = "local/dashboards/ai4os-drift.json"' in hcl and '"uid": "ai4os-drift"' in hcl


# ----------------------------------------------------------------- MLflow (a real tracking server)

@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server (PyPI mlflow, its own venv) on a SQLite store."""
    python = mlflow_python()
    tmp = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    server = Service([str(python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                      "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
                      "--default-artifact-root", f"file://{tmp}/artifacts"], {}, port, tmp / "mlflow.log", timeout=180)
    yield server.url
    server.stop()


def test_every_check_is_an_mlflow_run(python: Path, tmp_path: Path, mlflow_server: str) -> None:
    service = start(python, tmp_path / "data", tmp_path, MLFLOW_TRACKING_URI=mlflow_server)
    try:
        token = register(service.url, "crop-yield")
        reports = [call(service.url, "POST", "/v1/ingest/crop-yield", batch, token)[1]
                   for batch in (same_distribution(), shifted())]
    finally:
        service.stop()
    assert all("mlflow_error" not in r and r["mlflow_run_id"] for r in reports), reports
    status, experiment = call(mlflow_server, "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=drift/crop-yield")
    assert status == 200, experiment
    status, found = call(mlflow_server, "POST", "/api/2.0/mlflow/runs/search",
                         {"experiment_ids": [experiment["experiment"]["experiment_id"]]})
    runs = {r["info"]["run_id"]: r for r in found["runs"]}
    assert set(runs) == {r["mlflow_run_id"] for r in reports}
    for report in reports:
        run = runs[report["mlflow_run_id"]]
        assert run["info"]["status"] == "FINISHED"
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert metrics["drift_detected"] == float(report["drift"])
        assert metrics["temperature.p_value"] == pytest.approx(report["features"]["temperature"]["p_value"])
        assert params["land_cover.detector"] == "ChiSquareTest" and params["alpha"] == "0.01"
        assert tags["ai4os.drift.report"] == report["id"]
