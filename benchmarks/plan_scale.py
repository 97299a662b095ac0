#!/usr/bin/env python3
"""Benchmark: check + plan + hosts.yml of generated inventories (sites x nodes per site).

For each size, a fresh Python process generates the inventory, then runs what
`ai4os-kit plan` runs and times each stage: load (YAML of platform.yml and
sites.yml), validate (schema and cross-field rules), plan, render (hosts.yml
as data) and write (hosts.yml on disk). It prints the stages, their sum, the
process's peak memory (max RSS) and the load average at start and end: the
machines are shared, so a figure means little without the load it was taken
under. Target (issue 16): 20 sites x 5,000 nodes under 2 s and 500 MB.
A benchmark, not a test.

    python benchmarks/plan_scale.py                      # 10x100, 10x1000, 20x5000
    python benchmarks/plan_scale.py 20x5000 --repeat 3   # one size, three runs
    python benchmarks/plan_scale.py 20x5000 --profile /tmp/plan.prof   # cProfile of one run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = ("10x100", "10x1000", "20x5000")
POOL_MAX = 999  # schemas/sites.schema.json: a pool holds at most 999 nodes
SERVER_SITES_KEY = "ai4os_nomad_server_sites"
STAGES = ("load", "validate", "plan", "write")  # what `ai4os-kit plan` runs; write renders as it writes


def parse_size(text: str) -> tuple[int, int]:
    """'20x5000' -> (20 sites, 5000 nodes per site)."""
    try:
        sites, nodes = (int(part) for part in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not SITESxNODES (e.g. 20x5000)") from None
    if sites < 1 or nodes < 7:
        raise argparse.ArgumentTypeError(f"'{text}': at least 1 site and 7 nodes per site (3 servers, "
                                         "1 ingress, 2 services, 1 worker)")
    return sites, nodes


def _split(role: str, count: int) -> list[tuple[str, int]]:
    """A worker role's nodes as pools of at most POOL_MAX (named cpu, or cpu1, cpu2, ... when split)."""
    chunks = [min(POOL_MAX, count - start) for start in range(0, count, POOL_MAX)] or [0]
    if len(chunks) == 1:
        return [(role, chunks[0])]
    return [(f"{role}{n}", chunk) for n, chunk in enumerate(chunks, 1)]


def generate(target: Path, sites: int, per_site: int) -> None:
    """platform.yml of the sample; sites.yml with `sites` cloud sites of `per_site` nodes each."""
    shutil.copy(ROOT / "inventories" / "sample" / "platform.yml", target / "platform.yml")
    workers = per_site - (3 + 1 + 2)  # servers, ingress, services
    gpus = workers // 4
    out = []
    for i in range(sites):
        pools: list[dict[str, Any]] = [  # servers with public addresses: sites in separate clouds federate
            {"role": "server", "count": 3, "flavor": {"name": "m1.medium"}, "floating_ip": True},
            {"role": "ingress", "count": 1, "flavor": {"name": "m1.medium"}, "floating_ip": True},
            {"role": "services", "count": 2, "flavor": {"vcpus": 4, "ram_mb": 8192}, "volume_gb": 100},
        ]
        for name, count in _split("cpu", workers - gpus):
            pool = {"role": "cpu", "count": count, "flavor": {"vcpus": 8, "ram_mb": 32768}, "volume_gb": 200}
            pools.append(pool if name == "cpu" else {"name": name, **pool})
        for name, count in _split("gpu", gpus):
            pool = {"role": "gpu", "count": count, "volume_gb": 500,
                    "flavor": {"vcpus": 16, "ram_mb": 65536,
                               "accelerator": {"type": "GPU", "number": 2, "vendor": "NVIDIA", "model": "H100"}}}
            pools.append(pool if name == "gpu" else {"name": name, **pool})
        out.append({
            "name": f"site{i:02d}", "cloud": f"cloud{i:02d}", "auth": "application_credential",
            "location": {"country": "ES", "lat": 40.0, "lon": -3.0, "pue": 1.3},
            "network": {"create": True, "cidr": f"10.{i}.0.0/16"},
            "image": {"properties": {"os_distro": "ubuntu", "os_version": "22.04"}},
            "ssh": {"user": "ubuntu", "key_name": "ops", "allowed_cidrs": ["192.0.2.0/24"]},
            "pools": [p for p in pools if p["count"]],
        })
    doc: dict[str, Any] = {"ai4os_sites": out}
    if SERVER_SITES_KEY in json.loads((ROOT / "schemas" / "sites.schema.json").read_text())["properties"]:
        doc[SERVER_SITES_KEY] = ["site00"]  # the Nomad region's servers at one home site (when the kit asks)
    (target / "sites.yml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


class Clock:
    """Wall and CPU time of consecutive stages (CPU time says more than wall on a loaded machine)."""

    def __init__(self) -> None:
        self.stages: dict[str, tuple[float, float]] = {}
        self._last = (time.perf_counter(), time.process_time())

    def lap(self, stage: str) -> None:
        now = (time.perf_counter(), time.process_time())
        wall, cpu = self.stages.get(stage, (0.0, 0.0))
        self.stages[stage] = (wall + now[0] - self._last[0], cpu + now[1] - self._last[1])
        self._last = now


def run_once(sites: int, per_site: int, profile: str | None) -> dict[str, Any]:
    """One run of every stage in this process; the figures as a dict."""
    loadavg_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        inv_dir = Path(tmp)
        generate(inv_dir, sites, per_site)
        from ai4os_kit.model import ansible_inventory, inventory
        from ai4os_kit.model.plan import build_plan

        clock = Clock()
        real_load_yaml = inventory.load_yaml

        def timed_load_yaml(file: Path) -> Any:  # load_inventory reads both files through it
            clock.lap("validate")
            try:
                return real_load_yaml(file)
            finally:
                clock.lap("load")

        inventory.load_yaml = timed_load_yaml
        profiler = None
        if profile:
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        clock.lap("setup")
        inv = inventory.load_inventory(inv_dir)
        clock.lap("validate")
        plan = build_plan(inv)
        clock.lap("plan")
        target = ansible_inventory.write_plan(inv_dir, plan)
        clock.lap("write")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ansible_inventory.render(plan)  # the dict other commands render (discovery, test-bed): not on plan's path
        clock.lap("render")
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        inventory.load_yaml = real_load_yaml
        hosts_mb = target.stat().st_size / 1e6
        cli = _cli_plan(inv_dir)
    return {
        "sites": sites, "nodes": len(plan["nodes"]), "hosts_mb": hosts_mb, "stages": clock.stages,
        "peak_mb": peak_mb, "peak_render_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cli": cli,
        "loadavg_start": loadavg_start, "loadavg_end": os.getloadavg()[0],
    }


def _cli_plan(inv_dir: Path) -> dict[str, float]:
    """`ai4os-kit plan INVENTORY` end to end (interpreter start, imports, summary, hosts.yml): wall, peak RSS."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ai4os_kit", "plan", str(inv_dir)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ai4os-kit plan failed:\n{done.stderr}")
    return {"wall": wall, "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def show(r: dict[str, Any]) -> str:
    stages = r["stages"]
    total = [sum(stages[s][k] for s in STAGES) for k in (0, 1)]
    return (f"{r['sites']:>3} sites x {r['nodes'] // r['sites']:>5} = {r['nodes']:>6} nodes: "
            + ", ".join(f"{s} {stages[s][0]:.3f} ({stages[s][1]:.3f})" for s in STAGES)
            + f" = {total[0]:.3f} s ({total[1]:.3f} s CPU), peak RSS {r['peak_mb']:.0f} MB, "
            f"hosts.yml {r['hosts_mb']:.1f} MB; `ai4os-kit plan` {r['cli']['wall']:.2f} s, {r['cli']['peak_mb']:.0f} MB; "
            f"render() {stages['render'][0]:.3f} ({stages['render'][1]:.3f}); "
            f"load average {r['loadavg_start']:.2f} -> {r['loadavg_end']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=parse_size, metavar="SITESxNODES",
                        help=f"sites x nodes per site (default: {' '.join(DEFAULT_SIZES)})")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (each in a fresh process)")
    parser.add_argument("--profile", metavar="FILE", help="one run of the first size under cProfile; "
                        "stats to FILE (read with python -m pstats FILE)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.sizes or [parse_size(s) for s in DEFAULT_SIZES]
    if args.child or args.profile:
        result = run_once(*sizes[0], args.profile)
        print(json.dumps(result) if args.child else show(result))
        return
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print("seconds wall (CPU) per stage of `ai4os-kit plan`: load = YAML of both files, validate = schema and "
          "rules, plan, write = hosts.yml rendered and written; target for 20x5000: < 2 s, < 500 MB")
    for sites, per_site in sizes:
        for _ in range(args.repeat):  # a fresh interpreter per run: its peak RSS is this size's alone
            done = subprocess.run([sys.executable, __file__, f"{sites}x{per_site}", "--child"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"the run of {sites}x{per_site} failed:\n{done.stderr}")
            print(show(json.loads(done.stdout.splitlines()[-1])), flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
