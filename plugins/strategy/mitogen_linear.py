"""Strategy ``mitogen_linear``: the kit's default (ansible.cfg).

Mitogen's linear strategy when the ``mitogen`` package is importable (a
dependency of ai4os-kit): one persistent Python interpreter per host instead
of a new one per task, which is what makes converging many nodes from a
2-core controller affordable (benchmarks/converge.py). Where it is not
installed, Ansible's own ``linear`` runs instead, with a warning.

Back to Ansible's strategy for one run: ``ANSIBLE_STRATEGY=linear``; for
good: ``strategy = linear`` in ansible.cfg.

On top of Mitogen's strategy this plugin does two things (docs/performance.md,
"Converge", what changed):

- It keeps what Mitogen's controller works out from source files between
  runs. For every module a play uses, Mitogen compiles the module and each
  ``module_utils`` file it imports, only to read their import statements, and
  it compiles, strips (minifies) and compresses the Python modules it sends to
  the nodes: in every run, and the shared ``module_utils`` files once for each
  module that imports them. The results depend only on a file's text, so they
  are kept in memory for the run and on disk between runs, under a key made of
  the text itself (a changed file is a new key; nothing is invalidated by time
  or guessed stale). The compiled code is only read for its imports, never
  run; the minified and compressed sources are what the nodes run, so the
  cache directory must be private: it is created 0700 and not used
  (everything is computed afresh, as Mitogen does) unless it and its parent
  are owned by this user and writable by nobody else. ``AI4OS_MITOGEN_CACHE``:
  a directory instead of ``$XDG_CACHE_HOME/ai4os-kit/mitogen`` (default
  ``~/.cache``), or ``off`` for the in-memory part only.
- Before the first task it does, once, the work each forked worker would
  otherwise repeat (``warm_before_forking``).
"""

from __future__ import annotations

import builtins
import hashlib
import marshal
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from ansible.utils.display import Display

CACHE_FORMAT = "1"  # part of the directory name: a new layout never reads an old one


class SourceCache:
    """Results of pure functions of a source text: in memory for the run, on disk between runs."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.memory: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(kind: str, name: str, source: bytes | str) -> str:
        text = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else bytes(source)
        digest = hashlib.blake2b(digest_size=20)
        for part in (kind.encode(), name.encode("utf-8", "surrogatepass"), text):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        return digest.hexdigest()

    def get(self, key: str, make: Callable[[], Any], dump: Callable[[Any], bytes],
            load: Callable[[bytes], Any]) -> Any:
        with self.lock:
            if key in self.memory:
                self.hits += 1
                return self.memory[key]
        value = self._read(key, load)
        if value is None:
            value = make()
            self._write(key, dump(value))
            self.misses += 1
        else:
            self.hits += 1
        with self.lock:
            self.memory[key] = value
        return value

    def _read(self, key: str, load: Callable[[bytes], Any]) -> Any:
        if self.directory is None:
            return None
        try:
            with open(os.path.join(self.directory, key), "rb") as handle:
                if os.fstat(handle.fileno()).st_uid != os.geteuid():
                    return None
                return load(handle.read())
        except (OSError, ValueError, EOFError, TypeError, UnicodeDecodeError):
            return None  # missing, unreadable or damaged: computed afresh and written again

    def _write(self, key: str, data: bytes) -> None:
        if self.directory is None:
            return
        path = os.path.join(self.directory, key)
        partial = f"{path}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, path)
        except OSError:  # a full or read-only disk costs the cache, never the run
            try:
                os.unlink(partial)
            except OSError:
                pass


def private_directory(path: str) -> str | None:
    """``path``, created 0700 if missing, when it and its parent are this user's alone; otherwise None."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for directory in (path, os.path.dirname(path)):
            info = os.stat(directory)
            if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                return None
    except OSError:
        return None
    return path


def cache_directory(version: str) -> str | None:
    """Where the source cache lives for this Python and Mitogen (None: memory only)."""
    setting = os.environ.get("AI4OS_MITOGEN_CACHE", "")
    if setting.lower() == "off":
        return None
    base = setting or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                   "ai4os-kit", "mitogen")
    return private_directory(os.path.join(base, f"{sys.implementation.cache_tag}-mitogen{version}-v{CACHE_FORMAT}"))


def caching_compile(cache: SourceCache) -> Callable[..., Any]:
    """``compile`` for Mitogen's import scans: an ``exec`` compile of a text is looked up before it is done."""

    def compile(source: Any, filename: Any, mode: str, flags: int = 0, dont_inherit: bool = False,  # noqa: A001
                optimize: int = -1) -> Any:
        plain = mode == "exec" and not flags and not dont_inherit and optimize == -1
        if not plain or not isinstance(source, (bytes, str)) or not isinstance(filename, (bytes, str)):
            return builtins.compile(source, filename, mode, flags, dont_inherit, optimize)
        name = os.fsdecode(filename)
        return cache.get(cache.key("code", name, source), lambda: builtins.compile(source, filename, mode),
                         marshal.dumps, marshal.loads)

    return compile


def caching_minimize(cache: SourceCache, minimize: Callable[[Any], str]) -> Callable[[Any], str]:
    """Mitogen's ``minimize_source`` (comments and docstrings stripped), looked up before it is done."""

    def minimize_source(source: Any) -> str:
        return cache.get(cache.key("minified", "", source), lambda: minimize(source),
                         lambda text: text.encode("utf-8", "surrogatepass"),
                         lambda data: data.decode("utf-8", "surrogatepass"))

    return minimize_source


class CachingZlib:
    """``zlib`` for Mitogen's module responder: it compresses every module it sends at level 9, once a run."""

    def __init__(self, cache: SourceCache, zlib: Any) -> None:
        self._cache, self._zlib = cache, zlib

    def compress(self, data: bytes, level: int = -1) -> bytes:
        return self._cache.get(self._cache.key("zlib", str(level), data), lambda: self._zlib.compress(data, level),
                               bytes, bytes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._zlib, name)


def install_source_cache(module_finder: Any, master: Any, minify: Any, version: str) -> SourceCache:
    """Route Mitogen's scans through one cache (before its multiplexer process is forked, which inherits it)."""
    cache = SourceCache(cache_directory(version))
    module_finder.compile = caching_compile(cache)  # module_utils scan (ModuleDepService)
    master.compile = caching_compile(cache)  # ModuleFinder.find_related_imports
    master.zlib = CachingZlib(cache, master.zlib)  # ModuleResponder._build_tuple
    minify.minimize_source = caching_minimize(cache, minify.minimize_source)
    return cache


def warm_before_forking(planner: Any, plugin_loader: Any, collections_list: Any) -> None:
    """Work every forked worker would repeat, done once in the process they are forked from.

    Ansible forks a worker for each task and host, and a worker's caches die
    with it: the first Jinja filter or test a task uses makes its worker load
    every filter and test plugin file, and Mitogen lists every installed
    collection (importing each one's package and reading its routing table)
    for each task whose module comes from a collection, so that the node can
    import collection code. Both results are the same for the whole run.
    """
    for loader in (plugin_loader.filter_loader, plugin_loader.test_loader):
        loader._ensure_non_collection_wrappers()
    if getattr(planner, "_ai4os_collection_dirs", None) is None:
        directories = tuple(path.decode("utf-8") for path in collections_list.list_collection_dirs())

        def load_collections(invocation: Any) -> None:  # Mitogen's _load_collections, listed once
            invocation._extra_sys_paths.update(directories)

        planner._load_collections = load_collections
        planner._ai4os_collection_dirs = directories


try:
    import ansible_mitogen.loaders
    import ansible_mitogen.module_finder
    import ansible_mitogen.planner
    import ansible_mitogen.strategy
    import mitogen
    import mitogen.master
    import mitogen.minify
except ImportError:  # plain Ansible without Mitogen
    from ansible.plugins.strategy.linear import StrategyModule as _Linear

    class StrategyModule(_Linear):  # type: ignore[no-redef]
        """Ansible's linear strategy, announced as the fallback it is."""

        def __init__(self, tqm):  # noqa: ANN001 (Ansible's signature)
            Display().warning("mitogen is not installed: running with Ansible's linear strategy "
                              "(pip install mitogen, or set ANSIBLE_STRATEGY=linear to silence this)")
            super().__init__(tqm)

else:
    if not getattr(mitogen.minify, "_ai4os_cached", False):  # once per controller process
        install_source_cache(ansible_mitogen.module_finder, mitogen.master, mitogen.minify,
                             ".".join(map(str, mitogen.__version__)))
        mitogen.minify._ai4os_cached = True

    _MitogenBase = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _MitogenBase):  # type: ignore[no-redef]
        """Mitogen's mixin over Ansible's linear strategy."""

        def run(self, iterator, play_context, result=0):  # noqa: ANN001, ANN201 (Mitogen's signature)
            import ansible.collections.list  # noqa: PLC0415
            import ansible.plugins.loader  # noqa: PLC0415

            warm_before_forking(ansible_mitogen.planner, ansible.plugins.loader, ansible.collections.list)
            return super().run(iterator, play_context, result)
