"""ai4os-drift: drift detection and model monitoring for models deployed on an AI4OS platform.

Shipped with the kit's drift role and run by its Nomad job (Python from the job's image, the
pinned packages of requirements.txt installed by the job's prestart task). An operator
registers a deployed model with its reference data; the model's deployment then sends batches
of the data it serves; every batch is compared with the reference, feature by feature, with
the `frouros` detectors (Kolmogorov-Smirnov test for numerical features, chi-square test for
categorical ones). Each check is kept as a JSON report, exported as Prometheus metrics (Grafana
shows them) and, when MLFLOW_TRACKING_URI is set, logged as an MLflow run.

HTTP API (JSON):
  GET    /health                           liveness
  GET    /metrics                          Prometheus text format
  GET    /v1/models                        registered models and their last check       (admin)
  PUT    /v1/models/<model>/reference      register or replace the reference data;      (admin)
                                           answers the model's ingest token (shown once)
  DELETE /v1/models/<model>                forget a model and its reports               (admin)
  GET    /v1/models/<model>/reports        the latest reports (?limit=N)                 (admin)
  GET    /v1/models/<model>/reports/<id>   one report                                    (admin)
  POST   /v1/ingest/<model>                check a batch (Authorization: Bearer <ingest token>)
Data: {"features": {"<name>": [values, ...], ...}}; numbers make a numerical feature, strings
a categorical one.

"admin" requests are accepted only from DRIFT_TRUSTED_PROXIES (the site's Traefik, which puts
the platform's OIDC forward-auth in front and sets X-Auth-Request-User) or from loopback.

Environment: DRIFT_PORT (8080), DRIFT_LISTEN (0.0.0.0), DRIFT_DATA_DIR (/data),
DRIFT_ALPHA (0.01, p-value below which a feature drifts), DRIFT_MIN_SAMPLES (20),
DRIFT_REPORTS_KEPT (200 per model), DRIFT_MAX_BODY (16 MiB), DRIFT_TRUSTED_PROXIES (comma list),
MLFLOW_TRACKING_URI (optional), DRIFT_MLFLOW_EXPERIMENT_PREFIX ("drift/").
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from frouros.detectors.data_drift import ChiSquareTest, KSTest

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FEATURE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
DETECTORS = {"numerical": ("KSTest", KSTest), "categorical": ("ChiSquareTest", ChiSquareTest)}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


# ----------------------------------------------------------------- data and detectors

def parse_features(body: Any, min_samples: int) -> dict[str, dict[str, Any]]:
    """{"features": {name: [values]}} -> {name: {"type", "values"}}; ApiError 400 on bad data."""
    if not isinstance(body, dict) or not isinstance(body.get("features"), dict) or not body["features"]:
        raise ApiError(400, 'expected {"features": {"<name>": [values, ...], ...}}')
    out: dict[str, dict[str, Any]] = {}
    for name, values in body["features"].items():
        if not FEATURE_NAME.match(str(name)):
            raise ApiError(400, f"feature name {name!r}: use 1-64 characters of A-Z a-z 0-9 _ . : -")
        if not isinstance(values, list) or len(values) < min_samples:
            raise ApiError(400, f"feature {name}: expected a list of at least {min_samples} values")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            array = np.asarray(values, dtype=float)
            if not np.all(np.isfinite(array)):
                raise ApiError(400, f"feature {name}: values must be finite numbers")
            out[name] = {"type": "numerical", "values": array}
        elif all(isinstance(v, str) for v in values):
            out[name] = {"type": "categorical", "values": np.asarray(values, dtype=object)}
        else:
            raise ApiError(400, f"feature {name}: values must be all numbers or all strings")
    return out


def compare(reference: dict[str, dict[str, Any]], batch: dict[str, dict[str, Any]],
            alpha: float) -> dict[str, dict[str, Any]]:
    """Per feature of the reference: detector, statistic, p-value and whether it drifted."""
    missing = sorted(set(reference) - set(batch))
    if missing:
        raise ApiError(400, f"the batch lacks feature(s) {', '.join(missing)} of the reference")
    results: dict[str, dict[str, Any]] = {}
    for name, ref in reference.items():
        if batch[name]["type"] != ref["type"]:
            raise ApiError(400, f"feature {name} is {ref['type']} in the reference, {batch[name]['type']} here")
        label, detector_class = DETECTORS[ref["type"]]
        detector = detector_class()
        detector.fit(X=ref["values"])
        try:
            result, _ = detector.compare(X=batch[name]["values"])
        except (ValueError, ArithmeticError) as exc:
            raise ApiError(400, f"feature {name}: {label} cannot compare this batch: {exc}") from None
        p_value = float(result.p_value)
        if not (math.isfinite(p_value) and math.isfinite(float(result.statistic))):
            raise ApiError(400, f"feature {name}: {label} gives no finite result for this batch (degenerate data)")
        results[name] = {"detector": label, "statistic": float(result.statistic), "p_value": p_value,
                         "drift": bool(p_value < alpha), "type": ref["type"], "sample_size": len(batch[name]["values"])}
    return results


# ----------------------------------------------------------------- storage

class Store:
    """One directory per model: reference.json, state.json, reports/<time>-<id>.json."""

    def __init__(self, root: Path, kept: int) -> None:
        self.root = root
        self.kept = kept
        self.lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, model: str) -> Path:
        if not MODEL_NAME.match(model):
            raise ApiError(400, f"model name {model!r}: use 1-64 characters of a-z 0-9 . _ - (start alphanumeric)")
        return self.root / model

    @staticmethod
    def _write(path: Path, data: Any) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)

    def models(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "reference.json").is_file())

    def reference(self, model: str) -> dict[str, Any]:
        path = self._dir(model) / "reference.json"
        if not path.is_file():
            raise ApiError(404, f"model {model} has no reference data: PUT /v1/models/{model}/reference first")
        return json.loads(path.read_text())

    def state(self, model: str) -> dict[str, Any]:
        path = self._dir(model) / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {"checks": 0, "last": None}

    def set_reference(self, model: str, features: dict[str, dict[str, Any]], who: str) -> str:
        token = secrets.token_urlsafe(32)
        doc = {"model": model, "registered": time.time(), "registered_by": who,
               "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
               "features": {n: {"type": f["type"], "values": f["values"].tolist()} for n, f in features.items()}}
        with self.lock:
            directory = self._dir(model)
            (directory / "reports").mkdir(parents=True, exist_ok=True)
            self._write(directory / "reference.json", doc)
        return token

    def delete(self, model: str) -> None:
        with self.lock:
            directory = self._dir(model)
            if not directory.is_dir():
                raise ApiError(404, f"no model {model}")
            shutil.rmtree(directory)

    def token_matches(self, model: str, token: str) -> bool:
        expected = self.reference(model)["token_sha256"]
        return hmac.compare_digest(expected, hashlib.sha256(token.encode()).hexdigest())

    def add_report(self, model: str, report: dict[str, Any]) -> None:
        with self.lock:
            directory = self._dir(model)
            self._write(directory / "reports" / f"{report['time']:017.6f}-{report['id']}.json", report)
            state = self.state(model)
            self._write(directory / "state.json", {"checks": state["checks"] + 1, "last": report})
            for old in sorted((directory / "reports").glob("*.json"))[:-self.kept]:
                old.unlink()

    def reports(self, model: str, limit: int) -> list[dict[str, Any]]:
        self.reference(model)
        files = sorted((self._dir(model) / "reports").glob("*.json"), reverse=True)[:limit]
        return [json.loads(f.read_text()) for f in files]

    def report(self, model: str, report_id: str) -> dict[str, Any]:
        found = list((self._dir(model) / "reports").glob(f"*-{report_id}.json")) if re.fullmatch(r"[0-9a-f-]{36}", report_id) else []
        if not found:
            raise ApiError(404, f"model {model} has no report {report_id}")
        return json.loads(found[0].read_text())


def as_arrays(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: {"type": f["type"], "values": np.asarray(f["values"], dtype=float if f["type"] == "numerical" else object)}
            for n, f in doc["features"].items()}


# ----------------------------------------------------------------- MLflow and metrics

def mlflow_log(uri: str, prefix: str, report: dict[str, Any]) -> str:
    """Log one check as an MLflow run through MLflow's REST API; returns the run id."""
    def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/" + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"{}")

    name = prefix + report["model"]
    lookup = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/get-by-name?"
                                    + urllib.parse.urlencode({"experiment_name": name}))
    try:
        with urllib.request.urlopen(lookup, timeout=30) as answer:
            experiment = json.loads(answer.read())["experiment"]["experiment_id"]
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        experiment = call("experiments/create", {"name": name})["experiment_id"]
    millis = int(report["time"] * 1000)
    run = call("runs/create", {"experiment_id": experiment, "start_time": millis, "run_name": f"check-{report['id']}",
                               "tags": [{"key": "ai4os.drift.report", "value": report["id"]},
                                        {"key": "ai4os.drift.detected", "value": str(report["drift"]).lower()}]})
    run_id = run["run"]["info"]["run_id"]
    metrics = [{"key": "drift_detected", "value": float(report["drift"]), "timestamp": millis, "step": 0}]
    params = [{"key": "alpha", "value": str(report["alpha"])}]
    for feature, r in report["features"].items():
        metrics += [{"key": f"{feature}.p_value", "value": r["p_value"], "timestamp": millis, "step": 0},
                    {"key": f"{feature}.statistic", "value": r["statistic"], "timestamp": millis, "step": 0}]
        params.append({"key": f"{feature}.detector", "value": r["detector"]})
    call("runs/log-batch", {"run_id": run_id, "metrics": metrics, "params": params})
    call("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
    return run_id


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(store: Store) -> str:
    families = {
        "ai4os_drift_checks_total": ("counter", "Drift checks run for the model."),
        "ai4os_drift_detected": ("gauge", "1 when the model's last check found drift in a feature, else 0."),
        "ai4os_drift_last_check_timestamp_seconds": ("gauge", "Time of the model's last check."),
        "ai4os_drift_feature_p_value": ("gauge", "p-value of the feature's detector at the last check."),
        "ai4os_drift_feature_statistic": ("gauge", "Statistic of the feature's detector at the last check."),
        "ai4os_drift_feature_detected": ("gauge", "1 when the feature drifted at the last check, else 0."),
    }
    samples: dict[str, list[str]] = {name: [] for name in families}
    for model in store.models():
        state = store.state(model)
        m = f'model="{_label(model)}"'
        samples["ai4os_drift_checks_total"].append(f"ai4os_drift_checks_total{{{m}}} {state['checks']}")
        last = state["last"]
        if not last:
            continue
        samples["ai4os_drift_detected"].append(f"ai4os_drift_detected{{{m}}} {int(last['drift'])}")
        samples["ai4os_drift_last_check_timestamp_seconds"].append(
            f"ai4os_drift_last_check_timestamp_seconds{{{m}}} {last['time']:.3f}")
        for feature, r in sorted(last["features"].items()):
            labels = f'{m},feature="{_label(feature)}",detector="{r["detector"]}"'
            for name, value in (("p_value", repr(r["p_value"])), ("statistic", repr(r["statistic"])),
                                ("detected", str(int(r["drift"])))):
                samples[f"ai4os_drift_feature_{name}"].append(f"ai4os_drift_feature_{name}{{{labels}}} {value}")
    lines: list[str] = []
    for name, (kind, text) in families.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"] + samples[name]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- HTTP

class Service:
    def __init__(self) -> None:
        self.store = Store(Path(env("DRIFT_DATA_DIR", "/data")), int(env("DRIFT_REPORTS_KEPT", "200")))
        self.alpha = float(env("DRIFT_ALPHA", "0.01"))
        if not 0 < self.alpha < 1:
            raise SystemExit(f"DRIFT_ALPHA={self.alpha}: expected a number between 0 and 1")
        self.min_samples = int(env("DRIFT_MIN_SAMPLES", "20"))
        self.max_body = int(env("DRIFT_MAX_BODY", str(16 * 2**20)))
        self.proxies = {ipaddress.ip_address(a.strip()) for a in env("DRIFT_TRUSTED_PROXIES", "").split(",") if a.strip()}
        self.mlflow = os.environ.get("MLFLOW_TRACKING_URI", "")
        self.mlflow_prefix = env("DRIFT_MLFLOW_EXPERIMENT_PREFIX", "drift/")

    def admin(self, peer: str, headers: Any) -> str:
        address = ipaddress.ip_address(peer)
        if not (address.is_loopback or address in self.proxies):
            raise ApiError(403, "admin requests come through the platform's Traefik (OIDC forward-auth) only")
        return headers.get("X-Auth-Request-User") or headers.get("X-Auth-Request-Email") or ("local" if address.is_loopback else "")

    def check(self, model: str, body: Any, token: str) -> dict[str, Any]:
        if not token or not self.store.token_matches(model, token):
            raise ApiError(401, f"a batch of model {model} needs its ingest token: Authorization: Bearer <token>")
        reference = self.store.reference(model)
        features = compare(as_arrays(reference), parse_features(body, self.min_samples), self.alpha)
        report = {"id": str(uuid.uuid4()), "model": model, "time": time.time(), "alpha": self.alpha,
                  "drift": any(f["drift"] for f in features.values()), "features": features,
                  "reference_size": {n: len(f["values"]) for n, f in reference["features"].items()}}
        if self.mlflow:
            try:
                report["mlflow_run_id"] = mlflow_log(self.mlflow, self.mlflow_prefix, report)
            except (OSError, ValueError, KeyError) as exc:  # the check stands even when MLflow is away
                report["mlflow_error"] = f"{type(exc).__name__}: {exc}"
        self.store.add_report(model, report)
        return report

    def route(self, method: str, path: str, query: dict[str, list[str]], headers: Any, peer: str,
              body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if method == "GET" and parts == ["health"]:
            return 200, {"status": "ok"}
        if method == "GET" and parts == ["metrics"]:
            return 200, metrics_text(self.store)
        if method == "POST" and len(parts) == 3 and parts[:2] == ["v1", "ingest"]:
            auth = headers.get("Authorization") or ""
            return 201, self.check(parts[2], body, auth[7:] if auth.startswith("Bearer ") else "")
        if parts[:2] != ["v1", "models"]:
            raise ApiError(404, f"no route {method} {path}")
        who = self.admin(peer, headers)
        if method == "GET" and len(parts) == 2:
            return 200, [{"model": m, "checks": self.store.state(m)["checks"],
                          "features": {n: f["type"] for n, f in self.store.reference(m)["features"].items()},
                          "last_check": self.store.state(m)["last"]} for m in self.store.models()]
        model = parts[2] if len(parts) > 2 else ""
        if method == "PUT" and parts[3:] == ["reference"]:
            features = parse_features(body, self.min_samples)
            token = self.store.set_reference(model, features, who)
            return 201, {"model": model, "features": {n: {"type": f["type"], "size": len(f["values"])} for n, f in features.items()},
                         "ingest_token": token, "ingest_url": f"/v1/ingest/{model}"}
        if method == "DELETE" and len(parts) == 3:
            self.store.delete(model)
            return 200, {"deleted": model}
        if method == "GET" and parts[3:] == ["reports"]:
            limit = max(1, min(1000, int((query.get("limit") or ["20"])[0])))
            return 200, self.store.reports(model, limit)
        if method == "GET" and len(parts) == 5 and parts[3] == "reports":
            return 200, self.store.report(model, parts[4])
        raise ApiError(404, f"no route {method} {path}")


def handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ai4os-drift"

        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > service.max_body:
                    raise ApiError(413, f"request body over {service.max_body} bytes")
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError as exc:
                    raise ApiError(400, f"the body is not JSON: {exc}") from None
                status, payload = service.route(method, url.path, parse_qs(url.query), self.headers,
                                                self.client_address[0], body)
            except ApiError as exc:
                status, payload = exc.status, {"error": str(exc)}
            except ValueError as exc:
                status, payload = 400, {"error": str(exc)}
            if isinstance(payload, str):
                data, kind = payload.encode(), "text/plain; version=0.0.4; charset=utf-8"
            else:
                data, kind = json.dumps(payload).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            self._serve("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"{self.client_address[0]} {fmt % args}\n")

    return Handler


def main() -> None:
    service = Service()
    server = ThreadingHTTPServer((env("DRIFT_LISTEN", "0.0.0.0"), int(env("DRIFT_PORT", "8080"))), handler(service))
    print(f"ai4os-drift listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
