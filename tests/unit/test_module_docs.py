"""The kit's Ansible modules document themselves in YAML that ansible-doc (and ansible-lint) can read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[2] / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_documentation_is_yaml(path: Path) -> None:
    docs = {node.targets[0].id: node.value.value for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert "DOCUMENTATION" in docs, f"{path.name} has no DOCUMENTATION"
    doc = yaml.safe_load(docs["DOCUMENTATION"])
    assert doc["module"] == path.stem and doc["short_description"] and doc["description"]
    for name in ("EXAMPLES", "RETURN"):
        if name in docs:
            yaml.safe_load(docs[name])
