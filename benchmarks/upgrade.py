#!/usr/bin/env python3
"""Benchmark: the overhead of a rolling upgrade (playbooks/upgrade.yml) on 3 servers + 6 clients
of the test-bed, under Ansible's `linear` strategy and Mitogen's `mitogen_linear`.

The nodes are systemd containers (playbooks/testbed/create.yml) holding the plan of a copy of
inventories/local grown to 3 servers, 1 ingress and 5 cpu nodes; the cluster layer (consul and
nomad roles) is converged on them once, untimed. Each timed run is the whole upgrade.yml with
nothing to upgrade (the versions do not change): validation, preflight, Raft snapshots copied
to the controller, the Consul and Nomad servers one at a time, the clients in batches of
--batch (drained, converged, made eligible again), the platform play (render and check, no
submission). What it measures is the orchestration's own cost around no-op converges.

Nomad and Consul binaries cannot be had here: the roles stop at "binaries not available" on
every node, and the agents' HTTPS APIs the day-2 steps call are answered by the TEST DOUBLE of
tests/support/cluster_api_double.py, listening on the containers' network gateway (its
certificate from the inventory's platform CA, the nodes' own client certificates). Traefik's
role is left out (the ingress node is taken out of the traefik group): its binary needs the
release mirror of benchmarks/converge.py.

    .venv/bin/python benchmarks/upgrade.py [--batch 2] [--strategies mitogen linear] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support package (the API test double)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.cluster_api_double import Agent, Cluster  # noqa: E402 (the test double, see the docstring)
from converge import RECAP, strategy_env  # noqa: E402

from ai4os_kit.model import ansible_inventory, secrets  # noqa: E402
from ai4os_kit.model.inventory import load_inventory  # noqa: E402
from ai4os_kit.model.plan import build_plan  # noqa: E402

BIN = Path(sys.executable).parent
SCENARIO = "bench-upgrade"


def _run(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    seconds = time.monotonic() - start
    log.write_text(proc.stdout + proc.stderr)
    return seconds, proc


def _certificate(ca_key_pem: str, ca_cert_pem: str, address: str, directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api double")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    (directory / "api.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "api-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    (directory / "ca.pem").write_text(ca_cert_pem)
    return directory / "api.pem", directory / "api-key.pem"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="2", help="clients upgraded at once (day2_client_batch), default 2")
    parser.add_argument("--strategies", nargs="+", choices=["linear", "mitogen"], default=["mitogen", "linear"])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temporary directory)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ai4os-bench-upgrade-"))
    work.mkdir(parents=True, exist_ok=True)

    # the inventory: the kit's plan, nodes in containers
    inventory = work / "inv"
    subprocess.run(["rm", "-rf", str(inventory)], check=True)
    subprocess.run(["cp", "-r", str(ROOT / "inventories" / "local"), str(inventory)], check=True)
    sites = yaml.safe_load((inventory / "sites.yml").read_text())
    sites["ai4os_sites"][0]["pools"] = [{"role": "server", "count": 3}, {"role": "ingress", "count": 1},
                                        {"role": "cpu", "count": 5}]
    (inventory / "sites.yml").write_text(yaml.safe_dump(sites))
    password = work / "vault-pass"
    password.write_text("benchmark-only\n")
    os.environ[secrets.VAULT_PASSWORD_ENV] = str(password)
    plan = build_plan(load_inventory(inventory, check_vault=False))
    secrets.ensure_secrets(inventory, plan["platform"]["name"])
    values = secrets.read_secrets(inventory, password)
    hosts = ansible_inventory.render(plan)
    names = list(hosts["all"]["hosts"])
    servers = [n["name"] for n in plan["nodes"] if n["consul"]["server"]]
    clients = [n for n in names if n not in servers]
    container = {n: f"ai4os-{SCENARIO}-{n}" for n in names}
    for name, hostvars in hosts["all"]["hosts"].items():
        hostvars.update(ansible_connection="docker", ansible_host=container[name], ansible_python_interpreter="/usr/bin/python3")
    hosts["all"]["children"]["traefik"] = {"hosts": {}}
    ansible_inventory.write(inventory, hosts)

    env = dict(os.environ, MOLECULE_PROJECT_DIRECTORY=str(ROOT), MOLECULE_SCENARIO_NAME=SCENARIO,
               MOLECULE_EPHEMERAL_DIRECTORY=str(work), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_CACHE_PLUGIN_CONNECTION=str(work / "facts"), ANSIBLE_NOCOLOR="1", PATH=f"{BIN}:{os.environ['PATH']}",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    molecule = work / "molecule.json"
    molecule.write_text(json.dumps({"molecule_yml": {"platforms": [{"name": container[n]} for n in names]}}))
    shared = ROOT / "playbooks" / "testbed"
    playbook = str(BIN / "ansible-playbook")
    linear = {**env, **strategy_env("linear")}  # the set-up plays run on the controller itself
    _, created = _run([playbook, "-i", "localhost,", str(shared / "create.yml"), "-e", f"@{molecule}"], linear,
                      work / "create.log")
    if created.returncode != 0:
        print(created.stdout[-3000:], file=sys.stderr)
        return 1
    agents: list[Agent] = []
    results = []
    try:
        gateway = json.loads(subprocess.run(["docker", "network", "inspect", f"ai4os-tb-{SCENARIO}"], capture_output=True,
                                            text=True, check=True).stdout)[0]["IPAM"]["Config"][0]["Gateway"]
        cert, key = _certificate(values["ai4os_secret_ca_key"], values["ai4os_secret_ca_cert"], gateway, work)
        region, datacenter = plan["platform"]["region"], plan["nodes"][0]["datacenter"]
        consul = Cluster("consul", servers, clients, version="2.0.2", region=region, datacenter=datacenter,
                         gossip_key=values["ai4os_secret_consul_gossip_key"],
                         management=values["ai4os_secret_consul_bootstrap_token"])
        nomad = Cluster("nomad", servers, clients, version="2.0.4", region=region, datacenter=datacenter,
                        gossip_key=values["ai4os_secret_nomad_gossip_key"], management=values["ai4os_secret_nomad_bootstrap_token"])
        nomad.drain_polls = 1
        agents = [Agent(consul, servers[0], cert, key, work / "ca.pem", host="0.0.0.0"),
                  Agent(nomad, servers[0], cert, key, work / "ca.pem", host="0.0.0.0")]
        api = {flavor: f"https://{gateway}:{a.server.server_address[1]}/v1" for flavor, a in zip(("consul", "nomad"), agents)}
        (work / "mirror").mkdir(exist_ok=True)
        extra = {"ai4os_artifacts_url": str(work / "mirror"), "platform_job_submit": False,
                 "day2_backup_dir": str(work / "backups"), "day2_client_batch": args.batch,
                 "consul_api": api["consul"], "consul_day2_ops_api": api["consul"],
                 "nomad_api": api["nomad"], "nomad_day2_ops_api": api["nomad"],
                 "consul_day2_poll": 1, "nomad_day2_poll": 1}
        variables = work / "vars.json"
        variables.write_text(json.dumps(extra))
        seconds, first = _run([playbook, "-i", str(inventory / "hosts.yml"), str(ROOT / "playbooks" / "cluster.yml"),
                               "-e", f"@{variables}"], env, work / "cluster.log")
        print(f"cluster layer converged once (untimed): {seconds:.1f} s, rc {first.returncode}", file=sys.stderr, flush=True)
        if first.returncode != 0:
            print(first.stdout[-3000:], file=sys.stderr)
            return 1
        for strategy in args.strategies:
            load_before = os.getloadavg()
            seconds, proc = _run([playbook, "-i", str(inventory / "hosts.yml"), str(ROOT / "playbooks" / "upgrade.yml"),
                                  "-e", f"@{variables}"], {**env, **strategy_env(strategy)}, work / f"upgrade-{strategy}.log")
            load_after = os.getloadavg()
            rows = RECAP.findall(proc.stdout)
            result = {"strategy": strategy, "nodes": len(names), "servers": len(servers), "clients": len(clients),
                      "batch": args.batch, "seconds": round(seconds, 1), "rc": proc.returncode,
                      "changed": sum(int(r[2]) for r in rows), "failed": sum(int(r[4]) for r in rows),
                      "plays": len(re.findall(r"^PLAY \[", proc.stdout, re.MULTILINE)),
                      "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after]}
            results.append(result)
            print(f"  {strategy:8} {seconds:7.1f} s  rc={proc.returncode} changed={result['changed']} "
                  f"load {load_before[0]:.2f} -> {load_after[0]:.2f}", file=sys.stderr, flush=True)
    finally:
        for agent in agents:
            agent.close()
        _run([playbook, "-i", "localhost,", str(shared / "destroy.yml"), "-e", f"@{molecule}"], linear, work / "destroy.log")
    print("| strategy | nodes (servers + clients) | client batch | upgrade.yml wall | changed | load 1-min before -> after |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['strategy']} | {r['nodes']} ({r['servers']} + {r['clients']}) | {r['batch']} | {r['seconds']} s "
              f"| {r['changed']} | {r['load_before'][0]} -> {r['load_after'][0]} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"logs: {work}", file=sys.stderr)
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
