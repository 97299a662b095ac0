"""Build hook: the wheel carries the data the CLI reads (see ai4os_kit.paths).

catalog/, schemas/ and inventories/sample/ stay where they are in the repository
(the layout operators and roles know); a wheel gets a copy of them under
ai4os_kit/_bundled/ with the same layout, so `check`, `plan` and `init` work
from a plain `pip install`. Editable installs read them from the checkout.
Everything else is configured in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BUNDLED = ("catalog", "schemas", "inventories/sample")
SKIP = ("hosts.yml", "secrets.yml", ".vault-pass", "*.tmp", "terraform")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "ai4os_kit" / "_bundled"
        for rel in BUNDLED:
            dest = target / rel
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(HERE / rel, dest, ignore=shutil.ignore_patterns(*SKIP))


setup(cmdclass={"build_py": BuildWithData})
