"""`ai4os-kit contract` on PAPI's template layout, with Nomad's semantics: no datacenters means "*",
device (GPU model) constraints are evaluated against the device plugin's names, ${node.unique.id} is
modelled, Traefik v2 rules (how PAPI writes them), and the node status the plan writes (test) until
node admission makes nodes ready.

PAPI's templates are not copied here: the test lays out PAPI's etc/ tree with jobs built from what
was recorded from them (tests/data/papi/facts.yml: constraints and device blocks; traefik-tags.yml:
the service tags verbatim). With AI4OS_PAPI_CHECKOUT pointing at a checkout of ai4os/ai4-papi, the
last test also runs the contract on the real templates.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.paths import ROOT, SAMPLE_INVENTORY
from ai4os_kit.platform.constraints import node_id
from ai4os_kit.platform.contract import Contract, check_papi, check_texts

DATA = ROOT / "tests" / "data" / "papi"
FACTS = yaml.safe_load((DATA / "facts.yml").read_text())
TAGS = {t["file"]: t["services"] for t in yaml.safe_load((DATA / "traefik-tags.yml").read_text())["templates"]}


def _constraint(c: dict[str, str]) -> str:
    return f'  constraint {{\n    attribute = "{c["attribute"]}"\n    operator  = "{c["operator"]}"\n    value     = "{c["value"]}"\n  }}\n'


def _job(file: str, kind: str, constraints: list[dict[str, str]], gpu_model: str | None) -> str:
    """A job with the recorded constraints, services and device block of one PAPI template."""
    services = ""
    for svc in TAGS.get(file, []):
        tags = ",\n".join(f'        "{t["tag"]}"' for t in svc["tags"])
        services += f'    service {{\n      name = "{svc["name"]}"\n      port = "{svc["port"]}"\n      tags = [\n{tags}\n      ]\n    }}\n'
    device = ""
    if gpu_model is not None:
        model = FACTS["node_meta"]["gpu_model"]["constraint"]
        device = ('      resources {\n        device "gpu" {\n          count = ${GPU_NUM}\n'
                  f'          constraint {{\n            attribute = "{model["attribute"]}"\n'
                  f'            operator  = "{model["operator"]}"\n            value     = "{gpu_model}"\n'
                  '          }\n        }\n      }\n')
    return (f'job "{kind}-${{JOB_UUID}}" {{\n  namespace = "${{NAMESPACE}}"\n  region    = "{FACTS["nomad"]["template_region"]}"\n'
            + "".join(_constraint(c) for c in constraints)
            + '  group "usergroup" {\n' + services
            + f'    task "main" {{\n      driver = "docker"\n{device}    }}\n  }}\n}}\n')


def papi_tree(root: Path, llm_model: str = "Tesla T4") -> Path:
    meta = FACTS["node_meta"]
    deploy = [meta["status"]["constraint"], meta["type"]["modules"], meta["namespace"]["constraint"]]
    files = {
        "etc/modules/nomad.hcl": _job("etc/modules/nomad.hcl", "module", deploy, "${GPU_MODELNAME}"),
        "etc/tools/ai4os-dev-env/nomad.hcl": _job("etc/tools/ai4os-dev-env/nomad.hcl", "tool",
                                                  deploy + [meta["type"]["tools_exclude"]], "${GPU_MODELNAME}"),
        # The LLM tool asks for one fixed model (etc/tools/ai4os-llm/nomad.hcl: "Tesla T4").
        "etc/tools/ai4os-llm/nomad.hcl": _job("etc/tools/ai4os-llm/nomad.hcl", "tool",
                                              deploy + [meta["type"]["tools_exclude"]], llm_model),
        "etc/try_me/nomad.hcl": _job("etc/try_me/nomad.hcl", "try",
                                     [meta["status"]["constraint"], meta["namespace"]["constraint"],
                                      meta["type"]["try_me"]], None),
        "etc/snapshots/nomad.hcl": _job("etc/snapshots/nomad.hcl", "snapshot", [meta["node_id"]["constraint"]], None),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def plan_of(tmp: Path, sites_edit: Any = None, platform_edit: Any = None) -> dict[str, Any]:
    inv = tmp / "inv"
    inv.mkdir()
    for name, edit in (("platform.yml", platform_edit), ("sites.yml", sites_edit)):
        data = yaml.safe_load((SAMPLE_INVENTORY / name).read_text())
        if edit:
            edit(data)
        (inv / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return build_plan(load_inventory(inv, check_vault=False))


def _messages(violations: list[Any]) -> list[str]:
    return [str(v) for v in violations]


def test_papi_templates_fit_the_sample_platform(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    count, violations, notes = check_papi(papi_tree(tmp_path / "papi"), plan)
    assert violations == [], _messages(violations)
    vos = plan["platform"]["vos"]
    # Per VO: module and dev-env on CPU and a snapshot; both again per GPU model of the VO's nodes (A100, for
    # ai4eosc only). The LLM tool asks for Tesla T4, which no node offers: PAPI refuses it, so it is a note.
    assert count == len(vos) * 2 + 2 + len(vos)
    assert sorted(notes) == sorted(
        [f"etc/tools/ai4os-llm/nomad.hcl [{vo['name']}]: not checked: it asks for GPU model Tesla T4, which no node "
         "serving the VO offers, and PAPI refuses it then" for vo in vos]
        + ["etc/try_me/nomad.hcl: not checked: the tryme component is off"])


def test_the_t4_case_maps_to_the_plugins_name(tmp_path: Path) -> None:
    """A pool whose flavor says Accelerator:Model T4 offers "Tesla T4", the name PAPI's LLM tool asks for."""
    def t4(sites: dict[str, Any]) -> None:
        sites["ai4os_sites"][0]["pools"][4]["flavor"]["accelerator"]["model"] = "T4"
    plan = plan_of(tmp_path, sites_edit=t4)
    assert {m for n in plan["nodes"] for d in n["nomad"]["devices"] for m in d["models"]} == {"Tesla T4"}
    count, violations, notes = check_papi(papi_tree(tmp_path / "papi"), plan)
    assert violations == [], _messages(violations)
    assert notes == ["etc/tools/ai4os-llm/nomad.hcl [vo.imagine-ai.eu]: not checked: it asks for GPU model Tesla T4, "
                     "which no node serving the VO offers, and PAPI refuses it then",
                     "etc/try_me/nomad.hcl: not checked: the tryme component is off"]


def test_try_me_needs_a_tryme_node_when_tryme_is_on(tmp_path: Path) -> None:
    def tryme_on(platform: dict[str, Any]) -> None:
        platform["ai4os_enable_tryme"] = True

    def tryme_pool(sites: dict[str, Any]) -> None:
        sites["ai4os_sites"][1]["pools"].append({"role": "tryme", "count": 1, "flavor": {"name": "standard.large"},
                                                  "volume_gb": 50})
    plan = plan_of(tmp_path, sites_edit=tryme_pool, platform_edit=tryme_on)
    count, violations, _ = check_papi(papi_tree(tmp_path / "papi", llm_model="NVIDIA A100-PCIE-40GB"), plan)
    assert violations == [], _messages(violations)
    # ai4eosc: module, dev-env, llm on CPU and on A100, a snapshot; imagine (no A100: PAPI refuses the llm tool):
    # module, dev-env, a snapshot; try-me, in VO vo.ai4eosc.eu only.
    assert count == 7 + 3 + 1
    # The same jobs where the tryme node serves another VO's namespace only: try-me cannot land.
    for node in plan["nodes"]:
        if node["role"] == "tryme":
            node["nomad"]["meta"]["namespace"] = "imagine"
    count, violations, _ = check_papi(papi_tree(tmp_path / "papi2", llm_model="NVIDIA A100-PCIE-40GB"), plan)
    assert [m for m in _messages(violations) if "no single node satisfies" in m] == [
        next(m for m in _messages(violations) if m.startswith("job try-"))]


def test_node_status_is_the_plans_until_admission_makes_nodes_ready(tmp_path: Path) -> None:
    def admission_off(platform: dict[str, Any]) -> None:
        platform["ai4os_enable_node_admission"] = False
    plan = plan_of(tmp_path, platform_edit=admission_off)
    assert {n["nomad"]["meta"].get("status") for n in plan["nodes"] if n["nomad"]["client"]} == {"test"}
    _, violations, _ = check_papi(papi_tree(tmp_path / "papi", llm_model="NVIDIA A100-PCIE-40GB"), plan)
    messages = _messages(violations)
    status = [m for m in messages if "${meta.status} regexp 'ready' matches no Nomad client" in m]
    assert {m.split(":")[0] for m in status} == {m.split(":")[0] for m in messages if "snapshot-" not in m}
    assert not any("snapshot-" in m for m in messages)          # snapshots do not ask for a ready node


def test_user_hosts_are_checked_under_meta_domain_and_the_vo_domain(tmp_path: Path) -> None:
    """PAPI's hosts <svc>-<uuid>.${meta.domain}-<VO domain>: the plan's meta.domain (the site label) gives
    names under <site>-<VO domain>; a meta.domain holding dots (the site's FQDN) breaks them."""
    plan = plan_of(tmp_path)
    _, violations, _ = check_papi(papi_tree(tmp_path / "papi", llm_model="NVIDIA A100-PCIE-40GB"), plan)
    assert violations == [], _messages(violations)
    broken = copy.deepcopy(plan)
    for node in broken["nodes"]:
        if node["nomad"]["client"]:
            node["nomad"]["meta"]["domain"] = f"{node['site']}.ai4os.example.org"
    _, violations, _ = check_papi(papi_tree(tmp_path / "papi2", llm_model="NVIDIA A100-PCIE-40GB"), broken)
    assert any("node meta.domain 'ifca.ai4os.example.org' is not one DNS label" in m for m in _messages(violations))


def test_datacenters_default_to_any_and_are_globs(tmp_path: Path) -> None:
    plan = plan_of(tmp_path)
    contract = Contract.from_plan(plan)
    job = ('job "x" {{\n  region = "ai4os"\n  namespace = "platform"\n{dcs}'
           '  group "g" {{\n    task "t" {{\n      driver = "docker"\n    }}\n  }}\n}}\n')
    assert check_texts([("none", job.format(dcs=""))], contract) == []                     # none = "*"
    assert check_texts([("glob", job.format(dcs='  datacenters = ["ces*"]\n'))], contract) == []
    bad = check_texts([("bad", job.format(dcs='  datacenters = ["mars*"]\n'))], contract)
    assert any("'mars*' matches no site of the plan" in str(v) for v in bad)


def test_snapshot_jobs_land_on_the_node_they_name(tmp_path: Path) -> None:
    """${node.unique.id} is modelled: the snapshot job's constraint names one node of the plan."""
    plan = plan_of(tmp_path)
    contract = Contract.from_plan(plan)
    ids = {n["node.unique.id"] for n in contract.nodes}
    assert len(ids) == len(contract.nodes)
    name = next(n["name"] for n in plan["nodes"] if n["role"] == "cpu")
    assert node_id(name) in ids


@pytest.mark.skipif(not os.environ.get("AI4OS_PAPI_CHECKOUT"), reason="AI4OS_PAPI_CHECKOUT (a checkout of "
                    "ai4os/ai4-papi) not set: the real templates are checked where one is at hand")
def test_the_real_papi_templates(tmp_path: Path) -> None:
    def t4(sites: dict[str, Any]) -> None:
        sites["ai4os_sites"][0]["pools"][4]["flavor"]["accelerator"]["model"] = "T4"
    count, violations, notes = check_papi(Path(os.environ["AI4OS_PAPI_CHECKOUT"]), plan_of(tmp_path, sites_edit=t4))
    assert count >= 12 and violations == [], _messages(violations)
    assert [n.split(" [")[0].split(":")[0] for n in notes] == ["etc/tools/ai4os-llm/nomad.hcl", "etc/try_me/nomad.hcl"]
