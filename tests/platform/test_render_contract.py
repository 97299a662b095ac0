"""Every rendered job parses as HCL and passes the contract check against the plan's nodes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import hcl2
import pytest
from support.platform_render import Rendered, render

from ai4os_kit.platform import traefik_rules
from ai4os_kit.platform.contract import Contract, check_files, check_jobs, parse_job

JOBS = ["dashboard", "docuum", "drift", "flower", "mlflow", "monitoring", "node-admission", "node-exporter",
        "oauth2-proxy", "papi", "provenance", "storage-probe", "vault"]


def test_every_component_rendered_its_jobs(rendered: Rendered) -> None:
    names = sorted(parse_job(p.read_text(), str(p)).name for p in rendered.jobs())
    assert names == JOBS


@pytest.mark.parametrize("variant", ["rendered", "rendered_keycloak"])
def test_jobs_pass_the_contract(variant: str, request: pytest.FixtureRequest) -> None:
    r: Rendered = request.getfixturevalue(variant)
    violations = check_files(r.jobs(), r.plan)
    assert violations == [], "\n".join(map(str, violations))


def test_every_hcl_file_parses(rendered: Rendered) -> None:
    files = sorted(rendered.out.rglob("*.hcl"))
    assert len(files) >= len(JOBS) + 3          # + vault.hcl, user-policy.hcl, storage-sidecar.hcl
    for path in files:
        hcl2.loads(path.read_text())


def test_region_is_the_inventory_region_end_to_end(rendered: Rendered) -> None:
    """The kit's jobs name the platform region; PAPI's own templates say "global", which Nomad maps to
    the agent's region (tests/data/papi/facts.yml, nomad.template_region), and PAPI sends NOMAD_REGION."""
    region = rendered.plan["platform"]["region"]
    assert region != "global"
    for path in rendered.jobs():
        assert parse_job(path.read_text()).region == region, path
    papi = rendered.file("papi", "papi.nomad.hcl").read_text()
    assert re.search(rf'^\s*region\s*=\s*"{region}"', papi, re.M)
    assert re.search(rf'^\s*NOMAD_REGION\s*=\s*"{region}"', papi, re.M)


def test_no_secret_reaches_a_rendered_file(rendered: Rendered) -> None:
    from support.platform_render import SECRETS

    for path in rendered.out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for value in SECRETS.values():
                assert value not in text, f"{path} contains a secret"


def test_flower_is_routed_as_h2c(rendered: Rendered) -> None:
    tags = rendered.file("flower", "flower.nomad.hcl").read_text()
    assert "traefik.http.services.ai4os-flower.loadbalancer.server.scheme=h2c" in tags


def test_admin_uis_are_behind_forward_auth(rendered: Rendered) -> None:
    grafana = rendered.file("monitoring", "monitoring.nomad.hcl").read_text()
    assert "traefik.http.routers.ai4os-grafana.middlewares=ai4os-admin-auth@consulcatalog" in grafana
    proxy = rendered.file("oidc", "oauth2-proxy.nomad.hcl").read_text()
    for ui in ("nomad", "consul", "traefik"):
        assert f"traefik.http.routers.ai4os-admin-{ui}.rule=Host(`{ui}." in proxy
    oidc = rendered.platform["ai4os_oidc"]
    flag = "--allowed-group" if oidc["provider"] == "egi_checkin" else "--allowed-role"   # Keycloak: realm roles
    assert f"{flag}={oidc['operators_group']}" in proxy


@pytest.mark.parametrize(("variant", "list_name", "claim"), [
    ("rendered_checkin", "entitlements", "eduperson_entitlement"),
    ("rendered", "roles", "/realm_access/roles"),
    ("rendered_keycloak", "roles", "/realm_access/roles"),
])
def test_nomad_oidc_login_maps_the_operator_claim(variant: str, list_name: str, claim: str,
                                                  request: pytest.FixtureRequest) -> None:
    r: Rendered = request.getfixturevalue(variant)
    method = json.loads(r.file("oidc", "nomad-auth-method.json").read_text())
    rules = json.loads(r.file("oidc", "nomad-binding-rules.json").read_text())
    oidc = r.plan["platform"]["oidc"]
    assert method["Config"]["OIDCDiscoveryURL"] == oidc["issuer"]
    assert method["Config"]["BoundAudiences"] == [oidc["clients"]["nomad"]]
    assert method["Config"]["ListClaimMappings"] == {claim: list_name}
    assert rules[0]["Selector"] == f'"{oidc["operators_group"]}" in list.{list_name}'
    assert (rules[0]["BindType"], rules[0]["BindName"]) == ("policy", "ai4os-operators")   # never management


# ------------------------------------------------- the checker catches broken jobs

def _broken(rendered: Rendered, job: str, old: str, new: str, tmp_path: Path) -> list[str]:
    src = next(p for p in rendered.jobs() if parse_job(p.read_text()).name == job)
    text = src.read_text()
    assert old in text, f"{old!r} not in {src}"
    bad = tmp_path / src.name
    bad.write_text(text.replace(old, new, 1))
    others = [p for p in rendered.jobs() if p != src]
    return [str(v) for v in check_files(others + [bad], rendered.plan)]


@pytest.mark.parametrize(("job", "old", "new", "expected"), [
    ("papi", 'region      = "ai4os"', 'region      = "global"', "region: 'global' differs from the platform region 'ai4os'"),
    ("papi", 'region      = "ai4os"\n', "", "region: not set (Nomad would use 'global')"),
    ("papi", 'datacenters = ["ifca"]', 'datacenters = ["ifca", "mars"]', "'mars' matches no site of the plan"),
    ("dashboard", 'namespace   = "platform"', 'namespace   = "research"', "namespace: 'research' does not exist"),
    ("papi", 'value     = "services"', 'value     = "gpu-xl"', "constraint ${node.class} = 'gpu-xl' matches no Nomad client"),
    ("vault", "Host(`vault.ifca.ai4os.example.org`)", "Host(`vault.example.com`)",
     "host 'vault.example.com' is not under the site domain 'ifca.ai4os.example.org'"),
    ("mlflow", "Host(`mlflow.ifca.ai4os.example.org`)",
     "Host(`mlflow.ifca.ai4os.example.org`, `www.mlflow.ifca.ai4os.example.org`)",
     "Host takes 1 argument(s) in Traefik v3, got 2"),
    ("dashboard", "entrypoints=websecure", "entrypoints=https", "entry point 'https' is not one of web, websecure"),
    ("monitoring", "middlewares=ai4os-admin-auth@consulcatalog", "middlewares=sso@consulcatalog",
     "middleware 'sso@consulcatalog' is defined by no checked job"),
    ("docuum", 'driver = "docker"', 'driver = "podman"', "driver 'podman' is not offered by the cluster"),
    ("flower", "${node.class}", "${meta.compute}", "constraint ${meta.compute} regexp"),
])
def test_contract_check_catches(rendered: Rendered, tmp_path: Path, job: str, old: str, new: str,
                                expected: str) -> None:
    violations = _broken(rendered, job, old, new, tmp_path)
    assert any(expected in v for v in violations), violations


def test_constraints_need_admitted_nodes(rendered: Rendered) -> None:
    """Without node admission no node is ever ready (plan status=test): ready-only jobs cannot land."""
    strict = Contract.from_plan(rendered.plan, assume_admitted=False)
    violations = check_jobs([parse_job(rendered.file("papi", "papi.nomad.hcl").read_text())], strict)
    assert any("${meta.status} = 'ready' matches no Nomad client" in str(v) for v in violations)
    admission = check_jobs([parse_job(rendered.file("node_admission", "node-admission.nomad.hcl").read_text())], strict)
    assert admission == []          # the admission job itself runs on not-yet-ready nodes


def test_unparsable_job_is_reported(rendered: Rendered, tmp_path: Path) -> None:
    bad = tmp_path / "bad.nomad.hcl"
    bad.write_text('job "x" {\n  region = \n}\n')
    assert "does not parse as HCL" in str(check_files([bad], rendered.plan)[0])


def test_rule_parser() -> None:
    assert traefik_rules.parse_rule("Host(`a.b.org`) && (PathPrefix(`/x`) || !Method(`GET`))") == [
        ("Host", ["a.b.org"]), ("PathPrefix", ["/x"]), ("Method", ["GET"])]
    for bad in ("Host(a.b.org)", "Hots(`a.b.org`)", "Host(`a.b.org`) &&", "Host(`a`)) "):
        with pytest.raises(ValueError):
            traefik_rules.parse_rule(bad)


def test_contract_cli(rendered: Rendered) -> None:
    from ai4os_kit.cli import main

    assert main(["contract", str(rendered.inventory), str(rendered.out)]) == 0


def test_second_run_in_check_mode_changes_nothing(rendered: Rendered) -> None:
    """Re-running on the rendered tree (check mode, so nothing could be written anyway) reports 0 changed."""
    result = render(rendered.inventory, rendered.out, check=True)
    assert result.returncode == 0, result.stdout[-3000:]
    recap = result.stdout.rsplit("PLAY RECAP", 1)[1]
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s", recap), recap
