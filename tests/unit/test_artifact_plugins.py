"""The artifacts role's two plugins, run by ansible on this machine as the role runs them.

- roles/artifacts/action_plugins/artifact_fetch.py: the archive in the controller's
  cache, verified against the pin, and the digests of the binaries inside it;
- plugins/modules/artifact_in_place.py: the read-only check that lets a re-run skip
  the install tasks when nothing on the host differs.

Archives are real tar.gz and zip files made here, fetched over file:// URLs (the
molecule artifacts scenario fetches over HTTP from its test-bed mirror).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from support import plugins

ROOT = Path(__file__).resolve().parents[2]
IN_PLACE = plugins.load("plugins/modules/artifact_in_place.py")

TOOL = b"#!/bin/sh\necho tool 1.0\n"
HELPER = b"#!/bin/sh\necho helper\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(path: Path) -> str:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in (("tool_1.0/tool", TOOL), ("tool_1.0/helper", HELPER), ("tool_1.0/README", b"r")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return _sha(path.read_bytes())


def _ansible(module: str, args: dict) -> dict:
    """One module/action run by ansible against this machine (connection local), result of the host."""
    return plugins.run(module, args, env={
        "ANSIBLE_ACTION_PLUGINS": str(ROOT / "roles" / "artifacts" / "action_plugins")})[1]


@pytest.fixture()
def mirror(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "mirror").mkdir()
    return tmp_path / "mirror", _tar(tmp_path / "mirror" / "tool_1.0.tar.gz")


def _fetch(mirror: Path, dest: Path, sha256: str, members: list[str] | None = None, name: str = "tool_1.0.tar.gz"):
    return _ansible("artifact_fetch", {"url": f"file://{mirror}/{name}", "dest": str(dest), "sha256": sha256,
                                       "members": members or ["tool", "helper"]})


def test_fetch_verifies_caches_and_reads_the_binaries_digests(mirror, tmp_path) -> None:
    source, pin = mirror
    dest = tmp_path / "cache" / "tool" / "1.0" / "tool_1.0.tar.gz"
    first = _fetch(source, dest, pin.upper())  # a pin in upper case is the same pin
    assert first.get("failed") is not True, first
    assert first["verified"] and first["downloaded"] and first["changed"] is False
    assert first["digests"] == {"tool": _sha(TOOL), "helper": _sha(HELPER)}
    assert dest.read_bytes() == (source / "tool_1.0.tar.gz").read_bytes() and oct(dest.stat().st_mode & 0o777) == "0o644"
    kept = json.loads(Path(f"{dest}.digests.json").read_text())
    assert kept == {"archive_sha256": pin, "digests": first["digests"]}

    # a re-run downloads nothing; the cached archive is hashed again, not trusted
    second = _fetch(source, dest, pin)
    assert second["verified"] and not second["downloaded"] and second["digests"] == first["digests"]

    # a cached archive that changed is fetched again, and the binaries in it read again
    dest.write_bytes(b"altered in the cache")
    Path(f"{dest}.digests.json").write_text(json.dumps({"archive_sha256": pin,
                                                        "digests": {"tool": "0" * 64, "helper": "0" * 64}}))
    third = _fetch(source, dest, pin)
    assert third["verified"] and third["downloaded"] and dest.read_bytes() == (source / "tool_1.0.tar.gz").read_bytes()
    assert third["digests"] == first["digests"]


def test_an_archive_that_is_not_the_pinned_one_is_refused_and_deleted(mirror, tmp_path) -> None:
    source, pin = mirror
    dest = tmp_path / "cache" / "tool_1.0.tar.gz"
    result = _fetch(source, dest, "0" * 64)
    assert result.get("failed") is not True and result["verified"] is False
    assert result["problem"] == "CHECKSUM MISMATCH" and pin in result["detail"] and result["digests"] == {}
    assert sorted(p.name for p in dest.parent.iterdir()) == []  # neither the file nor its partial download


def test_a_download_that_fails_is_reported_and_leaves_nothing(mirror, tmp_path) -> None:
    source, pin = mirror
    dest = tmp_path / "cache" / "tool_1.0.tar.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"an older, wrong file")
    result = _fetch(source, dest, pin, name="no-such-file.tar.gz")
    assert result["verified"] is False and result["problem"] == "DOWNLOAD FAILED"
    assert "no-such-file" in result["detail"] or "No such file" in result["detail"], result
    assert list(dest.parent.iterdir()) == []


def test_a_binary_the_verified_archive_lacks_fails_by_name(mirror, tmp_path) -> None:
    source, pin = mirror
    result = _fetch(source, tmp_path / "cache" / "tool_1.0.tar.gz", pin, members=["tool", "nomad"])
    assert result["failed"] is True
    assert "holds no file named nomad" in result["msg"] and "Fix:" in result["msg"]


def test_zip_archives_and_exact_member_paths(tmp_path) -> None:
    (tmp_path / "mirror").mkdir()
    archive = tmp_path / "mirror" / "tool_1.0.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("tool", TOOL)
        bundle.writestr("sub/tool", HELPER)  # the exact path wins over a base name found twice
    result = _fetch(tmp_path / "mirror", tmp_path / "cache" / "tool_1.0.zip", _sha(archive.read_bytes()),
                    members=["tool", "./sub/tool"], name="tool_1.0.zip")
    assert result["verified"] and result["digests"] == {"tool": _sha(TOOL), "./sub/tool": _sha(HELPER)}


@pytest.fixture()
def installed(tmp_path: Path) -> dict:
    """A release laid out as the role's install tasks leave it (this test runs as root in CI)."""
    home = tmp_path / "opt" / "tool" / "1.0"
    home.mkdir(parents=True)
    home.chmod(0o755)
    (home / "tool_1.0.tar.gz").write_bytes(b"archive")
    (home / "tool_1.0.tar.gz").chmod(0o644)
    for name, data in (("tool", TOOL), ("helper", HELPER)):
        (home / name).write_bytes(data)
        (home / name).chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("tool", "helper"):
        (bin_dir / name).symlink_to(home / name)
    return {"home": str(home), "archive": "tool_1.0.tar.gz", "archive_sha256": _sha(b"archive"),
            "digests": {"tool": _sha(TOOL), "helper": _sha(HELPER)}, "bin_dir": str(bin_dir)}


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the install tasks leave root-owned files: run as root")


@needs_root
def test_in_place_when_everything_is_as_the_install_tasks_leave_it(installed) -> None:
    result = _ansible("artifact_in_place", installed)
    assert result.get("failed") is not True, result
    assert result["in_place"] is True and result["differences"] == [] and result["changed"] is False


@needs_root
@pytest.mark.parametrize("change, expected", [
    (lambda h, b: (h / "tool").write_bytes(TOOL + b"altered"), "tool: differs from the verified archive"),
    (lambda h, b: (h / "helper").unlink(), "helper: missing"),
    (lambda h, b: os.chown(h / "tool", 1000, 0), "tool: not owned by root"),
    (lambda h, b: (h / "tool").chmod(0o777), "tool: not mode 0755"),
    (lambda h, b: (h / "helper").chmod(0o644), "helper: not mode 0755"),
    (lambda h, b: (h / "tool_1.0.tar.gz").write_bytes(b"other"), "tool_1.0.tar.gz: not the verified archive"),
    (lambda h, b: (h / "tool_1.0.tar.gz").chmod(0o666), "tool_1.0.tar.gz: not root:root 0644"),
    (lambda h, b: h.chmod(0o777), "1.0: not a root:root 0755 directory"),
    (lambda h, b: ((b / "tool").unlink(), (b / "tool").symlink_to(h / "helper")), "bin/tool: not a link to"),
    (lambda h, b: (b / "helper").unlink(), "bin/helper: not a link to"),
])
def test_anything_that_differs_is_named(installed, change, expected) -> None:
    change(Path(installed["home"]), Path(installed["bin_dir"]))
    found = IN_PLACE.check(**installed)[0]
    assert len(found) == 1 and expected in found[0], found


@needs_root
def test_the_stale_binaries_are_those_the_install_tasks_must_unpack_again(installed) -> None:
    home, bin_dir = Path(installed["home"]), Path(installed["bin_dir"])
    (home / "tool").chmod(0o777)
    (bin_dir / "helper").unlink()                      # a link is not a binary: put back by its own task
    (home / "tool_1.0.tar.gz").write_bytes(b"other")   # nor is the archive: copied again
    result = _ansible("artifact_in_place", installed)
    assert result["in_place"] is False and result["stale_binaries"] == ["tool"], result
    (home / "helper").unlink()
    assert IN_PLACE.check(**installed)[1] == ["helper", "tool"]
    installed["home"] = str(home.parent / "2.0")
    assert IN_PLACE.check(**installed) == ([f"{home.parent}/2.0: missing"], ["helper", "tool"])


@needs_root
def test_a_missing_release_is_one_difference_and_the_module_says_so(installed, tmp_path) -> None:
    installed["home"] = str(tmp_path / "opt" / "tool" / "2.0")
    result = _ansible("artifact_in_place", installed)
    assert result["in_place"] is False and result["differences"][0].endswith("2.0: missing")
