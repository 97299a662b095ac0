"""Fixtures of the accounting tests. Nomad is served by the named test double in nomad_double.py."""

from __future__ import annotations

from typing import Iterator

import pytest

from nomad_double import NomadDouble, fixture


@pytest.fixture
def nomad_double() -> Iterator[NomadDouble]:
    """TEST DOUBLE of Nomad's HTTP API (Nomad cannot run here), with the two recorded nodes."""
    with NomadDouble(page_size=3) as double:
        double.add_node(fixture("node-gpu.json"))
        double.add_node(fixture("node-cpu.json"))
        yield double
