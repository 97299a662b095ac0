"""The dashboard runs from its own image as shipped: the rendered job and config.json are
checked against what the dashboard's code and image really read, recorded as test data from
its source (tests/data/dashboard/facts.yml, ai4os/ai4-dashboard at the commit named there).
The image cannot run here (its registry is out of reach), so its start command's step is run
as the image runs it: the real jq (Debian) with the same filter and the job's environment, on
the rendered file in a directory laid out as the job mounts it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import yaml
from support.platform_render import Rendered
from support.ci import unavailable

from ai4os_kit.paths import ROOT
from ai4os_kit.platform.nomad_job import hcl_attr, hcl_blocks

FACTS = yaml.safe_load((ROOT / "tests" / "data" / "dashboard" / "facts.yml").read_text())
TYPES = {"string": str, "list": list, "mapping": dict, "boolean": bool}


def _task(rendered: Rendered) -> dict[str, Any]:
    job = hcl2.loads(rendered.file("dashboard", "dashboard.nomad.hcl").read_text())
    (_, body), = hcl_blocks(job, "job")
    (_, group), = hcl_blocks(body, "group")
    (_, task), = hcl_blocks(group, "task")
    return task


def _env(task: dict[str, Any]) -> dict[str, str]:
    (_, env), = hcl_blocks(task, "env")
    return {k: str(hcl_attr(env, k)) for k in env}


def _as_the_image_starts(config_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Dockerfile.prod's CMD: clean API_SERVER, jq the config.json in place (tmp file + mv)."""
    jq = shutil.which("jq")
    if jq is None:
        unavailable("jq is not installed", "Debian jq: .ci/setup.d/15-host-tools.sh")
    clean_api = env.get("API_SERVER", "").rstrip("/")
    in_nomad = "true" if env.get("NOMAD_JOB_ID") else "false"
    args = [jq, "--arg", "cleanApi", clean_api, "--arg", "deployedInNomad", in_nomad,
            "--arg", "clientId", env.get("CLIENT_ID", ""), "--arg", "issuer", env.get("ISSUER", ""),
            "--arg", "dummyClientSecret", env.get("DUMMY_CLIENT_SECRET", ""), FACTS["image_cmd"]["jq_filter"],
            str(config_dir / "config.json")]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    (config_dir / "config.tmp").write_text(out)
    (config_dir / "config.tmp").replace(config_dir / "config.json")
    return dict(json.loads((config_dir / "config.json").read_text()))


def test_config_json_is_mounted_where_the_app_fetches_it_and_can_be_rewritten(rendered: Rendered) -> None:
    task = _task(rendered)
    (_, config), = hcl_blocks(task, "config")
    volumes = hcl_attr(config, "volumes")
    mount_dir = str(Path(FACTS["config"]["file"]).parent)
    assert volumes == [f"local/config:{mount_dir}"], "a directory mount (the image's CMD moves a file into it)"
    templates = [t for _, t in hcl_blocks(task, "template")]
    assert [hcl_attr(t, "destination") for t in templates] == ["local/config/config.json"]
    assert not hcl_attr(config, "command") and not hcl_attr(config, "args"), "the image's own CMD runs"


def test_config_after_the_image_start_is_what_the_app_reads(rendered: Rendered, tmp_path: Path) -> None:
    env = _env(_task(rendered))
    env["NOMAD_JOB_ID"] = "dashboard"                               # set by Nomad in every task
    (tmp_path / "config.json").write_text(rendered.file("dashboard", "config.json").read_text())
    conf = _as_the_image_starts(tmp_path, env)
    for key, kind in FACTS["config"]["keys"].items():
        assert isinstance(conf.get(key), TYPES[kind]), f"{key}: {conf.get(key)!r} is not a {kind}"
    oidc = rendered.plan["platform"]["oidc"]
    home = rendered.plan["sites"][0]["domain"]
    assert conf["apiURL"] == f"https://api.{home}{FACTS['config']['api_base_suffix']}"
    assert (conf["issuer"], conf["clientId"]) == (oidc["issuer"], oidc["clients"]["dashboard"])
    assert conf["deployedInNomad"] is True
    assert conf["voName"] == rendered.plan["platform"]["vos"][0]["name"]
    assert set(conf["analytics"]) == {"src", "domain"}
    # Links to the platform's own services that are on (MLflow and storage are on in this rendering).
    urls = {link["name"]: link["url"] for link in conf["sidenavMenu"]}
    assert urls["SIDENAV.EXPERIMENT-TRACKING"] == f"https://mlflow.{home}"
    assert urls["SIDENAV.STORAGE"].startswith("https://127.0.0.1:")
    assert urls["SIDENAV.INFERENCE-WORKFLOWS"] == "https://inference.example.org/"
    assert all(set(link) == {"name", "url"} for link in conf["sidenavMenu"] + conf["footerLinks"])

