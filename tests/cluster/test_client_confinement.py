"""Nomad clients allow exactly what the jobs placed on them use, and nothing more.

Three sources, none of them the kit's picture of the others:
- PAPI's user jobs: what its job templates really ask for, recorded with the upstream commit
  and file:line in tests/data/papi/job-templates.yml;
- the platform's own jobs: the job files the kit renders (the session rendering of
  support/platform_render.py, everything switched on), read with python-hcl2;
- how a Nomad client decides to run a task (privileged, host paths, capabilities, namespace
  modes, GPU runtime, drivers), recorded from Nomad's source/docs in
  tests/cluster/data/nomad-client-facts.yml.
The client configuration is the nomad role's client.hcl, rendered by ansible-playbook for one
node of every client role (the sample inventory plus a tryme and a batch pool).
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import hcl_config
import pytest
import yaml
from support.cluster_render import render_cluster

from ai4os_kit.model.plan import NODE_TYPE
from ai4os_kit.paths import ROOT, SAMPLE_INVENTORY

PAPI = yaml.safe_load((ROOT / "tests" / "data" / "papi" / "job-templates.yml").read_text())
NOMAD = yaml.safe_load((ROOT / "tests" / "cluster" / "data" / "nomad-client-facts.yml").read_text())
NOMAD_DEFAULTS = yaml.safe_load((ROOT / "roles" / "nomad" / "defaults" / "main.yml").read_text())
CLIENT_ROLES = sorted(NODE_TYPE)  # every client node role (servers run no jobs)
ALLOC_PREFIXES = ("local/", "secrets/", "alloc/", "../alloc/", "..${NOMAD_ALLOC_DIR}", "${NOMAD_ALLOC_DIR}",
                  "${NOMAD_TASK_DIR}", "${NOMAD_SECRETS_DIR}")
NAMESPACE_MODES = ("pid_mode", "ipc_mode", "uts_mode", "userns_mode")


@dataclass
class Need:
    """What one task asks of the client that runs it."""

    source: str
    driver: str
    privileged: bool = False
    host_paths: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    modes: dict[str, str] = field(default_factory=dict)
    gpu: bool = False


@dataclass
class Client:
    """What a client's configuration allows."""

    drivers: set[str]
    privileged: bool
    host_paths: bool
    raw_exec: bool
    caps: set[str]
    modes: dict[str, list[str]]
    runtimes: set[str]


# ---------------------------------------------------------------- the clients


def _inventory_with_every_role(tmp: Path) -> Path:
    """The sample inventory plus one tryme and one batch node (try-me switched on)."""
    inv = tmp / "inventory"
    inv.mkdir()
    for name in ("platform.yml", "sites.yml"):
        shutil.copy(SAMPLE_INVENTORY / name, inv / name)
    platform = yaml.safe_load((inv / "platform.yml").read_text())
    platform["ai4os_enable_tryme"] = True
    (inv / "platform.yml").write_text(yaml.safe_dump(platform, sort_keys=False))
    sites = yaml.safe_load((inv / "sites.yml").read_text())
    cpu = next(p for p in sites["ai4os_sites"][0]["pools"] if p["role"] == "cpu")
    sites["ai4os_sites"][0]["pools"] += [dict(cpu, role="tryme", count=1), dict(cpu, role="batch", count=1)]
    (inv / "sites.yml").write_text(yaml.safe_dump(sites, sort_keys=False))
    return inv


def _client(text: str) -> Client:
    config = hcl_config.loads(text)
    first = hcl_config.first
    plugins = hcl_config.labelled(config, "plugin")
    docker = first(plugins["docker"], "config")
    modes = first(docker, "allowed_modes") if "allowed_modes" in docker else {}
    return Client(
        drivers=set(first(config, "client.options")["driver.allowlist"].split(",")),
        privileged=docker.get("allow_privileged", False),
        host_paths=first(docker, "volumes.enabled") if "volumes" in docker else False,
        raw_exec="raw_exec" in plugins and first(plugins["raw_exec"], "config.enabled") is True,
        caps={c.lower() for c in docker.get("allow_caps", NOMAD["docker"]["default_allow_caps"])},
        modes={m: list(v) for m, v in modes.items()},
        runtimes=set(docker.get("allow_runtimes", ["runc", "nvidia"])),
    )


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Client]:
    """{node role: its rendered client configuration}, one node of each client role."""
    tmp = tmp_path_factory.mktemp("clients")
    inv = _inventory_with_every_role(tmp)
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    plan = build_plan(load_inventory(inv))
    one = {}
    for node in plan["nodes"]:
        if node["nomad"]["client"]:
            one.setdefault(node["role"], node["name"])
    assert sorted(one) == CLIENT_ROLES
    _, _, out = render_cluster(tmp, inv, limit=",".join(one.values()))
    return {role: _client(out[name]["client.hcl"]) for role, name in one.items()}


# ---------------------------------------------------------------- the jobs


def _papi_needs() -> list[tuple[list[str], Need]]:
    """(node roles, need) of every task of PAPI's jobs, from the recorded templates."""
    roles_of_type = {t: [r for r in CLIENT_ROLES if NODE_TYPE[r] == t] for t in set(NODE_TYPE.values())}
    needs = []
    for job in PAPI["jobs"]:
        roles = sorted({r for t in job["node_types"] for r in roles_of_type[t]})
        for task in job["tasks"]:
            if task["name"] in job.get("tasks_dropped", []):
                continue
            need = Need(source=f"PAPI {job['template']}:{task['line']} ({job['name']}/{task['name']})",
                        driver=task["driver"], privileged=task.get("privileged", False),
                        host_paths=[p["path"] for p in task.get("host_paths", [])])
            needs.append((roles, need))
            if "gpu_device_line" in task:  # with a GPU (device kept): only where GPUs are
                needs.append((_gpu_roles(roles), Need(**{**need.__dict__, "gpu": True})))
    return needs


def _gpu_roles(roles: list[str]) -> list[str]:
    """Nomad places a task with a GPU device only on nodes that fingerprint GPUs: the gpu role."""
    return [r for r in roles if r == "gpu"]


def _blocks(body: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    return [item for block in body.get(name, []) for item in block.items()]


def _host_path(source: str) -> bool:
    """An absolute host path (outside the allocation directory, which Nomad always allows)."""
    return source.startswith("/") and not source.startswith(ALLOC_PREFIXES)


def _node_roles(constraints: list[dict[str, Any]], roles: list[str]) -> list[str]:
    """The client roles a job's ${node.class} constraints admit (node class = node role)."""
    for c in constraints:
        if c.get("attribute") != "${node.class}":
            continue
        operator = c.get("operator", "=")
        if operator in ("=", "=="):
            roles = [r for r in roles if r == c["value"]]
        elif operator == "regexp":
            import re
            roles = [r for r in roles if re.search(c["value"], r)]
        elif operator == "!=":
            roles = [r for r in roles if r != c["value"]]
        else:
            pytest.fail(f"node.class constraint operator {operator!r} is not modelled here")
    return roles


def _platform_needs(rendered) -> list[tuple[list[str], Need]]:
    """(node roles, need) of every task of the platform's rendered jobs."""
    needs = []
    jobs = rendered.jobs()
    assert jobs, "the platform rendering produced no job"
    for path in jobs:
        for job_name, job in _blocks(hcl_config.loads(path.read_text()), "job"):
            job_roles = _node_roles(job.get("constraint", []), list(CLIENT_ROLES))
            for group_name, group in _blocks(job, "group"):
                roles = _node_roles(group.get("constraint", []), job_roles)
                for task_name, task in _blocks(group, "task"):
                    config = hcl_config.first(task, "config") if "config" in task else {}
                    volumes = [v.split(":")[0] for v in config.get("volumes", [])]
                    mounts = [m.get("source", "") for m in config.get("mount", []) if m.get("type", "volume") == "bind"]
                    devices = [label for res in task.get("resources", []) for d in res.get("device", []) for label in d]
                    gpu = any("gpu" in d for d in devices)
                    needs.append((_gpu_roles(roles) if gpu else roles, Need(
                        source=f"{path.relative_to(rendered.out)} ({job_name}/{group_name}/{task_name})",
                        driver=task["driver"],
                        privileged=config.get("privileged", False) is True,
                        host_paths=[s for s in volumes + mounts if _host_path(s)],
                        cap_add=[c.lower() for c in config.get("cap_add", [])],
                        modes={m: config[m] for m in NAMESPACE_MODES if config.get(m)},
                        gpu=gpu,
                    )))
    return needs


@pytest.fixture(scope="module")
def needs(rendered) -> list[tuple[list[str], Need]]:
    return _papi_needs() + _platform_needs(rendered)


# ---------------------------------------------------------------- Nomad's rules


def refusals(client: Client, need: Need) -> list[str]:
    """Why a client with this configuration would refuse the task (Nomad's checks, recorded facts)."""
    why = []
    if need.driver not in client.drivers:
        why.append(f"driver {need.driver} not in driver.allowlist")
    if need.driver == "raw_exec" and not client.raw_exec:
        why.append("raw_exec is not enabled")
    if need.driver != "docker":
        return why
    if need.privileged and not client.privileged:
        why.append("privileged, but allow_privileged is false")
    if need.host_paths and not client.host_paths:
        why.append(f"host paths {need.host_paths}, but volumes.enabled is false")
    if set(need.cap_add) - client.caps:
        why.append(f"cap_add {sorted(set(need.cap_add) - client.caps)} not in allow_caps")
    if not (client.privileged and NOMAD["docker"]["allow_privileged_skips_allowed_modes"]):
        for mode, value in need.modes.items():
            allowed = client.modes.get(mode.removesuffix("_mode"), [])
            if not any(fnmatch.fnmatchcase(value, pattern) for pattern in allowed):
                why.append(f"{mode} = {value!r} not in allowed_modes")
    if need.gpu and NOMAD["docker"]["gpu_needs_runtime"] not in client.runtimes:
        why.append("GPU device, but the nvidia runtime is not in allow_runtimes")
    return why


# ---------------------------------------------------------------- the tests


def test_every_job_is_accepted_where_it_is_placed(clients: dict[str, Client], needs) -> None:
    problems = [f"{need.source} on a {role} node: {'; '.join(why)}"
                for roles, need in needs for role in roles if (why := refusals(clients[role], need))]
    assert problems == []


def test_nothing_is_allowed_that_no_job_placed_there_uses(clients: dict[str, Client], needs) -> None:
    extra = []
    for role, client in clients.items():
        here = [need for roles, need in needs if role in roles]
        if client.privileged and not any(n.privileged for n in here):
            extra.append(f"{role}: allow_privileged without a privileged task")
        if client.host_paths and not any(n.host_paths for n in here):
            extra.append(f"{role}: volumes.enabled without a task binding a host path")
        if client.raw_exec and not any(n.driver == "raw_exec" for n in here):
            extra.append(f"{role}: raw_exec without a raw_exec task")
        beyond = client.caps - set(NOMAD["docker"]["default_allow_caps"])
        if beyond - {c for n in here for c in n.cap_add}:
            extra.append(f"{role}: allow_caps {sorted(beyond)} beyond the defaults without a task adding them")
        for driver in client.drivers - {n.driver for n in here}:
            extra.append(f"{role}: driver {driver} allowed without a task using it")
        for mode, values in client.modes.items():
            for value in values:
                if not any(n.modes.get(f"{mode}_mode") == value for n in here):
                    extra.append(f"{role}: allowed_modes {mode} = {value!r} without a task using it")
        if "nvidia" in client.runtimes and not any(n.gpu for n in here):
            extra.append(f"{role}: nvidia runtime without a GPU task")
    assert extra == []


def test_sys_admin_is_never_a_capability_of_containers(clients: dict[str, Client]) -> None:
    for role, client in clients.items():
        assert "sys_admin" not in client.caps, role
    # the recorded templates add no capability at all: PAPI's privileged sidecars are the exception
    assert "cap_add" in PAPI["absent_everywhere"]


def test_privileged_containers_only_where_papi_places_them(clients: dict[str, Client]) -> None:
    papi_privileged = {r for roles, n in _papi_needs() if n.privileged for r in roles}
    assert papi_privileged == {"cpu", "gpu", "batch"}  # modules, tools, batch: storage sidecars, CVAT
    assert {role for role, c in clients.items() if c.privileged} == papi_privileged
    assert not clients["tryme"].privileged  # try-me jobs run plain containers


def test_vo_namespaces_allow_only_what_papi_submits() -> None:
    """Nomad refuses, at submission, a job in a VO namespace using another driver or network mode
    (namespace capabilities, enforced without Enterprise: nomad-client-facts.yml)."""
    assert NOMAD["namespaces"]["capabilities_enforced_at_submit"]
    wanted = NOMAD_DEFAULTS["nomad_vo_namespace_capabilities"]
    papi_drivers = {task["driver"] for job in PAPI["jobs"] for task in job["tasks"]}
    assert set(wanted["enabled_task_drivers"]) == papi_drivers == {"docker", "raw_exec"}
    assert wanted["enabled_network_modes"] == PAPI["group_network_modes"] == [NOMAD["namespaces"]["empty_network_mode_is"]]


def test_platform_jobs_run_in_the_platform_namespace(rendered) -> None:
    """The platform's jobs live in a namespace of their own that no VO token is given."""
    platform_ns = NOMAD_DEFAULTS["nomad_platform_namespace"]
    vo_namespaces = {vo["namespace"] for vo in rendered.platform["ai4os_vos"]}
    assert platform_ns not in vo_namespaces | {"default"}
    for path in rendered.jobs():
        for job_name, job in _blocks(hcl_config.loads(path.read_text()), "job"):
            assert job["namespace"] == platform_ns, f"{path.name}: job {job_name} in namespace {job['namespace']}"
