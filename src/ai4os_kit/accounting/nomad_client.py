"""Read allocations and nodes from Nomad's HTTP API (python-nomad).

Every failure becomes a :class:`KitError` that says what to check; no
traceback reaches the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import msgspec
import nomad
import nomad.api.exceptions as nexc
import requests

from ai4os_kit.accounting.nomad_listing import JobParts, OwnerIndex, PageError, decode_allocations, decode_jobs
from ai4os_kit.errors import KitError

PAGE_SIZE = 500
_ANY_JSON = msgspec.json.Decoder()


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
                detail += (" (the token lacks read access: it needs namespace '*' list-jobs and read-job, as the "
                           "'read' policy grants, and node:read)")
        else:
            detail = str(cause)
        return KitError(f"Nomad at {self.settings.address}: {what} failed: {detail}; check nomad.address, "
                        "the token and TLS settings in the accounting config, and that Nomad is up")

    def _pages(self, endpoint: Any, what: str, params: dict[str, Any]) -> Iterator[tuple[bytes, int]]:
        """The raw body of each page of a paged listing, with Nomad's index (X-Nomad-Index) at that page."""
        token: str | None = None
        while True:
            query = dict(params, per_page=PAGE_SIZE)
            if token:
                query["next_token"] = token
            try:
                resp = endpoint.request(method="get", params=query)
                body = resp.content
            except (nexc.BaseNomadException, requests.RequestException, OSError, ValueError) as exc:
                raise self._fail(f"listing {what}", exc) from None
            yield body, int(resp.headers.get("X-Nomad-Index", "0") or 0)
            token = resp.headers.get("X-Nomad-NextToken")
            if not token:
                return

    def _bad_page(self, path: str, problem: str) -> KitError:
        return KitError(f"Nomad at {self.settings.address}: {path} returned {problem}; check nomad.address "
                        "in the accounting config points at Nomad's HTTP API")

    def allocation_bodies(self) -> Iterator[tuple[bytes, int]]:
        """The raw pages of the allocation listing (every namespace, resources and task states) with Nomad's index."""
        return self._pages(self.api.allocations, "allocations",
                           {"namespace": "*", "resources": "true", "task_states": "true"})

    def decode_allocation_page(self, body: bytes) -> list[Any]:
        """The stubs of one page of :meth:`allocation_bodies` (see nomad_listing); a page that is not a list is named."""
        try:
            return decode_allocations(body)
        except PageError as exc:
            raise self._bad_page("/v1/allocations", str(exc)) from None

    def job_bodies(self) -> Iterator[tuple[bytes, int]]:
        """The raw pages of the job listing (every namespace, with the jobs' meta) with Nomad's index."""
        return self._pages(self.api.jobs, "jobs", {"namespace": "*", "meta": "true"})

    def job_owners(self, owner_key: str, pages: Iterable[JobParts | bytes] | None = None) -> OwnerIndex:
        """The owner (job meta ``owner_key``) of every job of every namespace.

        ``pages``: the job listing as ``PageDecoder.job_pages`` hands it over
        (pages taken apart in its second process, or bytes to decode here);
        default: :meth:`job_bodies`, all decoded here.
        """
        owners = OwnerIndex()
        for page in pages if pages is not None else (body for body, _ in self.job_bodies()):
            if isinstance(page, JobParts):
                owners.add_parts(page)
                continue
            try:
                owners.add_page(decode_jobs(page, owner_key))
            except PageError as exc:
                raise self._bad_page("/v1/jobs", str(exc)) from None
        return owners.finish()

    def list_allocations(self) -> tuple[list[dict[str, Any]], int]:
        """All allocation stubs of every namespace (without task states) and Nomad's index at the first page."""
        stubs: list[dict[str, Any]] = []
        index = 0
        for body, page_index in self._pages(self.api.allocations, "allocations",
                                            {"namespace": "*", "task_states": "false"}):
            try:
                page = _ANY_JSON.decode(body)
            except msgspec.DecodeError as exc:
                raise self._bad_page("/v1/allocations", f"not JSON: {exc}") from None
            if not isinstance(page, list):
                raise self._bad_page("/v1/allocations", f"a {type(page).__name__}, expected a list")
            index = index or page_index
            stubs.extend(page)
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
