"""Whether the Docker test-bed can run here (dockerd answering)."""

from __future__ import annotations

import shutil
import subprocess

from support.ci import unavailable


def docker_problem() -> str | None:
    """Why the test-bed cannot run here, or None when dockerd answers."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed (.ci/setup.d/10-docker.sh installs docker.io)"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "dockerd is not running (start it: scripts/testbed/dockerd.sh)"
    return None


def require_docker() -> None:
    """Fail in CI, skip elsewhere, when dockerd does not answer."""
    problem = docker_problem()
    if problem:
        unavailable(f"test-bed unavailable: {problem}")
