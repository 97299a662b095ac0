from __future__ import annotations

import pytest

from ai4os_kit.errors import InputError
from ai4os_kit.model.catalog import load_catalog, parse_catalog, resolve


def test_catalogue_has_every_required_component() -> None:
    catalog = load_catalog()
    for name in ["docker", "nvidia", "consul", "nomad", "traefik", "papi", "dashboard", "oidc", "vault", "storage",
                 "mlflow", "flower", "monitoring", "accounting", "docuum", "node_admission", "tryme"]:
        assert name in catalog, name


def test_requirement_of_an_enabled_component_is_pulled_in() -> None:
    catalog = load_catalog()
    off = {name: False for name, c in catalog.items() if c.default}
    # switch everything off, then ask only for mlflow: its requirements must come back with reasons
    res = resolve({**{k: v for k, v in off.items() if k not in ("nomad", "traefik", "oidc", "consul", "docker", "base", "volumes")},
                   "mlflow": True}, catalog)
    assert res.enabled["mlflow"] == "enabled in platform.yml"
    assert res.enabled["oidc"] == "on by default"
    assert res.enabled["nomad"].startswith("on by default")


def test_transitive_requirement_reason() -> None:
    catalog = parse_catalog({"components": {
        "a": {"description": "a", "layer": "platform", "default": False, "requires": ["b"], "conflicts": [], "groups": ["all"]},
        "b": {"description": "b", "layer": "cluster", "default": False, "requires": ["c"], "conflicts": [], "groups": ["all"]},
        "c": {"description": "c", "layer": "host", "default": False, "requires": [], "conflicts": [], "groups": ["all"]},
    }})
    res = resolve({"a": True}, catalog)
    assert res.enabled == {"a": "enabled in platform.yml", "b": "required by a", "c": "required by b"}


def test_conflict_is_an_error() -> None:
    """The catalogue has no conflicting pair today; the rule is checked on a small catalogue of its own."""
    catalog = parse_catalog({"components": {
        "gc_a": {"description": "a", "layer": "host", "default": True, "requires": [], "conflicts": ["gc_b"], "groups": ["all"]},
        "gc_b": {"description": "b", "layer": "host", "default": False, "requires": [], "conflicts": [], "groups": ["all"]},
    }})
    with pytest.raises(InputError, match="conflict"):
        resolve({"gc_b": True}, catalog)
    assert set(resolve({}, catalog).enabled) == {"gc_a"}


def test_unknown_component_suggests() -> None:
    with pytest.raises(InputError, match="did you mean 'papi'"):
        resolve({"pappi": True}, load_catalog())


def test_required_component_switched_off_is_an_error() -> None:
    with pytest.raises(InputError, match="requires it"):
        resolve({"dashboard": True, "papi": False}, load_catalog())
