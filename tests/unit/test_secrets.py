from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509

from ai4os_kit.cli import main
from ai4os_kit.model.secrets import read_secrets


def test_secrets_generated_once_and_never_rotated(sample_inventory: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    assert main(["secrets", str(sample_inventory)]) == 0
    file = sample_inventory / "secrets.yml"
    assert file.read_text().startswith("$ANSIBLE_VAULT;")
    assert (sample_inventory / ".vault-pass").stat().st_mode & 0o077 == 0
    first = read_secrets(sample_inventory, sample_inventory / ".vault-pass")
    assert len(base64.b64decode(first["ai4os_secret_consul_gossip_key"])) == 32
    cert = x509.load_pem_x509_certificate(first["ai4os_secret_ca_cert"].encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    blob = file.read_bytes()
    capsys.readouterr()
    assert main(["secrets", str(sample_inventory)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert file.read_bytes() == blob
    assert main(["check", str(sample_inventory)]) == 0
    assert (sample_inventory / "group_vars" / "all" / "secrets.yml").resolve() == file.resolve()


def test_rotate_only_the_named_secret(sample_inventory: Path, monkeypatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    assert main(["secrets", str(sample_inventory)]) == 0
    pw = sample_inventory / ".vault-pass"
    before = read_secrets(sample_inventory, pw)
    assert main(["secrets", "--rotate", "ai4os_secret_nomad_gossip_key", str(sample_inventory)]) == 0
    after = read_secrets(sample_inventory, pw)
    assert after["ai4os_secret_nomad_gossip_key"] != before["ai4os_secret_nomad_gossip_key"]
    for key in before:
        if key != "ai4os_secret_nomad_gossip_key":
            assert after[key] == before[key], key
    assert main(["secrets", "--rotate", "bogus", str(sample_inventory)]) == 2


def test_operator_secrets_are_kept(sample_inventory: Path, monkeypatch) -> None:
    from ai4os_kit.model import secrets as mod
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    assert main(["secrets", str(sample_inventory)]) == 0
    pw = sample_inventory / ".vault-pass"
    data = read_secrets(sample_inventory, pw)
    data["ai4os_secret_oidc_papi_client_secret"] = "s3cr3t"
    import yaml
    (sample_inventory / "secrets.yml").write_bytes(mod._vault(mod.read_password(pw)).encrypt(yaml.safe_dump(data).encode()))
    assert main(["secrets", "--rotate", "ai4os_secret_ca", str(sample_inventory)]) == 0
    assert read_secrets(sample_inventory, pw)["ai4os_secret_oidc_papi_client_secret"] == "s3cr3t"


def test_kit_tokens_are_random_and_rotate_alone(sample_inventory: Path, monkeypatch) -> None:
    """Each kit ACL token has a random secret of its own (not derived from the bootstrap token);
    rotating a Nomad token replaces its accessor too and nothing else."""
    import uuid

    from ai4os_kit.model.secrets import CONSUL_TOKENS, NOMAD_TOKENS
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    assert main(["secrets", str(sample_inventory)]) == 0
    pw = sample_inventory / ".vault-pass"
    before = read_secrets(sample_inventory, pw)
    names = ([f"ai4os_secret_consul_token_{n}" for n in CONSUL_TOKENS]
             + [f"ai4os_secret_nomad_{kind}_{n}" for n in NOMAD_TOKENS for kind in ("token", "accessor")])
    values = [before[name] for name in names]
    assert all(uuid.UUID(v).version == 4 for v in values)
    bootstraps = {before["ai4os_secret_consul_bootstrap_token"], before["ai4os_secret_nomad_bootstrap_token"]}
    assert len(set(values) | bootstraps) == len(values) + 2, "every token has its own secret"
    for token in ("ai4os_secret_nomad_token_papi", "ai4os_secret_consul_token_dns"):
        assert main(["secrets", "--rotate", token, str(sample_inventory)]) == 0
    after = read_secrets(sample_inventory, pw)
    changed = {key for key in before if after[key] != before[key]}
    assert changed == {"ai4os_secret_nomad_token_papi", "ai4os_secret_nomad_accessor_papi", "ai4os_secret_consul_token_dns"}
    # an accessor is not rotated on its own (it would orphan the token)
    assert main(["secrets", "--rotate", "ai4os_secret_nomad_accessor_papi", str(sample_inventory)]) == 2


def test_vault_password_and_secrets_are_private_from_their_first_byte(sample_inventory: Path, monkeypatch) -> None:
    """No window in which .vault-pass or secrets.yml is readable by others: even with umask 0 and no chmod
    ever reached (a process killed right after creating the file), both are created 0600."""
    import os

    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)

    def no_chmod(*args: object, **kwargs: object) -> None:
        """Stands for the moment between creating a file and a later chmod."""

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    old_umask = os.umask(0)
    try:
        assert main(["secrets", str(sample_inventory)]) == 0
    finally:
        os.umask(old_umask)
    for name in (".vault-pass", "secrets.yml"):
        assert (sample_inventory / name).stat().st_mode & 0o777 == 0o600, name


def test_an_existing_vault_password_file_is_used_not_replaced(sample_inventory: Path, monkeypatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    pw = sample_inventory / ".vault-pass"
    pw.write_text("operator-chosen-password\n")
    pw.chmod(0o600)
    assert main(["secrets", str(sample_inventory)]) == 0
    assert pw.read_text() == "operator-chosen-password\n"
    assert read_secrets(sample_inventory, pw)["ai4os_secret_consul_gossip_key"]
