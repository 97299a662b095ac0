"""The artifacts role on a play whose hosts have different architectures.

The controller fetches and verifies each architecture's archive once (run_once tasks
that see every host's release through hostvars), and each host gets the binary of its
own architecture; a bad archive of one architecture stops only the hosts that need it.

Two inventory hosts on this machine (connection local), each with its own install
root and bin directory; the architecture is set per host through ``artifacts_arch``
(this machine has one). Archives are real tar.gz files on a file:// mirror.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from support.cluster_helpers import run_playbook

VERSION = "3.0.0"
PLAYBOOK = """\
- name: Install one release on hosts of two architectures
  hosts: all
  gather_facts: true
  roles:
    - role: artifacts
      artifacts_name: traefik
      artifacts_version: "3.0.0"
"""


def _archive(path: Path, arch: str) -> str:
    """A Traefik-like release archive whose binary says which architecture it is for."""
    data = f"#!/bin/sh\necho traefik {VERSION} {arch}\n".encode()
    with tarfile.open(path, "w:gz") as archive:
        for name, body in (("traefik", data), ("LICENSE.md", b"license")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o755
            archive.addfile(info, io.BytesIO(body))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bed(tmp_path: Path, wrong_pin: str | None = None) -> tuple[Path, dict[str, str]]:
    """Mirror, inventory, variables and playbook; ``wrong_pin``: an architecture whose pin no archive has."""
    release = tmp_path / "mirror" / "traefik" / f"v{VERSION}"
    release.mkdir(parents=True, exist_ok=True)
    made = {arch: _archive(release / f"traefik_v{VERSION}_linux_{arch}.tar.gz", arch) for arch in ("amd64", "arm64")}
    for arch in ("amd64", "arm64"):
        (tmp_path / arch / "bin").mkdir(parents=True, exist_ok=True)  # /usr/local/bin on a host
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {
        f"node-{arch}": {"ansible_connection": "local", "artifacts_arch": arch,
                         "artifacts_install_root": str(tmp_path / arch / "opt"),
                         "artifacts_bin_dir": str(tmp_path / arch / "bin")}
        for arch in ("amd64", "arm64")}}}))
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({
        "ai4os_artifacts_url": str(tmp_path / "mirror"),
        "artifacts_cache_dir": str(tmp_path / "cache"),
        "artifacts_pins": {"traefik": {VERSION: {**made, **({wrong_pin: "0" * 64} if wrong_pin else {})}}}}))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    return variables, made


def _converge(tmp_path: Path, variables: Path):
    return run_playbook(tmp_path, tmp_path / "play.yml", "-e", f"@{variables}", inventory=str(tmp_path / "hosts.json"))


def test_each_host_gets_its_architectures_binary_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    variables, made = _bed(tmp_path)
    first = _converge(tmp_path, variables)
    assert first.returncode == 0, first.stdout[-4000:]
    for arch in ("amd64", "arm64"):
        binary = tmp_path / arch / "bin" / "traefik"
        assert binary.read_text() == f"#!/bin/sh\necho traefik {VERSION} {arch}\n"
        cached = tmp_path / "cache" / "traefik" / VERSION / f"traefik_v{VERSION}_linux_{arch}.tar.gz"
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == made[arch]
    # fetched once per architecture, on the controller (run_once: by the batch's first host)
    fetch = first.stdout.split("TASK [artifacts : The archive in the controller's cache")[1].split("TASK [")[0]
    assert sorted(line.split(" => ")[1] for line in fetch.splitlines() if " => " in line) == [
        f"(item=traefik_v{VERSION}_linux_amd64.tar.gz)", f"(item=traefik_v{VERSION}_linux_arm64.tar.gz)"], fetch

    again = _converge(tmp_path, variables)
    assert again.returncode == 0, again.stdout[-4000:]
    recap = [line for line in again.stdout.splitlines() if line.startswith("node-")]
    assert len(recap) == 2 and all(" changed=0 " in line for line in recap), recap


def test_an_archive_that_is_not_the_pinned_one_stops_only_the_hosts_of_its_architecture(tmp_path: Path) -> None:
    variables, _ = _bed(tmp_path, wrong_pin="arm64")
    run = _converge(tmp_path, variables)
    out = " ".join(run.stdout.split())
    assert run.returncode != 0
    assert "CHECKSUM MISMATCH" in out and f"expected sha256 {'0' * 64}" in out
    assert (tmp_path / "amd64" / "bin" / "traefik").read_text().endswith(f"{VERSION} amd64\n")
    assert not (tmp_path / "arm64" / "bin" / "traefik").exists()
    # the archive that is not the pinned one was deleted from the controller's cache
    assert not (tmp_path / "cache" / "traefik" / VERSION / f"traefik_v{VERSION}_linux_arm64.tar.gz").exists()
