"""The kit's own Ansible plugins: loaded as Python modules (plugins/modules, plugins/module_utils), or run by ansible."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
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


def run(module: str, args: dict, *flags: str, python: str = sys.executable, env: dict[str, str] | None = None,
        timeout: int = 120) -> tuple[int, dict]:
    """A module or action plugin run by ``ansible`` against this machine (connection local), as a role's task runs it.

    The repository's ansible.cfg, Ansible's own strategy and the json callback; ``env`` adds to the environment.
    Returns ansible's exit status and the task's result for localhost.
    """
    environ = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_STRATEGY": "linear",
               "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json", **(env or {})}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={python}", "-m", module, "-a", json.dumps(args), *flags],
        capture_output=True, text=True, cwd=ROOT, env=environ, timeout=timeout, check=False)
    assert "{" in done.stdout, done.stdout + done.stderr
    result = json.loads(done.stdout[done.stdout.index("{"):])
    return done.returncode, result["plays"][0]["tasks"][0]["hosts"]["localhost"]
