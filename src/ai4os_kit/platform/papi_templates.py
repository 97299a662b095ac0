"""PAPI's own job templates, filled the way PAPI fills them, for the job contract.

PAPI keeps its Nomad job templates in its etc/ directory (ai4os/ai4-papi, ai4papi/conf.py:90-152):
etc/modules/nomad.hcl, etc/tools/<tool>/nomad.hcl, etc/try_me/nomad.hcl and etc/snapshots/nomad.hcl.
It fills the ${UPPERCASE} placeholders with Python's Template.safe_substitute (so ${lowercase} Nomad
interpolations and ${NOMAD_*} runtime variables stay) and submits them. This module finds that
layout in a PAPI checkout (or its etc/ directory) and fills each template for every case PAPI
submits on this platform: every VO (namespace, deployment domain), CPU-only and, per GPU model the
VO's nodes offer, with that model (PAPI lists the models of the nodes serving the VO); try-me only
for VO vo.ai4eosc.eu and only when the tryme component is on; snapshots on a compute node of the VO.
Placeholders PAPI fills with user input get a neutral value of the right kind.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from ai4os_kit.errors import InputError
from ai4os_kit.model.placement import PAPI_IMPORT_VO
from ai4os_kit.platform.constraints import node_id

LAYOUT = {
    "modules": "modules/nomad.hcl",
    "tools": "tools/*/nomad.hcl",
    "try_me": "try_me/nomad.hcl",
    "snapshots": "snapshots/nomad.hcl",
}
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# A device constraint naming one model outright (etc/tools/ai4os-llm/nomad.hcl asks for "Tesla T4"):
# PAPI submits such a template only to a VO whose nodes offer that model (deployments/tools.py:603-610).
FIXED_MODEL = re.compile(r'attribute\s*=\s*"\$\{device\.model\}"\s*operator\s*=\s*"="\s*value\s*=\s*"([^"$]+)"')
# Values PAPI's routers put in (deployments/modules.py:244-284, tools.py, try_me/nomad.py:171-186,
# snapshots.py:137-156); the rest are user input or counters, any value of the right kind will do.
FIXED = {"PRIORITY": "50", "CPU_NUM": "1", "RAM": "2000", "DISK": "1000", "SHARED_MEMORY": "1000000000",
         "DOCKER_IMAGE": "ai4oshub/ai4os-demo-app", "DOCKER_TAG": "latest", "SERVICE": "deepaas",
         "OWNER": "user@example.org", "OWNER_NAME": "A User", "OWNER_EMAIL": "user@example.org",
         "TITLE": "contract check", "DESCRIPTION": "", "TODAY": "2026-01-01", "TIMESTAMP": "1767225600"}


def etc_dir(root: Path) -> Path:
    """PAPI's etc/ directory in a checkout (or the directory itself); InputError when not there."""
    for candidate in (root / "etc", root):
        if (candidate / LAYOUT["modules"]).is_file():
            return candidate
    raise InputError("command line", "--papi", f"{root} holds no PAPI job templates ({LAYOUT['modules']} missing)",
                     "give a checkout of ai4os/ai4-papi (or its etc/ directory)")


def fill(text: str, values: dict[str, str]) -> str:
    """Template.safe_substitute of PAPI's ${UPPERCASE} placeholders; Nomad's runtime ${NOMAD_*} stay."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("NOMAD_"):
            return m.group(0)
        return values.get(name, FIXED.get(name, "1"))
    return PLACEHOLDER.sub(sub, text)


def _models_for(plan: dict[str, Any], namespace: str) -> list[str]:
    models: list[str] = []
    for node in plan["nodes"]:
        served = (node["nomad"].get("meta") or {}).get("namespace", "").split(",")
        if namespace in served:
            for device in node["nomad"].get("devices") or []:
                models += [m for m in device.get("models") or [] if m not in models]
    return models


def papi_jobs(root: Path, plan: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(label, filled job spec) for every case PAPI submits on this platform, and notes on the
    cases PAPI itself refuses (and so are not checked)."""
    etc = etc_dir(root)
    vos = plan["platform"]["vos"]
    tryme_on = plan["components"].get("tryme", {}).get("enabled", False)
    out: list[tuple[str, str]] = []
    notes: list[str] = []

    def add(path: Path, vo: dict[str, Any], extra: dict[str, str], note: str) -> None:
        label = f"{path.relative_to(etc.parent)} [{vo['name']}{', ' + note if note else ''}]"
        job_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, label))
        values = {"JOB_UUID": job_uuid, "HOSTNAME": job_uuid, "NAMESPACE": vo["namespace"],
                  "BASE_DOMAIN": vo["domain"], "VO": vo["name"], "PROJECT_NAME": vo["namespace"].upper(), **extra}
        out.append((label, fill(path.read_text(encoding="utf-8"), values)))

    deployments = [etc / LAYOUT["modules"]] + sorted(etc.glob(LAYOUT["tools"]))
    for vo in vos:
        offered = _models_for(plan, vo["namespace"])
        for path in deployments:
            fixed = [m for m in FIXED_MODEL.findall(path.read_text(encoding="utf-8")) if m not in offered]
            if fixed:
                notes.append(f"{path.relative_to(etc.parent)} [{vo['name']}]: not checked: it asks for GPU model "
                             f"{', '.join(fixed)}, which no node serving the VO offers, and PAPI refuses it then")
                continue
            add(path, vo, {"GPU_NUM": "0", "GPU_MODELNAME": ""}, "CPU")
            for model in offered:
                add(path, vo, {"GPU_NUM": "1", "GPU_MODELNAME": model}, f"GPU {model}")
        computes = [n for n in plan["nodes"] if (n["nomad"].get("meta") or {}).get("type") == "compute"
                    and vo["namespace"] in n["nomad"]["meta"].get("namespace", "").split(",")]
        if computes and (etc / LAYOUT["snapshots"]).is_file():
            add(etc / LAYOUT["snapshots"], vo, {"TARGET_NODE_ID": node_id(computes[0]["name"])}, computes[0]["name"])
    try_me_vo = next((vo for vo in vos if vo["name"] == PAPI_IMPORT_VO), None)
    if tryme_on and try_me_vo and (etc / LAYOUT["try_me"]).is_file():
        add(etc / LAYOUT["try_me"], try_me_vo, {}, "")
    elif (etc / LAYOUT["try_me"]).is_file():
        notes.append(f"{(etc / LAYOUT['try_me']).relative_to(etc.parent)}: not checked: the tryme component is off")
    return out, notes
