"""Virtual environments for the platform services the kit ships with its roles (they run in their
job's container, not in the kit's own environment): the packages are installed from PyPI exactly
as the job installs them, kept under .cache/service-venvs/ per content hash of the requirements.
Missing network or packages: the test fails in CI (CI=true) and is skipped elsewhere.

`python -m support.service_venv` (with tests/ on PYTHONPATH) builds them ahead: .ci/run starts it in
the background while the services are set up; a test that needs a venv waits for the build in
flight (a lock per venv) instead of starting a second one."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from support.ci import unavailable

from ai4os_kit.paths import ROOT

CACHE = ROOT / ".cache" / "service-venvs"
DRIFT_REQUIREMENTS = ROOT / "roles" / "drift" / "files" / "requirements.txt"  # what the drift job installs
MLFLOW = "mlflow==3.17.2"  # the tracking server the drift tests write runs to


def service_python(name: str, pip_args: list[str], key: str) -> Path:
    """The python of a venv named ``name`` with ``pip install <pip_args>`` done (cached by ``key``)."""
    digest = hashlib.sha256((key + "\0" + " ".join(pip_args) + sys.version).encode()).hexdigest()[:16]
    venv = CACHE / f"{name}-{digest}"
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build in flight (the CI pre-build) finishes first
        if not (venv / ".complete").is_file():
            _build(venv, pip_args)
    return python


def _build(venv: Path, pip_args: list[str]) -> None:
    python = venv / "bin" / "python"
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                             *pip_args], capture_output=True, text=True, timeout=1500)
    if result.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        why = f"pip install {' '.join(pip_args)} failed: {result.stderr.strip()[-800:]}"
        unavailable(why)
    (venv / ".complete").write_text("ok\n")


def mlflow_python() -> Path:
    """A venv with the MLflow tracking server."""
    return service_python("mlflow", ["--only-binary=:all:", MLFLOW], MLFLOW)


def drift_python() -> Path:
    """A venv with the drift job's pinned packages."""
    return requirements_python("drift", DRIFT_REQUIREMENTS)


def requirements_python(name: str, requirements: Path) -> Path:
    """A venv with a job's hash-pinned requirements file installed as the job installs it."""
    return service_python(name, ["--require-hashes", "--only-binary=:all:", "-r", str(requirements)],
                          requirements.read_text())


class Service:
    """A process (``argv``, its own session) answering ``health`` on 127.0.0.1:<port>; ``stop`` ends it
    with everything it started."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log: Path, timeout: float = 60) -> None:
        import time
        import urllib.request

        self.port, self.log = port, log
        self._out = open(log, "w")
        self.process = subprocess.Popen(argv, env={"PATH": os.environ["PATH"], "HOME": str(log.parent), **env},
                                        stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"{' '.join(argv[:3])} did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._out.close()


if __name__ == "__main__":  # the CI pre-build (see the module's doc)
    for build in (drift_python, mlflow_python):
        print(build(), flush=True)
