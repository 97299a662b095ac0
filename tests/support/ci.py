"""One rule for tests that need a service or program this machine may lack.

In CI (CI=true) the service must be there: its absence is a FAILURE naming what is missing
and which setup hook provides it. Elsewhere (a developer's machine) the test is SKIPPED with
the same reason, so a missing service never reads as a pass.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def unavailable(reason: str, provided_by: str | None = None) -> NoReturn:
    """Stop the test: fail in CI, skip elsewhere; ``provided_by`` names what sets it up."""
    where = f" ({provided_by})" if provided_by else ""
    if in_ci():
        pytest.fail(f"unavailable in CI: {reason}{where}")
    pytest.skip(f"{reason}{where}")


def require_program(path: str | None, name: str, provided_by: str) -> str:
    """The path of a program found with shutil.which, or stop the test as above."""
    if path is None:
        unavailable(f"{name} is not installed", provided_by)
    return path
