"""Submission through the Nomad HTTP API, against a TEST DOUBLE of that API (nomad_api_double.py;
Nomad itself is not obtainable here): secrets go to Nomad variables, jobs are parsed, planned and
registered; a re-run registers nothing; a changed setting re-registers only its job.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from nomad_api_double import NomadApiDouble
from support.platform_render import CHECKIN_WITHOUT_PAPI, SECRETS, make_inventory, render
from platform_secrets import SUBMIT_SECRETS

COMPONENTS = ["mlflow", "papi", "node_admission"]
TOKEN = "test-management-token"


def _changed(stdout: str) -> int:
    recap = stdout.rsplit("PLAY RECAP", 1)[1]
    m = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", recap)
    assert m, recap
    return int(m.group(1))


def test_submit_is_idempotent_and_keeps_secrets_in_variables(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {"ai4os_enable_mlflow": True,
                                    "ai4os_mlflow_backend_store_uri": "postgresql://mlflow@db.example.org/mlflow"},
                         dict(SECRETS, **SUBMIT_SECRETS, ai4os_mlflow_backend_store_password="db-secret"),
                         gpu_facts=False)
    nomad = NomadApiDouble(TOKEN)
    extra = {"platform_job_submit": True, "platform_job_nomad_addr": nomad.address, "platform_job_nomad_token": TOKEN,
             "platform_job_nomad_ca_cert": "", "platform_job_components": COMPONENTS}
    try:
        first = render(inv, tmp_path / "out", extra)
        assert first.returncode == 0, first.stdout[-4000:]
        assert sorted(job for _, job in nomad.jobs) == ["mlflow", "node-admission", "papi"]
        assert {j["Region"] for j in nomad.jobs.values()} == {"ai4os"}
        assert {ns for ns, _ in nomad.jobs} == {"platform"}
        assert nomad.variables[("platform", "nomad/jobs/mlflow")] == {"db_password": "db-secret"}
        papi = nomad.variables[("platform", "nomad/jobs/papi")]
        # PAPI's own scoped token, never the submitting (management) one; its secrets and client certificate.
        assert papi["nomad_token"] == SUBMIT_SECRETS["ai4os_secret_nomad_token_papi"]
        assert {k: papi[k] for k in ("harbor_robot_password", "jenkins_token", "provenance_token", "litellm_api_key")} \
            == {k: SUBMIT_SECRETS[f"ai4os_secret_papi_{k}"] for k in ("harbor_robot_password", "jenkins_token",
                                                                    "provenance_token", "litellm_api_key")}
        assert nomad.variables[("platform", "nomad/jobs/node-admission")] == {
            "nomad_token": SUBMIT_SECRETS["ai4os_secret_nomad_token_node_admission"]}
        cert = x509.load_pem_x509_certificate(papi["client_cert"].encode())
        ca = x509.load_pem_x509_certificate(SUBMIT_SECRETS["ai4os_secret_ca_cert"].encode())
        cert.verify_directly_issued_by(ca)
        assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
        assert papi["ca_cert"] == SUBMIT_SECRETS["ai4os_secret_ca_cert"] and "PRIVATE KEY" in papi["client_key"]
        assert not any(TOKEN in value for items in nomad.variables.values() for value in items.values())
        for secret in ["db-secret", TOKEN, *SUBMIT_SECRETS.values()]:
            assert secret not in first.stdout

        writes = len(nomad.writes())
        second = render(inv, tmp_path / "out", extra)
        assert second.returncode == 0, second.stdout[-4000:]
        assert len(nomad.writes()) == writes            # nothing re-registered or re-written
        assert _changed(second.stdout) == 0

        third = render(inv, tmp_path / "out", dict(extra, ai4os_papi_count=2))
        assert third.returncode == 0, third.stdout[-4000:]
        assert [p for m, p in nomad.writes()[writes:]] == ["/v1/jobs"]      # only papi, once
        assert 'count = 2' in (tmp_path / "out" / "papi" / "papi.nomad.hcl").read_text()

        denied = render(inv, tmp_path / "out", dict(extra, platform_job_nomad_token="wrong", ai4os_papi_count=3,
                                                    platform_job_components=["papi"]))
        assert denied.returncode != 0 and "403" in denied.stdout
    finally:
        nomad.close()


def test_oidc_login_and_forward_auth_are_submitted_once(tmp_path: Path) -> None:
    """With the real OpenID provider as issuer: discovery checked, Nomad auth method and binding rule created."""
    from support import oidc_op

    op, = oidc_op.start_providers(tmp_path)
    nomad = NomadApiDouble(TOKEN)
    try:
        platform_oidc = {"provider": "egi_checkin", "issuer": op.issuer, "operators_group": "urn:x:operators",
                         "clients": {"papi": "ai4os-papi", "dashboard": "ai4os-dashboard", "nomad": "ai4os-nomad",
                                     "oauth2_proxy": "ai4os-admin"}}
        inv = make_inventory(tmp_path, {"ai4os_oidc": platform_oidc, "ai4os_oidc_ca_file": str(op.ca_file), **CHECKIN_WITHOUT_PAPI},
                             SECRETS, gpu_facts=False)
        extra = {"platform_job_submit": True, "platform_job_nomad_addr": nomad.address,
                 "platform_job_nomad_token": TOKEN, "platform_job_nomad_ca_cert": "", "platform_job_components": ["oidc"]}
        first = render(inv, tmp_path / "out", extra)
        assert first.returncode == 0, first.stdout[-4000:]
        method = nomad.auth_methods["ai4os-oidc"]
        assert method["Config"]["OIDCDiscoveryURL"] == op.issuer
        assert method["Config"]["OIDCClientSecret"] == SECRETS["ai4os_oidc_nomad_client_secret"]
        assert [r["Selector"] for r in nomad.binding_rules] == ['"urn:x:operators" in list.entitlements']
        assert nomad.variables[("platform", "nomad/jobs/oauth2-proxy")] == {
            "client_secret": SECRETS["ai4os_oidc_oauth2_proxy_client_secret"],
            "cookie_secret": SECRETS["ai4os_oidc_oauth2_proxy_cookie_secret"]}
        assert ("platform", "oauth2-proxy") in nomad.jobs
        assert SECRETS["ai4os_oidc_nomad_client_secret"] not in first.stdout
        writes = len(nomad.writes())
        second = render(inv, tmp_path / "out", extra)
        assert second.returncode == 0 and _changed(second.stdout) == 0, second.stdout[-3000:]
        assert len(nomad.writes()) == writes
    finally:
        nomad.close()
        oidc_op.stop(op)
