#!/usr/bin/env python3
"""Benchmark: converging 1, 3 and 6 test-bed nodes with the host roles
(base, volumes, docker, artifacts, traefik), first run and no-op re-run, under
Ansible's `linear` strategy and Mitogen's `mitogen_linear`.

Nodes come from the molecule recipe (playbooks/testbed/create.yml), so they
are the same systemd containers the scenarios use.  Every (strategy, size)
pair gets fresh nodes.  Output: a Markdown table (stdout) and JSON
(--json FILE).  Needs dockerd and the test-bed image (scripts/testbed/).

    .venv/bin/python benchmarks/converge.py --sizes 1 3 6 --strategies linear mitogen
    .venv/bin/python benchmarks/converge.py --sizes 3 --strategies mitogen --profile

--profile records every task's time (benchmarks/callback_plugins/task_timings.py) in the
timed runs and prints where the time went: per role, per kind of work (facts, packages,
templating, files, services, commands), the slowest tasks, what Ansible spends outside the
tasks, and a connection probe (two `ping` tasks per node: the first pays for the connection
and the interpreter, the second is what any task costs at least).
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
PROFILE_PLUGINS = Path(__file__).resolve().parent / "callback_plugins"
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
    controller_cpu: float = 0.0  # user + system CPU seconds of ansible-playbook and its children (forks, docker CLI)
    controller_rss_mb: float = 0.0  # the largest resident set of any controller process
    nodes_cpu: float = 0.0  # CPU seconds the nodes' containers used during the run (cgroup cpuacct)
    node_memory_mb: list[float] | None = None  # each node's peak memory during the run (cgroup, page cache included)
    node_rss_mb: list[float] | None = None  # each node's resident process memory after the run


CGROUP = Path("/sys/fs/cgroup")


def container_cgroups(names: list[str]) -> list[str]:
    """The cgroup (v1, Docker's cgroupfs driver: docker/<id>) of each node's container."""
    ids = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", *names], capture_output=True, text=True,
                         check=True).stdout.split()
    return [f"docker/{i}" for i in ids]


def nodes_cpu_seconds(groups: list[str]) -> float | None:
    """CPU seconds the containers used so far; None where the cgroup files are not there (cgroup v2, other drivers)."""
    try:
        return sum(int((CGROUP / "cpuacct" / g / "cpuacct.usage").read_text()) for g in groups) / 1e9
    except OSError:
        return None


def reset_memory_peaks(groups: list[str]) -> None:
    for g in groups:
        try:
            (CGROUP / "memory" / g / "memory.max_usage_in_bytes").write_text("0")
        except OSError:
            pass


def memory_peaks_mb(groups: list[str]) -> list[float] | None:
    """Each node's peak memory during the run (page cache included, as the cgroup counts it)."""
    try:
        return [round(int((CGROUP / "memory" / g / "memory.max_usage_in_bytes").read_text()) / 2**20, 1)
                for g in groups]
    except OSError:
        return None


def memory_rss_mb(groups: list[str]) -> list[float] | None:
    """Each node's resident memory of its processes now (anonymous memory, page cache left out)."""
    try:
        stats = [dict(line.split() for line in (CGROUP / "memory" / g / "memory.stat").read_text().splitlines())
                 for g in groups]
        return [round(int(stat["total_rss"]) / 2**20, 1) for stat in stats]
    except (OSError, KeyError, ValueError):
        return None


# Runs a command and writes the CPU time and largest resident set of its process tree (rusage of
# the waited children) to the file named by argv[1]: the controller's own figures, apart from
# the benchmark's earlier set-up plays.
USAGE_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[2:], check=False).returncode\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(json.dumps({'cpu': u.ru_utime + u.ru_stime, 'maxrss_kb': u.ru_maxrss}))\n"
    "sys.exit(rc)\n")


def node_spec(name: str) -> dict:
    return {"name": name, "capabilities": ["NET_ADMIN"], "devices": ["/dev/loop-control"]}


def strategy_env(strategy: str) -> dict[str, str]:
    if strategy == "linear":
        return {"ANSIBLE_STRATEGY": "linear"}
    import ansible_mitogen  # noqa: PLC0415, F401 - fails here, not as a silent fallback to linear

    # The kit's strategy plugin (what ansible.cfg names): Mitogen's, plus its source cache.
    return {"ANSIBLE_STRATEGY": "mitogen_linear", "ANSIBLE_STRATEGY_PLUGINS": str(ROOT / "plugins" / "strategy")}


class Bed:
    """N fresh test-bed nodes plus the files the plays need."""

    def __init__(self, nodes: int, workdir: Path, strategy: str) -> None:
        self.name = f"bench-{nodes}-{strategy}"
        self.dir = workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hosts = [f"ai4os-{self.name}-{i}" for i in range(1, nodes + 1)]
        (self.dir / "molecule.json").write_text(json.dumps({"molecule_yml": {"platforms": [node_spec(h) for h in self.hosts]}}))
        self.inventory = self.dir / "inventory.json"
        self.usage_file = self.dir / "controller-usage.json"  # the last playbook's controller CPU and memory
        # Written first: without it Ansible would fall back to the repository's
        # ansible.cfg and its default inventory (inventories/local, vaulted).
        # The repository's settings otherwise: forks, smart gathering with the controller's fact cache
        # (so a re-run reuses the facts of the run before, as an operator's does), facts only under
        # ansible_facts, pipelining.
        (self.dir / "ansible.cfg").write_text(
            "[defaults]\nforks = 20\ngathering = smart\ninject_facts_as_vars = False\n"
            "interpreter_python = auto_silent\nfact_caching = jsonfile\n"
            f"fact_caching_connection = {self.dir / 'facts'}\nfact_caching_timeout = 7200\n"
            "[ssh_connection]\npipelining = True\n")

    def env(self, strategy: str, timings: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(strategy_env(strategy))
        if timings is not None:
            env.update({"ANSIBLE_CALLBACK_PLUGINS": str(PROFILE_PLUGINS), "ANSIBLE_CALLBACKS_ENABLED": "task_timings",
                        "AI4OS_TASK_TIMINGS": str(timings)})
        env.update({"MOLECULE_PROJECT_DIRECTORY": str(ROOT), "MOLECULE_SCENARIO_NAME": self.name,
                    "MOLECULE_EPHEMERAL_DIRECTORY": str(self.dir), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                    "ANSIBLE_LIBRARY": str(ROOT / "plugins" / "modules"),
                    "ANSIBLE_ACTION_PLUGINS": str(ROOT / "plugins" / "action"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_HOST_KEY_CHECKING": "False", "PATH": f"{BIN}:{env.get('PATH', '')}",
                    "ANSIBLE_CONFIG": str(self.dir / "ansible.cfg")})
        return env

    def host_vars(self) -> dict[str, dict[str, str]]:
        # `docker` (not the FQCN): Mitogen's strategy swaps it for mitogen_docker.
        return {h: {"ansible_connection": "docker", "ansible_python_interpreter": "/usr/bin/python3"} for h in self.hosts}

    def write_inventory(self) -> None:
        mirror = self.dir / "mirror"
        group_vars = dict(GROUP_VARS)
        group_vars.update({
            "ai4os_artifacts_url": (mirror / "url").read_text().strip() + "/good",
            "artifacts_cache_dir": str(self.dir / "artifacts-cache"),
            "traefik_version": (mirror / "version").read_text().strip(),
            "artifacts_pins": json.loads((mirror / "pins.json").read_text()),
            "traefik_tls_certificate": str(self.dir / "pki" / "site.crt"),
            "traefik_tls_key": str(self.dir / "pki" / "site.key"),
        })
        self.inventory.write_text(json.dumps({"all": {"hosts": self.host_vars(), "vars": group_vars}}))

    def playbook(self, playbook: Path, strategy: str, *extra: str, ok_rcs: tuple[int, ...] = (0,),
                 timings: Path | None = None) -> tuple[float, str]:
        """Run one play; set-up plays must succeed (rc 0), timed ones may report failed hosts (rc 2)."""
        argv = [sys.executable, "-c", USAGE_WRAPPER, str(self.usage_file),
                str(BIN / "ansible-playbook"), *extra, str(playbook)]
        start = time.monotonic()
        proc = subprocess.run(argv, env=self.env(strategy, timings), cwd=self.dir, capture_output=True, text=True,
                              check=False)
        seconds = time.monotonic() - start
        (self.dir / f"{playbook.stem}-{strategy}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode not in ok_rcs:
            raise RuntimeError(f"{playbook.name} failed ({proc.returncode}): {proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        return seconds, proc.stdout

    def write_nodes(self) -> Path:
        """An inventory of the bare nodes (the untimed plays use it)."""
        nodes = self.dir / "nodes.json"
        nodes.write_text(json.dumps({"all": {"hosts": self.host_vars()}}))
        return nodes

    def create(self) -> None:
        self.playbook(TESTBED_PLAYS / "create.yml", "linear", "-e", f"@{self.dir / 'molecule.json'}")

    def destroy(self) -> None:
        self.playbook(TESTBED_PLAYS / "loop-devices-detach.yml", "linear", "-i", str(self.write_nodes()))
        self.playbook(TESTBED_PLAYS / "destroy.yml", "linear", "-e", f"@{self.dir / 'molecule.json'}")

    def prepare(self) -> None:
        self.playbook(ROOT / "benchmarks" / "prepare.yml", "linear", "-i", str(self.write_nodes()))
        self.write_inventory()


def span(values: list[float] | None, unit: str = "MB") -> str:
    """'lo-hi unit' of per-node figures ('n/a' where the cgroup files were not there)."""
    return f"{min(values):.0f}-{max(values):.0f} {unit}" if values else "n/a"


def controller_usage(path: Path) -> tuple[float, float]:
    """(CPU seconds, largest RSS in MB) of the last ansible-playbook's process tree."""
    usage = json.loads(path.read_text())
    return round(usage["cpu"], 1), round(usage["maxrss_kb"] / 1024, 1)


def recap(output: str) -> tuple[int, int]:
    rows = RECAP.findall(output)
    return sum(int(r[2]) for r in rows), sum(int(r[4]) for r in rows)


def measure(strategy: str, nodes: int, workdir: Path, profile: bool = False) -> list[Run]:
    bed = Bed(nodes, workdir, strategy)
    bed.create()
    try:
        bed.prepare()
        runs = []
        groups = container_cgroups(bed.hosts)
        for phase in ("first", "noop"):
            timings = bed.dir / f"timings-{phase}.json" if profile else None
            reset_memory_peaks(groups)
            cpu_before = nodes_cpu_seconds(groups)
            seconds, out = bed.playbook(ROOT / "benchmarks" / "converge.yml", strategy, "-i", str(bed.inventory),
                                        ok_rcs=(0, 2), timings=timings)
            cpu_after = nodes_cpu_seconds(groups)
            controller_cpu, controller_rss = controller_usage(bed.usage_file)
            changed, failed = recap(out)
            run = Run(strategy, nodes, phase, round(seconds, 1), changed, failed, controller_cpu, controller_rss,
                      round(cpu_after - cpu_before, 1) if cpu_before is not None and cpu_after is not None else -1.0,
                      memory_peaks_mb(groups), memory_rss_mb(groups))
            runs.append(run)
            memory = f"peak {span(run.node_memory_mb)}, processes {span(run.node_rss_mb)}"
            print(f"  {strategy:8} {nodes} node(s) {phase:5}: {seconds:7.1f} s  changed={changed} failed={failed}  "
                  f"controller CPU {controller_cpu:.1f} s (largest process {controller_rss:.0f} MB)  "
                  f"nodes' CPU {run.nodes_cpu:.1f} s  memory per node {memory}", file=sys.stderr, flush=True)
            if timings is not None:
                print(profile_report(json.loads(timings.read_text()), seconds, f"{strategy}, {nodes} node(s), {phase}"))
        if profile:
            timings = bed.dir / "timings-probe.json"
            seconds, _ = bed.playbook(ROOT / "benchmarks" / "probe.yml", strategy, "-i", str(bed.inventory),
                                      timings=timings)
            print(probe_report(json.loads(timings.read_text()), seconds, f"{strategy}, {nodes} node(s)"))
        return runs
    finally:
        bed.destroy()


KINDS = (  # (kind of work, modules without the "ansible.builtin." prefix), first match wins
    ("facts", {"gather_facts", "setup"}),
    ("packages", {"apt", "apt_key", "apt_repository", "deb822_repository", "package", "packages_present",
                  "packages_missing"}),
    ("templating", {"template"}),
    ("files", {"file", "copy", "stat", "slurp", "lineinfile", "get_url", "unarchive", "ansible.posix.mount",
               "community.general.filesystem", "community.general.lvg", "community.general.lvol"}),
    ("services", {"systemd_service", "systemd", "service"}),
    ("commands", {"command", "shell"}),
    ("controller only", {"set_fact", "assert", "debug", "include_tasks", "import_tasks", "include_role", "meta", "fail"}),
)


def kind_of(action: str) -> str:
    name = action.removeprefix("ansible.builtin.")
    return next((kind for kind, actions in KINDS if name in actions), "other modules")


def profile_report(data: dict, seconds: float, title: str, top: int = 12) -> str:
    """Where one timed run's time went, as Markdown."""
    tasks = data["tasks"]
    in_tasks = sum(t["wall"] for t in tasks)
    by_role: dict[str, list[float]] = {}
    by_kind: dict[str, list[float]] = {}
    for t in tasks:
        for key, table_ in ((t["role"] or "(play)", by_role), (kind_of(t["action"]), by_kind)):
            row = table_.setdefault(key, [0.0, 0, 0])
            row[0] += t["wall"]
            row[1] += 1
            row[2] += int(len(t["hosts"]) > t["skipped"])
    lines = [f"### {title}: {seconds:.1f} s", "",
             f"ansible-playbook {seconds:.1f} s: plays {data['total']:.1f} s (tasks {in_tasks:.1f} s), "
             f"start-up, inventory and play set-up {seconds - data['total']:.1f} s; {len(tasks)} tasks", ""]
    for name, table_ in (("role", by_role), ("kind of work", by_kind)):
        lines += [f"| {name} | seconds | share | tasks | tasks that ran |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {key} | {row[0]:.1f} | {row[0] / seconds:.0%} | {row[1]} | {row[2]} |"
                  for key, row in sorted(table_.items(), key=lambda kv: -kv[1][0])]
        lines.append("")
    lines += ["| slowest tasks | role | module | wall | slowest host | changed |", "|---|---|---|---:|---:|---:|"]
    for t in sorted(tasks, key=lambda t: -t["wall"])[:top]:
        slowest = max(t["hosts"].values(), default=0.0)
        lines.append(f"| {t['name']} | {t['role']} | {t['action']} | {t['wall']:.2f} | {slowest:.2f} | {t['changed']} |")
    ran = [t for t in tasks if len(t["hosts"]) > t["skipped"]]
    skipped = [t for t in tasks if t["hosts"] and len(t["hosts"]) == t["skipped"]]
    lines += ["", f"tasks that ran on some host: {len(ran)}, {sum(t['wall'] for t in ran):.1f} s "
              f"({sum(t['wall'] for t in ran) / max(1, len(ran)):.2f} s each); skipped everywhere: {len(skipped)}, "
              f"{sum(t['wall'] for t in skipped):.1f} s ({sum(t['wall'] for t in skipped) / max(1, len(skipped)):.3f} s "
              "each)", ""]
    return "\n".join(lines)


def probe_report(data: dict, seconds: float, title: str) -> str:
    tasks = [t for t in data["tasks"] if t["action"].removeprefix("ansible.builtin.") == "ping"]
    lines = [f"### connection probe ({title}): {seconds:.1f} s for ansible-playbook", ""]
    for t in tasks:
        hosts = sorted(t["hosts"].values())
        lines.append(f"- {t['name']}: {t['wall']:.2f} s wall, per host {hosts[0]:.2f}-{hosts[-1]:.2f} s")
    return "\n".join(lines + [""])


def table(runs: list[Run]) -> str:
    by = {(r.strategy, r.nodes, r.phase): r for r in runs}
    lines = ["| strategy | nodes | first converge | changed | no-op re-run | changed | no-op / first | "
             "controller CPU first / no-op | nodes' CPU first / no-op | memory per node: peak (first run), processes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (strategy, nodes, phase), first in sorted(by.items()):
        if phase != "first":
            continue
        noop = by.get((strategy, nodes, "noop"))
        if noop is None:
            continue
        memory = f"{span(first.node_memory_mb)}, {span(noop.node_rss_mb)}"
        lines.append(f"| {strategy} | {nodes} | {first.seconds:.1f} s | {first.changed} | {noop.seconds:.1f} s | "
                     f"{noop.changed} | {noop.seconds / first.seconds:.0%} | {first.controller_cpu:.1f} / "
                     f"{noop.controller_cpu:.1f} s | {first.nodes_cpu:.1f} / {noop.nodes_cpu:.1f} s | {memory} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--strategies", nargs="+", choices=["linear", "mitogen"], default=["linear", "mitogen"])
    parser.add_argument("--json", type=Path, help="also write the runs as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary directory)")
    parser.add_argument("--profile", action="store_true",
                        help="time every task of the timed runs and print where the time went, plus a connection probe")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ai4os-bench-"))
    runs: list[Run] = []
    print(f"1-minute load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", file=sys.stderr, flush=True)
    for nodes in args.sizes:  # both strategies per size, so a cut-short run still compares
        for strategy in args.strategies:
            runs.extend(measure(strategy, nodes, workdir, args.profile))
            if args.json:
                args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    print(table(runs))
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    print(f"logs: {workdir}", file=sys.stderr)
    return 0 if all(r.failed == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
