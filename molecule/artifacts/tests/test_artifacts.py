"""Role artifacts: the verified Traefik release is installed, the tampered one is not."""

import hashlib
import os
from pathlib import Path

MIRROR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "mirror"
VERSION = (MIRROR / "version").read_text().strip()
RELEASE = MIRROR / "good" / "traefik" / f"v{VERSION}"
ARCHIVE = f"traefik_v{VERSION}_linux_amd64.tar.gz"


def published_sha256() -> str:
    line = (RELEASE / f"traefik_v{VERSION}_checksums.txt").read_text().split()
    assert line[1] == ARCHIVE
    return line[0]


def test_archive_on_host_matches_published_checksum(host):
    archive = host.file(f"/opt/ai4os/traefik/{VERSION}/{ARCHIVE}")
    assert archive.exists
    assert archive.sha256sum == published_sha256()


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


def test_tampered_release_left_nothing(host):
    assert not host.file("/opt/ai4os-tampered").exists
