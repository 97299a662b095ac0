"""No secret in the output of the platform play at -vvv, submitting to a TEST DOUBLE of the Nomad
HTTP API (nomad_api_double.py; Nomad is not obtainable here): every task that sends a token or
handles a secret hides it (no_log), also when Nomad refuses a request."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from nomad_api_double import NomadApiDouble
from support.platform_render import ALL_ON, SECRETS, make_inventory, render
from platform_secrets import SUBMIT_SECRETS

TOKEN = "5d2c0e1a-submitting-token-never-printed"
DB_PASSWORD = "db-password-never-printed"
# Every component that hands secrets or tokens to its jobs (the others render and submit the same
# way, without one); oidc is left out because its role reads the issuer's discovery document
# (test_submission.py runs it against a real OpenID provider).
COMPONENTS = ["vault", "storage", "mlflow", "papi", "monitoring", "node_admission"]


def _private_part(pem: str) -> list[str]:
    """The base64 lines of a private key PEM that its public key does not share (an EC key's PEM ends
    with the public point, which the key module may print and is no secret)."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    flat = "".join(public.splitlines()[1:-1])
    return [line for line in pem.splitlines()[1:-1] if line not in flat]


def _secrets(keys: list[Path]) -> list[str]:
    """Every secret value; certificates are public (the platform CA's, the issued client certificates),
    their private keys are not (the CA key, and the client keys the play issued under <render dir>/pki)."""
    public = {SUBMIT_SECRETS["ai4os_secret_ca_cert"]}
    values = [TOKEN, DB_PASSWORD, *(v for v in [*SECRETS.values(), *SUBMIT_SECRETS.values()] if v not in public),
              *(line for k in keys for line in _private_part(k.read_text()))]
    # PEM blocks: their base64 lines (a printed PEM would show them).
    out = []
    for value in values:
        if "PRIVATE KEY-----" in value:
            out += _private_part(value)
        elif "-----BEGIN" in value:
            out += [line for line in value.splitlines() if line and not line.startswith("-----")]
        else:
            out.append(value)
    return out


def _assert_clean(text: str, out: Path) -> None:
    keys = sorted((out / "pki").glob("*-key.pem"))
    assert keys, "the play issued no client certificate"
    leaked = [s for s in _secrets(keys) if s in text]
    assert not leaked, f"secrets in the -vvv output: {[s[:12] + '...' for s in leaked]}"


def test_vvv_output_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSIBLE_VERBOSITY", "3")          # the same as ansible-playbook -vvv
    overrides = dict(ALL_ON, ai4os_mlflow_backend_store_uri="postgresql://mlflow@db.example.org/mlflow")
    inv = make_inventory(tmp_path, overrides, dict(SECRETS, **SUBMIT_SECRETS,
                                                   ai4os_mlflow_backend_store_password=DB_PASSWORD), gpu_facts=True)
    nomad = NomadApiDouble(TOKEN)
    extra = {"platform_job_submit": True, "platform_job_nomad_addr": nomad.address, "platform_job_nomad_token": TOKEN,
             "platform_job_nomad_ca_cert": "", "platform_job_components": COMPONENTS}
    try:
        ok = render(inv, tmp_path / "out", extra)
        assert ok.returncode == 0, ok.stdout[-4000:] + ok.stderr[-2000:]
        assert len(nomad.jobs) >= len(COMPONENTS) and nomad.variables
        _assert_clean(ok.stdout + ok.stderr, tmp_path / "out")
        # Refused by Nomad (wrong token): the failure is reported, the token is not.
        denied = render(inv, tmp_path / "out", dict(extra, platform_job_nomad_token=TOKEN[::-1],
                                                    platform_job_components=["papi"], ai4os_papi_count=5))
        assert denied.returncode != 0 and "403" in denied.stdout
        assert TOKEN[::-1] not in denied.stdout + denied.stderr
        _assert_clean(denied.stdout + denied.stderr, tmp_path / "out")
    finally:
        nomad.close()
