"""Test secrets of a submitting platform play (what `ai4os-kit secrets` generates for PAPI and
node admission, and a platform CA made the way the kit makes it)."""

from __future__ import annotations

from ai4os_kit.model.secrets import _ca_pair

_CA_KEY, _CA_CERT = _ca_pair("test")

SUBMIT_SECRETS = {
    "ai4os_secret_nomad_token_papi": "0b8f3c2e-5d4a-4f1b-9c7e-papi-token-0001",
    "ai4os_secret_nomad_token_node_admission": "7e1d9a4c-2b3f-4c5d-8e6f-node-adm-0001",
    "ai4os_secret_papi_harbor_robot_password": "test-harbor-robot-password-0001",
    "ai4os_secret_papi_jenkins_token": "test-jenkins-token-0001",
    "ai4os_secret_papi_provenance_token": "test-provenance-token-0001",
    "ai4os_secret_papi_litellm_api_key": "test-litellm-api-key-0001",
    # Prometheus' read tokens (monitoring, P2's role) when it submits.
    "ai4os_secret_consul_token_prometheus": "2c9a7f3e-prometheus-consul-token-0001",
    "ai4os_secret_nomad_token_prometheus": "4b1e8d6a-prometheus-nomad-token-0001",
    "ai4os_secret_ca_cert": _CA_CERT,
    "ai4os_secret_ca_key": _CA_KEY,
}
