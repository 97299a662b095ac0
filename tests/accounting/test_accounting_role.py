"""The accounting role's templates render, with the role defaults and the sample inventory, into files the
collector, cASO (oslo.config with caso's own options) and systemd accept.

Rendering is done by ansible-playbook itself (localhost, connection local, the real template module).
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from oslo_config import cfg
from role_render import ROLE, render_role

from ai4os_kit.accounting.config import load_config

CESNET = {"name": "cesnet", "site_name": "CESNET-MCC", "auth_url": "https://keystone.cesnet.example.org:5000/v3",
          "username": "ai4os-accounting", "password": "not-a-real-password"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    proc = render_role(out, {"accounting_caso_sites": [CESNET]})
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
    assert "\nprojects = " not in (rendered / "caso-cesnet.conf").read_text()  # found by tag
    # the Keystone credentials load as cASO loads them (keystoneauth's conf loader), without contacting Keystone
    from keystoneauth1 import loading

    ks = cfg.ConfigOpts()
    loading.register_auth_conf_options(ks, "keystone_auth")
    ks(args=[], project="caso", default_config_files=[str(rendered / "caso-cesnet.conf")])
    plugin = loading.load_auth_from_conf_options(ks, "keystone_auth", project_id="p1")
    ids = plugin.get_cache_id_elements()
    assert type(plugin).__name__ == "Password"
    assert {k: ids[k] for k in ("auth_url", "username", "password", "user_domain_name", "project_id")} == {
        "auth_url": CESNET["auth_url"], "username": "ai4os-accounting", "password": "not-a-real-password",
        "user_domain_name": "Default", "project_id": "p1"}
    assert ids["project_domain_name"] == "Default"  # cASO retries by project name, which needs the domain


@pytest.mark.parametrize(("change", "message"), [
    ({"application_credential_id": "0a1b", "application_credential_secret": "s"},
     "cASO cannot use an application credential"),
    ({"password": ""}, "username and password of a Keystone user with the reader role"),
    ({"auth_url": "keystone:5000"}, "auth_url (http(s)://...)"),
    ({"projects": "p1"}, "projects, if given, is a list of project ids"),
])
def test_caso_site_without_what_caso_needs_is_refused(tmp_path: Path, change: dict[str, str], message: str) -> None:
    proc = render_role(tmp_path, {"accounting_caso_sites": [{**CESNET, **change}]})
    assert proc.returncode != 0
    assert "accounting_caso_sites[0] (cesnet)" in proc.stdout and message in " ".join(proc.stdout.split())
    assert "not-a-real-password" not in proc.stdout + proc.stderr and not (tmp_path / "caso-cesnet.conf").exists()


def test_caso_projects_listed_for_a_user_without_the_system_role(tmp_path: Path) -> None:
    proc = render_role(tmp_path, {"accounting_caso_sites": [{**CESNET, "projects": ["p1", "p2"]}]})
    assert proc.returncode == 0, proc.stdout[-3000:]
    caso_conf = configparser.ConfigParser(interpolation=None)
    caso_conf.read(tmp_path / "caso-cesnet.conf")
    assert caso_conf["DEFAULT"]["projects"] == "p1,p2"


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
