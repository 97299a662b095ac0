"""Drivers used only by the ai4os-kit local OpenStack test-bed (never in production)."""
