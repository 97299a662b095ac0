"""TEST DOUBLE of Nomad's HTTP API for the accounting scenario (Nomad cannot be obtained on these machines).

Runs tests/accounting/nomad_double.py (copied beside this file by prepare.yml) on 127.0.0.1:PORT inside the
node, answering only requests that carry TOKEN, with the two recorded nodes of datacenter ifca, a CPU
allocation (namespace imagine) that ran for five hours on the 3rd of the previous month and a GPU allocation
(namespace ai4eosc) running since the same day. Usage: serve_nomad_double.py PORT TOKEN
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from nomad_double import NomadDouble, fixture


def third_of_previous_month() -> int:
    today = datetime.now(timezone.utc)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return int(datetime(year, month, 3, 8, tzinfo=timezone.utc).timestamp())


def main(port: int, token: str) -> None:
    double = NomadDouble(port=port)
    double.token = token
    cpu_node, gpu_node = fixture("node-cpu.json"), fixture("node-gpu.json")
    double.add_node(cpu_node)
    double.add_node(gpu_node)
    start = third_of_previous_month()
    cpu_doc, gpu_doc = fixture("allocation-cpu-complete.json"), fixture("allocation-gpu-running.json")
    cpu = double.create(cpu_doc, start, alloc_id=cpu_doc["ID"], node=cpu_node)
    double.start(cpu, start + 60)
    double.finish(cpu, start + 60 + 5 * 3600)
    gpu = double.create(gpu_doc, start, alloc_id=gpu_doc["ID"], node=gpu_node)
    double.start(gpu, start + 60)
    print(f"Nomad test double on 127.0.0.1:{port}: allocations {cpu} (ended), {gpu} (running)", flush=True)
    double.server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
