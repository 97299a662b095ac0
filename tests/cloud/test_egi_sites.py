"""EGI site list: the shipped copy validates with EGI's schema; inventory sites resolve through it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cloudbed import write_inventory

from ai4os_kit.cli import main
from ai4os_kit.errors import InputError
from ai4os_kit.model import egi_sites

IFCA = {"name": "ifca", "egi_site": "IFCA-LCG2", "vo": "vo.ai4eosc.eu"}


def test_shipped_sites_validate_and_index_by_vo() -> None:
    sites = egi_sites.load_sites()
    assert len(sites) == len(list(egi_sites.BUNDLED_DIR.glob("*.yaml")))
    ai4eosc = [s.id for s in egi_sites.sites_for_vo(sites, "vo.ai4eosc.eu")]
    assert ai4eosc == ["IFCA-LCG2", "IISAS-FedCloud-cloud", "NCG-INGRID-PT"]
    assert sites["IFCA-LCG2"].projects["vo.ai4eosc.eu"].project_id == "f44e296a9ea441548456d25fb5b467c9"
    assert sites["INFN-CLOUD-BARI"].protocol == "openid"
    # a VO entry with a region and no project (CREODIAS publishes that)
    assert sites["CREODIAS"].projects["ops"] == egi_sites.VoProject(None, "WAW4-1")


def test_resolve_gives_endpoint_project_and_protocol() -> None:
    resolved = egi_sites.resolve(IFCA, 0, egi_sites.load_sites())
    assert resolved.auth_url == "https://api.cloud.ifca.es:5000/v3"
    assert resolved.project_id == "f44e296a9ea441548456d25fb5b467c9"
    assert resolved.egi.protocol == "openid"


def test_unknown_site_names_the_key_and_the_closest_site() -> None:
    with pytest.raises(InputError) as err:
        egi_sites.resolve({**IFCA, "egi_site": "IFCA-LGC2"}, 2, egi_sites.load_sites())
    assert err.value.key == "ai4os_sites[2].egi_site"
    assert "IFCA-LCG2" in err.value.problem and "ai4os-kit sites" in err.value.fix


def test_vo_not_offered_lists_where_it_is_offered() -> None:
    with pytest.raises(InputError) as err:
        egi_sites.resolve({**IFCA, "egi_site": "CESNET-MCCG2"}, 0, egi_sites.load_sites())
    assert err.value.key == "ai4os_sites[0].vo"
    assert "IFCA-LCG2" in err.value.problem and "ops" in err.value.fix


def test_site_with_several_endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sites = egi_sites.load_sites()
    # EGI publishes two endpoints of fedcloud.srce.hr: the file id picks one
    assert egi_sites.resolve({"name": "srce", "egi_site": "fedcloud.srce.hr", "vo": "ops"}, 0, sites).auth_url \
        == "https://cloud.cro-ngi.hr:5000/v3"
    assert egi_sites.resolve({"name": "srce", "egi_site": "fedcloud.srce.hr-2", "vo": "ops"}, 0, sites).auth_url \
        == "https://faust.srce.hr:5000/v3"
    # a GOCDB name that is no file id and has two endpoints is ambiguous
    shutil.copy(egi_sites.BUNDLED_DIR / "schema.json", tmp_path)
    for n in (1, 2):
        (tmp_path / f"SITE-{n}.yaml").write_text(
            f"gocdb: SITE\nendpoint: https://k{n}.example.org:5000/v3\nvos:\n  - name: ops\n    auth:\n"
            f"      project_id: p{n}\n", encoding="utf-8")
    monkeypatch.setenv(egi_sites.SITES_DIR_ENV, str(tmp_path))
    with pytest.raises(InputError, match="several endpoints: SITE-1") as err:
        egi_sites.resolve({"name": "x", "egi_site": "SITE", "vo": "ops"}, 0, egi_sites.load_sites())
    assert "by its id" in err.value.fix


def test_invalid_site_file_is_rejected_by_egis_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(egi_sites.BUNDLED_DIR / "schema.json", tmp_path)
    (tmp_path / "BROKEN.yaml").write_text("gocdb: BROKEN\nvos:\n  - name: ops\n", encoding="utf-8")
    monkeypatch.setenv(egi_sites.SITES_DIR_ENV, str(tmp_path))
    with pytest.raises(InputError) as err:
        egi_sites.load_sites()
    assert err.value.file.endswith("BROKEN.yaml")
    assert "endpoint" in err.value.problem or "auth" in err.value.problem


def test_inventory_with_unknown_egi_site_is_an_input_error(tmp_path: Path) -> None:
    from ai4os_kit.model.inventory import load_inventory

    site = {"name": "ifca", "egi_site": "NO-SUCH-SITE", "vo": "vo.ai4eosc.eu", "auth": "checkin",
            "location": {"country": "ES"}, "network": {"create": True, "cidr": "10.10.0.0/24"},
            "image": {"name": "ubuntu"}, "ssh": {"user": "ubuntu", "allowed_cidrs": ["192.0.2.0/24"]},
            "pools": [{"role": "server", "count": 1, "flavor": {"name": "m1.small"}},
                      {"role": "ingress", "count": 1, "flavor": {"name": "m1.small"}, "floating_ip": True}]}
    with pytest.raises(InputError) as err:
        load_inventory(write_inventory(tmp_path, [site]), check_vault=False)
    assert "unknown EGI site 'NO-SUCH-SITE'" in str(err.value)
    assert "ai4os_sites[0].egi_site" in str(err.value)


def test_sites_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sites", "--vo", "vo.imagine-ai.eu", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} >= {"IFCA-LCG2"}
    assert all(r["project_id"] for r in rows)
    assert main(["sites", "--vo", "vo.ai4eoscc.eu"]) == 2
    assert "closest: vo.ai4eosc.eu" in capsys.readouterr().err
