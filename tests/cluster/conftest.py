"""Fixtures of the cluster-layer tests (consul, nomad, nvidia, gpu_facts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cluster_helpers import DATA


@pytest.fixture()
def h100() -> Path:
    """Real nvidia-smi/NVML output of an H100 (see data/gpu-h100/SOURCE.md)."""
    return DATA / "gpu-h100"
