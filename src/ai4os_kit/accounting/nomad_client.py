"""Read allocations and nodes from Nomad's HTTP API (python-nomad).

Every failure becomes a :class:`KitError` that says what to check; no
traceback reaches the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nomad
import nomad.api.exceptions as nexc
import requests

from ai4os_kit.errors import KitError

PAGE_SIZE = 500


@dataclass(frozen=True)
class NomadSettings:
    address: str
    token_file: Path | None = None
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    region: str | None = None
    timeout: int = 30


class NomadSource:
    """The calls the collector makes, with errors an operator can act on."""

    def __init__(self, settings: NomadSettings) -> None:
        self.settings = settings
        token = None
        if settings.token_file is not None:
            try:
                token = settings.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise KitError(f"cannot read the Nomad token file {settings.token_file}: {exc.strerror}; "
                               "fix nomad.token_file in the accounting config") from None
        cert: tuple[str, str] | tuple[()] = ()
        if settings.client_cert and settings.client_key:
            cert = (str(settings.client_cert), str(settings.client_key))
        self.api = nomad.Nomad(address=settings.address.rstrip("/"), token=token, region=settings.region,
                               timeout=settings.timeout, verify=str(settings.ca_cert) if settings.ca_cert else True,
                               cert=cert)

    def _fail(self, what: str, exc: Exception) -> KitError:
        cause = getattr(exc, "nomad_resp", exc)
        if isinstance(cause, requests.Response):
            detail = f"HTTP {cause.status_code}: {cause.text.strip()[:200]}"
            if cause.status_code == 403:
                detail += " (the token lacks read access: it needs namespace '*' read-job and node:read)"
        else:
            detail = str(cause)
        return KitError(f"Nomad at {self.settings.address}: {what} failed: {detail}; check nomad.address, "
                        "the token and TLS settings in the accounting config, and that Nomad is up")

    def list_allocations(self) -> tuple[list[dict[str, Any]], int]:
        """All allocation stubs of every namespace (paged) and Nomad's index at the first page."""
        stubs: list[dict[str, Any]] = []
        token: str | None = None
        index = 0
        while True:
            params: dict[str, Any] = {"namespace": "*", "task_states": "false", "per_page": PAGE_SIZE}
            if token:
                params["next_token"] = token
            try:
                resp = self.api.allocations.request(method="get", params=params)
                page = resp.json()
            except (nexc.BaseNomadException, requests.RequestException, OSError, ValueError) as exc:
                raise self._fail("listing allocations", exc) from None
            if not isinstance(page, list):
                raise KitError(f"Nomad at {self.settings.address}: /v1/allocations returned "
                               f"{type(page).__name__}, expected a list")
            if not index:
                index = int(resp.headers.get("X-Nomad-Index", "0") or 0)
            stubs.extend(page)
            token = resp.headers.get("X-Nomad-NextToken")
            if not token:
                return stubs, index

    def _get(self, endpoint: Any, what: str, ident: str, params: dict[str, str] | None = None) -> dict[str, Any] | None:
        try:
            doc = endpoint.request(ident, method="get", params=params).json()
        except nexc.URLNotFoundNomadException:
            return None
        except (nexc.BaseNomadException, requests.RequestException, OSError, ValueError) as exc:
            raise self._fail(f"reading {what} {ident}", exc) from None
        if not isinstance(doc, dict):
            raise KitError(f"Nomad at {self.settings.address}: {what} {ident} is not a JSON object")
        return doc

    def allocation(self, alloc_id: str, namespace: str) -> dict[str, Any] | None:
        """The full allocation, or None when Nomad no longer has it (garbage-collected)."""
        return self._get(self.api.allocation, "allocation", alloc_id, {"namespace": namespace})

    def node(self, node_id: str) -> dict[str, Any] | None:
        return self._get(self.api.node, "node", node_id)
