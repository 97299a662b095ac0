"""Role artifacts: the pinned, signature-checked Traefik release is installed; refused releases left nothing."""

import hashlib
import json
import os
from pathlib import Path

import pytest

MIRROR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "mirror"
VERSION = (MIRROR / "version").read_text().strip()
RELEASE = MIRROR / "signed" / "traefik" / f"v{VERSION}"
ARCHIVE = f"traefik_v{VERSION}_linux_amd64.tar.gz"


def published_sha256() -> str:
    line = (RELEASE / f"traefik_v{VERSION}_checksums.txt").read_text().split()
    assert line[1] == ARCHIVE
    return line[0]


def test_archive_on_host_matches_the_pin(host):
    pin = json.loads((MIRROR / "pins.json").read_text())["traefik"][VERSION]["amd64"]
    assert pin == published_sha256() == hashlib.sha256((RELEASE / ARCHIVE).read_bytes()).hexdigest()
    archive = host.file(f"/opt/ai4os/traefik/{VERSION}/{ARCHIVE}")
    assert archive.exists
    assert archive.sha256sum == pin


def test_binary_linked_and_runs(host):
    link = host.file("/usr/local/bin/traefik")
    assert link.is_symlink
    assert link.linked_to == f"/opt/ai4os/traefik/{VERSION}/traefik"
    assert f"Version:      {VERSION}" in host.check_output("/usr/local/bin/traefik version")


def test_binary_is_the_release_binary(host):
    # The unpacked binary is bit-identical to the one packed into the release.
    import gzip
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(gzip.decompress((RELEASE / ARCHIVE).read_bytes()))) as tar:
        member = tar.extractfile("traefik")
        assert member is not None
        expected = hashlib.sha256(member.read()).hexdigest()
    assert host.file(f"/opt/ai4os/traefik/{VERSION}/traefik").sha256sum == expected


@pytest.mark.parametrize("case", ["tampered", "badsig", "wrongkey", "wrongpin", "nopin"])
def test_refused_releases_left_nothing(host, case):
    assert not host.file(f"/opt/ai4os-{case}").exists
