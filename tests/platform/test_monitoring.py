"""Monitoring as rendered for the sample inventory: the Prometheus configuration checked by the
real `promtool` (Debian package prometheus, extracted under .cache/ when not installed), scrapes
of Nomad and Consul over TLS with the platform CA, a client certificate and read tokens, Grafana
wired to Prometheus and trusting its identity header only from the site's Traefik; the tokens and
certificate reach the job through a Nomad variable (Nomad API TEST DOUBLE: Nomad is not
obtainable here)."""

from __future__ import annotations

from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from nomad_api_double import NomadApiDouble
from support.platform_render import SECRETS, Rendered, make_inventory, render
from platform_secrets import SUBMIT_SECRETS

from ai4os_kit.paths import ROOT

FIELDS = ROOT / "tests" / "data" / "prometheus" / "config-fields.yml"
PROMETHEUS_SECRETS = {
    "ai4os_secret_consul_token_prometheus": "3f0c5a7e-0000-4000-8000-prometheus-c1",
    "ai4os_secret_nomad_token_prometheus": "3f0c5a7e-0000-4000-8000-prometheus-n1",
}


def schema_errors(conf: dict) -> list[str]:
    """Keys Prometheus v2.54.1 would refuse (it decodes strictly), by the recorded struct tags."""
    types = yaml.safe_load(FIELDS.read_text())["types"]
    http = types["HTTPClientConfig"]
    errors: list[str] = []

    def check(where: str, value: dict, allowed: list[str]) -> None:
        errors.extend(f"{where}.{key}" for key in value if key not in allowed)

    def check_http(where: str, value: dict) -> None:
        if "authorization" in value:
            check(f"{where}.authorization", value["authorization"], types["Authorization"])
        if "tls_config" in value:
            check(f"{where}.tls_config", value["tls_config"], types["TLSConfig"])

    check("", conf, types["Config"])
    check("global", conf.get("global", {}), types["GlobalConfig"])
    for job in conf.get("scrape_configs", []):
        where = f"scrape_configs[{job.get('job_name')}]"
        check(where, job, types["ScrapeConfig"] + http)
        check_http(where, job)
        for relabel in job.get("relabel_configs", []):
            check(f"{where}.relabel_configs", relabel, types["RelabelConfig"])
        for sd in job.get("consul_sd_configs", []):
            check(f"{where}.consul_sd_configs", sd, types["ConsulSDConfig"] + http)
            check_http(f"{where}.consul_sd_configs", sd)
            if not str(sd.get("server", "")).strip():
                errors.append(f"{where}.consul_sd_configs: no server")
            if sum(k in sd for k in ("token", "authorization", "oauth2")) > 1:
                errors.append(f"{where}.consul_sd_configs: more than one of token, authorization, oauth2")
    return errors


def _prometheus(rendered: Rendered) -> dict:
    return yaml.safe_load(rendered.file("monitoring", "prometheus.yml").read_text())


def test_prometheus_would_load_the_rendered_configuration(rendered: Rendered) -> None:
    conf = _prometheus(rendered)
    assert schema_errors(conf) == []
    assert schema_errors({"scrape_configs": [{"job_name": "x", "consul_sd_configs": [
        {"server": "a", "token": "t", "authorization": {"credential_file": "f"}}]}]}) == [
        "scrape_configs[x].consul_sd_configs.authorization.credential_file",
        "scrape_configs[x].consul_sd_configs: more than one of token, authorization, oauth2"]


def test_nomad_and_consul_are_scraped_over_mutual_tls_with_read_tokens(rendered: Rendered) -> None:
    conf = _prometheus(rendered)
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    agents = [j for n, j in jobs.items() if n.startswith(("nomad-", "consul-"))]
    assert {"nomad-servers", "nomad-clients"} <= set(jobs)
    datacenters = {s["datacenter"] for s in rendered.plan["sites"]}
    assert {f"consul-clients-{dc}" for dc in datacenters} <= set(jobs)
    for job in agents:
        tls = job["tls_config"]
        assert job["scheme"] == "https" and tls["ca_file"] == "/secrets/ca.pem"
        assert (tls["cert_file"], tls["key_file"]) == ("/secrets/client.pem", "/secrets/client-key.pem")
        kind = "nomad" if job["job_name"].startswith("nomad") else "consul"
        assert job["authorization"]["credentials_file"] == f"/secrets/{kind}-token"
        role = "server" if "servers" in job["job_name"] else "client"
        # The names on the agents' node certificates (the plan's certs).
        names = {san for node in rendered.plan["nodes"] for cert in node["certs"] for san in cert["sans"]}
        assert tls["server_name"] in names and tls["server_name"].startswith(role + ".")
    for job in conf["scrape_configs"]:
        for sd in job["consul_sd_configs"]:
            assert sd["scheme"] == "https" and sd["server"] == "127.0.0.1:8501"
            assert sd["authorization"]["credentials_file"] == "/secrets/consul-token"
            assert sd["tls_config"]["cert_file"] == "/secrets/client.pem"


def test_grafana_reads_prometheus_and_trusts_only_traefik(rendered: Rendered) -> None:
    job = rendered.file("monitoring", "monitoring.nomad.hcl").read_text()
    datasource = yaml.safe_load(rendered.file("monitoring", "grafana-datasources.yml").read_text())["datasources"][0]
    assert '"--web.listen-address=127.0.0.1:9090"' in job          # Prometheus: loopback of the services node
    assert datasource["url"] == "http://127.0.0.1:9090"              # Grafana shares that host network
    assert job.count('network_mode = "host"') == 2
    assert 'GF_SERVER_HTTP_ADDR           = "${NOMAD_IP_grafana}"' in job
    assert 'GF_AUTH_PROXY_WHITELIST={{ range $i, $s := service "traefik" }}' in job
    assert "{{ else }}192.0.2.1{{ end }}" in job                     # nobody trusted until Traefik registers
    assert "ai4os-admin-auth@consulcatalog" in job
    for secret in PROMETHEUS_SECRETS.values():
        assert secret not in job


def test_tokens_and_certificate_reach_prometheus_through_a_nomad_variable(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, {}, {**SECRETS, **SUBMIT_SECRETS, **PROMETHEUS_SECRETS}, gpu_facts=False)
    token = "test-management-token"
    nomad = NomadApiDouble(token)
    extra = {"platform_job_submit": True, "platform_job_nomad_addr": nomad.address, "platform_job_nomad_token": token,
             "platform_job_nomad_ca_cert": "", "platform_job_components": ["monitoring"]}
    try:
        done = render(inv, tmp_path / "out", extra)
        assert done.returncode == 0, done.stdout[-4000:]
        variable = next(v for (ns, path), v in nomad.variables.items() if path == "nomad/jobs/monitoring")
        assert variable["consul_token"] == PROMETHEUS_SECRETS["ai4os_secret_consul_token_prometheus"]
        assert variable["nomad_token"] == PROMETHEUS_SECRETS["ai4os_secret_nomad_token_prometheus"]
        assert variable["ca"] == SUBMIT_SECRETS["ai4os_secret_ca_cert"] and "PRIVATE KEY" in variable["client_key"]
        cert = x509.load_pem_x509_certificate(variable["client_cert"].encode())
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(SUBMIT_SECRETS["ai4os_secret_ca_cert"].encode()))
        assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
        for secret in PROMETHEUS_SECRETS.values():
            assert secret not in done.stdout
        without = {k: v for k, v in {**SECRETS, **SUBMIT_SECRETS}.items() if k not in PROMETHEUS_SECRETS}
        missing = make_inventory(tmp_path / "missing", {}, without, gpu_facts=False)
        refused = render(missing, tmp_path / "out2", extra)
        assert refused.returncode != 0
        assert "ai4os_secret_consul_token_prometheus, ai4os_secret_nomad_token_prometheus missing" in refused.stdout
    finally:
        nomad.close()
