"""Day-2 behaviour that needs no Nomad/Consul agent, on a real systemd test-bed node (Docker):
certificate renewal with real certificates and the daily expiry check (a systemd timer), handlers
forced after a failure injected mid-run, a CA rotation trusted on both sides, and reset.

The node is the server of an inventory planned by the kit (inventories/local with a site of
its own), converged with playbooks/cluster.yml. Without Consul/Nomad binaries the roles stop
at "binaries not available" after certificates, configuration, units and the DNS forwarder:
everything tested here comes before that point or is independent of it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.cluster_helpers import ROOT, ansible_bin, ansible_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ai4os_kit.cli import main
from ai4os_kit.model import ansible_inventory, secrets
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan

pytestmark = pytest.mark.integration

TESTBED_PLAYS = ROOT / "playbooks" / "testbed"
CONTAINER = "ai4os-day2-tb-1"


class Node:
    """One test-bed container holding the plan's server node, and the inventory around it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.inventory = tmp / "inv"
        subprocess.run(["cp", "-r", str(ROOT / "inventories" / "local"), str(self.inventory)], check=True)
        sites = yaml.safe_load((self.inventory / "sites.yml").read_text())
        sites["ai4os_sites"][0].update(name="day2tb", pools=[{"role": "server", "count": 1}, {"role": "ingress", "count": 1}])
        (self.inventory / "sites.yml").write_text(yaml.safe_dump(sites))
        self.password = tmp / "vault-pass"
        self.password.write_text("day2-test-bed-only\n")
        self.env = dict(ansible_env(tmp), ANSIBLE_VAULT_PASSWORD_FILE=str(self.password),
                        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp / "facts"),
                        MOLECULE_PROJECT_DIRECTORY=str(ROOT), MOLECULE_SCENARIO_NAME="day2-tb",
                        MOLECULE_EPHEMERAL_DIRECTORY=str(tmp), PATH=f"{Path(ansible_bin('ansible-playbook')).parent}:{os.environ['PATH']}")
        os.environ[secrets.VAULT_PASSWORD_ENV] = str(self.password)
        try:
            plan = build_plan(load_inventory(self.inventory, check_vault=False))
            secrets.ensure_secrets(self.inventory, plan["platform"]["name"])
        finally:
            del os.environ[secrets.VAULT_PASSWORD_ENV]
        self.name = next(n["name"] for n in plan["nodes"] if n["consul"]["server"])
        hosts = ansible_inventory.render(plan)
        hosts["all"]["hosts"] = {self.name: dict(hosts["all"]["hosts"][self.name], ansible_connection="docker",
                                                 ansible_host=CONTAINER, ansible_python_interpreter="/usr/bin/python3")}
        for group in hosts["all"]["children"].values():
            group["hosts"] = {h: v for h, v in (group.get("hosts") or {}).items() if h == self.name}
        ansible_inventory.write(self.inventory, hosts)
        (tmp / "mirror").mkdir()
        self.vars = {"ai4os_artifacts_url": str(tmp / "mirror")}
        (tmp / "molecule.json").write_text(json.dumps({"molecule_yml": {"platforms": [{"name": CONTAINER}]}}))
        self.first = ""  # the first converge's output

    def secrets(self) -> dict:
        return secrets.read_secrets(self.inventory, self.password)

    def playbook(self, playbook: str | Path, extra: dict | None = None, *args: str,
                 inventory: str | None = None) -> subprocess.CompletedProcess[str]:
        variables = self.tmp / "vars.json"
        variables.write_text(json.dumps({**self.vars, **(extra or {})}))
        return subprocess.run([ansible_bin("ansible-playbook"), "-i", inventory or str(self.inventory / "hosts.yml"),
                               str(ROOT / "playbooks" / playbook), "-e", f"@{variables}", *args],
                              env=self.env, capture_output=True, text=True, timeout=1200, check=False)

    def sh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "exec", CONTAINER, "sh", "-c", command], capture_output=True, text=True,
                              timeout=120, check=check)

    def read(self, path: str) -> str:
        return self.sh(f"cat {path}").stdout

    def write(self, path: str, content: str) -> None:
        subprocess.run(["docker", "exec", "-i", CONTAINER, "sh", "-c", f"cat > {path}"], input=content, text=True,
                       check=True, timeout=60)

    def unit(self, unit: str, prop: str) -> str:
        return self.sh(f"systemctl show {unit} --property={prop} --value").stdout.strip()


def _docker_problem() -> str | None:
    """Why the test-bed cannot run here, or None when dockerd answers."""
    try:
        ok = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the docker CLI cannot run ({exc}; .ci/setup.d/10-docker.sh installs docker.io)"
    return None if ok else "dockerd is not running (start it: scripts/testbed/dockerd.sh)"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    problem = _docker_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"test-bed unavailable in CI: {problem}")
        pytest.skip(f"test-bed unavailable: {problem}")
    made = Node(tmp_path_factory.mktemp("day2tb"))
    create = subprocess.run([ansible_bin("ansible-playbook"), "-i", "localhost,", str(TESTBED_PLAYS / "create.yml"),
                             "-e", f"@{made.tmp / 'molecule.json'}"], env=made.env, capture_output=True, text=True,
                            timeout=900, check=False)
    assert create.returncode == 0, create.stdout[-3000:]
    try:
        first = made.playbook("cluster.yml")
        made.first = first.stdout
        assert first.returncode == 0, first.stdout[-5000:]
        yield made
    finally:
        subprocess.run([ansible_bin("ansible-playbook"), "-i", "localhost,", str(TESTBED_PLAYS / "destroy.yml"),
                        "-e", f"@{made.tmp / 'molecule.json'}"], env=made.env, capture_output=True, timeout=600, check=False)


def _not_after(pem: str) -> dt.datetime:
    return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc


def _issuer(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).issuer.rfc4514_string()


def test_converge_reports_each_certificates_expiry_and_installs_the_daily_check(node: Node) -> None:
    flat = " ".join(node.first.split())
    for kind in ("consul", "nomad"):
        assert re.search(rf"certificate {node.name}-{kind} \(/etc/{kind}.d/tls/{kind}.pem\): signed now, valid until "
                         r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, 36[45] days left", flat), kind
    assert "binaries not available" in node.first  # the agents are not there: everything before them is
    assert node.read("/etc/ai4os/node-certs.list").split() == ["/etc/consul.d/tls/consul.pem", "/etc/nomad.d/tls/nomad.pem"]
    assert node.unit("ai4os-cert-check.timer", "UnitFileState") == "enabled"
    assert node.unit("ai4os-cert-check.timer", "ActiveState") == "active"
    node.sh("systemctl start ai4os-cert-check.service")
    assert node.unit("ai4os-cert-check.service", "Result") == "success"
    journal = node.sh("journalctl -u ai4os-cert-check.service --no-pager -o cat").stdout
    assert "/etc/consul.d/tls/consul.pem: valid until" in journal


def test_a_certificate_near_expiry_is_flagged_then_renewed(node: Node) -> None:
    values = node.secrets()
    ca_key = serialization.load_pem_private_key(values["ai4os_secret_ca_key"].encode(), password=None)
    ca = x509.load_pem_x509_certificate(values["ai4os_secret_ca_cert"].encode())
    current = x509.load_pem_x509_certificate(node.read("/etc/consul.d/tls/consul.pem").encode())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(current.subject).issuer_name(ca.subject)
               .public_key(current.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=360)).not_valid_after(now + dt.timedelta(days=5)))
    for extension in current.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    expiring = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()  # type: ignore[arg-type]
    node.write("/etc/consul.d/tls/consul.pem", expiring)

    assert node.sh("systemctl start ai4os-cert-check.service", check=False).returncode != 0
    assert node.unit("ai4os-cert-check.service", "Result") == "exit-code"
    warning = node.sh("journalctl -u ai4os-cert-check.service --no-pager -o cat -p warning").stdout
    assert "/etc/consul.d/tls/consul.pem: expires" in warning and "within 30 days" in warning

    proc = node.playbook("cluster.yml", None, "--limit", node.name)
    assert proc.returncode == 0, proc.stdout[-4000:]
    renewed = node.read("/etc/consul.d/tls/consul.pem")
    assert (_not_after(renewed) - now).days >= 364
    assert f"certificate {node.name}-consul" in proc.stdout and "signed now" in " ".join(proc.stdout.split())
    node.sh("systemctl start ai4os-cert-check.service")
    assert node.unit("ai4os-cert-check.service", "Result") == "success"


def test_status_playbook_reads_the_nodes_certificates(node: Node) -> None:
    """playbooks/status.yml (what `ai4os-kit status --nodes` runs): every listed certificate's expiry."""
    out = node.tmp / "nodes.json"
    proc = node.playbook("status.yml", {"day2_status_out": str(out)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    facts = json.loads(out.read_text())[node.name]
    assert [c["path"] for c in facts["certificates"]] == ["/etc/consul.d/tls/consul.pem", "/etc/nomad.d/tls/nomad.pem"]
    for cert in facts["certificates"]:
        expiry = dt.datetime.strptime(cert["not_after"], "%Y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)
        assert expiry == _not_after(node.read(cert["path"]))
    assert facts["accounting"] is None  # not an accounting node
    assert "changed=0" in proc.stdout


def test_handlers_already_notified_run_when_a_later_task_fails(node: Node) -> None:
    """The forwarder's configuration changes (notifies its restart), then the binary step fails on a
    checksum list that disagrees with the kit's pin: cluster.yml's force_handlers still restarts it."""
    consul_version = yaml.safe_load((ROOT / "roles" / "consul" / "defaults" / "main.yml").read_text())["consul_version"]
    bad = node.tmp / "bad-mirror" / "consul" / consul_version
    bad.mkdir(parents=True)
    (bad / f"consul_{consul_version}_SHA256SUMS").write_text(f"{'0' * 64}  consul_{consul_version}_linux_amd64.zip\n")
    started = node.unit("consul-dns.service", "ExecMainStartTimestampMonotonic")
    time.sleep(1)
    proc = node.playbook("cluster.yml", {"ai4os_artifacts_url": str(node.tmp / "bad-mirror"), "consul_dns_cache_size": 2000})
    assert proc.returncode != 0
    assert "CHECKSUM MISMATCH" in proc.stdout
    assert "RUNNING HANDLER [consul : Restart consul-dns]" in proc.stdout
    assert "cache-size=2000" in node.read("/etc/consul-dns/dnsmasq.conf")
    assert node.unit("consul-dns.service", "ExecMainStartTimestampMonotonic") != started
    assert node.unit("consul-dns.service", "ActiveState") == "active"
    # back to the inventory's settings for the next tests
    assert node.playbook("cluster.yml").returncode == 0


def test_a_ca_rotation_is_trusted_on_both_sides_until_it_is_finished(node: Node, monkeypatch) -> None:
    monkeypatch.setenv(secrets.VAULT_PASSWORD_ENV, str(node.password))
    old = node.secrets()["ai4os_secret_ca_cert"]
    assert main(["secrets", "--rotate", "ai4os_secret_ca", str(node.inventory)]) == 0
    new = node.secrets()["ai4os_secret_ca_cert"]
    # upgrade.yml's first step on every node: both CAs trusted, no certificate changed yet
    trust = node.tmp / "trust.yml"
    trust.write_text(yaml.safe_dump([{"name": "Trust", "hosts": "all", "gather_facts": False, "tasks": [
        {"name": "Trust both CAs", "ansible.builtin.include_role": {"name": "node_cert", "tasks_from": "trust.yml"}}]}]))
    before = node.read("/etc/consul.d/tls/consul.pem")
    assert node.playbook(trust).returncode == 0
    bundle = x509.load_pem_x509_certificates(node.read("/etc/consul.d/tls/ca.pem").encode())
    assert [c.subject.rfc4514_string() for c in bundle] == [_subject(new), _subject(old)]
    assert node.read("/etc/consul.d/tls/consul.pem") == before
    # the rolling converge re-issues the certificate from the new CA, still trusting both
    assert node.playbook("cluster.yml").returncode == 0
    assert _issuer(node.read("/etc/consul.d/tls/consul.pem")) == _subject(new)
    assert _issuer(node.read("/etc/nomad.d/tls/nomad.pem")) == _subject(new)
    assert len(x509.load_pem_x509_certificates(node.read("/etc/nomad.d/tls/ca.pem").encode())) == 2
    # finished: only the new CA is trusted
    assert main(["secrets", "--finish-rotation", "ai4os_secret_ca", str(node.inventory)]) == 0
    assert node.playbook("cluster.yml").returncode == 0
    assert [c.subject.rfc4514_string() for c in
            x509.load_pem_x509_certificates(node.read("/etc/consul.d/tls/ca.pem").encode())] == [_subject(new)]


def _subject(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()


def test_reset_needs_the_platform_name_keeps_data_on_request_then_removes_it(node: Node) -> None:
    name = yaml.safe_load((node.inventory / "platform.yml").read_text())["ai4os_platform_name"]
    refused = node.playbook("reset.yml", {"day2_reset_confirm": "wrong"})
    assert refused.returncode != 0 and f"Fix: confirm with -e day2_reset_confirm={name}" in " ".join(refused.stdout.split())
    assert node.sh("test -d /etc/consul.d", check=False).returncode == 0

    kept = node.playbook("reset.yml", {"day2_reset_confirm": name, "day2_reset_keep_data": True})
    assert kept.returncode == 0, kept.stdout[-4000:]
    for gone in ("/etc/consul.d", "/etc/nomad.d", "/etc/consul-dns", "/etc/systemd/system/consul.service",
                 "/etc/systemd/system/consul-dns.service", "/etc/systemd/system/ai4os-cert-check.timer",
                 "/etc/ai4os/node-certs.list"):
        assert node.sh(f"test -e {gone}", check=False).returncode != 0, gone
    assert node.sh("test -d /opt/consul && test -d /opt/nomad/data && id consul", check=False).returncode == 0
    assert "nameserver 127.0.0.1" not in node.read("/etc/resolv.conf").splitlines()  # (Docker's own is 127.0.0.11)
    assert node.unit("consul-dns.service", "LoadState") == "not-found"

    full = node.playbook("reset.yml", {"day2_reset_confirm": name})
    assert full.returncode == 0, full.stdout[-4000:]
    assert node.sh("test -e /opt/consul || test -e /opt/nomad/data || id consul", check=False).returncode != 0
