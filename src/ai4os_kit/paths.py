"""Where the kit's data lives: the repository root (or an installed copy)."""

from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    env = os.environ.get("AI4OS_KIT_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "catalog" / "components.yml").is_file():
            return parent
    return here.parents[2]


ROOT = _find_root()
CATALOG_FILE = ROOT / "catalog" / "components.yml"
SCHEMA_DIR = ROOT / "schemas"
SAMPLE_INVENTORY = ROOT / "inventories" / "sample"
