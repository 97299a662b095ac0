#!/usr/bin/env python3
"""Benchmark: converging 1, 3 and 6 test-bed nodes with the host roles
(base, volumes, docker, artifacts, traefik), first run and no-op re-run, under
Ansible's `linear` strategy and Mitogen's `mitogen_linear`.

Nodes come from the molecule recipe (playbooks/testbed/create.yml), so they
are the same systemd containers the scenarios use.  Every (strategy, size)
pair gets fresh nodes.  Output: a Markdown table (stdout) and JSON
(--json FILE).  Needs dockerd and the test-bed image (scripts/testbed/).

    .venv/bin/python benchmarks/converge.py --sizes 1 3 6 --strategies linear mitogen
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTBED_PLAYS = ROOT / "playbooks" / "testbed"
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)

GROUP_VARS = {
    "volumes_project_quota": False,
    "traefik_tls_mode": "certificate",
    "traefik_consul_catalog": False,
    "traefik_dashboard_allowed_cidrs": ["127.0.0.1/32"],
    "traefik_routes": [{"name": "app", "host": "app.testbed.ai4os.test", "url": "http://127.0.0.1:9000"}],
}


@dataclass
class Run:
    strategy: str
    nodes: int
    phase: str  # first | noop
    seconds: float
    changed: int
    failed: int


def node_spec(name: str) -> dict:
    return {"name": name, "capabilities": ["NET_ADMIN"], "devices": ["/dev/loop-control"]}


def strategy_env(strategy: str) -> dict[str, str]:
    if strategy == "linear":
        return {"ANSIBLE_STRATEGY": "linear"}
    import ansible_mitogen  # noqa: PLC0415

    return {"ANSIBLE_STRATEGY": "mitogen_linear",
            "ANSIBLE_STRATEGY_PLUGINS": str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy")}


class Bed:
    """N fresh test-bed nodes plus the files the plays need."""

    def __init__(self, nodes: int, workdir: Path, strategy: str) -> None:
        self.name = f"bench-{nodes}-{strategy}"
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hosts = [f"ai4os-{self.name}-{i}" for i in range(1, nodes + 1)]
        (self.dir / "molecule.json").write_text(json.dumps({"molecule_yml": {"platforms": [node_spec(h) for h in self.hosts]}}))
        self.inventory = self.dir / "inventory.json"
        # Written first: without it Ansible would fall back to the repository's
        # ansible.cfg and its default inventory (inventories/local, vaulted).
        (self.dir / "ansible.cfg").write_text("[defaults]\nforks = 10\ngathering = smart\ninterpreter_python = auto_silent\n")

    def env(self, strategy: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(strategy_env(strategy))
        env.update({"MOLECULE_PROJECT_DIRECTORY": str(ROOT), "MOLECULE_SCENARIO_NAME": self.name,
                    "MOLECULE_EPHEMERAL_DIRECTORY": str(self.dir), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                    "ANSIBLE_LIBRARY": str(ROOT / "plugins" / "modules"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{BIN}:{env.get('PATH', '')}",
                    "ANSIBLE_CONFIG": str(self.dir / "ansible.cfg")})
        return env

    def write_inventory(self) -> None:
        mirror = self.dir / "mirror"
        group_vars = dict(GROUP_VARS)
        group_vars.update({
            "ai4os_artifacts_url": (mirror / "url").read_text().strip() + "/good",
            "artifacts_cache_dir": str(self.dir / "artifacts-cache"),
            "traefik_version": (mirror / "version").read_text().strip(),
            "traefik_tls_certificate": str(self.dir / "pki" / "site.crt"),
            "traefik_tls_key": str(self.dir / "pki" / "site.key"),
        })
        # `docker` (not the FQCN): Mitogen's strategy swaps it for mitogen_docker.
        hosts = {h: {"ansible_connection": "docker", "ansible_python_interpreter": "/usr/bin/python3"}
                 for h in self.hosts}
        self.inventory.write_text(json.dumps({"all": {"hosts": hosts, "vars": group_vars}}))

    def playbook(self, playbook: Path, strategy: str, *extra: str, ok_rcs: tuple[int, ...] = (0,)) -> tuple[float, str]:
        """Run one play; set-up plays must succeed (rc 0), timed ones may report failed hosts (rc 2)."""
        argv = [str(BIN / "ansible-playbook"), *extra, str(playbook)]
        start = time.monotonic()
        proc = subprocess.run(argv, env=self.env(strategy), cwd=self.dir, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - start
        (self.dir / f"{playbook.stem}-{strategy}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode not in ok_rcs:
            raise RuntimeError(f"{playbook.name} failed ({proc.returncode}): {proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        return seconds, proc.stdout

    def write_nodes(self) -> Path:
        """An inventory of the bare nodes (the untimed plays use it)."""
        nodes = self.dir / "nodes.json"
        hosts = {h: {"ansible_connection": "docker", "ansible_python_interpreter": "/usr/bin/python3"} for h in self.hosts}
        nodes.write_text(json.dumps({"all": {"hosts": hosts}}))
        return nodes

    def create(self) -> None:
        self.playbook(TESTBED_PLAYS / "create.yml", "linear", "-e", f"@{self.dir / 'molecule.json'}")

    def destroy(self) -> None:
        self.playbook(TESTBED_PLAYS / "loop-devices-detach.yml", "linear", "-i", str(self.write_nodes()))
        self.playbook(TESTBED_PLAYS / "destroy.yml", "linear", "-e", f"@{self.dir / 'molecule.json'}")

    def prepare(self) -> None:
        self.playbook(ROOT / "benchmarks" / "prepare.yml", "linear", "-i", str(self.write_nodes()))
        self.write_inventory()


def recap(output: str) -> tuple[int, int]:
    rows = RECAP.findall(output)
    return sum(int(r[2]) for r in rows), sum(int(r[4]) for r in rows)


def measure(strategy: str, nodes: int, workdir: Path) -> list[Run]:
    bed = Bed(nodes, workdir, strategy)
    bed.create()
    try:
        bed.prepare()
        runs = []
        for phase in ("first", "noop"):
            seconds, out = bed.playbook(ROOT / "benchmarks" / "converge.yml", strategy, "-i", str(bed.inventory),
                                        ok_rcs=(0, 2))
            changed, failed = recap(out)
            runs.append(Run(strategy, nodes, phase, round(seconds, 1), changed, failed))
            print(f"  {strategy:8} {nodes} node(s) {phase:5}: {seconds:7.1f} s  changed={changed} failed={failed}",
                  file=sys.stderr, flush=True)
        return runs
    finally:
        bed.destroy()


def table(runs: list[Run]) -> str:
    by = {(r.strategy, r.nodes, r.phase): r for r in runs}
    lines = ["| strategy | nodes | first converge | changed | no-op re-run | changed | no-op / first |",
             "|---|---|---|---|---|---|---|"]
    for (strategy, nodes, phase), first in sorted(by.items()):
        if phase != "first":
            continue
        noop = by.get((strategy, nodes, "noop"))
        if noop is None:
            continue
        lines.append(f"| {strategy} | {nodes} | {first.seconds:.1f} s | {first.changed} | {noop.seconds:.1f} s | "
                     f"{noop.changed} | {noop.seconds / first.seconds:.0%} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--strategies", nargs="+", choices=["linear", "mitogen"], default=["linear", "mitogen"])
    parser.add_argument("--json", type=Path, help="also write the runs as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary directory)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ai4os-bench-"))
    runs: list[Run] = []
    for nodes in args.sizes:  # both strategies per size, so a cut-short run still compares
        for strategy in args.strategies:
            runs.extend(measure(strategy, nodes, workdir))
            if args.json:
                args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    print(f"logs: {workdir}", file=sys.stderr)
    return 0 if all(r.failed == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
