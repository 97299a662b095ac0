"""OSCAR: the clusters of ai4os_oscar_clusters reach PAPI's main.yaml as PAPI reads them, and
`check --online` calls each cluster with the real oscar-python client (built as PAPI builds it)
against a STAND-IN of OSCAR's API (tests/platform/oscar_standin.py: OSCAR needs Kubernetes, none
runs here), whose routes and shapes are recorded from OSCAR's source in tests/data/oscar/api.yml."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from oscar_standin import OscarStandIn, recorded
from support.platform_render import Rendered
from service_pki import TestCA

from ai4os_kit.cli import online_checks
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.platform import oscar

TOKEN = "eyJ.test-account-token.sig"
MINIO = "https://minio.oscar.example.org"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("oscar-pki"))


@pytest.fixture
def standin(pki: TestCA, monkeypatch: pytest.MonkeyPatch) -> Iterator[OscarStandIn]:
    # PAPI's client verifies OSCAR's certificate against requests' default bundle; the test's CA
    # reaches that same check through REQUESTS_CA_BUNDLE (what requests reads when verify=True).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.cert))
    server = OscarStandIn(pki.issue("oscar"), TOKEN, ["vo.ai4eosc.eu"], MINIO)
    yield server
    server.close()


def plan_with(sample_inventory: Path, clusters: dict[str, Any], enabled: bool = True) -> dict[str, Any]:
    path = sample_inventory / "platform.yml"
    platform = yaml.safe_load(path.read_text())
    platform.update(ai4os_enable_oscar=enabled, ai4os_oscar_clusters=clusters)
    path.write_text(yaml.safe_dump(platform, sort_keys=False))
    return build_plan(load_inventory(sample_inventory, check_vault=False))


def test_the_installed_client_calls_the_recorded_routes() -> None:
    """The stand-in serves what oscar-python 2.2.0 calls (paths read from the installed client)."""
    from importlib.metadata import version

    from oscar_python import client

    facts = recorded()
    assert version("oscar-python") == facts["upstream"]["oscar_python"]["version"]
    paths = {"info": client._INFO_PATH, "config": client._CONFIG_PATH, "services": client._SVC_PATH,
             "health": client._HEALTH_PATH}
    assert paths == facts["client"]["paths"]
    for method, path in facts["client"]["calls"].items():
        assert path in inspect.getsource(getattr(client.Client, method)).replace("_INFO_PATH", paths["info"]) \
            .replace("_CONFIG_PATH", paths["config"]).replace("_SVC_PATH", paths["services"]) \
            .replace("_HEALTH_PATH", paths["health"]), method
    assert {r["path"] for r in facts["routes"]} == set(paths.values())


def test_online_check_without_token_calls_health_only(sample_inventory: Path, standin: OscarStandIn) -> None:
    plan = plan_with(sample_inventory, {"vo.ai4eosc.eu": {"endpoint": standin.endpoint, "cluster_id": "oscar-a"}})
    lines = oscar.online_check(plan, None)
    assert [line for line in lines if line.startswith("FAIL")] == []
    assert any("answers /health" in line for line in lines)
    assert any("no test token" in line for line in lines)
    assert any("no cluster for VO vo.imagine-ai.eu" in line for line in lines)
    assert standin.requests == [("GET", "/health")]


def test_online_check_with_a_token_calls_what_papi_calls(sample_inventory: Path, standin: OscarStandIn) -> None:
    plan = plan_with(sample_inventory, {"vo.ai4eosc.eu": {"endpoint": standin.endpoint, "cluster_id": "oscar-a",
                                                          "minio_endpoint": MINIO}})
    lines = oscar.online_check(plan, TOKEN)
    assert [line for line in lines if line.startswith("FAIL")] == [], lines
    assert any("runs OSCAR v3.6.5 on Kubernetes v1.31.4 (Knative)" in line for line in lines)
    assert any("admits VO vo.ai4eosc.eu (group vo.ai4eosc.eu)" in line for line in lines)
    assert any(f"MinIO {MINIO}" in line for line in lines)
    assert [p for _, p in standin.requests] == ["/health", "/system/info", "/system/config", "/system/services"]


def test_a_vo_the_cluster_does_not_admit_fails(sample_inventory: Path, standin: OscarStandIn) -> None:
    plan = plan_with(sample_inventory, {
        "vo.ai4eosc.eu": {"endpoint": standin.endpoint, "cluster_id": "oscar-a"},
        "vo.imagine-ai.eu": {"endpoint": standin.endpoint, "cluster_id": "oscar-a", "oidc_group": "imagine"}})
    fails = [line for line in oscar.online_check(plan, TOKEN) if line.startswith("FAIL")]
    assert len(fails) == 1 and "does not admit VO vo.imagine-ai.eu" in fails[0] and "OIDC_GROUPS" in fails[0]
    # one cluster shared by two VOs is called once
    assert [p for _, p in standin.requests].count("/system/info") == 1


def test_a_token_the_cluster_refuses_fails_with_the_fix(sample_inventory: Path, standin: OscarStandIn) -> None:
    plan = plan_with(sample_inventory, {"vo.ai4eosc.eu": {"endpoint": standin.endpoint, "cluster_id": "oscar-a"}})
    fails = [line for line in oscar.online_check(plan, "another-token") if line.startswith("FAIL")]
    assert len(fails) == 1 and "HTTP 401" in fails[0] and "OIDC_ISSUERS" in fails[0]


def test_another_minio_than_the_inventory_says_fails(sample_inventory: Path, standin: OscarStandIn) -> None:
    plan = plan_with(sample_inventory, {"vo.ai4eosc.eu": {"endpoint": standin.endpoint, "cluster_id": "oscar-a",
                                                          "minio_endpoint": "https://minio.other.example.org"}})
    fails = [line for line in oscar.online_check(plan, TOKEN) if line.startswith("FAIL")]
    assert len(fails) == 1 and f"reports MinIO {MINIO}, not https://minio.other.example.org" in fails[0]


def test_an_untrusted_certificate_fails_like_it_would_for_papi(sample_inventory: Path, standin: OscarStandIn,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    plan = plan_with(sample_inventory, {"vo.ai4eosc.eu": {"endpoint": standin.endpoint, "cluster_id": "oscar-a"}})
    lines = oscar.online_check(plan, TOKEN)
    assert len(lines) >= 1 and lines[0].startswith("FAIL") and "TLS certificate does not verify" in lines[0]
    assert standin.requests == []


def test_a_cluster_that_does_not_answer_fails(sample_inventory: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = plan_with(sample_inventory, {"vo.ai4eosc.eu": {"endpoint": f"https://127.0.0.1:{port}", "cluster_id": "x"}})
    lines = oscar.online_check(plan, TOKEN)
    assert lines[0].startswith("FAIL") and "does not answer /health" in lines[0] and "ConnectionError" in lines[0]


def test_switched_off_means_no_call(sample_inventory: Path) -> None:
    plan = plan_with(sample_inventory, {}, enabled=False)
    assert oscar.online_check(plan, TOKEN) == ["OK   oscar: switched off, nothing to check"]
    assert "oscar" in dict(online_checks())


def test_papi_reads_the_clusters_from_its_main_yaml(rendered: Rendered) -> None:
    """PAPI's oscar.clusters.<vo>.{endpoint, cluster_id} (ai4papi/routers/v1/inference/oscar.py:71-75)."""
    conf = yaml.safe_load(rendered.file("papi", "main.yaml").read_text())
    clusters = rendered.platform["ai4os_oscar_clusters"]
    for vo in [v["name"] for v in rendered.plan["platform"]["vos"]]:
        expected = {k: clusters.get(vo, {}).get(k, "") for k in ("endpoint", "cluster_id")}
        assert conf["oscar"]["clusters"][vo] == expected
    assert any(c["endpoint"] for c in conf["oscar"]["clusters"].values())
