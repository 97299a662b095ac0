from __future__ import annotations

from pathlib import Path

from ai4os_kit import docs

ROOT = Path(__file__).resolve().parents[2]


def test_variables_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "variables.md").read_text(encoding="utf-8")
    assert committed == docs.render(), "docs/variables.md is out of date: run `make docs`"


def test_every_schema_key_is_documented() -> None:
    text = docs.render()
    for key in ("ai4os_nomad_region", "ai4os_sites[].pools[].flavor.accelerator.model", "ai4os_oidc.issuer"):
        assert f"`{key}`" in text
    for _path, _type, desc in docs.schema_rows(*(lambda s: (s, s))(__import__("json").loads((ROOT / "schemas" / "sites.schema.json").read_text()))):
        assert desc.strip(), _path


def test_role_defaults_carry_a_description() -> None:
    missing = [f"{d.parent.parent.name}: {name}" for d in ROOT.glob("roles/*/defaults/main.yml")
               for name, _value, desc in docs.role_rows(d) if not desc]
    assert not missing, "role defaults without a comment above them: " + ", ".join(missing)
