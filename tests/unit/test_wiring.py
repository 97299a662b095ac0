"""Wiring: catalogue ↔ roles and plays ↔ inventory keys ↔ their consumers.

Every catalogue component is implemented (a role its play runs, or the platform_job
mechanism renders), every role is a component's or a shared mechanism that something
includes, and every key of platform.yml, sites.yml and of each component's settings is
read by some role, playbook or module — a key nothing reads is a promise the kit breaks.
Read from the files themselves (YAML, JSON Schema, source text); nothing is listed twice.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.model.catalog import load_catalog
from ai4os_kit.model.component_rules import default_settings

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
PLAYBOOKS = ROOT / "playbooks"
SRC = ROOT / "src" / "ai4os_kit"

# Roles that are shared mechanisms, not components; each must be included by something.
MECHANISMS = {"platform_job", "validate_inventory", "preflight", "artifacts", "node_cert", "day2", "federation"}
# Components without a role of their own, and the files that implement them (each must name it).
NO_ROLE = {
    "tryme": ["src/ai4os_kit/model/placement.py",             # tryme pools need it switched on
              "src/ai4os_kit/platform/papi_templates.py"],     # PAPI's try-me template is checked with it
}


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return ""


@lru_cache(maxsize=1)
def consumer_text() -> str:
    """Everything that can read an inventory key: roles, playbooks, Python modules, plugins."""
    files = [p for p in ROLES.rglob("*") if p.is_file() and p.suffix in (".yml", ".j2", ".py", ".sh", ".hcl")]
    files += list(PLAYBOOKS.rglob("*.yml")) + list(SRC.rglob("*.py")) + list((ROOT / "plugins").rglob("*.py"))
    return "\n".join(_text(p) for p in files if "defaults" not in p.parts)


@lru_cache(maxsize=1)
def plays() -> list[dict[str, Any]]:
    out = []
    for path in sorted(PLAYBOOKS.rglob("*.yml")):
        for play in yaml.safe_load(_text(path)) or []:
            if isinstance(play, dict) and "hosts" in play:
                out.append(dict(play, _file=path.name))
    return out


def play_groups(play: dict[str, Any]) -> set[str]:
    hosts = re.sub(r"\{\{.*?\}\}", "", str(play["hosts"]))
    return {h.strip("!&") for h in re.split(r"[:,]", hosts) if h.strip("!&")}


def play_roles(play: dict[str, Any]) -> set[str]:
    roles = {r["role"] if isinstance(r, dict) else r for r in play.get("roles") or []}
    text = yaml.safe_dump(play.get("tasks") or []) + yaml.safe_dump(play.get("pre_tasks") or [])
    roles |= set(re.findall(r"name: ([a-z_]+)\n", text)) & {p.name for p in ROLES.iterdir()}
    return roles


def test_every_host_and_cluster_component_has_its_role_and_its_play() -> None:
    for name, comp in load_catalog().items():
        if comp.layer == "platform":
            continue
        assert (ROLES / name / "tasks" / "main.yml").is_file(), f"{name}: no role roles/{name}"
        assert any(name in play_groups(p) and name in play_roles(p) for p in plays()), \
            f"{name}: no play targets group {name} with role {name}"


def test_every_platform_component_is_rendered_or_implemented_elsewhere() -> None:
    defaults = yaml.safe_load(_text(ROLES / "platform_job" / "defaults" / "main.yml"))
    rendered = set(defaults["platform_job_components"])
    for name, comp in load_catalog().items():
        if comp.layer != "platform":
            continue
        if name in NO_ROLE:
            for rel in NO_ROLE[name]:
                assert re.search(rf"\b{name}\b", _text(ROOT / rel)), f"{name}: {rel} does not name it"
            continue
        has_play = any(name in play_groups(p) and name in play_roles(p) for p in plays())
        settings_only = (ROLES / name / "defaults").is_dir() and not (ROLES / name / "tasks").is_dir()
        assert name in rendered or has_play or settings_only, \
            f"{name}: neither rendered by platform_job (platform_job_components) nor run by a play"
        if settings_only:   # its settings feed another component's files
            assert f"settings.{name}." in consumer_text(), f"{name}: a settings-only role nobody reads"


def test_every_role_is_a_component_or_an_included_mechanism() -> None:
    components = set(load_catalog())
    text = consumer_text()
    for role in sorted(p.name for p in ROLES.iterdir() if p.is_dir()):
        if role in components:
            continue
        assert role in MECHANISMS, f"roles/{role}: neither a catalogue component nor a known mechanism"
        used = re.search(rf"(name|role): {role}\b", text) or any(role in play_roles(p) for p in plays())
        assert used, f"roles/{role}: a mechanism no play or role includes"


def _schema(name: str) -> dict[str, Any]:
    return dict(json.loads(_text(ROOT / "schemas" / name)))


def test_every_platform_key_reaches_a_consumer() -> None:
    text = consumer_text()
    unread = [key for key in _schema("platform.schema.json")["properties"] if key not in text]
    assert not unread, f"platform.yml keys no role, playbook or module reads: {unread}"


def test_every_site_and_pool_key_reaches_a_consumer() -> None:
    schema = _schema("sites.schema.json")
    py = "\n".join(_text(p) for p in SRC.rglob("*.py"))
    unread = []
    for kind in ("site", "pool"):
        for key in schema["$defs"][kind]["properties"]:
            if not re.search(rf"""["']{key}["']""", py):
                unread.append(f"{kind}.{key}")
    assert not unread, f"sites.yml keys the kit never reads: {unread}"


def test_every_component_setting_is_read_by_its_role() -> None:
    """ai4os_<component>_<setting> overrides <component>_settings.<setting>: its templates or tasks read it."""
    unread = []
    for name in sorted(load_catalog()):
        settings = default_settings(name)
        if not settings:
            continue
        role_text = "\n".join(_text(p) for p in (ROLES / name).rglob("*") if p.is_file() and "defaults" not in p.parts)
        elsewhere = consumer_text()
        for setting in settings:
            if not re.search(rf"\.{setting}\b|\['{setting}'\]", role_text) and f"settings.{name}.{setting}" not in elsewhere:
                unread.append(f"ai4os_{name}_{setting}")
    assert not unread, f"component settings nothing reads: {unread}"


def test_the_checks_see_a_broken_wiring(tmp_path: Path) -> None:
    """The helpers find what they look for and miss what is absent."""
    play = {"hosts": "docker{{ ai4os_play_scope | default('') }}:!servers", "roles": [{"role": "docker"}],
            "tasks": [{"ansible.builtin.include_role": {"name": "node_cert"}}]}
    assert play_groups(play) == {"docker", "servers"}
    assert play_roles(play) == {"docker", "node_cert"}
    assert "ai4os_no_such_key_anywhere" not in consumer_text()
