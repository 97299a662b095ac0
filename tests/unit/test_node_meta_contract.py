"""The node meta contract (docs/plan-format.md) against what PAPI's code reads, recorded as test data
from its source (tests/data/papi/facts.yml), and the names the kit's layers must agree on."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import yaml

from ai4os_kit.model import placement
from ai4os_kit.model.inventory import load_inventory
from ai4os_kit.model.plan import NODE_TYPE, build_plan
from ai4os_kit.paths import ROOT

FACTS = yaml.safe_load((ROOT / "tests" / "data" / "papi" / "facts.yml").read_text())
HOST = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)+[a-z0-9-]{1,63}$")


def test_every_meta_key_has_its_consumer_in_papi(sample_inventory: Path) -> None:
    plan = build_plan(load_inventory(sample_inventory, check_vault=False))
    meta = FACTS["node_meta"]
    for node in plan["nodes"]:
        keys = set(node["nomad"]["meta"])
        if not node["nomad"]["client"]:
            assert keys == set()
            continue
        assert keys == {"type", "tags", "namespace", "domain", "status"}
        assert keys <= set(meta)                            # each key is read by PAPI (facts name where)
        assert node["nomad"]["meta"]["status"] == "test"    # node admission turns it into ready
        assert node["nomad"]["meta"]["tags"] in ("cpu", "gpu")
    assert meta["status"]["constraint"]["value"] == "ready"
    assert NODE_TYPE["cpu"] == NODE_TYPE["gpu"] == meta["type"]["modules"]["value"]
    assert NODE_TYPE["tryme"] == meta["type"]["try_me"]["value"]
    assert {NODE_TYPE["batch"], NODE_TYPE["cpu"]} == set(meta["type"]["batch"]["value"].split(","))
    assert meta["tags"]["affinity"]["value"] == "cpu"


def test_meta_domain_makes_papis_host_names_under_the_vo_domains_zone(sample_inventory: Path) -> None:
    """PAPI's hosts are <svc>-<uuid>.<meta.domain>-<VO domain>: with the site's label, a sibling of the
    VO domain (one wildcard DNS record and certificate per site and VO)."""
    plan = build_plan(load_inventory(sample_inventory, check_vault=False))
    assert FACTS["node_meta"]["domain"]["host_form"] == "{service}-{uuid}.{meta_domain}-{vo_domain}"
    for node in (n for n in plan["nodes"] if n["nomad"]["client"]):
        domain = node["nomad"]["meta"]["domain"]
        assert domain == node["site"] and "." not in domain
        for vo in plan["platform"]["vos"]:
            host = FACTS["node_meta"]["domain"]["host_form"].format(
                service="ide", uuid=uuid.uuid1(), meta_domain=domain, vo_domain=vo["domain"])
            assert HOST.match(host), host
            parent = vo["domain"].split(".", 1)[1]
            assert host.endswith(f".{domain}-{vo['domain']}") and f"{domain}-{vo['domain']}".endswith("." + parent)


def test_check_uses_papis_recorded_facts() -> None:
    auth = FACTS["auth"]
    assert placement.PAPI_LEVELS == tuple(auth["levels"])
    assert placement.PAPI_KEYCLOAK == {"role_prefix": "access:", "roles_claim": auth["roles_claim"]}
    assert auth["role_pattern"].startswith(placement.PAPI_KEYCLOAK["role_prefix"])
    assert FACTS["main_yaml"]["read_at_import"][0]["path"] == f'nomad.namespaces["{placement.PAPI_IMPORT_VO}"]'
    assert set(FACTS["datacenters_csv"]["required_keys"]) == {"lat", "lon", "PUE"}


def test_the_platform_namespace_is_one_name_everywhere() -> None:
    job_defaults = yaml.safe_load((ROOT / "roles" / "platform_job" / "defaults" / "main.yml").read_text())
    assert job_defaults["platform_job_namespace"] == placement.PLATFORM_NAMESPACE
    assert placement.RESERVED_NAMESPACES == ("default", placement.PLATFORM_NAMESPACE)
    nomad_defaults = yaml.safe_load((ROOT / "roles" / "nomad" / "defaults" / "main.yml").read_text())
    assert nomad_defaults["nomad_platform_namespace"] == placement.PLATFORM_NAMESPACE   # the nomad role creates it
