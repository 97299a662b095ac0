#!/usr/bin/env python3
"""Benchmark: check + plan of a generated 10-site, 1,000-node inventory.

Prints wall time and peak memory (RSS of this process). Target on the
project's 2-core machines: under 1 s and under 200 MB. A benchmark, not a test.

    python benchmarks/plan_scale.py [--sites 10] [--nodes 1000]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def generate(target: Path, sites: int, nodes: int) -> None:
    shutil.copy(ROOT / "inventories" / "sample" / "platform.yml", target / "platform.yml")
    per_site = nodes // sites
    fixed = 3 + 1 + 2  # servers, ingress, services
    workers = per_site - fixed
    out = []
    for i in range(sites):
        out.append({
            "name": f"site{i:02d}", "cloud": f"cloud{i:02d}", "auth": "application_credential",
            "location": {"country": "ES", "lat": 40.0, "lon": -3.0, "pue": 1.3},
            "network": {"create": True, "cidr": f"10.{i}.0.0/16"},
            "image": {"properties": {"os_distro": "ubuntu", "os_version": "22.04"}},
            "ssh": {"user": "ubuntu", "key_name": "ops", "allowed_cidrs": ["192.0.2.0/24"]},
            "pools": [
                {"role": "server", "count": 3, "flavor": {"name": "m1.medium"}},
                {"role": "ingress", "count": 1, "flavor": {"name": "m1.medium"}, "floating_ip": True},
                {"role": "services", "count": 2, "flavor": {"vcpus": 4, "ram_mb": 8192}, "volume_gb": 100},
                {"role": "cpu", "count": workers - workers // 4, "flavor": {"vcpus": 8, "ram_mb": 32768}, "volume_gb": 200},
                {"role": "gpu", "count": workers // 4, "volume_gb": 500,
                 "flavor": {"vcpus": 16, "ram_mb": 65536, "accelerator": {"type": "GPU", "number": 2, "vendor": "NVIDIA", "model": "H100"}}},
            ],
        })
    (target / "sites.yml").write_text(yaml.safe_dump({"ai4os_sites": out}, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inv_dir = Path(tmp)
        generate(inv_dir, args.sites, args.nodes)
        start = time.perf_counter()
        from ai4os_kit.model import ansible_inventory
        from ai4os_kit.model.inventory import load_inventory
        from ai4os_kit.model.plan import build_plan
        imported = time.perf_counter()
        inv = load_inventory(inv_dir)
        checked = time.perf_counter()
        plan = build_plan(inv)
        planned = time.perf_counter()
        ansible_inventory.write(inv_dir, ansible_inventory.render(plan))
        written = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sites={args.sites} nodes={len(plan['nodes'])} rules={sum(len(g['rules']) for s in plan['secgroups'].values() for g in s)}")
    print(f"import {imported - start:.3f} s, check {checked - imported:.3f} s, plan {planned - checked:.3f} s, "
          f"write hosts.yml {written - planned:.3f} s")
    print(f"check+plan wall time: {planned - imported:.3f} s (target < 1 s); with inventory write {written - imported:.3f} s")
    print(f"peak memory (max RSS): {peak_mb:.0f} MB (target < 200 MB)")


if __name__ == "__main__":
    main()
