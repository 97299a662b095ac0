"""PAPI's development and composite-AI tools on the sample plan: for each tool PAPI ships at the
recorded commit (tests/data/papi/tools.yml), the job contract (P1's PAPI layout, CPU and GPU
variants per VO) and whether a node of the plan has the cores, memory and GPU model the tool's
group needs as Nomad adds them up; docs/platform.md's tools table says the same. PAPI's templates
are not copied: jobs are built from the recorded facts (with AI4OS_PAPI_CHECKOUT pointing at a
checkout of ai4os/ai4-papi, the facts are compared with its templates and those are checked too)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from test_contract_papi import FACTS as PAPI_FACTS
from test_contract_papi import _job, papi_tree, plan_of

from ai4os_kit.paths import ROOT
from ai4os_kit.platform.contract import check_papi
from ai4os_kit.platform.nomad_job import hcl_attr, hcl_blocks
from ai4os_kit.platform.papi_templates import fill, papi_jobs

TOOLS = yaml.safe_load((ROOT / "tests" / "data" / "papi" / "tools.yml").read_text())
NOMAD_DEFAULTS = yaml.safe_load((ROOT / "roles" / "nomad" / "defaults" / "main.yml").read_text())


# ----------------------------------------------------------------- what a tool needs

@dataclass(frozen=True)
class Needs:
    cores: int
    memory: int          # MiB
    disk: int            # MiB of ephemeral disk
    gpu_model: str | None  # None: no GPU; "${GPU_MODELNAME}": any model the user picks


def needs(tool: dict[str, Any], gpu: bool) -> Needs:
    """The group's resources as Nomad adds them up (tools.yml nomad_resources), with the user's
    default hardware (user.yaml) and, when ``gpu``, one GPU."""
    hw = {k: v["value"] for k, v in tool["user_hardware"].items()}
    values = {"${CPU_NUM}": hw.get("cpu_num"), "${RAM}": hw.get("ram"), "${DISK}": hw.get("disk")}
    default = TOOLS["nomad_resources"]["default_task"]
    cores = 0
    sets: dict[str, list[int]] = {"prestart": [0, 0], "main": [0, 0], "poststop": [0, 0]}
    model = None
    for task in tool["tasks"]:
        res = {k: values.get(v, v) for k, v in task["resources"].items()}
        cores += int(res.get("cores", 0))
        cpu = int(res.get("cpu", 0 if "cores" in res else default["cpu"]))
        memory = int(res.get("memory", default["memory"]))
        hook = (task.get("lifecycle") or {}).get("hook")
        sidecar = (task.get("lifecycle") or {}).get("sidecar", False)
        where = ["main"] if hook in (None, "poststart") else ["prestart"] + (["main"] if sidecar else []) \
            if hook == "prestart" else ["poststop"]
        for name in where:
            sets[name][0] += cpu
            sets[name][1] += memory
        if task.get("gpu_model"):
            model = task["gpu_model"]
    fixed = model is not None and not model.startswith("${")
    return Needs(cores=cores, memory=max(s[1] for s in sets.values()),
                 disk=int(values.get(tool["ephemeral_disk"], tool["ephemeral_disk"])),
                 gpu_model=model if (gpu or fixed) else None)


def fits(need: Needs, node: dict[str, Any]) -> str | None:
    """Why ``node`` cannot take the group (None: it can). Capacity from the plan's flavor minus what
    the nomad role reserves for the agent (nomad_reserved)."""
    flavor = node.get("flavor") or {}
    if "ram_mb" not in flavor or "vcpus" not in flavor:
        return f"{node['name']}: flavor {flavor.get('name', '?')} has no known size in the plan"
    reserved = NOMAD_DEFAULTS["nomad_reserved"]
    memory = flavor["ram_mb"] - reserved["memory"]
    models = [m for d in node["nomad"].get("devices") or [] for m in d.get("models") or []]
    if need.cores > flavor["vcpus"]:
        return f"{node['name']}: {need.cores} cores > {flavor['vcpus']} vCPUs"
    if need.memory > memory:
        return f"{node['name']}: {need.memory} MiB > {memory} MiB allocatable"
    if need.gpu_model and not models:
        return f"{node['name']}: no GPU"
    if need.gpu_model and not need.gpu_model.startswith("${") and need.gpu_model not in models:
        return f"{node['name']}: GPU {', '.join(models)}, not {need.gpu_model}"
    return None


def candidates(plan: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """Nodes a tool of VO ``namespace`` may land on (the recorded constraints: type compute, not batch,
    namespace served)."""
    return [n for n in plan["nodes"] if (n["nomad"].get("meta") or {}).get("type") == "compute"
            and namespace in n["nomad"]["meta"].get("namespace", "").split(",")]


def placements(plan: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """{tool: {"<vo> CPU|GPU": [nodes that fit]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, tool in TOOLS["tools"].items():
        gpu_optional = "gpu_num" in tool["user_hardware"]
        for vo in plan["platform"]["vos"]:
            for gpu in ([False, True] if gpu_optional else [False]):
                need = needs(tool, gpu)
                label = f"{vo['name']} {'GPU' if need.gpu_model else 'CPU'}"
                out.setdefault(name, {})[label] = [n["name"] for n in candidates(plan, vo["namespace"])
                                                   if fits(need, n) is None]
    return out


# ----------------------------------------------------------------- jobs from the facts

def tools_tree(root: Path) -> Path:
    """PAPI's etc/ layout with a job per tool from tools.yml (constraints, services of
    traefik-tags.yml, the GPU device); modules, try-me and snapshots from P1's recorded tree."""
    papi_tree(root)
    for old in (root / "etc" / "tools").iterdir():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    for name, tool in TOOLS["tools"].items():
        constraints = [{"attribute": a, "operator": o, "value": v} for a, o, v in tool["constraints"]]
        model = next((t["gpu_model"] for t in tool["tasks"] if t.get("gpu_model")), None)
        path = root / tool["template"]
        path.parent.mkdir(parents=True)
        path.write_text(_job(tool["template"], "tool", constraints, model))
    return root


def test_the_facts_agree_with_the_other_papi_records() -> None:
    """tools.yml, job-templates.yml (P1) and traefik-tags.yml record the same tools and tasks."""
    recorded = yaml.safe_load((ROOT / "tests" / "data" / "papi" / "job-templates.yml").read_text())["jobs"]
    templates = {j["template"]: [t["name"] for t in j["tasks"]] for j in recorded if "/tools/" in j["template"]}
    assert {t["template"]: [x["name"] for x in t["tasks"]] for t in TOOLS["tools"].values()} == templates
    assert TOOLS["upstream"]["commit"] == PAPI_FACTS["upstream"]["commit"]


def test_every_tool_passes_the_contract_on_the_sample_plan_cpu_and_gpu(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    tree = tools_tree(tmp_path / "papi")
    count, violations, notes = check_papi(tree, plan)
    assert violations == [], "\n".join(map(str, violations))
    labels = [label for label, _ in papi_jobs(tree, plan)[0]]
    refused = {re.sub(r" \[.*", "", n) for n in notes}
    for name, tool in TOOLS["tools"].items():
        fixed = any(t.get("gpu_model") and not t["gpu_model"].startswith("${") for t in tool["tasks"])
        if fixed:     # PAPI itself refuses it where no node offers that model (a note says so)
            assert tool["template"] in refused, name
            continue
        assert f"{tool['template']} [vo.ai4eosc.eu, CPU]" in labels
        assert f"{tool['template']} [vo.ai4eosc.eu, GPU NVIDIA A100-PCIE-40GB]" in labels
        assert f"{tool['template']} [vo.imagine-ai.eu, CPU]" in labels
    assert count == len(labels)


def test_what_fits_where_on_the_sample_plan(tmp_path: Path) -> None:
    """The sample plan's compute nodes: ifca cpu (8 vCPUs, 32 GiB) and gpu (16 vCPUs, 64 GiB, A100,
    ai4eosc only); cesnet cpu has a named flavor (size unknown to the plan)."""
    where = placements(plan_of(tmp_path))
    assert where["ai4os-dev-env"] == {
        "vo.ai4eosc.eu CPU": ["ifca-cpu-1", "ifca-cpu-2", "ifca-gpu-1", "ifca-gpu-2"],
        "vo.ai4eosc.eu GPU": ["ifca-gpu-1", "ifca-gpu-2"],
        "vo.imagine-ai.eu CPU": ["ifca-cpu-1", "ifca-cpu-2"], "vo.imagine-ai.eu GPU": []}
    assert where["ai4os-ai4life-loader"] == where["ai4os-dev-env"]
    for tool in ("ai4os-federated-server", "ai4os-nvflare"):
        assert where[tool] == {"vo.ai4eosc.eu CPU": ["ifca-cpu-1", "ifca-cpu-2", "ifca-gpu-1", "ifca-gpu-2"],
                               "vo.imagine-ai.eu CPU": ["ifca-cpu-1", "ifca-cpu-2"]}
    # CVAT's 19 containers reserve 67.6 GiB together: more than any sample node has
    assert needs(TOOLS["tools"]["ai4os-cvat"], False) == Needs(cores=3, memory=69208, disk=32768, gpu_model=None)
    assert all(nodes == [] for nodes in where["ai4os-cvat"].values())
    # the LLM tool's vLLM asks for a Tesla T4 (fixed in PAPI's template), which the sample does not offer
    assert needs(TOOLS["tools"]["ai4os-llm"], False) == Needs(cores=8, memory=32300, disk=4096, gpu_model="Tesla T4")
    assert all(nodes == [] for nodes in where["ai4os-llm"].values())


def with_big_gpu_pool(d: dict[str, Any]) -> None:
    d["ai4os_sites"][0]["pools"].append({"name": "gpu-t4", "role": "gpu", "count": 1, "volume_gb": 500, "namespaces": ["ai4eosc"],
                                         "flavor": {"vcpus": 16, "ram_mb": 98304, "accelerator": {
                                             "type": "GPU", "number": 1, "vendor": "NVIDIA", "model": "T4"}}})


def test_a_t4_pool_with_96_gib_makes_every_tool_placeable(tmp_path: Path) -> None:
    """What docs/platform.md tells an institution that wants CVAT and the LLM tool."""
    plan = plan_of(tmp_path, sites_edit=with_big_gpu_pool)
    where = placements(plan)
    for tool, variants in where.items():
        assert variants["vo.ai4eosc.eu CPU" if "vo.ai4eosc.eu CPU" in variants else "vo.ai4eosc.eu GPU"], tool
    assert where["ai4os-llm"]["vo.ai4eosc.eu GPU"] == ["ifca-gpu-t4-1"]
    assert where["ai4os-cvat"]["vo.ai4eosc.eu CPU"] == ["ifca-gpu-t4-1"]
    count, violations, notes = check_papi(tools_tree(tmp_path / "papi"), plan)
    assert violations == [] and not [n for n in notes if "ai4os-llm" in n and "vo.ai4eosc.eu" in n], notes


def test_docs_list_every_tool_with_its_needs() -> None:
    docs = (ROOT / "docs" / "platform.md").read_text()
    section = docs[docs.index("### PAPI's tools"):]
    section = section[:section.index("\n## ")]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(ai4os-[a-z0-9-]+)` \|.*$", section, re.M)}
    assert set(rows) == set(TOOLS["tools"])
    for name, tool in TOOLS["tools"].items():
        need = needs(tool, False)
        assert f"{need.cores} cores" in rows[name] and f"{need.memory} MiB" in rows[name], rows[name]
    assert "Tesla T4" in rows["ai4os-llm"] and "/nomad-storage" in rows["ai4os-dev-env"]


# ----------------------------------------------------------------- against a real checkout

def extract(etc: Path) -> dict[str, Any]:
    """tools.yml's `tools` as read from a PAPI etc/ tree (the same reading that wrote the file)."""
    sentinel = {"CPU_NUM": 777001, "RAM": 777002, "DISK": 777003}
    back = {v: f"${{{k}}}" for k, v in sentinel.items()}
    out: dict[str, Any] = {}
    for tdir in sorted((etc / "tools").iterdir()):
        text = (tdir / "nomad.hcl").read_text()
        starts = [i + 1 for i, line in enumerate(text.splitlines()) if re.match(r'\s*task\s+"', line)]
        user = yaml.safe_load((tdir / "user.yaml").read_text())
        doc = hcl2.loads(fill(text, {"JOB_UUID": "u", "NAMESPACE": "${NAMESPACE}", "GPU_NUM": "1",
                                     "GPU_MODELNAME": "${GPU_MODELNAME}", "BASE_DOMAIN": "d", "HOSTNAME": "h",
                                     **{k: str(v) for k, v in sentinel.items()}}))
        _, job = hcl_blocks(doc, "job")[0]
        (_, group), = hcl_blocks(job, "group")
        tasks = []
        for (tname, task), line in zip(hcl_blocks(group, "task"), starts):
            lifecycle = hcl_blocks(task, "lifecycle")
            res = (hcl_blocks(task, "resources") or [(None, {})])[0][1]
            cfg = (hcl_blocks(task, "config") or [(None, {})])[0][1]
            entry: dict[str, Any] = {"name": tname, "line": line, "driver": hcl_attr(task, "driver")}
            if lifecycle:
                entry["lifecycle"] = {"hook": hcl_attr(lifecycle[0][1], "hook"),
                                      "sidecar": bool(hcl_attr(lifecycle[0][1], "sidecar", False))}
            entry["resources"] = {k: back.get(hcl_attr(res, k), hcl_attr(res, k)) for k in ("cpu", "cores", "memory")
                                  if k in res}
            devices = [[hcl_attr(c, "value") for _, c in hcl_blocks(d, "constraint")] for _, d in hcl_blocks(res, "device")]
            if devices:
                entry["gpu_model"] = devices[0][0] if devices[0] else None
            if hcl_attr(cfg, "privileged"):
                entry["privileged"] = True
            volumes = [v for v in (hcl_attr(cfg, "volumes", []) or []) if v.startswith("/")]
            if volumes:
                entry["host_volumes"] = volumes
            tasks.append(entry)
        size = hcl_attr(hcl_blocks(group, "ephemeral_disk")[0][1], "size")
        out[tdir.name] = {
            "template": f"etc/tools/{tdir.name}/nomad.hcl",
            "constraints": [[hcl_attr(c, "attribute"), hcl_attr(c, "operator"), hcl_attr(c, "value")]
                            for _, c in hcl_blocks(job, "constraint")],
            "ephemeral_disk": back.get(size, size),
            "user_hardware": {k: {"value": v.get("value"), "range": v.get("range")}
                              for k, v in (user.get("hardware") or {}).items() if k in ("cpu_num", "gpu_num", "ram", "disk")},
            "user_storage": sorted((user.get("storage") or {}).keys()),
            "tasks": tasks}
    return out


def test_the_facts_are_what_a_papi_checkout_says(tmp_path: Path) -> None:
    checkout = os.environ.get("AI4OS_PAPI_CHECKOUT")
    if not checkout:
        pytest.skip("AI4OS_PAPI_CHECKOUT not set (a checkout of ai4os/ai4-papi at the recorded commit)")
    etc = Path(checkout) / "etc"
    assert extract(etc) == TOOLS["tools"]
    count, violations, _ = check_papi(Path(checkout), plan_of(tmp_path, sites_edit=with_big_gpu_pool))
    assert violations == [] and count > 0
