"""Fixtures of the OIDC tests (the provider itself: oidc_op.py)."""

from oidc_op import op, op_pair  # noqa: F401 (pytest fixtures)
