"""Vault as rendered: TLS on its own listener (certificate from a Nomad variable, verified by
Traefik under vault.service.consul — the routing itself is tested with the real Traefik in
test_traefik_routing.py), and a JWT role that admits only members of the platform's VOs: its
bound claims are exactly the membership values the kit's OIDC mapping (ai4os_kit.platform.oidc,
checked against a real OpenID provider in tests/oidc) grants VO access for."""

from __future__ import annotations

import json
from pathlib import Path

import hcl2
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from nomad_api_double import NomadApiDouble
from support.platform_render import SECRETS, Rendered, make_inventory, render
from platform_secrets import SUBMIT_SECRETS

from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.paths import SAMPLE_INVENTORY
from ai4os_kit.platform.oidc import ClaimMapping

KEYCLOAK = {"provider": "keycloak", "issuer": "https://login.example.org/realms/ai4os",
            "keycloak": {"audience": "ai4os-api", "role_prefix": "access:", "roles_claim": "realm_access.roles",
                         "levels": ["ap-u", "ap-a"]},
            "operators_group": "access:vo.ai4eosc.eu:platform-admin"}


def _bound_claims(role: dict, plan: dict) -> tuple[str, list[str]]:
    mapping = ClaimMapping.from_plan(plan)
    claim = mapping.claim if mapping.provider == "egi_checkin" else "/" + mapping.roles_claim.replace(".", "/")
    return claim, [v for vo in mapping.vos for v in mapping.expected(vo)]


def test_checkin_jwt_role_binds_vo_membership(rendered_checkin: Rendered) -> None:
    role = json.loads(rendered_checkin.file("vault", "jwt-role.json").read_text())
    claim, members = _bound_claims(role, rendered_checkin.plan)
    assert role["bound_claims_type"] == "string"
    assert role["bound_claims"] == {claim: members} and claim == "eduperson_entitlement"
    assert rendered_checkin.platform["ai4os_oidc"]["operators_group"] not in members
    assert role["bound_audiences"] == [rendered_checkin.platform["ai4os_oidc"]["clients"]["papi"]]


def test_keycloak_jwt_role_binds_vo_roles(tmp_path: Path) -> None:
    sample = yaml.safe_load((SAMPLE_INVENTORY / "platform.yml").read_text())["ai4os_oidc"]
    oidc = dict(KEYCLOAK, clients=sample["clients"])
    inv = make_inventory(tmp_path, {"ai4os_oidc": oidc, "ai4os_enable_vault": True}, SECRETS, gpu_facts=False)
    done = render(inv, tmp_path / "out", {"platform_job_components": ["vault"]})
    assert done.returncode == 0, done.stdout[-3000:]
    role = json.loads((tmp_path / "out" / "vault" / "jwt-role.json").read_text())
    plan = build_plan(load_inventory(inv, check_vault=False))
    claim, members = _bound_claims(role, plan)
    assert role["bound_claims"] == {"/realm_access/roles": members} == {claim: members}
    assert "access:vo.ai4eosc.eu:ap-a" in members and KEYCLOAK["operators_group"] not in members


def test_vault_speaks_tls_with_a_certificate_from_a_nomad_variable(rendered: Rendered) -> None:
    config = rendered.file("vault", "vault.hcl").read_text()
    listener = hcl2.loads(config)["listener"][0]["tcp"]
    flat = {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in listener.items()}
    assert "tls_disable" not in flat
    assert (flat["tls_cert_file"], flat["tls_key_file"]) == ("/secrets/vault.pem", "/secrets/vault-key.pem")
    job = rendered.file("vault", "vault.nomad.hcl").read_text()
    assert '{{ with nomadVar "nomad/jobs/vault" }}{{ .key }}{{ end }}' in job
    assert "traefik.http.services.ai4os-vault.loadbalancer.server.scheme=https" in job
    assert "traefik.http.services.ai4os-vault.loadbalancer.serverstransport=ai4os-vault@file" in job
    assert 'tls_server_name = "vault.service.consul"' in job and "BEGIN" not in job


def test_vault_certificate_names_the_service_traefik_verifies(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"ai4os_enable_vault": True}, dict(SECRETS, **SUBMIT_SECRETS), gpu_facts=False)
    nomad = NomadApiDouble("test-management-token")
    extra = {"platform_job_submit": True, "platform_job_nomad_addr": nomad.address,
             "platform_job_nomad_token": "test-management-token", "platform_job_nomad_ca_cert": "",
             "platform_job_components": ["vault"]}
    try:
        done = render(inv, tmp_path / "out", extra)
        assert done.returncode == 0, done.stdout[-3000:]
        variable = next(v for (_, path), v in nomad.variables.items() if path == "nomad/jobs/vault")
    finally:
        nomad.close()
    cert = x509.load_pem_x509_certificate(variable["cert"].encode())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(SUBMIT_SECRETS["ai4os_secret_ca_cert"].encode()))
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["vault.service.consul"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert "PRIVATE KEY" in variable["key"] and variable["key"] not in done.stdout
