"""The kit's ``mitogen_linear`` strategy: Mitogen's, made cheaper per run and per task (plugins/strategy).

Every cached answer is compared with what Mitogen computes itself on the
same real files (Ansible's modules and module_utils, the kit's own modules,
Mitogen's own sources): the cache may only make it faster, never different.
The molecule scenarios (tests/testbed) run every role through this plugin.
"""

from __future__ import annotations

import builtins
import importlib.util
import os
import stat
import zlib
from pathlib import Path

import ansible
import ansible_mitogen.module_finder
import mitogen.master
import mitogen.minify
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "strategy" / "mitogen_linear.py"
BUILTIN_UTILS = str(Path(ansible.__file__).parent / "module_utils")
MODULES = [  # (name, path): modules the host roles run, Ansible's and the kit's
    ("apt", Path(ansible.__file__).parent / "modules" / "apt.py"),
    ("copy", Path(ansible.__file__).parent / "modules" / "copy.py"),
    ("systemd_service", Path(ansible.__file__).parent / "modules" / "systemd_service.py"),
    ("uri", Path(ansible.__file__).parent / "modules" / "uri.py"),
    ("user", Path(ansible.__file__).parent / "modules" / "user.py"),
    ("packages_missing", ROOT / "plugins" / "modules" / "packages_missing.py"),
    ("artifact_in_place", ROOT / "plugins" / "modules" / "artifact_in_place.py"),
]
MINIMIZE = mitogen.minify.minimize_source  # Mitogen's own, before the plugin wraps it


@pytest.fixture(scope="module")
def plugin():
    """The strategy plugin as Ansible loads it (importing it routes Mitogen through its cache)."""
    saved = {"finder": ansible_mitogen.module_finder.__dict__.get("compile"),
             "master": mitogen.master.__dict__.get("compile"), "zlib": mitogen.master.zlib,
             "minify": mitogen.minify.minimize_source}
    previous = os.environ.get("AI4OS_MITOGEN_CACHE")
    os.environ["AI4OS_MITOGEN_CACHE"] = "off"  # nothing written under the tester's home
    try:
        spec = importlib.util.spec_from_file_location("ai4os_test_mitogen_linear", PLUGIN)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        if previous is None:
            os.environ.pop("AI4OS_MITOGEN_CACHE", None)
        else:
            os.environ["AI4OS_MITOGEN_CACHE"] = previous
        for namespace, key in ((ansible_mitogen.module_finder, "finder"), (mitogen.master, "master")):
            if saved[key] is None:
                namespace.__dict__.pop("compile", None)
            else:
                namespace.compile = saved[key]
        mitogen.master.zlib = saved["zlib"]
        mitogen.minify.minimize_source = saved["minify"]


def _scan(compile_function, module_name: str, path: Path) -> list:
    finder = ansible_mitogen.module_finder
    saved = finder.__dict__.get("compile")
    finder.compile = compile_function
    try:
        return finder.scan(module_name, str(path), (BUILTIN_UTILS,))
    finally:
        if saved is None:
            del finder.compile
        else:
            finder.compile = saved


def test_importing_the_plugin_routes_mitogen_through_the_cache(plugin):
    assert ansible_mitogen.module_finder.compile.__qualname__ == "caching_compile.<locals>.compile"
    assert mitogen.master.compile.__qualname__ == "caching_compile.<locals>.compile"
    assert isinstance(mitogen.master.zlib, plugin.CachingZlib)
    assert mitogen.minify.minimize_source.__qualname__ == "caching_minimize.<locals>.minimize_source"
    assert issubclass(plugin.StrategyModule, ansible_mitogen.strategy.StrategyMixin)


def test_module_utils_scan_is_mitogens_cold_and_warm(plugin, tmp_path):
    """Mitogen's scan with plain compile, then through the cache: empty, from memory, from disk."""
    directory = plugin.private_directory(str(tmp_path / "cache"))
    cold = plugin.SourceCache(directory)
    for name, path in MODULES:
        expected = _scan(builtins.compile, name, path)
        assert any(dep[0] == "ansible.module_utils.basic" for dep in expected), name  # a real scan
        assert _scan(plugin.caching_compile(cold), name, path) == expected, name
        assert _scan(plugin.caching_compile(cold), name, path) == expected, name
    assert cold.misses > 0 and cold.hits > cold.misses  # module_utils shared by the modules: compiled once
    warm = plugin.SourceCache(directory)  # the next run: a new process reading the directory
    for name, path in MODULES:
        assert _scan(plugin.caching_compile(warm), name, path) == _scan(builtins.compile, name, path), name
    assert warm.misses == 0 and warm.hits > 0


def test_related_imports_are_mitogens(plugin, tmp_path, monkeypatch):
    cache = plugin.SourceCache(plugin.private_directory(str(tmp_path / "cache")))
    names = ["ansible.module_utils.basic", "ansible_mitogen.runner", "mitogen.parent", "ansible.module_utils.urls"]
    monkeypatch.setattr(mitogen.master, "compile", builtins.compile, raising=False)
    expected = {name: mitogen.master.ModuleFinder().find_related_imports(name) for name in names}
    assert all(expected.values())
    monkeypatch.setattr(mitogen.master, "compile", plugin.caching_compile(cache), raising=False)
    for _ in range(2):  # cold, then from the cache
        assert {name: mitogen.master.ModuleFinder().find_related_imports(name) for name in names} == expected
    assert cache.hits >= len(names)


def test_minified_and_compressed_sources_are_mitogens(plugin, tmp_path):
    minimize = MINIMIZE
    directory = plugin.private_directory(str(tmp_path / "cache"))
    for module in (mitogen.parent, mitogen.core, mitogen.service):
        source = Path(module.__file__).read_bytes()
        expected = minimize(source)
        assert len(expected) < len(source)  # comments and docstrings really went
        for cache in (plugin.SourceCache(directory), plugin.SourceCache(directory)):  # written, then read back
            assert plugin.caching_minimize(cache, minimize)(source) == expected
            compressed = plugin.CachingZlib(cache, zlib).compress(source, 9)
            assert compressed == zlib.compress(source, 9)
            assert plugin.CachingZlib(cache, zlib).decompress(compressed) == source
    assert len(os.listdir(directory)) == 6  # three sources, two kinds of result each


def test_a_changed_file_is_a_new_entry_never_a_stale_one(plugin, tmp_path):
    directory = plugin.private_directory(str(tmp_path / "cache"))
    module = tmp_path / "mymodule.py"
    module.write_text("from ansible.module_utils.basic import AnsibleModule\n")
    first = _scan(plugin.caching_compile(plugin.SourceCache(directory)), "mymodule", module)
    module.write_text("from ansible.module_utils.basic import AnsibleModule\nfrom ansible.module_utils.urls import fetch_url\n")
    second = _scan(plugin.caching_compile(plugin.SourceCache(directory)), "mymodule", module)
    assert second == _scan(builtins.compile, "mymodule", module)
    assert "ansible.module_utils.urls" in {dep[0] for dep in second} - {dep[0] for dep in first}


def test_a_damaged_entry_is_computed_again(plugin, tmp_path):
    directory = plugin.private_directory(str(tmp_path / "cache"))
    source = b"import os\nimport ansible.module_utils.basic\n"
    plugin.caching_compile(plugin.SourceCache(directory))(source, "x", "exec")
    (entry,) = Path(directory).iterdir()
    entry.write_bytes(b"\x00garbage")
    cache = plugin.SourceCache(directory)
    code = plugin.caching_compile(cache)(source, "x", "exec")
    assert code.co_names == builtins.compile(source, "x", "exec").co_names
    assert cache.misses == 1 and entry.read_bytes() != b"\x00garbage"  # rewritten


def test_calls_other_than_a_plain_exec_compile_are_not_cached(plugin):
    cache = plugin.SourceCache(None)
    compile_ = plugin.caching_compile(cache)
    assert compile_("1 + 1", "x", "eval").co_consts  # another mode
    compile_("x = 1", "x", "exec", dont_inherit=True)
    assert cache.hits == cache.misses == 0 and not cache.memory


def test_the_cache_directory_must_be_private(plugin, tmp_path, monkeypatch):
    base = tmp_path / "base"
    monkeypatch.setenv("AI4OS_MITOGEN_CACHE", str(base))
    made = plugin.cache_directory("0.3.54")
    assert made is not None and stat.S_IMODE(os.stat(made).st_mode) == 0o700
    os.chmod(made, 0o770)  # writable by the group: the nodes would run what the group put there
    assert plugin.cache_directory("0.3.54") is None
    os.chmod(made, 0o700)
    os.chmod(base, 0o777)  # the parent open to all: the directory could be swapped
    assert plugin.cache_directory("0.3.54") is None
    os.chmod(base, 0o755)
    assert plugin.cache_directory("0.3.54") == made
    monkeypatch.setenv("AI4OS_MITOGEN_CACHE", "off")
    assert plugin.cache_directory("0.3.54") is None


def test_an_entry_of_another_user_is_not_read(plugin, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root (CI runs as root)")
    directory = plugin.private_directory(str(tmp_path / "cache"))
    source = b"import ansible.module_utils.basic\n"
    plugin.caching_compile(plugin.SourceCache(directory))(source, "x", "exec")
    (entry,) = Path(directory).iterdir()
    os.chown(entry, 4321, 4321)
    cache = plugin.SourceCache(directory)
    plugin.caching_compile(cache)(source, "x", "exec")
    assert cache.misses == 1 and cache.hits == 0


class _Invocation:
    """What Mitogen's planner reads of an invocation in ``_load_collections``: the extra import paths."""

    def __init__(self) -> None:
        self._extra_sys_paths: set[str] = set()


def test_warming_before_forking_lists_the_collections_mitogen_lists(plugin, monkeypatch):
    import ansible.collections.list
    import ansible.plugins.loader
    import ansible_mitogen.planner

    monkeypatch.setattr(ansible_mitogen.planner, "_load_collections", ansible_mitogen.planner._load_collections)
    monkeypatch.setattr(ansible_mitogen.planner, "_ai4os_collection_dirs", None, raising=False)
    ansible.plugins.loader.init_plugin_loader()
    theirs = _Invocation()
    ansible_mitogen.planner._load_collections(theirs)
    assert any(path.endswith("/community/general") for path in theirs._extra_sys_paths)  # a real listing

    plugin.warm_before_forking(ansible_mitogen.planner, ansible.plugins.loader, ansible.collections.list)
    ours = _Invocation()
    ansible_mitogen.planner._load_collections(ours)
    assert ours._extra_sys_paths == theirs._extra_sys_paths
    assert ansible.plugins.loader.filter_loader._cached_non_collection_wrappers  # filters loaded once, here
    assert ansible.plugins.loader.test_loader._cached_non_collection_wrappers
    listed = ansible_mitogen.planner._ai4os_collection_dirs
    plugin.warm_before_forking(ansible_mitogen.planner, ansible.plugins.loader, ansible.collections.list)
    assert ansible_mitogen.planner._ai4os_collection_dirs is listed  # once per controller process
