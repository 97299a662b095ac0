"""Bad input: settings of the oscar, drift and provenance components (ai4os_kit.model.component_rules).
Through the real CLI (subprocess, one case per component): the contract of the bad-input suite
(test_bad_inventories.py): exit 2, file, key, problem and fix named, no traceback, nothing written.
Every case also through the rules in process (file, key, problem and fix of the InputError)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_bad_inventories import Case, mutate
from test_bad_inventories import test_bad_inventory_is_rejected_clearly as refused

OSCAR = {"endpoint": "https://inference.example.org", "cluster_id": "oscar-ai4eosc"}


def oscar_with(**clusters: object) -> object:
    return mutate("platform.yml", lambda d: d.update(ai4os_enable_oscar=True, ai4os_oscar_clusters=clusters))


def setting(**values: object) -> object:
    return mutate("platform.yml", lambda d: d.update(values))


CASES = [
    Case("oscar-on-without-clusters", setting(ai4os_enable_oscar=True),
         "platform.yml", "ai4os_oscar_clusters", ("oscar is switched on but ai4os_oscar_clusters is not set",
                                                  "endpoint: https://inference.example.org")),
    Case("oscar-plain-http-endpoint", oscar_with(**{"vo.ai4eosc.eu": dict(OSCAR, endpoint="http://inference.example.org")}),
         "platform.yml", "ai4os_oscar_clusters", ("VO vo.ai4eosc.eu: endpoint 'http://inference.example.org' is not an https:// URL",)),
    Case("oscar-endpoint-trailing-slash", oscar_with(**{"vo.ai4eosc.eu": dict(OSCAR, endpoint="https://inference.example.org/")}),
         "platform.yml", "ai4os_oscar_clusters", ("ends with '/'", "no trailing slash")),
    Case("oscar-missing-cluster-id-and-typo", oscar_with(**{"vo.ai4eosc.eu": {"endpoint": OSCAR["endpoint"], "oidc_grup": "x"}}),
         "platform.yml", "ai4os_oscar_clusters", ("VO vo.ai4eosc.eu: cluster_id is not set",
                                                  "unknown key 'oidc_grup' (did you mean oidc_group?)")),
    Case("oscar-unknown-vo", oscar_with(**{"vo.unknown.eu": OSCAR}),
         "platform.yml", "ai4os_oscar_clusters", ("unknown VO(s) vo.unknown.eu", "VO names listed in ai4os_vos")),
    Case("oscar-setting-under-papi", setting(ai4os_papi_oscar_clusters={"vo.ai4eosc.eu": OSCAR}),
         "platform.yml", "ai4os_papi_oscar_clusters", ("papi has no setting 'oscar_clusters'",
                                                       "it moved: use ai4os_oscar_clusters")),
    Case("drift-alpha-out-of-range", setting(ai4os_enable_drift=True, ai4os_drift_alpha=5),
         "platform.yml", "ai4os_drift_alpha", ("5 is not a number between 0 and 1", "e.g. 0.01")),
    Case("drift-min-samples-text", setting(ai4os_enable_drift=True, ai4os_drift_min_samples="twenty"),
         "platform.yml", "ai4os_drift_min_samples", ("'twenty' is not a whole number of at least 2",)),
    Case("provenance-registry-with-scheme", setting(ai4os_enable_provenance=True,
                                                    ai4os_provenance_default_registry="https://registry.example.org/v2"),
         "platform.yml", "ai4os_provenance_default_registry", ("is not a host name with an optional :port",
                                                               "without https://")),
    Case("provenance-no-job-prefix", setting(ai4os_enable_provenance=True, ai4os_provenance_job_prefixes=[]),
         "platform.yml", "ai4os_provenance_job_prefixes", ("is not a non-empty list", "[module-]")),
]


CLI_CASES = ("oscar-plain-http-endpoint", "drift-alpha-out-of-range", "provenance-registry-with-scheme")


@pytest.mark.parametrize("case", [c for c in CASES if c.id in CLI_CASES], ids=list(CLI_CASES))
def test_bad_service_setting_is_refused_by_the_cli(case: Case, sample_inventory: Path) -> None:
    refused(case, sample_inventory)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_service_setting_is_named_by_the_rules(case: Case, sample_inventory: Path) -> None:
    from ai4os_kit.model.catalog import load_catalog, resolve
    from ai4os_kit.model.component_rules import check_component_settings

    case.edit(sample_inventory)
    platform = yaml.safe_load((sample_inventory / "platform.yml").read_text())
    flags = {k[len("ai4os_enable_"):]: v for k, v in platform.items() if k.startswith("ai4os_enable_")}
    enabled = set(resolve(flags, load_catalog()).enabled)
    file = str(sample_inventory / "platform.yml")
    errors = [e for e in check_component_settings(platform, enabled, file) if e.key == case.key]
    assert len(errors) == 1, [e.render() for e in check_component_settings(platform, enabled, file)]
    text = errors[0].render()
    assert text.startswith(f"{file}: {case.key}: ") and "\n  fix: " in text
    for part in case.expect:
        assert part in text, f"{part!r} not in:\n{text}"
