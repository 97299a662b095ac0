"""The package is layered one way: base → model → cloud → terraform → platform/accounting/day2/federation → testbed → cli.

Every import of the package's own modules (at the top of a file or inside a
function) is read from the source with ``ast``; a module may import only its
own layer or the layers below it, and the module graph has no cycle. A module
added outside the layers below fails here until it is given a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "ai4os_kit"

# Layer of each module (the first matching prefix wins), lowest first.
LAYERS: list[tuple[str, int]] = [
    ("ai4os_kit.errors", 0), ("ai4os_kit.paths", 0), ("ai4os_kit.yamlio", 0), ("ai4os_kit", 0),
    ("ai4os_kit.model", 1),
    ("ai4os_kit.cloud", 2),
    ("ai4os_kit.terraform", 3),
    ("ai4os_kit.platform", 4), ("ai4os_kit.accounting", 4), ("ai4os_kit.day2", 4), ("ai4os_kit.federation", 4),
    ("ai4os_kit.testbed", 5),
    ("ai4os_kit.cli", 6), ("ai4os_kit.docs", 6), ("ai4os_kit.__main__", 6),
]
NAMES = {0: "base", 1: "model", 2: "cloud", 3: "terraform", 4: "platform/accounting/day2/federation", 5: "testbed", 6: "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int:
    best = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[best]


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def own_imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known and n != module}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: own_imports(m, p, known) for m, p in mods.items()}


def test_every_module_has_a_layer() -> None:
    for module in modules():
        assert layer(module) >= 0


def test_imports_go_down_the_layers_only() -> None:
    bad = [f"{m} ({NAMES[layer(m)]}) imports {d} ({NAMES[layer(d)]})"
           for m, deps in graph().items() for d in sorted(deps)
           if layer(d) > layer(m) and not (m == "ai4os_kit" or d == "ai4os_kit")]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_platform_and_accounting_do_not_import_each_other() -> None:
    g = graph()
    bad = [f"{m} imports {d}" for m, deps in g.items() for d in deps
           if {m.split(".")[1:2][0] if "." in m else "", d.split(".")[1:2][0] if "." in d else ""} == {"platform", "accounting"}]
    assert not bad


def test_no_import_cycles() -> None:
    g = graph()
    # packages import their own modules' names only through "from pkg import mod"; drop pkg -> its submodule edges
    for m in g:
        g[m] = {d for d in g[m] if not d.startswith(m + ".") and not m.startswith(d + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_no_optional_import_fallbacks() -> None:
    """Modules that always ship are imported plainly; `try: import … except ImportError` hides defects."""
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Try) and any(isinstance(s, (ast.Import, ast.ImportFrom)) for s in node.body):
                handled = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
                if handled & {"ImportError", "ModuleNotFoundError"}:
                    found.append(f"{module}:{node.lineno}")
    assert not found, "import fallbacks: " + ", ".join(found)


def test_the_layering_test_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: a model module importing the CLI is reported."""
    fake = tmp_path / "x.py"
    fake.write_text("from ai4os_kit.cli import main\n\ndef f():\n    from ai4os_kit.terraform import render\n")
    deps = own_imports("ai4os_kit.model.x", fake, {"ai4os_kit.cli", "ai4os_kit.terraform.render", "ai4os_kit.terraform"})
    assert deps == {"ai4os_kit.cli", "ai4os_kit.terraform", "ai4os_kit.terraform.render"}
    assert all(layer(d) > layer("ai4os_kit.model.x") for d in deps)
