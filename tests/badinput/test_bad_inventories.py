"""The bad-input suite: malformed inventories must fail cleanly.

Each case breaks a copy of the sample inventory in one way and runs the real
CLI (`python -m ai4os_kit check` and `plan`) in a subprocess. It asserts:
exit code 2, the message names the file, the key, what is wrong and the fix,
no Python traceback, and nothing written to the inventory directory.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

Edit = Callable[[Path], None]


def replace(file: str, old: str, new: str, count: int = 1) -> Edit:
    def edit(inv: Path) -> None:
        path = inv / file
        text = path.read_text()
        assert old in text, f"test setup: {old!r} not in {file}"
        path.write_text(text.replace(old, new, count))
    return edit


def mutate(file: str, change: Callable[[dict], None]) -> Edit:
    def edit(inv: Path) -> None:
        path = inv / file
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return edit


def site(i: int) -> Callable[[dict], dict]:
    return lambda d: d["ai4os_sites"][i]


def pool(i: int, j: int) -> Callable[[dict], dict]:
    return lambda d: d["ai4os_sites"][i]["pools"][j]


def setitem(getter: Callable[[dict], dict], key: str, value: object) -> Callable[[dict], None]:
    return lambda d: getter(d).__setitem__(key, value)


def delitem(getter: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    return lambda d: getter(d).__delitem__(key)


def top(d: dict) -> dict:
    return d


def vault_encrypt(text: str, password: bytes) -> bytes:
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret
    return VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password))]).encrypt(text.encode())


def undecryptable_vault(inv: Path) -> None:
    (inv / "secrets.yml").write_bytes(vault_encrypt("ai4os_secret_x: 1\n", b"the-right-password"))
    (inv / ".vault-pass").write_text("a-wrong-password\n")


def plaintext_secrets(inv: Path) -> None:
    (inv / "secrets.yml").write_text("ai4os_secret_consul_gossip_key: abc\n")


@dataclass
class Case:
    id: str
    edit: Edit
    file: str            # file the message must name
    key: str             # key the message must name
    expect: tuple[str, ...]  # further substrings (the problem and the fix)


CASES = [
    Case("yaml-syntax-error", replace("platform.yml", "ai4os_nomad_region: ai4os", "ai4os_nomad_region: [ai4os"),
         "platform.yml:", "(top level)", ("YAML syntax error", "fix:")),
    Case("yaml-syntax-line-number", replace("sites.yml", "    auth: checkin", "    auth: checkin\n   bad: indentation"),
         "sites.yml:9", "(top level)", ("YAML syntax error",)),
    Case("duplicate-yaml-key", replace("platform.yml", "ai4os_domain: ai4os.example.org",
                                       "ai4os_domain: ai4os.example.org\nai4os_domain: other.example.org"),
         "platform.yml:", "ai4os_domain", ("key given twice", "keep one")),
    Case("wrong-type-count", mutate("sites.yml", setitem(pool(0, 0), "count", "three")),
         "sites.yml", "ai4os_sites[0].pools[0].count", ("'three' is text, not a number", "without quotes")),
    Case("wrong-type-vos", mutate("platform.yml", setitem(top, "ai4os_vos", "vo.ai4eosc.eu")),
         "platform.yml", "ai4os_vos", ("is text, expected a list",)),
    Case("boolean-as-string", replace("platform.yml", "ai4os_enable_papi: true", 'ai4os_enable_papi: "yes"'),
         "platform.yml", "ai4os_enable_papi", ("is text, not a boolean", "true or false without quotes")),
    Case("boolean-as-string-in-site", mutate("sites.yml", setitem(pool(0, 1), "floating_ip", "true")),
         "sites.yml", "ai4os_sites[0].pools[1].floating_ip", ("not a boolean",)),
    Case("unknown-top-key-did-you-mean", replace("platform.yml", "ai4os_nomad_region:", "ai4os_nomad_regoin:"),
         "platform.yml", "ai4os_nomad_regoin", ("unknown key", "did you mean 'ai4os_nomad_region'")),
    Case("unknown-pool-key-did-you-mean", mutate("sites.yml", lambda d: d["ai4os_sites"][0]["pools"][2].update(volme_gb=10)),
         "sites.yml", "ai4os_sites[0].pools[2].volme_gb", ("did you mean 'volume_gb'",)),
    Case("missing-required-key", mutate("platform.yml", delitem(top, "ai4os_domain")),
         "platform.yml", "ai4os_domain", ("required key is missing", "add 'ai4os_domain'")),
    Case("missing-pool-count", mutate("sites.yml", delitem(pool(0, 2), "count")),
         "sites.yml", "ai4os_sites[0].pools[2].count", ("required key is missing",)),
    Case("dependency-switched-off", replace("platform.yml", "ai4os_enable_papi: true", "ai4os_enable_papi: true\nai4os_enable_nomad: false"),
         "platform.yml", "ai4os_enable_nomad", ("requires it", "ai4os_enable_nomad: true")),
    Case("component-not-in-the-catalogue", replace("platform.yml", "ai4os_enable_docuum: true", "ai4os_enable_docuum: true\nai4os_enable_docker_prune: true"),
         "platform.yml", "ai4os_enable_docker_prune", ("unknown component 'docker_prune'",)),
    Case("unknown-component", replace("platform.yml", "ai4os_enable_mlflow: false", "ai4os_enable_mlfow: false"),
         "platform.yml", "ai4os_enable_mlfow", ("unknown component 'mlfow'", "did you mean 'mlflow'")),
    Case("duplicate-site-names", mutate("sites.yml", setitem(site(1), "name", "ifca")),
         "sites.yml", "ai4os_sites[1].name", ("used by ai4os_sites[0]", "unique")),
    Case("duplicate-vo-namespace", mutate("platform.yml", lambda d: d["ai4os_vos"][1].update(namespace="ai4eosc")),
         "platform.yml", "ai4os_vos[1].namespace", ("used by ai4os_vos[0]",)),
    Case("even-server-count", mutate("sites.yml", setitem(pool(0, 0), "count", 2)),
         "sites.yml", "ai4os_sites[0].pools", ("2 server node(s)", "1, 3 or 5")),
    Case("gpu-pool-without-accelerator", mutate("sites.yml", lambda d: d["ai4os_sites"][0]["pools"][4]["flavor"].pop("accelerator")),
         "sites.yml", "ai4os_sites[0].pools[4].flavor.accelerator", ("no accelerator requirements", "type: GPU")),
    Case("accelerator-on-cpu-pool", mutate("sites.yml", lambda d: d["ai4os_sites"][0]["pools"][3]["flavor"].update(accelerator={"type": "GPU", "number": 1})),
         "sites.yml", "ai4os_sites[0].pools[3].flavor.accelerator", ("on a 'cpu' pool", "role: gpu")),
    Case("invalid-hostname-characters", mutate("sites.yml", setitem(site(0), "name", "IFCA_1")),
         "sites.yml", "ai4os_sites[0].name", ("invalid format", "a DNS label", "at most 20 characters")),
    Case("enum-typo-did-you-mean", mutate("sites.yml", setitem(pool(0, 3), "role", "cpus")),
         "sites.yml", "ai4os_sites[0].pools[3].role", ("'cpus' is not allowed", "did you mean 'cpu'")),
    Case("unknown-namespace", mutate("sites.yml", setitem(pool(0, 4), "namespaces", ["ai4eosk"])),
         "sites.yml", "ai4os_sites[0].pools[4].namespaces[0]", ("not defined", "did you mean 'ai4eosc'")),
    Case("site-vo-not-defined", mutate("sites.yml", setitem(site(0), "vo", "vo.unknown.eu")),
         "sites.yml", "ai4os_sites[0].vo", ("not in ai4os_vos", "use one of")),
    Case("no-ingress-node", mutate("sites.yml", lambda d: d["ai4os_sites"][1]["pools"].pop(1)),
         "sites.yml", "ai4os_sites[1].pools", ("no ingress node", "role: ingress")),
    Case("ingress-without-floating-ip", mutate("sites.yml", setitem(pool(1, 1), "floating_ip", False)),
         "sites.yml", "ai4os_sites[1].pools[1].floating_ip", ("public address", "floating_ip: true")),
    Case("cpu-pool-without-volume", mutate("sites.yml", delitem(pool(1, 2), "volume_gb")),
         "sites.yml", "ai4os_sites[1].pools[2].volume_gb", ("needs a data volume", "volume_gb")),
    Case("overlapping-cidrs", mutate("sites.yml", lambda d: d["ai4os_sites"][1]["network"].update(cidr="10.10.0.128/25")),
         "sites.yml", "ai4os_sites[1].network.cidr", ("overlaps", "distinct CIDR")),
    Case("ssh-open-to-world", mutate("sites.yml", lambda d: d["ai4os_sites"][0]["ssh"].update(allowed_cidrs=["0.0.0.0/0"])),
         "sites.yml", "ai4os_sites[0].ssh.allowed_cidrs[0]", ("whole internet", "never 0.0.0.0/0")),
    Case("two-site-sources", mutate("sites.yml", setitem(site(0), "cloud", "mycloud")),
         "sites.yml", "ai4os_sites[0]", ("more than one of egi_site / cloud / testbed", "exactly one")),
    Case("issuer-not-https", replace("platform.yml", "issuer: https://login.", "issuer: http://login."),
         "platform.yml", "ai4os_oidc.issuer", ("invalid format", "Issuer URL")),
    Case("count-out-of-range", mutate("sites.yml", setitem(pool(0, 3), "count", -1)),
         "sites.yml", "ai4os_sites[0].pools[3].count", ("out of range",)),
    Case("empty-platform-file", lambda inv: (inv / "platform.yml").write_text("# nothing\n"),
         "platform.yml", "(top level)", ("expected a mapping", "inventories/sample")),
    Case("missing-sites-file", lambda inv: (inv / "sites.yml").unlink(),
         "sites.yml", "(top level)", ("file not found", "ai4os-kit init")),
    Case("unknown-component-setting", replace("platform.yml", "ai4os_storage_webdav_url:", "ai4os_storge_webdav_url:"),
         "platform.yml", "ai4os_storge_webdav_url", ("unknown key",)),
    Case("vault-cannot-be-decrypted", undecryptable_vault,
         "secrets.yml", "(top level)", ("cannot be decrypted", "password file")),
    Case("secrets-in-plain-text", plaintext_secrets,
         "secrets.yml", "(top level)", ("not encrypted", "ansible-vault encrypt")),
    Case("unknown-egi-site", mutate("sites.yml", setitem(site(0), "egi_site", "IFCA-LGC2")),
         "sites.yml", "ai4os_sites[0].egi_site", ("unknown EGI site 'IFCA-LGC2'", "IFCA-LCG2", "ai4os-kit sites")),
    Case("vo-not-offered-at-egi-site", mutate("sites.yml", lambda d: d["ai4os_sites"][0].update(egi_site="CESNET-MCCG2")),
         "sites.yml", "ai4os_sites[0].vo", ("not offered at CESNET-MCCG2", "IFCA-LCG2")),
    Case("oidc-mapping-for-other-provider", replace("platform.yml", "  keycloak:\n", "  checkin:\n    roles: [member]\n  keycloak:\n"),
         "platform.yml", "ai4os_oidc.checkin", ("Check-in mapping is given but provider is keycloak", "remove ai4os_oidc.checkin")),
    # ---- round 2: type coercions, values YAML changes, contradictions, reserved names, paths, words
    Case("count-as-float", replace("sites.yml", "        count: 3\n", "        count: 3.0\n"),
         "sites.yml", "ai4os_sites[0].pools[0].count", ("3.0 is not a whole number", "write 3")),
    Case("count-with-fraction", mutate("sites.yml", setitem(pool(0, 3), "count", 2.5)),
         "sites.yml", "ai4os_sites[0].pools[3].count", ("2.5 is not a whole number", "no decimal point")),
    Case("count-as-boolean", mutate("sites.yml", setitem(pool(0, 3), "count", True)),
         "sites.yml", "ai4os_sites[0].pools[3].count", ("the boolean true", "expected a whole number")),
    Case("unquoted-version-becomes-number", replace("sites.yml", 'os_version: "22.04"', "os_version: 22.10"),
         "sites.yml", "ai4os_sites[0].image.properties.os_version",
         ("'22.10' was read by YAML as the number 22.1", 'quote it: os_version: "22.10"')),
    Case("country-no-becomes-boolean", replace("sites.yml", "country: ES", "country: NO"),
         "sites.yml", "ai4os_sites[0].location.country", ("'NO' was read by YAML as the boolean false", 'quote it: country: "NO"')),
    Case("list-given-as-mapping", mutate("platform.yml", setitem(top, "ai4os_vos", {"name": "vo.ai4eosc.eu"})),
         "platform.yml", "ai4os_vos", ("is a mapping, expected a list", "lines starting with '- '")),
    Case("mapping-given-as-list", mutate("sites.yml", setitem(site(0), "location", ["ES"])),
         "sites.yml", "ai4os_sites[0].location", ("is a list, expected a mapping",)),
    Case("flavor-id-and-name", mutate("sites.yml", lambda d: d["ai4os_sites"][1]["pools"][0]["flavor"].update(id="5c1e")),
         "sites.yml", "ai4os_sites[1].pools[0].flavor", ("both id '5c1e' and name 'standard.medium'", "keep one of them")),
    Case("flavor-name-and-minimums", mutate("sites.yml", lambda d: d["ai4os_sites"][1]["pools"][2]["flavor"].update(vcpus=8, ram_mb=16384)),
         "sites.yml", "ai4os_sites[1].pools[2].flavor", ("minimums vcpus, ram_mb", "silently ignored", "remove vcpus, ram_mb")),
    Case("empty-site-list", lambda inv: (inv / "sites.yml").write_text("ai4os_sites: []\n"),
         "sites.yml", "ai4os_sites", ("is an empty list", "list at least 1 entry")),
    Case("site-list-left-empty", lambda inv: (inv / "sites.yml").write_text("ai4os_sites:\n"),
         "sites.yml", "ai4os_sites", ("is empty (nothing after the colon)", "expected a list")),
    Case("empty-pool-list", mutate("sites.yml", setitem(site(1), "pools", [])),
         "sites.yml", "ai4os_sites[1].pools", ("is an empty list", "list at least 1 entry")),
    Case("reserved-admin-user", replace("platform.yml", "ai4os_enable_papi: true",
                                        "ai4os_enable_papi: true\nai4os_admin_users:\n  - {name: nomad, ssh_keys: ['ssh-ed25519 AAAA op']}"),
         "platform.yml", "ai4os_admin_users[0].name", ("'nomad' is a system or service account", "personal login name")),
    Case("admin-user-twice", replace("platform.yml", "ai4os_enable_papi: true",
                                     "ai4os_enable_papi: true\nai4os_admin_users:\n  - {name: ana, ssh_keys: ['ssh-ed25519 AAAA a']}"
                                     "\n  - {name: ana, ssh_keys: ['ssh-ed25519 AAAA b']}"),
         "platform.yml", "ai4os_admin_users[1].name", ("listed twice", "list each admin once")),
    Case("site-name-too-long", mutate("sites.yml", setitem(site(1), "name", "cesnet-brno-production")),
         "sites.yml", "ai4os_sites[1].name", ("invalid format", "at most 20 characters")),
    Case("country-code-in-words", replace("sites.yml", "country: ES", "country: Spain"),
         "sites.yml", "ai4os_sites[0].location.country", ("'Spain' has an invalid format", "two upper-case letters")),
    Case("platform-file-is-a-directory", lambda inv: ((inv / "platform.yml").unlink(), (inv / "platform.yml").mkdir()),
         "platform.yml", "(top level)", ("is a directory, not a file", "remove or rename the directory")),
    Case("platform-file-link-loop", lambda inv: ((inv / "platform.yml").unlink(), (inv / "platform.yml").symlink_to("platform.yml")),
         "platform.yml", "(top level)", ("points back at itself", "replace the link with the file")),
    Case("image-given-by-tag", replace("platform.yml", "ai4os_allow_unpinned_images: true", "ai4os_allow_unpinned_images: false"),
         "platform.yml", "ai4os_papi_image", ("is not pinned by digest", "<image>@sha256:<digest>", "ai4os_allow_unpinned_images: true")),
    Case("sites-file-not-utf8", lambda inv: (inv / "sites.yml").write_bytes(b"ai4os_sites:\n  - name: caf\xe9\n"),
         "sites.yml", "(top level)", ("is not UTF-8 text", "save the file as UTF-8")),
]


def snapshot(directory: Path) -> dict[str, str]:
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_kit(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_VAULT_PASSWORD_FILE"}
    return subprocess.run([sys.executable, "-m", "ai4os_kit", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_inventory_is_rejected_clearly(case: Case, sample_inventory: Path) -> None:
    case.edit(sample_inventory)
    before = snapshot(sample_inventory)
    for command in ("check", "plan"):
        result = run_kit(command, str(sample_inventory))
        message = result.stderr
        assert result.returncode == 2, f"{command}: exit {result.returncode}\n{result.stdout}\n{message}"
        assert "Traceback" not in message + result.stdout
        assert case.file in message, message
        assert f": {case.key}:" in message, message
        assert "fix:" in message, message
        for part in case.expect:
            assert part in message, f"{part!r} not in:\n{message}"
    assert snapshot(sample_inventory) == before, "a rejected inventory must leave the directory unchanged"
    assert not (sample_inventory / "hosts.yml").exists()


def test_there_are_at_least_55_cases() -> None:
    assert len({c.id for c in CASES}) >= 55


def test_every_problem_of_both_files_in_one_run(sample_inventory: Path) -> None:
    """Broken YAML in platform.yml does not hide broken YAML in sites.yml, nor schema errors each other."""
    replace("platform.yml", "ai4os_nomad_region: ai4os", "ai4os_nomad_region: [ai4os")(sample_inventory)
    (sample_inventory / "sites.yml").write_text("ai4os_sites:\n  - name: x\n   pools: []\n")
    result = run_kit("check", str(sample_inventory))
    assert result.returncode == 2 and "2 problem(s) found" in result.stderr, result.stderr
    assert "platform.yml" in result.stderr and "sites.yml" in result.stderr
    (sample_inventory / "platform.yml").write_text((sample_inventory / "platform.yml").read_text().replace("[ai4os", "ai4os"))
    mutate("platform.yml", setitem(top, "ai4os_domain", 7))(sample_inventory)
    (sample_inventory / "sites.yml").write_text(yaml.safe_dump({"ai4os_sites": [{"name": "x", "pools": [{"role": "cpu", "count": 1.5}]}]}))
    result = run_kit("check", str(sample_inventory))
    assert result.returncode == 2 and "ai4os_domain" in result.stderr and "count" in result.stderr, result.stderr


def test_inventory_path_that_is_a_file(sample_inventory: Path) -> None:
    result = run_kit("check", str(sample_inventory / "platform.yml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is a file, not an inventory directory" in result.stderr and "fix:" in result.stderr


def test_inventory_path_that_is_a_link_loop(tmp_path: Path) -> None:
    (tmp_path / "inv").symlink_to(tmp_path / "inv")
    result = run_kit("check", str(tmp_path / "inv"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "symbolic link" in result.stderr and "fix:" in result.stderr


def test_every_schema_pattern_is_explained_in_words() -> None:
    """An operator reads "at most 20 characters", never a regular expression."""
    import json

    def walk(node: object, where: str) -> list[str]:
        out = []
        if isinstance(node, dict):
            if "pattern" in node and not node.get("x-pattern-words"):
                out.append(where)
            for k, v in node.items():
                out += walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += walk(v, f"{where}[{i}]")
        return out

    root = Path(__file__).resolve().parents[2] / "schemas"
    missing = [m for f in sorted(root.glob("*.json")) for m in walk(json.loads(f.read_text()), f.name)]
    assert not missing, missing


def test_the_unbroken_sample_passes(sample_inventory: Path) -> None:
    result = run_kit("check", str(sample_inventory))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_missing_inventory_directory(tmp_path: Path) -> None:
    result = run_kit("check", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "inventory directory not found" in result.stderr and "fix:" in result.stderr
