"""Fixtures of the cluster-layer tests (consul, nomad, nvidia, gpu_facts)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_helpers import DATA  # noqa: E402


@pytest.fixture()
def h100() -> Path:
    """Real nvidia-smi/NVML output of an H100 (see data/gpu-h100/SOURCE.md)."""
    return DATA / "gpu-h100"
