"""`ai4os-kit secrets --rotate` only replaces what the kit can apply safely, and says how.

The gossip keys and ACL tokens are applied by the roles (keyring reconciliation, token re-issue;
tested in tests/cluster/test_day2_backup.py and test_acl_tokens.py); the CA keeps the previous
one trusted until --finish-rotation; the bootstrap (management) tokens are refused with the
procedure by hand, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ai4os_kit.cli import main
from ai4os_kit.model.secrets import CA_PREVIOUS, read_secrets


@pytest.fixture()
def inventory(sample_inventory: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    assert main(["secrets", str(sample_inventory)]) == 0
    return sample_inventory


def _secrets(inventory: Path) -> dict:
    return read_secrets(inventory, inventory / ".vault-pass")


@pytest.mark.parametrize("name", ["ai4os_secret_consul_bootstrap_token", "ai4os_secret_nomad_bootstrap_token"])
def test_bootstrap_tokens_are_refused_with_the_procedure(inventory: Path, name: str, capsys) -> None:
    before = (inventory / "secrets.yml").read_bytes()
    capsys.readouterr()
    assert main(["secrets", "--rotate", name, str(inventory)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    agent = name.split("_")[2]
    assert f"{name} is not rotated by the kit; nothing was changed" in err
    assert f"{agent} acl token create" in err and f"{agent} acl token delete" in err and "ansible-vault edit" in err
    assert (inventory / "secrets.yml").read_bytes() == before
    assert name not in " ".join(capsys.readouterr().out.split())


def test_gossip_keys_and_tokens_say_how_they_are_applied(inventory: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["secrets", "--rotate", "ai4os_secret_consul_gossip_key", str(inventory)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "next: apply it with ansible-playbook" in out and "playbooks/upgrade.yml" in out
    assert "installs the new gossip key on every agent, makes it the one in use and removes the old one" in out
    assert main(["secrets", "--rotate", "ai4os_secret_nomad_token_status", str(inventory)]) == 0
    assert "issues the new token and deletes the old one" in " ".join(capsys.readouterr().out.split())


def test_the_ca_rotates_in_two_steps_trusting_both_in_between(inventory: Path, capsys) -> None:
    first = _secrets(inventory)
    assert main(["secrets", "--rotate", "ai4os_secret_ca", str(inventory)]) == 0
    assert "--finish-rotation ai4os_secret_ca" in " ".join(capsys.readouterr().out.split())
    during = _secrets(inventory)
    assert during["ai4os_secret_ca_cert"] != first["ai4os_secret_ca_cert"]
    assert during[CA_PREVIOUS] == first["ai4os_secret_ca_cert"]
    # a second rotation before the first is finished is refused, nothing written
    before = (inventory / "secrets.yml").read_bytes()
    assert main(["secrets", "--rotate", "ai4os_secret_ca", str(inventory)]) == 2
    assert "a CA rotation is under way" in capsys.readouterr().err
    assert (inventory / "secrets.yml").read_bytes() == before
    # finishing drops the previous CA; finishing again says there is nothing to finish
    assert main(["secrets", "--finish-rotation", "ai4os_secret_ca", str(inventory)]) == 0
    after = _secrets(inventory)
    assert CA_PREVIOUS not in after and after["ai4os_secret_ca_cert"] == during["ai4os_secret_ca_cert"]
    assert main(["secrets", "--finish-rotation", "ai4os_secret_ca", str(inventory)]) == 2
    assert "no CA rotation is under way" in capsys.readouterr().err
    assert main(["secrets", "--finish-rotation", "ai4os_secret_consul_gossip_key", str(inventory)]) == 2
