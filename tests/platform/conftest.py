"""Fixtures of the platform tests (the rendering itself: platform_render.py)."""

from platform_render import rendered, rendered_checkin, rendered_keycloak, webdav_port  # noqa: F401 (pytest fixtures)
