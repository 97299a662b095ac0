"""Every package the kit imports at run time is declared where it is needed.

Third-party imports are read from the source with ``ast`` (top of file and
inside functions); each must come from a runtime dependency of pyproject.toml —
the accounting package may also use the `accounting` extra. The installed
distributions tell which distribution provides which top-level module.
The real install (a wheel in an empty venv, with and without the extra) is run
by .ci/plain-install.sh before the test suite.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "ai4os_kit"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


CORE = _names(PYPROJECT["project"]["dependencies"])
EXTRAS = {k: _names(v) for k, v in PYPROJECT["project"]["optional-dependencies"].items()}


def third_party_imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            tops = [node.module.split(".")[0]]
        else:
            continue
        out |= {t for t in tops if t not in sys.stdlib_module_names and t not in ("ai4os_kit", "__future__")}
    return out


def providers(module: str) -> set[str]:
    return {_norm(d) for d in packages_distributions().get(module, [])}


def undeclared(files: list[Path], allowed: set[str]) -> list[str]:
    # ansible's own package is ansible-core, brought by the declared `ansible`; python-hcl2 and
    # checkov's bc-python-hcl2 both provide `hcl2` in the test venv.
    aliases = {"ansible-core": "ansible", "bc-python-hcl2": "python-hcl2"}
    bad = []
    for path in files:
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for module in sorted(third_party_imports(path)):
            dists = providers(module)
            if not dists:
                bad.append(f"{where}: imports '{module}', which no installed distribution provides")
            elif not {aliases.get(d, d) for d in dists} & allowed:
                bad.append(f"{where}: imports '{module}' ({', '.join(sorted(dists))}), not declared")
    return bad


def test_core_modules_import_only_core_dependencies() -> None:
    files = [p for p in PACKAGE.rglob("*.py") if "accounting" not in p.relative_to(PACKAGE).parts]
    assert not undeclared(files, CORE)


def test_accounting_imports_only_core_and_the_accounting_extra() -> None:
    files = list((PACKAGE / "accounting").rglob("*.py"))
    assert not undeclared(files, CORE | EXTRAS["accounting"])


def test_the_check_finds_an_undeclared_import(tmp_path: Path) -> None:
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    import numpy\n    from caso import record\n")
    problems = undeclared([fake], CORE)
    assert any("'numpy'" in p for p in problems) and any("'caso'" in p for p in problems)


def test_the_accounting_cli_imports_no_extra_at_start() -> None:
    """`ai4os-kit --help` imports accounting.cli on every install: its top level needs the core only."""
    tree = ast.parse((PACKAGE / "accounting" / "cli.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {(n.module if isinstance(n, ast.ImportFrom) else n.names[0].name) or "" for n in top}
    assert all(m.startswith(("ai4os_kit.errors", "__future__")) or m.split(".")[0] in sys.stdlib_module_names
               for m in modules), modules
