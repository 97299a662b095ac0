"""Collector against recorded Nomad API responses (served by the Nomad TEST DOUBLE, see nomad_double.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from nomad_double import NomadDouble, fixture

from ai4os_kit.accounting.collector import collect
from ai4os_kit.accounting.nomad_client import NomadSettings, NomadSource
from ai4os_kit.accounting.nomad_parse import MalformedAllocation, parse_allocation, parse_node
from ai4os_kit.accounting.store import Store
from ai4os_kit.errors import KitError

GPU_ALLOC = "6b8c7f2e-3a41-4c55-9d2e-0f1a2b3c4d5e"
CPU_ALLOC = "0d2e4f6a-8b1c-4d3e-a5f7-9b0c1d2e3f40"


def _source(double: NomadDouble, **kw: object) -> NomadSource:
    return NomadSource(NomadSettings(address=double.address, timeout=5, **kw))  # type: ignore[arg-type]


def _load_recorded(double: NomadDouble) -> None:
    for name in ("allocation-gpu-running.json", "allocation-cpu-complete.json"):
        doc = fixture(name)
        double.allocs[doc["ID"]] = doc


def test_collect_sums_all_tasks_and_reads_gpu_model_from_node(nomad_double: NomadDouble, tmp_path: Path) -> None:
    _load_recorded(nomad_double)
    with Store(tmp_path / "acct.sqlite") as store:
        result = collect(_source(nomad_double), store, clock=lambda: 1775000000)
        gpu, cpu = store.get(GPU_ALLOC), store.get(CPU_ALLOC)
    assert (result.listed, result.fetched, result.written, result.problems) == (2, 2, 2, [])
    assert gpu is not None and cpu is not None
    # main (8 reserved cores) + storage_mount (50 MHz) + dind (100 MHz), each task at 2600 MHz per core
    assert gpu.cpu_millicores == 8000 + round(1000 * 50 / 2600) + round(1000 * 100 / 2600) and gpu.cores == 8
    assert gpu.memory_mb == 32000 + 250 + 500 and gpu.disk_mb == 20000
    assert (gpu.gpu_count, gpu.gpu_model) == (1, "NVIDIA H100 80GB HBM3")
    assert (gpu.owner, gpu.namespace, gpu.datacenter, gpu.status) == ("c3f1a9e0b2d4@egi.eu", "ai4eosc", "ifca", "running")
    assert gpu.start == 1774908310 and gpu.end is None  # first task start (the prestart sidecar)
    assert cpu.cpu_millicores == 2000 and cpu.cpu_mhz == 5200 and cpu.gpu_count == 0
    assert (cpu.start, cpu.end, cpu.status) == (1772233205, 1772328605, "complete")


def test_second_run_reads_nothing_unchanged(nomad_double: NomadDouble, tmp_path: Path) -> None:
    _load_recorded(nomad_double)
    with Store(tmp_path / "acct.sqlite") as store:
        collect(_source(nomad_double), store)
        again = collect(_source(nomad_double), store)
    assert (again.listed, again.fetched, again.written) == (2, 0, 0)


def test_paging_lists_every_allocation(nomad_double: NomadDouble, tmp_path: Path) -> None:
    template = fixture("allocation-cpu-complete.json")
    ids = {nomad_double.create(template, 1772233200 + i) for i in range(8)}  # page size 3: three pages
    with Store(tmp_path / "acct.sqlite") as store:
        result = collect(_source(nomad_double), store)
        assert result.listed == 8 and set(store.modify_indexes()) == ids


def test_changed_allocation_replaces_its_row(nomad_double: NomadDouble, tmp_path: Path) -> None:
    alloc = nomad_double.create(fixture("allocation-cpu-complete.json"), 1772233200)
    with Store(tmp_path / "acct.sqlite") as store:
        collect(_source(nomad_double), store)
        nomad_double.start(alloc, 1772233260)
        collect(_source(nomad_double), store)
        nomad_double.finish(alloc, 1772240460)
        result = collect(_source(nomad_double), store)
        usage = store.get(alloc)
        assert store.count() == 1 and result.fetched == 1
    assert usage is not None and (usage.start, usage.end, usage.status) == (1772233260, 1772240460, "complete")


def test_garbage_collected_running_allocation_is_closed_at_last_sighting(nomad_double: NomadDouble,
                                                                        tmp_path: Path) -> None:
    alloc = nomad_double.create(fixture("allocation-cpu-complete.json"), 1772233200)
    nomad_double.start(alloc, 1772233260)
    with Store(tmp_path / "acct.sqlite") as store:
        collect(_source(nomad_double), store, clock=lambda: 1772236860)
        nomad_double.finish(alloc, 1772238000)
        nomad_double.garbage_collect(alloc)  # GC before the collector saw the end
        result = collect(_source(nomad_double), store, clock=lambda: 1772240000)
        usage = store.get(alloc)
    assert result.gone == 1
    assert usage is not None and (usage.start, usage.end, usage.status) == (1772233260, 1772236860, "gone")


def test_unreachable_nomad_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = NomadSource(NomadSettings(address=f"http://127.0.0.1:{port}", timeout=2))
    with Store(tmp_path / "acct.sqlite") as store, pytest.raises(KitError) as err:
        collect(source, store)
    assert f"Nomad at http://127.0.0.1:{port}: listing allocations failed" in str(err.value)
    assert "check nomad.address" in str(err.value)


def test_token_without_rights_is_a_clear_error(nomad_double: NomadDouble, tmp_path: Path) -> None:
    nomad_double.token = "right-token"
    token = tmp_path / "token"
    token.write_text("wrong-token\n")
    with Store(tmp_path / "acct.sqlite") as store, pytest.raises(KitError) as err:
        collect(_source(nomad_double, token_file=token), store)
    assert "HTTP 403" in str(err.value) and "token lacks read access" in str(err.value)


def test_token_is_sent(nomad_double: NomadDouble, tmp_path: Path) -> None:
    nomad_double.token = "right-token"
    token = tmp_path / "token"
    token.write_text("right-token\n")
    _load_recorded(nomad_double)
    with Store(tmp_path / "acct.sqlite") as store:
        assert collect(_source(nomad_double, token_file=token), store).written == 2


def test_malformed_allocation_is_named_and_the_others_are_kept(nomad_double: NomadDouble, tmp_path: Path) -> None:
    _load_recorded(nomad_double)
    nomad_double.allocs[GPU_ALLOC]["AllocatedResources"]["Tasks"]["main"]["Memory"]["MemoryMB"] = "lots"
    with Store(tmp_path / "acct.sqlite") as store:
        result = collect(_source(nomad_double), store)
        assert store.get(CPU_ALLOC) is not None and store.get(GPU_ALLOC) is None
        message = str(result.problems[0])
        assert GPU_ALLOC in message and "AllocatedResources.Tasks.main.Memory.MemoryMB" in message
        # fixed in Nomad (a newer ModifyIndex): the next run records it
        nomad_double.allocs[GPU_ALLOC]["AllocatedResources"]["Tasks"]["main"]["Memory"]["MemoryMB"] = 32000
        nomad_double.allocs[GPU_ALLOC]["ModifyIndex"] += 1
        assert collect(_source(nomad_double), store).problems == []
        assert store.get(GPU_ALLOC) is not None


@pytest.mark.parametrize(("path", "value", "field"), [
    (("ID",), "not-a-uuid", "ID"),
    (("ClientStatus",), "exploded", "ClientStatus"),
    (("TaskStates", "main", "StartedAt"), "yesterday", "TaskStates.main.StartedAt"),
    (("AllocatedResources", "Shared", "DiskMB"), -1, "AllocatedResources.Shared.DiskMB"),
    (("AllocatedResources", "Tasks", "main", "Devices"), {"Type": "gpu"}, "AllocatedResources.Tasks.main.Devices"),
    (("AllocatedResources",), None, "AllocatedResources"),
])
def test_parse_names_the_broken_field(path: tuple[str, ...], value: object, field: str) -> None:
    doc = fixture("allocation-gpu-running.json")
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(MalformedAllocation) as err:
        parse_allocation(doc, parse_node(fixture("node-gpu.json")))
    assert err.value.field == field


def test_gpu_from_device_request_when_nothing_was_allocated_yet() -> None:
    doc = fixture("allocation-gpu-running.json")
    doc["AllocatedResources"]["Tasks"]["main"]["Devices"] = None
    doc["Job"]["TaskGroups"][0]["Tasks"][1]["Resources"]["Devices"] = [{"Name": "nvidia/gpu", "Count": 2}]
    usage = parse_allocation(doc, parse_node(fixture("node-gpu.json")))
    assert (usage.gpu_count, usage.gpu_model) == (2, "NVIDIA H100 80GB HBM3")


def test_gpu_model_prefixed_with_vendor() -> None:
    doc = fixture("allocation-gpu-running.json")
    node = fixture("node-gpu.json")
    node["NodeResources"]["Devices"][0]["Name"] = "Tesla T4"
    assert parse_allocation(doc, parse_node(node)).gpu_model == "NVIDIA Tesla T4"


def test_missing_nomad_ca_file_is_a_clear_error(nomad_double: NomadDouble, tmp_path: Path) -> None:
    source = NomadSource(NomadSettings(address=nomad_double.address.replace("http:", "https:"),
                                       ca_cert=tmp_path / "no-ca.pem", timeout=5))
    with Store(tmp_path / "acct.sqlite") as store, pytest.raises(KitError) as err:
        collect(source, store)
    assert "listing allocations failed" in str(err.value) and "no-ca.pem" in str(err.value)
