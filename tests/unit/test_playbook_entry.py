"""Every entry playbook validates the inventory first, once per run, and carries tags per layer and per
component, so that one component can be redeployed alone (issue 14.4).

Asked of Ansible itself: `ansible-playbook --list-tasks --list-tags` on a planned copy of
inventories/sample lists the plays and tasks a run would execute with the tags given (nothing runs);
the once-per-run check runs the validation play for real (it only runs `ai4os-kit check`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from ai4os_kit.cli import main
from ai4os_kit.model.catalog import load_catalog
from ai4os_kit.model.inventory import copy_inventory
from ai4os_kit.paths import ROOT, SAMPLE_INVENTORY

PLAYBOOKS = ROOT / "playbooks"
ENTRY = sorted(p.name for p in PLAYBOOKS.glob("*.yml") if p.name != "validate.yml")
VALIDATION = "Validate the inventory (before facts)"
CATALOG = load_catalog()
PLATFORM_COMPONENTS = yaml.safe_load((ROOT / "roles" / "platform_job" / "defaults" / "main.yml").read_text())[
    "platform_job_components"]
# The roles each layer tag must select (host and cluster components from the catalogue).
LAYER_ROLES = {
    "hosts": {n for n, c in CATALOG.items() if c.layer == "host"} | {"preflight"},
    "cluster": {n for n, c in CATALOG.items() if c.layer == "cluster"},
    "platform": {"platform_job", *PLATFORM_COMPONENTS},
    "accounting": {"accounting"},
}

PLAY = re.compile(r"^  play #\d+ \((?P<pattern>[^)]*)\): (?P<name>.*?)\tTAGS: \[(?P<tags>[^\]]*)\]$")
TASK = re.compile(r"^      (?:(?P<role>[a-z0-9_]+) : )?(?P<name>.*?)\tTAGS: \[(?P<tags>[^\]]*)\]$")


@dataclass
class Task:
    role: str | None  # None: a task of the playbook, or a task an include_role/include_tasks brings
    name: str
    tags: set[str]

    def owner(self) -> str | None:
        """Its role; for a task listed without one (an include), the one component whose tag it carries."""
        if self.role:
            return self.role
        components = self.tags & set(CATALOG)
        return components.pop() if len(components) == 1 else None


@dataclass
class Play:
    pattern: str
    name: str
    tags: set[str]
    tasks: list[Task] = field(default_factory=list)

    def roles(self) -> set[str]:
        return {t.owner() for t in self.tasks} - {None}


def _tags(text: str) -> set[str]:
    return {t.strip() for t in text.split(",") if t.strip()}


def env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def listing(hosts: Path, playbooks: list[str], *args: str) -> dict[str, list[Play]]:
    """Ansible's own list of the plays and tasks of each playbook (with --tags etc. as given)."""
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "--list-tasks", "--list-tags",
                          "-i", str(hosts), *args, *(str(PLAYBOOKS / p) for p in playbooks)],
                         capture_output=True, text=True, cwd=ROOT, env=env(), timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    books: dict[str, list[Play]] = {}
    plays: list[Play] = []
    for line in run.stdout.splitlines():
        if line.startswith("playbook: "):
            plays = books.setdefault(Path(line.split(": ", 1)[1]).name, [])
        elif m := PLAY.match(line):
            plays.append(Play(m["pattern"], m["name"], _tags(m["tags"])))
        elif m := TASK.match(line):
            plays[-1].tasks.append(Task(m["role"], m["name"], _tags(m["tags"])))
    assert set(books) == set(playbooks), run.stdout[-3000:]
    return books


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hosts.yml of a planned copy of inventories/sample."""
    inv = tmp_path_factory.mktemp("entry") / "inv"
    copy_inventory(SAMPLE_INVENTORY, inv)
    assert main(["plan", str(inv)]) == 0
    return inv / "hosts.yml"


@pytest.fixture(scope="module")
def every_entry(hosts: Path) -> dict[str, list[Play]]:
    return listing(hosts, ENTRY)


def is_validation(play: Play) -> bool:
    return play.name == VALIDATION


def test_every_entry_playbook_validates_the_inventory_first(every_entry: dict[str, list[Play]]) -> None:
    assert {"site.yml", "hosts.yml", "cluster.yml", "platform.yml", "accounting.yml", "scale.yml", "upgrade.yml",
            "reset.yml", "status.yml", "backup.yml", "restore.yml", "remove-node.yml"} <= set(every_entry)
    for name, plays in every_entry.items():
        first = plays[0]
        assert is_validation(first), f"{name}: the first play is {first.name!r}, not the validation"
        assert first.pattern == "all" and {"always", "validate"} <= first.tags, (name, first)
        assert first.roles() == {"validate_inventory"}, (name, first.tasks)
        assert any("ai4os-kit check" in t.name for t in first.tasks), (name, first.tasks)


def test_validation_runs_once_per_run(hosts: Path, tmp_path: Path) -> None:
    """Two imports of validate.yml in one run (as site.yml imports hosts.yml, cluster.yml, ... that each
    import it): `ai4os-kit check` runs in the first, every task of the second is skipped."""
    twice = tmp_path / "twice.yml"
    twice.write_text(yaml.safe_dump([{"name": n, "ansible.builtin.import_playbook": str(PLAYBOOKS / "validate.yml")}
                                     for n in ("First", "Second")]))
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(hosts), str(twice)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
                         env=dict(env(), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    first, second = json.loads(run.stdout)["plays"]

    def outcome(play: dict) -> dict[str, bool]:
        return {t["task"]["name"]: all(h.get("skipped", False) for h in t["hosts"].values()) for t in play["tasks"]}

    check = "validate_inventory : Validate the inventory with ai4os-kit check"
    assert outcome(first)[check] is False, outcome(first)
    assert all(outcome(second).values()) and check in outcome(second), outcome(second)


@pytest.mark.parametrize("layer", sorted(LAYER_ROLES))
def test_a_layer_tag_selects_that_layer(hosts: Path, every_entry: dict[str, list[Play]], layer: str) -> None:
    layer_plays = {p.name for p in every_entry[f"{layer}.yml"] if not is_validation(p)}
    selected = listing(hosts, ["site.yml"], "--tags", layer)["site.yml"]
    roles: set[str] = set()
    for play in selected:
        if is_validation(play):    # tagged always: selected by every tag
            assert play.roles() == {"validate_inventory"}, play
        elif play.name in layer_plays:
            assert play.tasks, f"--tags {layer}: play {play.name!r} lists no task"
            roles |= play.roles()
        else:
            assert not play.tasks, f"--tags {layer} selects {play.tasks[0]} of play {play.name!r}"
    assert LAYER_ROLES[layer] <= roles, f"--tags {layer} misses the roles {LAYER_ROLES[layer] - roles}"


@pytest.mark.parametrize(("component", "shared"), [("papi", {"platform_job"}), ("consul", set())])
def test_a_component_tag_redeploys_that_component_alone(hosts: Path, component: str, shared: set[str]) -> None:
    """`--tags papi`: the validation, the settings checks every platform component needs, PAPI; nothing else."""
    selected = listing(hosts, ["site.yml"], "--tags", component)["site.yml"]
    tasks = [t for play in selected for t in play.tasks]
    assert {t.owner() for t in tasks} - {None} == {"validate_inventory", component, *shared}
    for task in tasks:
        assert component in task.tags or task.role == "validate_inventory", task


def test_every_component_task_carries_its_component_tag(every_entry: dict[str, list[Play]]) -> None:
    """What makes `--tags <component>` select the whole of that component, for every component."""
    for play in every_entry["site.yml"]:
        for task in play.tasks:
            if task.role in CATALOG:
                assert task.role in task.tags, (play.name, task)
            if not is_validation(play):
                layer = {"hosts", "cluster", "platform", "accounting"} & task.tags
                assert len(layer) == 1, f"{play.name}: {task} carries no layer tag (or several)"


def test_the_platform_play_follows_platform_job_components() -> None:
    """platform.yml's roles run in the order of platform_job_components, each only when switched on and
    listed there; the settings checks before them carry every component's tag."""
    play = next(p for p in yaml.safe_load((PLAYBOOKS / "platform.yml").read_text()) if "hosts" in p)
    assert [r["role"] for r in play["roles"]] == PLATFORM_COMPONENTS
    for entry in play["roles"]:
        assert entry["tags"] == [entry["role"]] and entry["when"] == f"'{entry['role']}' in platform_job_run", entry
    assert set(play["pre_tasks"][0]["tags"]) == set(PLATFORM_COMPONENTS)
