"""A platform for the day-2 playbooks whose nodes are this machine and whose agents are test doubles.

The inventory is real: a copy of inventories/local grown to 3 servers and 6 clients (5 cpu,
1 ingress), planned by the kit (hosts.yml as `ai4os-kit plan` writes it) with the secrets
`ai4os-kit secrets` generates (ansible-vault; the agents' certificates and the API's client
certificate are signed by its platform CA). Every node is the
controller itself (``ansible_connection: local``), and its Consul agent (every node) and Nomad
server agent (servers) are cluster_api_double.Agent instances on 127.0.0.1, one port per node
(the roles reach their local agent at https://127.0.0.1:<consul_port_https|nomad_port_http>),
sharing one Consul datacenter and one Nomad region (TEST DOUBLES: Nomad and Consul cannot run
here). The playbooks run with ``day2_converge: false`` (the orchestration alone): the roles
themselves are converged on real systemd containers by the molecule scenarios and by
test_day2_testbed.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from support.cluster_api_double import Agent, Cluster
from support.cluster_helpers import ROOT, ansible_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ai4os_kit.model import ansible_inventory, secrets
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

TASK = re.compile(r"^TASK \[(?P<task>.+?)\] \*+$")
RESULT = re.compile(r"^(?P<status>ok|changed|skipping|fatal|failed): \[(?P<host>[^\]]+?)(?: -> [^\]]+)?\]")


class Day2Bed:
    def __init__(self, tmp_path: Path, *, versions: tuple[str, str] = ("2.0.2", "2.0.4"), pools: dict[str, int] | None = None,
                 admission: bool = True) -> None:
        self.tmp = tmp_path
        self.inventory = tmp_path / "inv"
        subprocess.run(["cp", "-r", str(ROOT / "inventories" / "local"), str(self.inventory)], check=True)
        pools = pools or {"server": 3, "ingress": 1, "cpu": 5}
        sites = yaml.safe_load((self.inventory / "sites.yml").read_text())
        sites["ai4os_sites"][0]["pools"] = [{"role": role, "count": count} for role, count in pools.items()]
        (self.inventory / "sites.yml").write_text(yaml.safe_dump(sites))
        if admission:
            platform = (self.inventory / "platform.yml").read_text()
            (self.inventory / "platform.yml").write_text(platform.replace("ai4os_enable_node_admission: false",
                                                                          "ai4os_enable_node_admission: true"))
        self.plan = build_plan(load_inventory(self.inventory))
        hosts = ansible_inventory.render(self.plan)
        self.servers = [n["name"] for n in self.plan["nodes"] if n["consul"]["server"]]
        self.clients = [n["name"] for n in self.plan["nodes"] if not n["consul"]["server"]]
        self.password = tmp_path / "vault-pass"
        self.password.write_text("day2-test-bed-only\n")
        os.environ[secrets.VAULT_PASSWORD_ENV] = str(self.password)
        try:
            secrets.ensure_secrets(self.inventory, self.plan["platform"]["name"])
            self.secrets = secrets.read_secrets(self.inventory, self.password)
        finally:
            del os.environ[secrets.VAULT_PASSWORD_ENV]
        self.pki = _pki(tmp_path, self.secrets["ai4os_secret_ca_key"], self.secrets["ai4os_secret_ca_cert"])
        consul_version, nomad_version = versions
        self.tokens = {f: self.secrets[f"ai4os_secret_{f}_bootstrap_token"] for f in ("consul", "nomad")}
        self.gossip = {f: self.secrets[f"ai4os_secret_{f}_gossip_key"] for f in ("consul", "nomad")}
        self.read_tokens = {"consul": self.secrets["ai4os_secret_consul_token_status"],
                            "nomad": self.secrets["ai4os_secret_nomad_token_status"]}
        region = self.plan["platform"]["region"]
        datacenter = self.plan["nodes"][0]["datacenter"]
        self.consul = Cluster("consul", self.servers, self.clients, version=consul_version, region=region,
                              datacenter=datacenter, gossip_key=self.gossip["consul"], management=self.tokens["consul"],
                              read_tokens=(self.read_tokens["consul"],))
        self.nomad = Cluster("nomad", self.servers, self.clients, version=nomad_version, region=region,
                             datacenter=datacenter, gossip_key=self.gossip["nomad"], management=self.tokens["nomad"],
                             read_tokens=(self.read_tokens["nomad"],))
        cert = (self.pki["server"], self.pki["server_key"], self.pki["ca"])
        self.agents = {("consul", n): Agent(self.consul, n, *cert) for n in self.servers + self.clients}
        self.agents.update({("nomad", n): Agent(self.nomad, n, *cert) for n in self.servers})
        for name, hostvars in hosts["all"]["hosts"].items():
            hostvars.update({"ansible_connection": "local", "ansible_python_interpreter": _python(),
                             "consul_port_https": _port(self.agents[("consul", name)])})
            if ("nomad", name) in self.agents:
                hostvars["nomad_port_http"] = _port(self.agents[("nomad", name)])
        self.hosts = hosts
        ansible_inventory.write(self.inventory, hosts)
        self.backups = tmp_path / "backups"
        self.vars = {
            "consul_version": consul_version, "nomad_version": nomad_version,
            **{f"{f}_api_{k}": str(self.pki[v]) for f in ("consul", "nomad")
               for k, v in (("ca", "ca"), ("client_cert", "client"), ("client_key", "client_key"))},
            "consul_api_timeout": 3, "nomad_api_timeout": 3, "consul_day2_poll": 1, "nomad_day2_poll": 1,
            "nomad_drain_deadline": 2,
            "day2_backup_dir": str(self.backups), "day2_converge": False, "day2_archive_tmp": str(tmp_path / "archive"),
            "consul_day2_snapshot_tmp": str(tmp_path / "consul.snap"),
            "nomad_day2_snapshot_tmp": str(tmp_path / "nomad.snap"),
        }

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()

    def vars_file(self, extra: dict[str, Any] | None = None) -> Path:
        """The test-bed's extra variables (API certificates, short waits, where backups go) as a file."""
        variables = self.tmp / "day2-vars.yml"
        variables.write_text(yaml.safe_dump({**self.vars, **(extra or {})}))
        return variables

    def run(self, playbook: str | Path, extra: dict[str, Any] | None = None, *args: str) -> subprocess.CompletedProcess[str]:
        """ansible-playbook of playbooks/<playbook> (or a path) on the test-bed; the finished process."""
        env = dict(ansible_env(self.tmp), **self.env())
        return subprocess.run([*ansible_command(), "-i", str(self.inventory / "hosts.yml"), "-f", "20",
                               str(ROOT / "playbooks" / playbook), "-e", f"@{self.vars_file(extra)}", *args],
                              env=env, capture_output=True, text=True, timeout=900, check=False)

    def env(self) -> dict[str, str]:
        """Environment of the kit's CLI and of ansible-playbook for this inventory: its vault password, the
        kit's ansible.cfg (Mitogen, as operators run it) with a fact cache of this test-bed's own."""
        return {secrets.VAULT_PASSWORD_ENV: str(self.password), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(self.tmp / "facts")}


def ansible_command() -> list[str]:
    from support.cluster_helpers import ansible_bin

    return [ansible_bin("ansible-playbook")]


def _pki(directory: Path, ca_key_pem: str, ca_cert_pem: str) -> dict[str, Path]:
    """The agents' server certificate (127.0.0.1) and the API client certificate, from the platform CA."""
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    now = dt.datetime.now(dt.UTC)
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_text(ca_cert_pem)
    for name, usage, sans in (("server", ExtendedKeyUsageOID.SERVER_AUTH, [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                                         x509.DNSName("localhost")]),
                              ("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("client.day2.nomad")])):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(ca_key, hashes.SHA256()))
        files[name], files[f"{name}_key"] = directory / f"{name}.pem", directory / f"{name}-key.pem"
        files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return files


def events(output: str) -> list[tuple[str, str, str]]:
    """(task, host, status) in the order the playbook printed them."""
    out, task = [], ""
    for line in output.splitlines():
        if m := TASK.match(line):
            task = m["task"]
        elif m := RESULT.match(line):
            out.append((task, m["host"], m["status"]))
    return out


def _port(agent: Agent) -> int:
    return int(agent.server.server_address[1])


def _python() -> str:
    import sys

    return sys.executable
