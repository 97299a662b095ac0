"""Platform secrets: generated once, stored with ansible-vault, never rotated unasked.

secrets.yml (ansible-vault encrypted) holds:
  ai4os_secret_consul_gossip_key      Consul gossip encryption key (32 random bytes, base64)
  ai4os_secret_nomad_gossip_key       Nomad gossip encryption key (32 random bytes, base64)
  ai4os_secret_consul_bootstrap_token Consul ACL bootstrap (management) token (UUID)
  ai4os_secret_nomad_bootstrap_token  Nomad ACL bootstrap (management) token (UUID)
  ai4os_secret_consul_token_<name>    Consul ACL token of one kit consumer (UUID): CONSUL_TOKENS
  ai4os_secret_nomad_token_<name>     Nomad ACL token (SecretID, UUID) of one kit consumer: NOMAD_TOKENS
  ai4os_secret_nomad_accessor_<name>  its AccessorID (UUID), replaced with it on --rotate
  ai4os_secret_ca_key                 platform CA private key (PEM, EC P-256)
  ai4os_secret_ca_cert                platform CA certificate (PEM, 10 years)
  ai4os_secret_ca_cert_previous       the CA certificate before `--rotate ai4os_secret_ca`, trusted
                                      beside the new one until `--finish-rotation ai4os_secret_ca`
  ai4os_oidc_oauth2_proxy_cookie_secret  cookie secret of the forward-auth proxy (32 characters)
  ai4os_secret_papi_<name>            what PAPI's image needs at start (IS_PROD): PAPI_SECRETS
Operator-supplied secrets (OIDC client secrets, ...) are kept as they are.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets as pysecrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.errors import InputError, KitError
from ai4os_kit.paths import PASS_FILE, SECRETS_FILE, VAULT_PASSWORD_ENV


def _gossip_key(_: str) -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _token(_: str) -> str:
    return str(uuid.uuid4())


def _ca_pair(platform_name: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AI4OS platform"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{platform_name} platform CA"),
    ])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def _cookie_secret(_: str) -> str:
    return base64.urlsafe_b64encode(os.urandom(24)).decode()  # 32 characters, as oauth2-proxy wants


# The kit's scoped ACL tokens: random secrets of their own (never derived from the
# bootstrap tokens), issued by the consul and nomad roles, each rotatable alone.
CONSUL_TOKENS = ("agent", "dns", "nomad_server", "nomad_client", "traefik", "prometheus", "replication", "status")
NOMAD_TOKENS = ("papi", "node_admission", "accounting", "prometheus", "provenance", "status")

# Credentials PAPI's image refuses to start without (IS_PROD; tests/data/papi/facts.yml): random, so
# what they unlock (Harbor snapshots, Jenkins catalog refresh, provenance reads, LiteLLM keys) stays off
# until an operator puts the real credential there. JENKINS_TOKEN and PROVENANCE_TOKEN are bearer
# tokens PAPI compares callers' tokens with: never a fixed value.
PAPI_SECRETS = ("harbor_robot_password", "jenkins_token", "provenance_token", "litellm_api_key")


def _url_token(_: str) -> str:
    return pysecrets.token_urlsafe(32)


GENERATED: dict[str, Callable[[str], str]] = {
    "ai4os_oidc_oauth2_proxy_cookie_secret": _cookie_secret,
    "ai4os_secret_consul_gossip_key": _gossip_key,
    "ai4os_secret_nomad_gossip_key": _gossip_key,
    "ai4os_secret_consul_bootstrap_token": _token,
    "ai4os_secret_nomad_bootstrap_token": _token,
    **{f"ai4os_secret_consul_token_{name}": _token for name in CONSUL_TOKENS},
    **{f"ai4os_secret_nomad_token_{name}": _token for name in NOMAD_TOKENS},
    **{f"ai4os_secret_nomad_accessor_{name}": _token for name in NOMAD_TOKENS},
    # Marks the platform's own services for Traefik (roles/traefik constraints).
    "ai4os_secret_traefik_platform_tag": _cookie_secret,
    **{f"ai4os_secret_papi_{name}": _url_token for name in PAPI_SECRETS},
}
CA_KEYS = ("ai4os_secret_ca_key", "ai4os_secret_ca_cert")
# Secrets replaced together with the one named: a rotated Nomad token is a new token
# (new AccessorID too); the nomad role deletes the old one when it issues it.
ROTATE_WITH: dict[str, tuple[str, ...]] = {
    f"ai4os_secret_nomad_token_{name}": (f"ai4os_secret_nomad_accessor_{name}",) for name in NOMAD_TOKENS
}
ROTATABLE = tuple(k for k in GENERATED if not k.startswith("ai4os_secret_nomad_accessor_")) + ("ai4os_secret_ca",)
CA_PREVIOUS = "ai4os_secret_ca_cert_previous"

# What applies a rotated secret safely (printed after `--rotate`). Gossip keys: the consul and nomad
# roles install the new key on every agent, make it the one in use, then remove the old one
# (tasks/day2/keyring.yml); the CA: the new and the previous CA are trusted while upgrade.yml
# re-issues every node certificate one node at a time; tokens: the roles re-issue that token alone.
_ROLLING = "ansible-playbook -i INVENTORY/hosts.yml playbooks/upgrade.yml (one node at a time)"
ROTATION_NEXT: dict[str, str] = {
    "ai4os_secret_consul_gossip_key": f"apply it with {_ROLLING}: the consul role installs the new gossip key on every "
                                      "agent, makes it the one in use and removes the old one",
    "ai4os_secret_nomad_gossip_key": f"apply it with {_ROLLING}: the nomad role installs the new gossip key on every "
                                     "server, makes it the one in use and removes the old one",
    "ai4os_secret_ca": f"apply it with {_ROLLING}: every node first trusts both CAs, then gets a certificate of the new "
                       "one; then `ai4os-kit secrets INVENTORY --finish-rotation ai4os_secret_ca` and the same playbook "
                       "again, so the previous CA is trusted no more",
}
_ISSUED = "apply it with ansible-playbook -i INVENTORY/hosts.yml playbooks/site.yml (or upgrade.yml): the role issues "\
          "the new token and deletes the old one; then re-run playbooks/platform.yml for the jobs that hold it"

# Secrets the kit cannot replace safely by itself: `--rotate` refuses them and prints the procedure.
ROTATE_REFUSED: dict[str, str] = {
    "ai4os_secret_consul_bootstrap_token": (
        "the Consul bootstrap token is the cluster's management token; Consul allows one bootstrap, so a new value "
        "would lock the kit out. By hand: (1) with the current token, create a new management token: "
        "consul acl token create -description 'ai4os-kit management' -policy-name global-management "
        "-secret $(uuidgen); (2) put its SecretID into secrets.yml as ai4os_secret_consul_bootstrap_token "
        "(ansible-vault edit INVENTORY/secrets.yml); (3) run playbooks/cluster.yml, which checks the token; "
        "(4) delete the old token: consul acl token delete -accessor-id <old AccessorID>"),
    "ai4os_secret_nomad_bootstrap_token": (
        "the Nomad bootstrap token is the region's management token; Nomad allows one bootstrap, so a new value "
        "would lock the kit out. By hand: (1) with the current token, create a new management token: "
        "nomad acl token create -type=management -name='ai4os-kit management'; (2) put its Secret ID into "
        "secrets.yml as ai4os_secret_nomad_bootstrap_token (ansible-vault edit INVENTORY/secrets.yml); "
        "(3) run playbooks/cluster.yml, which checks the token; (4) delete the old token: "
        "nomad acl token delete <old Accessor ID>"),
}


def next_step(key: str) -> str:
    """How a rotated secret reaches the platform."""
    if key in ROTATION_NEXT:
        return ROTATION_NEXT[key]
    if key.startswith(("ai4os_secret_consul_token_", "ai4os_secret_nomad_token_")):
        return _ISSUED
    return "apply it with ansible-playbook -i INVENTORY/hosts.yml playbooks/site.yml (the jobs that hold it are re-submitted)"


def _vault(password: bytes) -> Any:
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    return VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password))])


def read_password(pw_file: Path) -> bytes:
    try:
        password = pw_file.read_bytes().strip()
    except OSError as exc:
        raise InputError(str(pw_file), "", f"vault password file cannot be read: {exc}",
                         "point ANSIBLE_VAULT_PASSWORD_FILE at a readable file holding the vault password") from None
    if not password:
        raise InputError(str(pw_file), "", "vault password file is empty", "write the vault password into it")
    return password


def read_secrets(inventory: Path, pw_file: Path) -> dict[str, Any]:
    """Decrypt and parse secrets.yml; InputError if it cannot be decrypted."""
    from ansible.errors import AnsibleError

    file = inventory / SECRETS_FILE
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(str(file), "", f"cannot be read: {exc}", "check the file's permissions") from None
    try:
        plain = _vault(read_password(pw_file)).decrypt(data)
    except AnsibleError as exc:
        reason = str(exc).splitlines()[0]
        raise InputError(str(file), "", f"cannot be decrypted with the vault password in {pw_file} ({reason})",
                         "use the password file this inventory was created with (ANSIBLE_VAULT_PASSWORD_FILE or "
                         f"{inventory / PASS_FILE}), or re-create the secrets") from None
    try:
        loaded = yaml.safe_load(plain) or {}
    except yaml.YAMLError as exc:
        raise InputError(str(file), "", f"decrypted content is not valid YAML: {exc}",
                         f"fix it with: ansible-vault edit {file}") from None
    if not isinstance(loaded, dict):
        raise InputError(str(file), "", "decrypted content is not a mapping of keys",
                         f"fix it with: ansible-vault edit {file}")
    return loaded


def password_file(inventory: Path, create: bool) -> tuple[Path, bool]:
    """The vault password file to use; create a random one if allowed and none exists."""
    env = os.environ.get(VAULT_PASSWORD_ENV)
    if env:
        return Path(env), False
    pw = inventory / PASS_FILE
    if pw.exists() or not create:
        return pw, False
    try:
        write_private(pw, (pysecrets.token_urlsafe(32) + "\n").encode())
    except FileExistsError:  # created meanwhile by another run: use that one
        return pw, False
    return pw, True


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with mode 0600 from the start and write ``data``.

    The mode is given to open(2) itself: there is no moment, not even if the
    process dies half-way, when the file exists with the umask's wider mode.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def link_into_group_vars(inventory: Path) -> None:
    """Make secrets.yml visible to Ansible as group_vars/all/secrets.yml (a relative symlink), once."""
    link = inventory / "group_vars" / "all" / SECRETS_FILE
    if link.parent.is_dir() and not link.is_symlink() and not link.exists():
        link.symlink_to(Path("..") / ".." / SECRETS_FILE)


def ensure_secrets(inventory: Path, platform_name: str, rotate: str | None = None) -> tuple[list[str], list[str]]:
    """Generate missing secrets (and the one named by ``rotate``); return (created, kept).

    secrets.yml is also linked into group_vars/all so playbooks read it.
    """
    if rotate is not None and rotate not in ROTATABLE:
        raise InputError("command line", "--rotate", f"'{rotate}' is not a generated secret",
                         f"use one of: {', '.join(k for k in ROTATABLE if k not in ROTATE_REFUSED)}")
    if rotate in ROTATE_REFUSED:
        raise InputError("command line", "--rotate", f"{rotate} is not rotated by the kit; nothing was changed",
                         ROTATE_REFUSED[rotate])
    file = inventory / SECRETS_FILE
    pw_file, _ = password_file(inventory, create=not file.exists())
    current = read_secrets(inventory, pw_file) if file.exists() else {}
    if rotate == "ai4os_secret_ca":
        if current.get(CA_PREVIOUS):
            raise InputError("command line", "--rotate", "a CA rotation is under way (secrets.yml keeps "
                             f"{CA_PREVIOUS}); nothing was changed",
                             "finish it first: run playbooks/upgrade.yml, then `ai4os-kit secrets INVENTORY "
                             "--finish-rotation ai4os_secret_ca`")
        if "ai4os_secret_ca_cert" in current:
            current[CA_PREVIOUS] = current["ai4os_secret_ca_cert"]
    created: list[str] = []
    replaced = {rotate, *ROTATE_WITH.get(rotate or "", ())}
    for key, make in GENERATED.items():
        if key not in current or key in replaced:
            current[key] = make(platform_name)
            created.append(key)
    if any(k not in current for k in CA_KEYS) or rotate == "ai4os_secret_ca":
        current["ai4os_secret_ca_key"], current["ai4os_secret_ca_cert"] = _ca_pair(platform_name)
        created += list(CA_KEYS)
    kept = sorted(k for k in current if k not in created)
    if created:
        _write(file, pw_file, current)
    link_into_group_vars(inventory)
    return created, kept


def _write(file: Path, pw_file: Path, values: dict[str, Any]) -> None:
    text = "# Platform secrets (ansible-vault). Generated by `ai4os-kit secrets`.\n" + yaml.safe_dump(values, sort_keys=True)
    blob = _vault(read_password(pw_file)).encrypt(text.encode())
    tmp = file.with_suffix(".yml.tmp")
    try:
        tmp.unlink(missing_ok=True)  # a left-over may have any mode; the new file is 0600 from the start
        write_private(tmp, blob)
        tmp.replace(file)
    except OSError as exc:
        raise KitError(f"{file}: cannot be written: {exc}") from None


def finish_rotation(inventory: Path, name: str) -> str:
    """End a CA rotation: the previous CA is no longer kept (nor, after the next rolling run, trusted)."""
    if name != "ai4os_secret_ca":
        raise InputError("command line", "--finish-rotation", f"'{name}' has no rotation to finish",
                         "only ai4os_secret_ca is rotated in two steps; the other secrets are done by one run")
    file = inventory / SECRETS_FILE
    pw_file, _ = password_file(inventory, create=False)
    current = read_secrets(inventory, pw_file)
    if not current.get(CA_PREVIOUS):
        raise InputError(str(file), CA_PREVIOUS, "no CA rotation is under way; nothing was changed",
                         "start one with `ai4os-kit secrets INVENTORY --rotate ai4os_secret_ca`")
    del current[CA_PREVIOUS]
    _write(file, pw_file, current)
    return ("the previous CA is no longer kept; run ansible-playbook -i INVENTORY/hosts.yml playbooks/upgrade.yml so "
            "no node trusts it any more")
