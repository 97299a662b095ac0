"""PAPI runs from its own image as shipped: the rendered job, files and policy are checked
against what PAPI's code really reads, recorded as test data from its source
(tests/data/papi/facts.yml, ai4os/ai4-papi at the commit named there), not against the kit's
own picture of PAPI. PAPI itself cannot run here (its image lives on a registry these machines
cannot reach), so the files are read the way its code reads them: the image's CMD step with the
real envsubst, csv.DictReader with float() on the numeric columns, yaml.safe_load.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import jinja2
import pytest
import yaml
from support.platform_render import Rendered
from support.ci import unavailable

from ai4os_kit.paths import ROOT

FACTS = yaml.safe_load((ROOT / "tests" / "data" / "papi" / "facts.yml").read_text())
H100_NAME = "NVIDIA H100 80GB HBM3"           # tests/cluster/data/gpu-h100/nvidia-smi-query.csv


def _blocks(body: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for item in body.get(kind, []):
        for label, inner in item.items():
            out.append((label.strip('"'), inner))
    return out


def _one(value: Any) -> Any:
    """python-hcl2 wraps single values (and blocks) in one-element lists."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def _papi_tasks(rendered: Rendered) -> dict[str, dict[str, Any]]:
    job = hcl2.loads(rendered.file("papi", "papi.nomad.hcl").read_text())
    (_, body), = _blocks(job, "job")
    (_, group), = _blocks(body, "group")
    return dict(_blocks(group, "task"))


def _as_papi_cmd_does(text: str, dashboard: str) -> str:
    """The image's CMD step: envsubst < etc/main_tmp.yaml > etc/main.yaml (real envsubst)."""
    envsubst = shutil.which("envsubst")
    if envsubst is None:
        unavailable("envsubst is not installed", "Debian gettext-base: .ci/setup.d/15-host-tools.sh")
    done = subprocess.run([envsubst], input=text, capture_output=True, text=True, check=True,
                          env={"DASHBOARD_URL": dashboard, "PATH": os.environ.get("PATH", "")})
    return done.stdout


def test_main_yaml_is_what_papi_loads(rendered: Rendered) -> None:
    home = rendered.plan["sites"][0]["domain"]
    dashboard = f"https://dashboard.{home}"
    text = rendered.file("papi", "main.yaml").read_text()
    # envsubst replaces every $VAR: the only one in the file is the one PAPI's CMD means.
    assert re.findall(r"\$\{?\w+", text) == [FACTS["main_yaml"]["dashboard_placeholder"][:-1]]
    conf = yaml.safe_load(_as_papi_cmd_does(text, dashboard))
    assert sorted(conf) == sorted(FACTS["main_yaml"]["top_level"])
    vos = [vo["name"] for vo in rendered.plan["platform"]["vos"]]
    assert conf["auth"]["VO"] == vos
    assert conf["auth"]["CORS_origins"] == [dashboard]
    assert conf["self"]["domain"] == f"https://api.{home}"
    assert conf["nomad"]["namespaces"] == {vo["name"]: vo["namespace"] for vo in rendered.plan["platform"]["vos"]}
    assert conf["lb"]["domain"] == {vo["name"]: vo["domain"] for vo in rendered.plan["platform"]["vos"]}
    # Every key PAPI looks up per VO has every VO, also for OSCAR (no cluster configured here).
    assert {vo: sorted(c) for vo, c in conf["oscar"]["clusters"].items()} == {vo: ["cluster_id", "endpoint"] for vo in vos}
    assert conf["mlflow"] == {vo: f"https://mlflow.{home}/" for vo in vos}      # mlflow is on here
    # Read at import (try-me's VO): without it PAPI does not start.
    for key in FACTS["main_yaml"]["read_at_import"]:
        assert key["path"] == 'nomad.namespaces["vo.ai4eosc.eu"]'
        assert "vo.ai4eosc.eu" in conf["nomad"]["namespaces"]


def test_mlflow_off_still_gives_every_vo_an_entry(rendered_keycloak: Rendered) -> None:
    """PAPI looks up mlflow[vo] for every deployment (modules.py:279): an empty URL when MLflow is off."""
    text = rendered_keycloak.file("papi", "main.yaml").read_text()
    conf = yaml.safe_load(_as_papi_cmd_does(text, "https://dashboard.example.org"))
    assert conf["mlflow"] == {vo["name"]: "" for vo in rendered_keycloak.plan["platform"]["vos"]}


def _read_csv_as_papi(path: Path, facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """conf.py:155-170 / utils.py:202-222: DictReader, 'name' is the key, float() on the numeric columns."""
    reader = csv.DictReader(io.StringIO(path.read_text()), delimiter=facts["delimiter"])
    assert reader.fieldnames == facts["columns"]
    rows: dict[str, dict[str, Any]] = {}
    for row in reader:
        rows[row["name"]] = {k: (float(v) if k in facts["float_columns"] else v) for k, v in row.items() if k != "name"}
    return rows


def test_datacenters_csv_lists_the_sites_with_location_and_pue(rendered: Rendered) -> None:
    facts = FACTS["datacenters_csv"]
    rows = _read_csv_as_papi(rendered.file("papi", "datacenters.csv"), facts)
    assert len(rows) >= facts["required_rows"]
    assert list(rows) == [s["datacenter"] for s in rendered.plan["sites"]]     # the Nomad datacenters
    for site in rendered.plan["sites"]:
        loc = site["location"]
        assert rows[site["datacenter"]] == {"country": loc["country"], "lat": loc["lat"], "lon": loc["lon"],
                                            "PUE": loc["pue"]}
        assert set(facts["required_keys"]) <= set(rows[site["datacenter"]]) and rows[site["datacenter"]]["PUE"] > 0


def test_gpu_models_csv_uses_the_device_plugin_names(rendered: Rendered) -> None:
    facts = FACTS["gpu_models_csv"]
    rows = _read_csv_as_papi(rendered.file("papi", "gpu_models.csv"), facts)
    # Measured on the gpu node (real nvidia-smi output): its name, MiB converted to MB.
    assert rows[H100_NAME] == {"gpu_memory_MB": round(81559 * 1.048576), "gpu_compute_capability": 9.0}
    # The names PAPI ships are the plugin's names; the kit writes the same rows.
    for shipped in facts["shipped_rows"]:
        assert rows[shipped["name"]] == {k: float(v) for k, v in shipped.items() if k != "name"}
    # The inventory's pool model "A100" (no facts yet) has a row under the plugin's name.
    pools = [p for s in rendered.plan["sites"] for p in s["pools"] if p["role"] == "gpu"]
    for pool in pools:
        model = pool["flavor"]["accelerator"]["model"]
        assert any(model in name for name in rows), (model, sorted(rows))


def test_job_keeps_the_image_start_and_mounts_files_where_papi_reads_them(rendered: Rendered) -> None:
    tasks = _papi_tasks(rendered)
    papi = tasks["papi"]
    config = _one(papi["config"])
    # The image's own start: no command, args or entrypoint (the CMD runs envsubst, then ai4papi-run).
    assert FACTS["image"]["cmd"]["entrypoint"] is None
    assert not {"command", "args", "entrypoint"} & set(config)
    volumes = config["volumes"][0] if isinstance(config["volumes"][0], list) else config["volumes"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in volumes)
    assert mounts["local/main.yaml"] == FACTS["image"]["cmd"]["config_template"]
    var_dir = str(Path(FACTS["files"]["datacenters_csv"]).parent)
    assert mounts["local/var"] == var_dir == str(Path(FACTS["files"]["gpu_models_csv"]).parent)
    destinations = {_one(t["destination"]) for t in papi["template"]}
    assert {"local/main.yaml", "local/var/datacenters.csv", "local/var/gpu_models.csv"} <= destinations
    job = rendered.file("papi", "papi.nomad.hcl").read_text()
    assert re.search(rf"to\s*=\s*{FACTS['image']['port']}\b", job)
    # The package with the issuer set replaces the image's one at the same path.
    assert mounts["../alloc/data/ai4papi"] == FACTS["image"]["package_dir"]
    assert _one(_one(tasks["set-issuer"]["lifecycle"])["hook"]) == "prestart"


def test_every_variable_papi_needs_at_import_is_provided(rendered: Rendered) -> None:
    papi = _papi_tasks(rendered)["papi"]
    env = {k: _one(v) for k, v in _one(papi["env"]).items()}
    env_file = next(t for t in papi["template"] if _one(t["destination"]) == "secrets/papi.env")
    assert _one(env_file["env"]) is True
    from_vault = set(re.findall(r"^\s*([A-Z_]+)=\{\{ \.\w+ \}\}", _one(env_file["data"]), re.M))
    provided = set(env) | from_vault
    assert {v["name"] for v in FACTS["environment"]["required_in_prod"]} <= from_vault    # secrets, not job env
    assert env["IS_PROD"] == FACTS["image"]["env_baked"]["IS_PROD"]
    assert FACTS["image"]["cmd"]["substitutes"] in env
    client = FACTS["environment"]["nomad_client"]
    assert set(client["reads"]) - {"NOMAD_NAMESPACE"} <= provided          # NOMAD_NAMESPACE: unset by the CMD
    assert "NOMAD_NAMESPACE" not in provided
    assert env["NOMAD_REGION"] == rendered.plan["platform"]["region"]
    # python-nomad sends the client certificate only when both are set.
    assert client["client_cert_needs_both"] and env["NOMAD_CLIENT_CERT"] and env["NOMAD_CLIENT_KEY"]
    assert "NOMAD_TOKEN" in from_vault and "NOMAD_TOKEN" not in env
    for var in ("ACCOUNTING_PTH",):
        assert var in env


AUTH_PY_LINES = [
    "import re",
    "",
    FACTS["auth"]["issuer_line"],
    'jwk_client = jwt.PyJWKClient(f"{KEYCLOAK_URL}/protocol/openid-connect/certs")',
]


@pytest.mark.parametrize("variant", ["rendered", "rendered_keycloak"])
def test_issuer_script_points_papi_at_the_inventory_issuer(variant: str, request: pytest.FixtureRequest,
                                                           tmp_path: Path) -> None:
    """set_issuer.sh on a package dir holding the one line it rewrites (recorded in facts.yml, auth.py:30)."""
    r: Rendered = request.getfixturevalue(variant)
    issuer = r.plan["platform"]["oidc"]["issuer"]
    package = tmp_path / "ai4papi"
    package.mkdir()
    (package / "auth.py").write_text("\n".join(AUTH_PY_LINES) + "\n")
    (package / "conf.py").write_text("# untouched\n")
    alloc = tmp_path / "alloc"
    (alloc / "data").mkdir(parents=True)
    env = {"PAPI_PACKAGE_DIR": str(package), "NOMAD_ALLOC_DIR": str(alloc), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["sh", str(r.file("papi", "set_issuer.sh"))], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    lines = (alloc / "data" / "ai4papi" / "auth.py").read_text().splitlines()
    assert lines[2] == f'KEYCLOAK_URL = "{issuer}"'
    assert lines[:2] + lines[3:] == AUTH_PY_LINES[:2] + AUTH_PY_LINES[3:]
    assert (alloc / "data" / "ai4papi" / "conf.py").read_text() == "# untouched\n"
    assert (package / "auth.py").read_text().splitlines()[2] == FACTS["auth"]["issuer_line"]   # image untouched
    # An image whose auth.py no longer has that line: PAPI is not started.
    (package / "auth.py").write_text("ISSUER = 'x'\n")
    refused = subprocess.run(["sh", str(r.file("papi", "set_issuer.sh"))], env=env, capture_output=True, text=True,
                             check=False)
    assert refused.returncode == 1 and "found 0" in refused.stderr


def _flat(value: Any) -> list[Any]:
    """python-hcl2 wraps attribute values in lists, sometimes twice."""
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    return value if isinstance(value, list) else [value]


def _policy(template: str, **variables: Any) -> dict[str, Any]:
    text = (ROOT / "roles" / "nomad" / "templates" / template).read_text()
    return hcl2.loads(jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(text).render(**variables))


def test_papi_policy_covers_exactly_what_papi_calls() -> None:
    facts = FACTS["nomad"]
    policy = _policy("papi-policy.hcl.j2", nomad_namespaces=["ai4eosc", "imagine"])
    namespaces = {label: _flat(body["capabilities"]) for label, body in _blocks(policy, "namespace")}
    assert facts["listed_namespaces"] == "default_and_vo"
    assert namespaces == {"ai4eosc": facts["capabilities"]["vo"], "imagine": facts["capabilities"]["vo"],
                          "default": facts["capabilities"]["default"]}
    assert _flat(policy["node"][0]["policy"]) == [facts["capabilities"]["node"]]
    granted = {c for caps in namespaces.values() for c in caps}
    assert not granted & set(facts["not_used"])
    assert set(policy) == {"namespace", "node"}        # no agent, operator, variables or host volume rights
    # Every call PAPI makes is covered in the namespaces it makes it in.
    needs = {"GET /v1/jobs": "list-jobs", "GET /v1/job/<id>": "read-job", "GET /v1/job/<id>/allocations": "read-job",
             "GET /v1/job/<id>/evaluations": "read-job", "GET /v1/allocation/<id>": "read-job",
             "POST /v1/jobs": "submit-job", "DELETE /v1/job/<id>?purge=": "submit-job"}
    for call in facts["calls"]:
        if call["namespaces"] == "none":
            continue
        targets = {"vo": ["ai4eosc", "imagine"], "default": ["default"],
                   "default_and_vo": ["default", "ai4eosc", "imagine"]}[call["namespaces"]]
        for ns in targets:
            if call["endpoint"] == "POST /v1/jobs/parse":
                assert {"parse-job", "submit-job"} & set(namespaces[ns]), (call, ns)
            else:
                assert needs[call["endpoint"]] in namespaces[ns], (call, ns)


def test_node_admission_policy_is_node_write_only() -> None:
    policy = _policy("node-admission-policy.hcl.j2")
    assert list(policy) == ["node"] and len(policy["node"]) == 1
    assert {k: _flat(v) for k, v in policy["node"][0].items()} == {"policy": ["write"]}


def test_ai4os_kit_secrets_generates_what_papi_needs_at_start() -> None:
    """Every secret the papi role passes as a variable PAPI requires at import is one `ai4os-kit secrets`
    generates (random, url-safe: an env file value), and PAPI's required variables are all among them."""
    from ai4os_kit.model.secrets import GENERATED

    entries = yaml.safe_load((ROOT / "roles" / "papi" / "vars" / "main.yml").read_text())["papi_secret_env"]
    required = [e for e in entries if e["required"]]
    assert {e["env"] for e in required} == {"NOMAD_TOKEN"} | {v["name"] for v in FACTS["environment"]["required_in_prod"]}
    for entry in required:
        assert entry["var"] in GENERATED, entry
        value = GENERATED[entry["var"]]("test")
        assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", value), (entry, value)
        assert value != GENERATED[entry["var"]]("test")            # random, never a fixed value
