"""apt signing keys are pinned by fingerprint (role artifacts, tasks_from apt_key.yml; docker and nvidia roles).

Keys are real OpenPGP keys made with gpg for each test; the module that reads fingerprints
(plugins/modules/openpgp_fingerprints.py, no gpg on the hosts) is checked against gpg's own
listing, on those keys and on Debian's archive keyring. The roles run on localhost (connection
local) with the keyring and staging directories in the test's directory; the cases that add an
apt source are the refusals, which stop before any source is written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.cluster_helpers import run_playbook
from support import plugins

openpgp_fingerprints = plugins.load("plugins/modules/openpgp_fingerprints.py")

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is needed to make test keys")

PLAYBOOK = """\
- name: apt key of the artifacts role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Include apt_key.yml
      ansible.builtin.include_role:
        name: artifacts
        tasks_from: apt_key.yml
      vars:
        artifacts_apt_key_name: testrepo
    - name: Report
      ansible.builtin.debug:
        msg: "KEYPATH={{ artifacts_apt_key_path }}"
"""


def _gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two signing keys (ed25519 and RSA): armored and binary exports, fingerprints as gpg lists them."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    out: dict[str, object] = {}
    try:
        for name, algo in (("publisher", "ed25519"), ("other", "rsa2048")):
            _gpg(home, "--quick-gen-key", f"{name} <{name}@keys.ai4os.test>", algo, "sign", "never")
            listing = _gpg(home, "--with-colons", "--list-keys", f"{name}@keys.ai4os.test")
            out[f"{name}_fpr"] = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
            asc = home / f"{name}.asc"
            asc.write_text(_gpg(home, "--armor", "--export", str(out[f"{name}_fpr"])))
            binary = home / f"{name}.gpg"
            _gpg(home, "--output", str(binary), "--export", str(out[f"{name}_fpr"]))
            out[name], out[f"{name}_bin"] = asc, binary
        both = home / "both.asc"
        both.write_text(_gpg(home, "--armor", "--export", str(out["publisher_fpr"]), str(out["other_fpr"])))
        out["both"] = both
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    return out


def _gpg_primary_fingerprints(path: Path, home: Path) -> list[str]:
    home.mkdir(mode=0o700, exist_ok=True)
    listing = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--with-colons", "--import-options", "show-only",
                              "--import", str(path)], check=True, capture_output=True, text=True).stdout.splitlines()
    # The first fpr record after a pub record (rvk records may come between) is the primary key's.
    found, owner = [], None
    for line in listing:
        kind = line.split(":", 1)[0]
        if kind in ("pub", "sub"):
            owner = kind
        elif kind == "fpr" and owner == "pub":
            found.append(line.split(":")[9])
            owner = None
    return found


@pytest.mark.parametrize("name", ["publisher", "publisher_bin", "other", "other_bin", "both"])
def test_module_agrees_with_gpg(keys: dict, name: str, tmp_path: Path) -> None:
    path = keys[name]
    assert openpgp_fingerprints.fingerprints_of(path.read_bytes()) == _gpg_primary_fingerprints(path, tmp_path / "h")


def test_module_agrees_with_gpg_on_debians_archive_keyring(tmp_path: Path) -> None:
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if not keyring.exists():
        pytest.skip("no Debian archive keyring on this machine")
    found = openpgp_fingerprints.fingerprints_of(keyring.read_bytes())
    assert len(found) >= 3
    assert found == _gpg_primary_fingerprints(keyring, tmp_path / "h")


def _run(tmp_path: Path, source: str, fingerprint: str):
    playbook = tmp_path / "apt_key.yml"
    playbook.write_text(PLAYBOOK)
    return run_playbook(tmp_path, playbook, "-e", f"artifacts_apt_key_source={source}",
                        "-e", f"artifacts_apt_key_fingerprint={fingerprint}",
                        "-e", f"artifacts_apt_keyring_dir={tmp_path / 'keyrings'}",
                        "-e", f"artifacts_apt_key_staging_dir={tmp_path / 'staging'}")


@pytest.mark.parametrize(("name", "suffix", "how"), [("publisher", "asc", "path"), ("publisher_bin", "gpg", "path"),
                                                      ("publisher", "asc", "url")])
def test_pinned_key_is_installed(keys: dict, tmp_path: Path, name: str, suffix: str, how: str) -> None:
    source = str(keys[name]) if how == "path" else f"file://{keys[name]}"
    proc = _run(tmp_path, source, str(keys["publisher_fpr"]))
    assert proc.returncode == 0, proc.stdout[-3000:]
    installed = tmp_path / "keyrings" / f"ai4os-testrepo.{suffix}"
    assert f"KEYPATH={installed}" in proc.stdout
    assert installed.read_bytes() == keys[name].read_bytes()


@pytest.mark.parametrize("name", ["other", "both"])
def test_other_or_extra_key_is_refused(keys: dict, tmp_path: Path, name: str) -> None:
    proc = _run(tmp_path, str(keys[name]), str(keys["publisher_fpr"]))
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    assert "WRONG APT KEY testrepo" in out and "The repository was not added. Fix:" in out
    assert not (tmp_path / "keyrings").exists() or not any((tmp_path / "keyrings").iterdir())


ROLE_PLAYBOOK = """\
- name: Repository tasks of a role
  hosts: localhost
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: Include the role's repository tasks
      ansible.builtin.include_role:
        name: {role}
        tasks_from: repository.yml
"""


@pytest.mark.parametrize(("role", "source_var", "extra"), [
    ("docker", "docker_repository_key", ["docker_repository_url=http://127.0.0.1:9/docker"]),
    ("nvidia", None, ["nvidia_cuda_repo_distro=debian12"]),
])
def test_roles_refuse_a_repository_key_that_is_not_the_publishers(keys: dict, tmp_path: Path, role: str,
                                                                  source_var: str | None, extra: list[str]) -> None:
    """Docker's and NVIDIA's pinned fingerprints are not those of a key made here: the repository is never added."""
    args = ["-e", f"artifacts_apt_keyring_dir={tmp_path / 'keyrings'}", "-e", f"artifacts_apt_key_staging_dir={tmp_path / 'staging'}"]
    if source_var:
        args += ["-e", f"{source_var}={keys['publisher']}"]
    else:  # the CUDA key is fetched from <repo base>/<distro>/<arch>/<key file>
        repo = tmp_path / "cuda" / "debian12" / "x86_64"
        repo.mkdir(parents=True)
        shutil.copy(keys["publisher"], repo / "3bf863cc.pub")
        args += ["-e", f"nvidia_cuda_repo_base=file://{tmp_path / 'cuda'}"]
    for item in extra:
        args += ["-e", item]
    playbook = tmp_path / "repo.yml"
    playbook.write_text(ROLE_PLAYBOOK.format(role=role))
    proc = run_playbook(tmp_path, playbook, *args)
    out = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    pinned = {"docker": "9DC858229FC7DD38854AE2D88D81803C0EBFCD88", "nvidia": "EB693B3035CD5710E231E123A4B469963BF863CC"}[role]
    assert f"holds {keys['publisher_fpr']}, the pinned fingerprint is {pinned}" in out, out[-2000:]
    assert not Path(f"/etc/apt/sources.list.d/ai4os-{role}.list").exists()
    assert not Path(f"/etc/apt/sources.list.d/ai4os-{role}-cuda.sources").exists()
