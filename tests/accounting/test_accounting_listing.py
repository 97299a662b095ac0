"""The bulk listing path (msgspec-typed pages) against the reference parser, and the collector's use of it.

Nomad is the recorded-response TEST DOUBLE (nomad_double.py) where a server is needed.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import pickle
import random
import time
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nomad_double import NomadDouble, fixture

from ai4os_kit.accounting.collector import collect
from ai4os_kit.accounting.nomad_client import NomadSettings, NomadSource
from ai4os_kit.accounting.nomad_listing import MISSING, JobStub, OwnerIndex, as_stub, decode_allocations, decode_jobs, \
    job_page_parts, usage_from_stub
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.nomad_page import finish_columns, page_columns, page_parts, task_times
from ai4os_kit.accounting.nomad_parse import MalformedAllocation, _epoch_from_rfc3339, parse_allocation, parse_node
from ai4os_kit.accounting.store import CACHE, Store

NODE = parse_node(fixture("node-gpu.json"))
GPU_IDS = [i["ID"] for i in fixture("node-gpu.json")["NodeResources"]["Devices"][0]["Instances"]]


def _time(epoch: int, fraction: str, zero: bool) -> str:
    if zero:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + (f".{fraction}" if fraction else "") + "Z"


times = st.tuples(st.integers(1_500_000_000, 1_900_000_000), st.text("0123456789", max_size=9).map(
    lambda f: f or ""), st.booleans())


@st.composite
def stubs(draw: st.DrawFn) -> dict[str, Any]:
    """An allocation list stub as Nomad sends it with resources=true (built on the recorded GPU allocation)."""
    doc = fixture("allocation-gpu-running.json")
    doc.pop("Job")  # a stub has no job
    doc["ClientStatus"] = draw(st.sampled_from(["pending", "running", "complete", "failed", "lost", "unknown"]))
    doc["ID"] = draw(st.uuids()).__str__()
    doc["Namespace"] = draw(st.sampled_from(["ai4eosc", "", None]))
    doc["CreateTime"] = draw(st.integers(0, 2 * 10**18))
    doc["ModifyTime"] = draw(st.integers(0, 2 * 10**18))
    for state in doc["TaskStates"].values():
        state["StartedAt"] = _time(*draw(times)) if draw(st.booleans()) else draw(st.sampled_from([None, ""]))
        state["FinishedAt"] = _time(*draw(times))
    tasks = doc["AllocatedResources"]["Tasks"]
    for res in tasks.values():
        res["Cpu"] = {"CpuShares": draw(st.integers(0, 50_000)),
                      "ReservedCores": draw(st.none() | st.lists(st.integers(0, 63), max_size=16))}
        res["Memory"] = draw(st.none() | st.builds(lambda m: {"MemoryMB": m}, st.integers(0, 10**6)))
        res["Devices"] = draw(st.none() | st.lists(st.fixed_dictionaries({
            "Vendor": st.sampled_from(["nvidia", "amd", ""]), "Type": st.sampled_from(["gpu", "fpga"]),
            "Name": st.sampled_from(["NVIDIA H100 80GB HBM3", "Tesla T4", "MI300"]),
            "DeviceIDs": st.lists(st.sampled_from(GPU_IDS + ["GPU-other"]), max_size=2, unique=True)}), max_size=2))
    if draw(st.booleans()):
        del tasks["dind"]
    doc["AllocatedResources"]["Shared"] = draw(st.none() | st.builds(lambda d: {"DiskMB": d}, st.integers(0, 10**7)))
    return doc


@settings(max_examples=300, deadline=None)
@given(doc=stubs(), node=st.sampled_from([NODE, None]))
def test_fast_path_equals_the_reference_parser(doc: dict[str, Any], node: Any) -> None:
    typed = decode_allocations(json.dumps([doc]).encode())[0]
    try:
        reference = parse_allocation(copy.deepcopy(doc), node)._replace(owner="someone")
    except MalformedAllocation:
        reference = None
    fast = usage_from_stub(typed, node, "someone")
    if fast is not None:  # None: left to the reference
        assert fast == reference
    # the fast path declines only what it cannot read exactly; Nomad's own shape it always reads
    if doc["ClientStatus"] != "unknown" and reference is not None:
        assert fast is not None or any(s and not s.endswith("Z") for t in doc["TaskStates"].values()
                                       for s in (t["StartedAt"], t["FinishedAt"]))


@settings(max_examples=150, deadline=None)
@given(docs=st.lists(stubs(), min_size=1, max_size=6), nodes=st.lists(st.sampled_from([NODE, None]), min_size=6,
                                                                       max_size=6),
       owners=st.lists(st.sampled_from(["someone", "other@egi.eu", None, MISSING]), min_size=6, max_size=6))
def test_page_columns_equal_the_reference_parser_stub_by_stub(docs: list[dict[str, Any]], nodes: list[Any],
                                                              owners: list[Any]) -> None:
    """A whole page computed with numpy gives each stub the reference's usage, or declines it (never another value)."""
    page = decode_allocations(json.dumps(docs).encode())
    done = page_columns(page, nodes[:len(docs)], owners[:len(docs)])
    if done is None:  # the page as a whole is left to the per-stub path
        return
    columns, declined = done
    assert len(columns) == len(Usage._fields) and all(len(c) == len(docs) for c in columns)
    for i, (doc, row) in enumerate(zip(docs, zip(*columns))):
        try:
            reference = parse_allocation(copy.deepcopy(doc), nodes[i])._replace(owner=owners[i])
        except MalformedAllocation:
            reference = None
        if i in declined:  # only what the per-stub path also declines, or what has no owner in the job listing
            assert usage_from_stub(page[i], nodes[i], "x") is None or not isinstance(owners[i], str)
        else:
            assert isinstance(owners[i], str) and Usage(*row) == reference


@settings(max_examples=100, deadline=None)
@given(docs=st.lists(stubs(), min_size=1, max_size=6), keep_bits=st.integers(0, 2**6 - 1),
       nodes=st.lists(st.sampled_from([NODE, None]), min_size=6, max_size=6))
def test_the_parts_of_chosen_stubs_are_the_chosen_parts_and_survive_pickling(docs: list[dict[str, Any]], keep_bits: int,
                                                                             nodes: list[Any]) -> None:
    """What the decoding process sends (pickled parts) and the collector keeps of it (take) computes the same columns."""
    page = decode_allocations(json.dumps(docs).encode())
    parts = page_parts(page)
    keep = [i for i in range(len(docs)) if keep_bits >> i & 1]
    chosen = page_parts([page[i] for i in keep])
    if parts is None:  # the page as a whole goes stub by stub, in the collector
        return
    assert chosen is not None
    taken = pickle.loads(pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL)).take(keep)
    for name, ours, theirs in zip(parts._fields, taken, chosen):
        assert (ours.tolist() if hasattr(ours, "tolist") else ours) == \
            (theirs.tolist() if hasattr(theirs, "tolist") else theirs), name
    owners = ["someone"] * len(keep)
    assert finish_columns(taken, [nodes[i] for i in keep], owners) == \
        page_columns([page[i] for i in keep], [nodes[i] for i in keep], owners)


@settings(max_examples=200, deadline=None)
@given(stamps=st.lists(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59)),
                       max_size=20), fraction=st.text("0123456789", max_size=9))
def test_task_times_read_nomad_times_as_the_reference_does(stamps: list[dt.datetime], fraction: str) -> None:
    values = [s.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + (f".{fraction}" if fraction else "") + "Z" for s in stamps]
    present, good, epoch = task_times(values)  # type: ignore[misc]
    expected = [None if v.startswith("0001-01-01") else _epoch_from_rfc3339(v, "a", "f") for v in values]
    assert [int(e) if g else None for e, g in zip(epoch, good)] == expected
    assert present.tolist() == [e is not None for e in expected]


@pytest.mark.parametrize("value", ["2026-02-29T10:00:00Z", "2024-02-30T10:00:00Z", "2026-04-31T00:00:00Z",
                                   "2026-01-01T24:00:00Z", "2026-01-01T10:60:00Z", "2026-01-01T10:00:60Z",
                                   "0000-01-01T00:00:00Z", "2026-01-01T10:00:00Z\x00", "2026-01-01T10:00:00+00:00",
                                   "2026-01-01T10:00:00.5", "2026-W01-1T10:00:00Z", "2026-01-01", "x", "2026-01-01 10:00:00Z"])
def test_task_times_leave_every_other_form_to_the_reference(value: str) -> None:
    present, good, _ = task_times(["2026-01-01T10:00:00Z", value, None, "", "0001-01-01T00:00:00Z"])  # type: ignore[misc]
    assert present.tolist() == [True, True, False, False, False] and good.tolist() == [True] + [False] * 4


@pytest.mark.parametrize("alloc_id", ["6b8c7f2e3a414c559d2e0f1a2b3c4d5e", "{6b8c7f2e-3a41-4c55-9d2e-0f1a2b3c4d5e}",
                                      "6b8c7f2e-3a41-4c55-9d2e-0f1a2b3c4d5", "6b8c7f2e-3a41-4c55-9d2e+0f1a2b3c4d5e",
                                      "6b8c7f2e-3a41-4c55-9d2e-0f1a2b3c4d5é"])
def test_page_leaves_an_id_not_in_canonical_form_to_the_reference(alloc_id: str) -> None:
    good, odd = fixture("allocation-gpu-running.json"), fixture("allocation-cpu-complete.json")
    odd["ID"] = alloc_id
    page = decode_allocations(json.dumps([good, odd, good]).encode())
    done = page_columns(page, [NODE, None, NODE], ["x", "x", "x"])
    assert done is not None and done[1] == [1] and done[0][0][0] == good["ID"]


def test_a_time_just_before_a_second_counts_that_second() -> None:
    doc = fixture("allocation-gpu-running.json")
    for state in doc["TaskStates"].values():
        state["StartedAt"] = "2026-03-30T22:05:59.9999999Z"
    typed = decode_allocations(json.dumps([doc]).encode())[0]
    usage = usage_from_stub(typed, NODE, "x")
    assert usage is not None and usage.start == 1774908359  # truncated as the reference does, not rounded up


def test_a_page_with_a_malformed_value_decodes_untyped() -> None:
    good, bad = fixture("allocation-gpu-running.json"), fixture("allocation-cpu-complete.json")
    bad["AllocatedResources"]["Tasks"]["train"]["Memory"]["MemoryMB"] = "lots"
    page = decode_allocations(json.dumps([good, bad]).encode())
    assert all(isinstance(d, dict) for d in page)
    assert as_stub(page[0]) is not None and as_stub(page[1]) is None


def test_owner_index_finds_owners_and_drops_jobs_sharing_a_key() -> None:
    jobs = [JobStub("a", "ai4eosc", {"owner": "ann@egi.eu"}), JobStub("b", None, {"owner": "bob@egi.eu"}),
            JobStub("c", "ai4eosc", {"other": "x"}), JobStub("d", "ai4eosc", {"owner": "x"}),
            JobStub("d", "ai4eosc", {"owner": "y"})]  # the same key twice: ambiguous, left out
    index = OwnerIndex()
    index.add_page(jobs, "owner")
    index.finish()
    assert index.lookup([("ai4eosc", "a"), ("default", "b"), ("ai4eosc", "c"), ("ai4eosc", "d"),
                         ("ai4eosc", "zzz")]) == ["ann@egi.eu", "bob@egi.eu", None, MISSING, MISSING]
    assert OwnerIndex().finish().lookup([("x", "y")]) == [MISSING]


def _source(double: NomadDouble) -> NomadSource:
    return NomadSource(NomadSettings(address=double.address, timeout=5))


def test_owner_in_task_group_meta_is_read_from_the_full_allocation(nomad_double: NomadDouble, tmp_path: Path) -> None:
    doc = fixture("allocation-cpu-complete.json")
    doc["Job"]["Meta"] = None
    doc["Job"]["TaskGroups"][0]["Meta"] = {"owner": "group-owner@egi.eu"}
    nomad_double.allocs[doc["ID"]] = doc
    before = nomad_double.requests
    with Store(tmp_path / "acct.sqlite") as store:
        result = collect(_source(nomad_double), store)
        usage = store.get(doc["ID"])
    assert usage is not None and usage.owner == "group-owner@egi.eu" and result.problems == []
    # jobs page, allocations page, the node, and this allocation in full
    assert nomad_double.requests - before == 4


def test_allocation_of_a_job_missing_from_the_job_listing_is_read_in_full(nomad_double: NomadDouble,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    doc = fixture("allocation-gpu-running.json")
    nomad_double.allocs[doc["ID"]] = doc
    monkeypatch.setattr(NomadDouble, "_jobs", lambda self, query: (200, [], {"X-Nomad-Index": str(self.index)}))
    with Store(tmp_path / "acct.sqlite") as store:  # a job created after the job listing was read
        collect(_source(nomad_double), store)
        usage = store.get(doc["ID"])
    assert usage is not None and usage.owner == "c3f1a9e0b2d4@egi.eu" and usage.gpu_count == 1


def test_listing_pages_are_typed_and_carry_resources(nomad_double: NomadDouble) -> None:
    for name in ("allocation-gpu-running.json", "allocation-cpu-complete.json"):
        doc = fixture(name)
        nomad_double.allocs[doc["ID"]] = doc
    source = _source(nomad_double)
    stubs = [s for body, _ in source.allocation_bodies() for s in source.decode_allocation_page(body)]
    assert len(stubs) == 2 and all(s.AllocatedResources is not None and s.TaskStates for s in stubs)
    assert msgspec.json.decode(msgspec.json.encode(stubs[0]))["ID"] == stubs[0].ID


def _usage(alloc_id: str, modify_index: int) -> Any:
    doc = fixture("allocation-cpu-complete.json")
    doc["ID"], doc["ModifyIndex"] = alloc_id, modify_index
    return parse_allocation(doc, parse_node(fixture("node-cpu.json")))


def test_first_run_writes_without_the_id_index_and_builds_it(nomad_double: NomadDouble, tmp_path: Path) -> None:
    template = fixture("allocation-cpu-complete.json")
    ids = {nomad_double.create(template, 1772233200 + i) for i in range(7)}
    with Store(tmp_path / "acct.sqlite") as store:
        indexes_during: list[set[str]] = []
        real = store.upsert_columns

        def spy(pages: Any, seen_at: int) -> int:
            indexes_during.append({r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")})
            return real(pages, seen_at)

        store.upsert_columns = spy  # type: ignore[method-assign]
        collect(_source(nomad_double), store)
        after = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert indexes_during and all("allocations_id" not in names for names in indexes_during)
        assert "allocations_id" in after
        assert set(store.modify_indexes()) == ids
        # the index sort's smaller cache and helper threads are the sort's alone
        assert store.db.execute("PRAGMA cache_size").fetchone()[0] == CACHE
        assert store.db.execute("PRAGMA threads").fetchone()[0] == 0
        again = collect(_source(nomad_double), store)  # the second run upserts through the index
        assert (again.fetched, again.written) == (0, 0)


def test_a_bulk_load_cut_short_gets_its_index_when_the_store_is_opened(tmp_path: Path) -> None:
    alloc = "0d2e4f6a-8b1c-4d3e-a5f7-9b0c1d2e3f40"
    with Store(tmp_path / "acct.sqlite") as store:
        assert store.begin_bulk()
        store.upsert([_usage(alloc, 5), _usage(alloc, 7), _usage("1d2e4f6a-8b1c-4d3e-a5f7-9b0c1d2e3f40", 1)], 0)
        # killed here: end_bulk never ran
    with Store(tmp_path / "acct.sqlite") as store:
        assert store.count() == 2 and store.get(alloc).modify_index == 7  # type: ignore[union-attr]
        assert store.db.execute("PRAGMA cache_size").fetchone()[0] == CACHE
        assert store.upsert([_usage(alloc, 8)], 0) == 1 and store.count() == 2
        assert not store.begin_bulk()  # not empty: no bulk load


@pytest.mark.parametrize("bad", ["2026-13-30T22:05:10Z", "2026-03-30T22:05:1xZ", "2026-03-30 22:05:10.5Z",
                                 "2026-03-30T22:05:10+01:00"])
def test_any_task_time_the_fast_path_cannot_read_leaves_the_allocation_to_the_reference(bad: str) -> None:
    doc = fixture("allocation-cpu-complete.json")
    doc["TaskStates"]["train"]["FinishedAt"] = bad  # not the earliest start nor (alone) decisive
    doc["TaskStates"]["extra"] = {"StartedAt": "2026-02-27T23:00:05Z", "FinishedAt": "2026-02-28T23:30:05Z"}
    typed = decode_allocations(json.dumps([doc]).encode())[0]
    assert usage_from_stub(typed, None, "x") is None
    good = fixture("allocation-gpu-running.json")
    page = decode_allocations(json.dumps([good, doc]).encode())
    assert page_columns(page, [NODE, None], ["x", "x"]) in (None, (ANY, [1]))  # declined, the other one kept
    try:
        reference = parse_allocation(doc, None)
    except MalformedAllocation:
        return
    assert reference.end is not None  # the reference read the time itself (an offset it understands)


def test_job_pages_read_the_configured_owner_key_and_skip_odd_jobs() -> None:
    page = json.dumps([{"ID": "a", "Namespace": "ns", "Meta": {"owner": "x", "creator": "ann@egi.eu"}},
                       {"ID": "b", "Meta": None}, {"ID": 7, "Meta": {"creator": "bob"}}]).encode()
    index = OwnerIndex()
    index.add_page(decode_jobs(page, "creator"))
    index.finish()
    assert index.lookup([("ns", "a"), ("default", "b"), ("default", "7")]) == ["ann@egi.eu", None, MISSING]


_OWNER_VALUES = st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["ann@egi.eu", "bob@egi.eu", ""]),
                          st.integers(-2, 2), st.booleans(), st.lists(st.integers(0, 2), max_size=2),
                          st.dictionaries(st.sampled_from("ab"), st.integers(0, 2), max_size=2))
_JOB_DOCS = st.lists(st.fixed_dictionaries(
    {"ID": st.one_of(st.sampled_from(["a", "b", "job-1", "j\0b"]), st.text(max_size=5))},
    optional={"Namespace": st.one_of(st.none(), st.sampled_from(["", "ai4eosc", "imagine", "a\0"])),
              "Meta": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"owner": _OWNER_VALUES,
                                                                                "other": st.just("x")}))}),
    max_size=12)


@settings(max_examples=150, deadline=None, database=None)
@given(pages=st.lists(_JOB_DOCS, min_size=1, max_size=4), odd=st.booleans())
def test_job_pages_taken_apart_index_the_owners_that_decoded_stubs_do(pages: list[list[dict[str, Any]]],
                                                                       odd: bool) -> None:
    """What the decoding process returns for a job page (JobParts) adds to the owner index what the stubs add.

    A page it cannot take apart (a NUL inside a key, a value of an unexpected type) is None: the collector
    decodes that page itself. Pickled, as the parts cross between the processes.
    """
    if odd:  # an id of an unexpected type: the typed decoder refuses the page
        pages[0] = pages[0] + [{"ID": 7}]
    bodies = [json.dumps(page).encode() for page in pages]
    from_stubs, from_parts = OwnerIndex(), OwnerIndex()
    for body in bodies:
        from_stubs.add_page(decode_jobs(body, "owner"))
        parts = job_page_parts(body, "owner")
        if parts is None:
            from_parts.add_page(decode_jobs(body, "owner"))
        else:
            from_parts.add_parts(pickle.loads(pickle.dumps(parts)))
        nul = any("\0" in (job.get("Namespace") or "") + str(job.get("ID")) for job in json.loads(body))
        assert (parts is None) == (nul or (odd and body is bodies[0]))
    from_stubs.finish(), from_parts.finish()
    keys = [(job.get("Namespace") or "default", str(job.get("ID"))) for page in pages for job in page]
    keys += [("default", "never-listed")]
    assert len(from_parts) == len(from_stubs)
    assert from_parts.lookup(keys) == from_stubs.lookup(keys)


def test_job_page_parts_of_an_empty_page_and_of_a_page_that_is_not_a_list() -> None:
    assert job_page_parts(b"[]", "owner") == ("", [], b"")
    assert job_page_parts(b"{}", "owner") is None and job_page_parts(b"", "owner") is None
    index = OwnerIndex()
    index.add_parts(job_page_parts(b"[]", "owner"))  # type: ignore[arg-type]
    assert len(index.finish()) == 0


@pytest.mark.parametrize("jobs", [1, 3, 4000])
def test_owner_index_agrees_with_a_dict_of_the_same_jobs(jobs: int) -> None:
    """The bucketed look-up answers as a plain dict would, for listed jobs and jobs it never saw."""
    rng = random.Random(jobs)
    listed = {(rng.choice(["ai4eosc", "imagine", "default"]), f"job-{rng.getrandbits(40):x}"): rng.choice(
        [None, "ann@egi.eu", "bob@egi.eu", f"user{rng.randrange(50)}@egi.eu"]) for _ in range(jobs)}
    index = OwnerIndex()
    index.add_page([JobStub(job, namespace, {"owner": owner} if owner else {}) for (namespace, job), owner
                    in listed.items()], "owner")
    index.finish()
    asked = list(listed) + [("ai4eosc", f"gone-{n}") for n in range(jobs)]
    rng.shuffle(asked)
    for lo in range(0, len(asked), 500):  # a page at a time, as the collector asks
        page = asked[lo:lo + 500]
        assert index.lookup(page) == [listed.get(key, MISSING) for key in page]
