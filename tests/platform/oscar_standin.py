"""STAND-IN for an OSCAR cluster's API (OSCAR needs Kubernetes: none runs on the test machines).

It serves over real HTTPS on 127.0.0.1 only the routes the oscar-python client calls for PAPI
and for the kit's preflight, with the authentication and the JSON shapes recorded from OSCAR's
source in tests/data/oscar/api.yml: /health without authentication; /system/info,
/system/config and /system/services only with "Authorization: Bearer <the token it accepts>"
(401 otherwise, as OSCAR's OIDC middleware answers).
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from service_pki import Issued, reply, serve_https


class OscarStandIn:
    def __init__(self, server_cert: Issued, token: str, oidc_groups: list[str], minio: str) -> None:
        self.token = token
        self.info = {"version": "v3.6.5", "git_commit": "0000000", "architecture": "amd64",
                     "kubernetes_version": "v1.31.4", "serverless_backend": {"name": "Knative", "version": "1.16.0"}}
        self.config = {"config": {"name": "oscar", "namespace": "oscar", "services_namespace": "oscar-svc",
                                  "gpu_available": False, "interLink_available": False, "yunikorn_enable": False,
                                  "kueue_enable": False, "volume_enable": False, "oidc_groups": oidc_groups,
                                  "minio_quota_enabled": False},
                       "minio_provider": {"endpoint": minio, "verify": True, "access_key": "user-ak",
                                          "secret_key": "user-sk", "region": "us-east-1"},
                       "allowed_image_repositories": []}
        self.requests: list[tuple[str, str]] = []
        self.server = serve_https(self._handler(), server_cert)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(self, path: str, auth: str) -> tuple[int, Any]:
        if path == "/health":
            return 200, "Ok"
        if not path.startswith("/system/"):
            return 404, "404 page not found"
        if not auth.startswith("Bearer "):
            return 401, ""
        if auth != f"Bearer {self.token}":
            return 401, ""
        return {"/system/info": (200, self.info), "/system/config": (200, self.config),
                "/system/services": (200, [])}.get(path, (404, "404 page not found"))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                standin.requests.append(("GET", self.path))
                reply(self, *standin.respond(self.path, self.headers.get("Authorization") or ""))

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def recorded() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "data" / "oscar" / "api.yml").read_text())
