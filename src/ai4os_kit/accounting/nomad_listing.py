"""Nomad's allocation and job listings, decoded page by page with msgspec.

The collector reads allocations in bulk: ``GET /v1/allocations`` with
``resources=true`` (``AllocatedResources``) and the task states (the
default), one page at a time, and the owners from ``GET /v1/jobs`` with
``meta=true``. A page is decoded straight into the typed structs below:
msgspec validates types in C and skips every field accounting does not read
(task events are most of a page), so only a page is ever held in memory.

Chosen by measurement (docs/accounting.md, "Reading Nomad's JSON"): on pages
of Nomad allocation stubs msgspec's typed decoder was 5-7x faster than
``json``/``orjson`` building dicts, and ijson (yajl2_c), the streaming
parser, 20x slower than msgspec; a page is already a bounded unit of
streaming.

:func:`usage_from_stub` computes the same :class:`Usage` as
:func:`~ai4os_kit.accounting.nomad_parse.parse_allocation` does from the
document; it returns None for anything the reference handles differently
(a non-canonical id, an unknown status, an unusual time format), and the
caller then runs the reference, which also names a malformed field.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from array import array
from typing import Annotated, Any, Iterable, NamedTuple

import msgspec
import numpy as np

from ai4os_kit.accounting.model import CLIENT_STATUSES, Usage
from ai4os_kit.accounting.nomad_parse import NodeInfo, _gpu_name

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class _Cpu(msgspec.Struct, gc=False):
    CpuShares: NonNegative = 0
    ReservedCores: list[Any] | None = None


class _Memory(msgspec.Struct, gc=False):
    MemoryMB: NonNegative = 0


class _Device(msgspec.Struct, gc=False):
    Vendor: str = ""
    Type: str | None = None
    Name: str = ""
    DeviceIDs: list[str] | None = None


class _TaskResources(msgspec.Struct, gc=False):
    Cpu: _Cpu | None = None
    Memory: _Memory | None = None
    Devices: list[_Device] | None = None


class _Shared(msgspec.Struct, gc=False):
    DiskMB: NonNegative = 0


class _Allocated(msgspec.Struct, gc=False):
    Tasks: dict[str, _TaskResources] | None = None
    Shared: _Shared | None = None


class _TaskState(msgspec.Struct, gc=False):
    StartedAt: str | None = None
    FinishedAt: str | None = None


class AllocStub(msgspec.Struct, gc=False):
    """The fields of an allocation list stub that accounting reads (``resources=true``, task states)."""

    ID: str
    CreateTime: NonNegative
    ModifyIndex: NonNegative
    Namespace: str | None = None
    JobID: str = ""
    Name: str = ""
    NodeID: str = ""
    ClientStatus: str | None = None
    ModifyTime: NonNegative = 0
    AllocatedResources: _Allocated | None = None
    TaskStates: dict[str, _TaskState] | None = None


class JobStub(msgspec.Struct, gc=False):
    """The fields of a job list stub (``meta=true``) that accounting reads."""

    ID: str
    Namespace: str | None = None
    Meta: dict[str, Any] | None = None


@functools.lru_cache(maxsize=4)
def _job_page_decoder(owner_key: str) -> msgspec.json.Decoder:
    """A decoder of job pages that reads only the owner of each job's meta (a struct of one renamed field)."""
    meta = msgspec.defstruct("Meta", [("value", Any, None)], rename={"value": owner_key}, gc=False)
    job = msgspec.defstruct("Job", [("ID", str), ("Namespace", str | None, None), ("Meta", meta | None, None)],
                            gc=False)
    return msgspec.json.Decoder(list[job])  # type: ignore[valid-type]


_ALLOC_PAGE = msgspec.json.Decoder(list[AllocStub])
_ANY = msgspec.json.Decoder()
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_from_iso = dt.datetime.fromisoformat


class PageError(ValueError):
    """A listing page that is not a JSON array."""


def _decode(page: bytes, typed: msgspec.json.Decoder) -> list[Any]:
    """A page as typed structs or, when a value has an unexpected type, as plain JSON values."""
    try:
        return typed.decode(page)  # type: ignore[no-any-return]
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        raise PageError(f"not JSON: {exc}") from None
    docs = _ANY.decode(page)
    if not isinstance(docs, list):
        raise PageError(f"a {type(docs).__name__}, expected a list")
    return docs


def decode_allocations(page: bytes) -> list[AllocStub] | list[Any]:
    """The stubs of one page: typed structs, or (a page with a value of an unexpected type) plain JSON values."""
    return _decode(page, _ALLOC_PAGE)


def as_stub(doc: Any) -> AllocStub | None:
    """A plain JSON allocation as a typed stub, or None if a field has an unexpected type."""
    try:
        return msgspec.convert(doc, AllocStub)
    except msgspec.ValidationError:
        return None


class _NotFast(Exception):
    """Leave this allocation to the reference parser."""


def _seconds(key: str) -> int:
    """Unix seconds of 'YYYY-MM-DDTHH:MM:SS' (UTC), already checked by fromisoformat."""
    t = _from_iso(key)
    return (t.toordinal() - _EPOCH_ORDINAL) * 86400 + t.hour * 3600 + t.minute * 60 + t.second


_new_usage = tuple.__new__  # a Usage from a tuple without the named tuple's Python-level __new__


def usage_from_stub(stub: AllocStub, node: NodeInfo | None, owner: str | None) -> Usage | None:
    """The allocation's usage, equal to the reference parser's; None where the reference must decide."""
    try:
        return _usage(stub, node, owner)
    except _NotFast:
        return None


def _usage(stub: AllocStub, node: NodeInfo | None, owner: str | None) -> Usage:
    alloc_id = stub.ID
    final = CLIENT_STATUSES.get(stub.ClientStatus)  # type: ignore[arg-type]
    if final is None or not _CANONICAL_UUID.fullmatch(alloc_id):
        raise _NotFast
    # Task times: each one is checked (a time the reference would refuse leaves the allocation to it), and only
    # the earliest start and the latest finish are converted: in Nomad's form (UTC, 'Z', fixed width) the
    # first 19 characters order as the times do.
    first = last = None
    if stub.TaskStates:
        for state in stub.TaskStates.values():
            for value, is_start in ((state.StartedAt, True), (state.FinishedAt, False)):
                if not value or value[:10] == "0001-01-01":
                    continue
                if len(value) < 20 or value[-1] != "Z" or value[19] not in ".Z" or value[10] != "T":
                    raise _NotFast
                key = value[:19]
                try:
                    _from_iso(key)
                except ValueError:
                    raise _NotFast from None
                if is_start:
                    if first is None or key < first:
                        first = key
                elif last is None or key > last:
                    last = key
    start = _seconds(first) if first is not None else None
    end = None
    if final and start is not None:
        end = _seconds(last) if last is not None else max(stub.ModifyTime // 1_000_000_000, start)
        if end < start:
            end = start
    allocated = stub.AllocatedResources
    if allocated is None and start is not None:
        raise _NotFast  # the reference names the missing field
    millicores = mhz = memory = disk = 0
    gpus: list[tuple[str, int]] | None = None
    if allocated is not None:
        if allocated.Tasks:
            per_core = node.mhz_per_core if node is not None else None
            for res in allocated.Tasks.values():
                cpu = res.Cpu
                if cpu is not None:
                    shares = cpu.CpuShares
                    if cpu.ReservedCores:
                        millicores += 1000 * len(cpu.ReservedCores)
                    elif shares and per_core:
                        millicores += int(round(1000 * shares / per_core))
                    mhz += shares
                if res.Memory is not None:
                    memory += res.Memory.MemoryMB
                if res.Devices:
                    gpus = _gpus(res.Devices, node, gpus)
        if allocated.Shared is not None:
            disk = allocated.Shared.DiskMB
    gpu_count = 0
    gpu_model = None
    if gpus:
        gpu_count = sum(count for _, count in gpus)
        if gpu_count:
            models = sorted({model for model, count in gpus if model and count})
            gpu_model = " + ".join(models) if models else None
        # (no GPU counted: the reference falls back to the job's device requests, which a stub lacks: none)
    return _new_usage(Usage, (alloc_id, stub.Namespace or "default", stub.JobID, stub.Name, owner, stub.NodeID,
                              node.datacenter if node is not None else None, millicores, mhz, memory, disk,
                              gpu_count, gpu_model, stub.CreateTime // 1_000_000_000, start, end, stub.ClientStatus,
                              stub.ModifyIndex))


def _gpus(devices: list[_Device], node: NodeInfo | None,
          out: list[tuple[str, int]] | None) -> list[tuple[str, int]]:
    out = out if out is not None else []
    for dev in devices:
        if dev.Type != "gpu":
            continue
        ids = dev.DeviceIDs or []
        vendor, name = dev.Vendor, dev.Name
        if node is not None:
            for g_vendor, g_type, g_name, g_ids in node.devices:
                if g_type == "gpu" and set(ids) <= set(g_ids):
                    vendor, name = g_vendor, g_name
                    break
        out.append((_gpu_name(vendor, name), len(ids)))
    return out


MISSING = object()  # OwnerIndex.lookup: the job was not in the listing


class OwnerIndex:
    """Owner of each job of the jobs listing, compact enough for millions of jobs.

    Keys are 64-bit hashes of (namespace, job id) in a sorted numpy array with
    an owner code beside each (12 bytes a job, where a dict would take about
    130): Two jobs of the listing with the same hash are both left out, so their allocations
    are read in full; an allocation of a job created after the listing could
    only take another job's owner if its hash matched one of the N listed (a
    chance of N / 2**64).

    A look-up goes through buckets: the top bits of a hash name its bucket
    (about 4 keys each, a table of 4 bytes a bucket) and a binary search
    runs inside the bucket, for a whole page of keys at once. A binary search
    over millions of keys touched a new cache line at almost every step
    (13.7 s of a 10-million-allocation run went to ``searchsorted``); inside a
    bucket it stays within a cache line or two.
    """

    KEYS_PER_BUCKET = 4

    NONE = -1  # the job has no owner in its meta

    def __init__(self) -> None:
        self._hashes = array("q")
        self._codes = array("i")
        self._owners: list[str] = []
        self._code_of: dict[str, int] = {}
        self._keys: np.ndarray | None = None
        self._values: np.ndarray | None = None
        self._starts = np.zeros(2, np.int64)  # where each bucket starts in _keys (and the end)
        self._shift = 63  # hash >> shift (+ _bias): its bucket
        self._bias = 1
        self._steps = 0  # binary-search steps that cover the largest bucket

    def add_page(self, jobs: Iterable[Any], owner_key: str | None = None) -> None:
        """Add job stubs: :class:`JobStub` (``owner_key`` names the meta key) or those of :func:`decode_jobs`."""
        hashes, codes, code = self._hashes, self._codes, self._code
        for job in jobs:
            if owner_key is None:
                value = job.Meta.value if job.Meta is not None else None
            else:
                value = (job.Meta or {}).get(owner_key)
            hashes.append(hash((job.Namespace or "default", job.ID)))
            codes.append(code(_owner(value)))

    def add_parts(self, parts: "JobParts") -> None:
        """Add a job page as :func:`job_page_parts` took it apart (in the decoding process): what add_page adds."""
        if not parts.keys and not parts.owners:
            return
        fields = iter(parts.keys.split("\0"))
        self._hashes.extend(map(hash, zip(fields, fields)))
        codes = np.array([self._code(owner) for owner in parts.owners], np.int32)
        self._codes.frombytes(codes[np.frombuffer(parts.codes, np.int32)].tobytes())

    def _code(self, owner: str | None) -> int:
        """The code of an owner (NONE for None), a new one for an owner not seen before."""
        if owner is None:
            return self.NONE
        code = self._code_of.get(owner)
        if code is None:
            code = self._code_of[owner] = len(self._owners)
            self._owners.append(owner)
        return code

    def finish(self) -> "OwnerIndex":
        """Sort by key (in place: the transient peak is one index array, 8 bytes a job) and drop shared keys."""
        keys = np.array(self._hashes, dtype=np.int64)
        self._hashes = array("q")
        order = np.argsort(keys, kind="stable")
        values = np.frombuffer(self._codes, dtype=np.int32)[order] if len(self._codes) else np.zeros(0, np.int32)
        self._codes = array("i")
        keys.sort(kind="stable")
        del order
        if len(keys) > 1:
            twin = np.zeros(len(keys), bool)
            same = keys[1:] == keys[:-1]
            twin[1:] |= same
            twin[:-1] |= same
            if same.any():
                keys, values = keys[~twin], values[~twin]
        self._keys, self._values = keys, values
        self._buckets()
        return self

    def _buckets(self) -> None:
        """The bucket table of the sorted keys: 2**bits buckets by the top bits of the (signed) hash."""
        keys = self._keys
        assert keys is not None
        bits = max(1, min(24, int(np.ceil(np.log2(max(2, len(keys) / self.KEYS_PER_BUCKET))))))
        self._shift, self._bias = 64 - bits, 1 << (bits - 1)  # signed order: bucket -2**(bits-1) comes first
        firsts = (np.arange(1 << bits, dtype=np.int64) - self._bias) << self._shift  # each bucket's smallest hash
        dtype = np.int32 if len(keys) < 2**31 else np.int64
        self._starts = np.append(np.searchsorted(keys, firsts), len(keys)).astype(dtype)
        largest = int(np.diff(self._starts).max()) if len(keys) else 0
        self._steps = largest.bit_length()

    def lookup(self, keys: list[tuple[str, str]]) -> list[Any]:
        """Owner (str), None (the job has no owner) or MISSING (not listed) for each (namespace, job id)."""
        assert self._keys is not None and self._values is not None, "call finish() first"
        if not keys:
            return []
        if not len(self._keys):
            return [MISSING] * len(keys)
        wanted = np.fromiter(map(hash, keys), np.int64, len(keys))
        bucket = (wanted >> self._shift) + self._bias
        lo, end = self._starts[bucket].astype(np.int64), self._starts[bucket + 1].astype(np.int64)
        hi, last = end.copy(), len(self._keys) - 1
        for _ in range(self._steps):  # the first key >= wanted in [lo, hi), for every key of the page at once
            mid = (lo + hi) >> 1
            below = (lo < hi) & (self._keys[np.minimum(mid, last)] < wanted)
            lo = np.where(below, mid + 1, lo)
            hi = np.where(below, hi, mid)
        at = np.minimum(lo, last)
        hits = (lo < end) & (self._keys[at] == wanted)
        owners, none = self._owners, self.NONE
        return [MISSING if not hit else (None if code == none else owners[code])
                for hit, code in zip(hits.tolist(), self._values[at].tolist())]

    def __len__(self) -> int:
        return len(self._keys) if self._keys is not None else len(self._hashes)


def _owner(value: Any) -> str | None:
    """The owner a job's meta value names: its text, or None for a missing or empty value."""
    return str(value) if value else None


class JobParts(NamedTuple):
    """A page of the job listing as :meth:`OwnerIndex.add_parts` takes it (made by :func:`job_page_parts`).

    ``keys``: namespace and job id of every job, all joined by NUL; ``owners``:
    the page's distinct owners (None: a job without one); ``codes``: for each
    job, its owner's position in ``owners`` (native int32). One string, a short
    list and bytes: cheap to pickle, and the process that adds them hashes the
    keys itself (a string's hash differs between processes).
    """

    keys: str
    owners: list[str | None]
    codes: bytes


def job_page_parts(page: bytes | memoryview, owner_key: str) -> JobParts | None:
    """:class:`JobParts` of one page of ``/v1/jobs?meta=true``; None: the collector decodes the page itself.

    None for a page that is not a list of job stubs of the expected types
    (:func:`decode_jobs` then keeps the good ones, or names the page) and for
    a NUL inside a namespace or job id (it would split a key in two).
    """
    try:
        jobs = _job_page_decoder(owner_key).decode(page)
    except msgspec.MsgspecError:
        return None
    if not jobs:
        return JobParts("", [], b"")
    keys = "\0".join([f"{job.Namespace or 'default'}\0{job.ID}" for job in jobs])
    if keys.count("\0") != 2 * len(jobs) - 1:
        return None
    distinct: dict[str | None, int] = {}
    codes = [distinct.setdefault(_owner(job.Meta.value if job.Meta is not None else None), len(distinct))
             for job in jobs]
    return JobParts(keys, list(distinct), array("i", codes).tobytes())


def decode_jobs(page: bytes, owner_key: str) -> list[Any]:
    """The job stubs of one page of ``/v1/jobs?meta=true``, each with the one meta value ``owner_key``.

    A job whose stub has a value of an unexpected type is left out (its
    allocations are then read in full).
    """
    typed = _job_page_decoder(owner_key)
    docs = _decode(page, typed)
    if all(not isinstance(d, dict) for d in docs):
        return docs
    out = []
    element = typed.type.__args__[0]
    for doc in docs:
        try:
            out.append(msgspec.convert(doc, element))
        except msgspec.ValidationError:
            continue
    return out
