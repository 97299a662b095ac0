"""Load the kit's own Ansible plugins (plugins/modules, plugins/module_utils) as Python modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load(relative: str, name: str | None = None) -> ModuleType:
    """Import ROOT/<relative> (e.g. plugins/module_utils/ai4os_gpu.py) under its file name."""
    path = ROOT / relative
    name = name or path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
