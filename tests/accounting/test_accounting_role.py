"""The accounting role's templates render, with the role defaults and the sample inventory, into files the
collector, cASO (oslo.config with caso's own options) and systemd accept.

Rendering is done by ansible-playbook itself (localhost, connection local, the real template module).
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from oslo_config import cfg

from ai4os_kit.accounting.config import load_config

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "accounting"
PLAYBOOK = """
- name: Render the accounting role's templates
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {root}/inventories/sample/platform.yml
    - {root}/inventories/sample/sites.yml
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
    - {out}/site-vars.yml    # what an operator sets in the inventory (vars_files win over play vars)
  vars:
    out: {out}
  tasks:
    - name: Render the configuration files
      ansible.builtin.template:
        src: "{role}/templates/{{{{ item }}}}.j2"
        dest: "{{{{ out }}}}/{{{{ item }}}}"
        mode: "0600"
      loop: [accounting.yml, nomad-policy.hcl, ssm-sender.cfg]
    - name: Render the services
      ansible.builtin.template:
        src: "{role}/templates/{{{{ item.src }}}}"
        dest: "{{{{ out }}}}/{{{{ item.unit }}}}.service"
        mode: "0600"
      loop: "{{{{ accounting_units }}}}"
    - name: Render the timers
      ansible.builtin.template:
        src: "{role}/templates/timer.j2"
        dest: "{{{{ out }}}}/{{{{ item.unit }}}}.timer"
        mode: "0600"
      loop: "{{{{ accounting_units }}}}"
      vars:
        accounting_timer: "{{{{ item }}}}"
    - name: Render cASO's configuration
      ansible.builtin.template:
        src: "{role}/templates/caso.conf.j2"
        dest: "{{{{ out }}}}/caso-{{{{ item.name }}}}.conf"
        mode: "0600"
      loop: "{{{{ accounting_caso_sites }}}}"
    - name: Render cASO's unit
      ansible.builtin.template:
        src: "{role}/templates/caso.service.j2"
        dest: "{{{{ out }}}}/caso-{{{{ item.name }}}}.service"
        mode: "0600"
      loop: "{{{{ accounting_caso_sites }}}}"
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    (out / "site-vars.yml").write_text(yaml.safe_dump({"accounting_caso_sites": [{
        "name": "cesnet", "site_name": "CESNET-MCC", "auth_url": "https://keystone.cesnet.example.org:5000/v3",
        "application_credential_id": "0a1b2c", "application_credential_secret": "not-a-real-secret"}]}))
    book = out / "render.yml"
    book.write_text(PLAYBOOK.format(root=ROOT, role=ROLE, out=out))
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(book)],
                          cwd=out, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_collector_config_loads_and_maps_sites_and_vos(rendered: Path) -> None:
    config = load_config(rendered / "accounting.yml")
    assert config.export.site_names == {"ifca": "IFCA-LCG2"}  # cesnet has no egi_site: not sent to APEL
    assert config.export.vos == {"ai4eosc": "vo.ai4eosc.eu", "imagine": "vo.imagine-ai.eu"}
    assert config.export.compute_service == "demo-nomad"
    assert config.nomad.address == "https://127.0.0.1:4646" and config.nomad.region == "ai4os"
    assert str(config.nomad.token_file) == "/etc/ai4os-accounting/nomad-token"
    assert str(config.outgoing_dir) == "/var/spool/apel/outgoing/ai4os"
    assert str(config.summaries_dir) == "/srv/ai4os/accounting/summaries"  # where PAPI's mount reads them


def test_ssm_sender_targets_argo_with_the_host_certificate(rendered: Path) -> None:
    sender = configparser.ConfigParser()
    sender.read(rendered / "ssm-sender.cfg")
    assert sender["sender"]["protocol"] == "AMS"
    assert sender["messaging"]["destination"] == "eu-egi-cloud-accounting"
    assert sender["messaging"]["path"] == load_config(rendered / "accounting.yml").outgoing_dir.as_posix()
    assert sender["certificates"]["certificate"] == "/etc/grid-security/hostcert.pem"


def test_caso_accepts_its_configuration(rendered: Path) -> None:
    """Parse the rendered file with oslo.config and caso's own option definitions."""
    import caso.opts

    conf = cfg.ConfigOpts()
    for group, opts in caso.opts.list_opts():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)
    conf(args=[], project="caso", default_config_files=[str(rendered / "caso-cesnet.conf")])
    assert conf.site_name == "CESNET-MCC" and conf.caso_tag == "caso" and conf.vo_property == "accounting:VO"
    assert conf.messengers == ["ssm"] and conf.extractor == ["nova"]
    assert conf.ssm.output_path == "/var/spool/apel/outgoing/ai4os"
    assert conf.accelerator.model_key == "Accelerator:Model"


def test_systemd_units(rendered: Path) -> None:
    units = sorted(p.name for p in rendered.glob("*.service")) + sorted(p.name for p in rendered.glob("*.timer"))
    assert units == ["ai4os-accounting-report.service", "ai4os-accounting.service", "caso-cesnet.service",
                     "ssmsend.service",
                     "ai4os-accounting-report.timer", "ai4os-accounting.timer", "ssmsend.timer"]
    service = configparser.ConfigParser(interpolation=None, strict=False)
    service.read(rendered / "ai4os-accounting.service")
    assert service["Service"]["ExecStart"] == (
        "/opt/ai4os-accounting/bin/ai4os-kit accounting run --config /etc/ai4os-accounting/accounting.yml")
    timer = configparser.ConfigParser(interpolation=None)
    timer.read(rendered / "ai4os-accounting.timer")
    assert timer["Timer"]["OnCalendar"] == "*:0/10" and timer["Install"]["WantedBy"] == "timers.target"
    caso_unit = configparser.ConfigParser(interpolation=None, strict=False)
    caso_unit.read(rendered / "caso-cesnet.service")
    assert caso_unit["Service"]["ExecStart"].endswith("caso-extract --config-file /etc/ai4os-accounting/caso-cesnet.conf")
    analyze = shutil.which("systemd-analyze")
    if analyze:  # where systemd is installed, let it check the calendar expressions too
        for unit in rendered.glob("*.timer"):
            spec = configparser.ConfigParser(interpolation=None)
            spec.read(unit)
            proc = subprocess.run([analyze, "calendar", spec["Timer"]["OnCalendar"]], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr


def test_nomad_policy_is_read_only(rendered: Path) -> None:
    text = (rendered / "nomad-policy.hcl").read_text()
    assert 'policy = "read"' in text and "write" not in text


def test_defaults_are_documented_once() -> None:
    """Each default has a comment above it (or above its group) and is defined once."""
    lines = (ROLE / "defaults" / "main.yml").read_text().splitlines()
    keys = [line.split(":")[0] for line in lines if line and not line.startswith((" ", "#", "-"))]
    assert len(keys) == len(set(keys)) and all(k.startswith("accounting_") for k in keys)
    assert json.dumps(yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()))
