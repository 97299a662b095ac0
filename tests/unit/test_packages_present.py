"""plugins/action/packages_present.py: dpkg's answer first, apt only for what is missing, in one task.

Run by ansible on this machine (connection local) as the roles run it, against
its real dpkg database and apt: installed packages end the task before apt;
a package that is missing reaches apt (in check mode: nothing is installed);
a bad ``names`` fails before anything runs. The molecule scenarios run it in
every role that installs packages, twice (the second converge changes nothing).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from support import plugins

SYSTEM_PYTHON = "/usr/bin/python3"  # apt's module needs python3-apt, which is the system Python's
ABSENT = "sl"  # a small package of Debian's main archive that no machine here needs

debian = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-family machine (dpkg-query)")


def _run(args: dict, *flags: str) -> dict:
    """The task's result for localhost, run through ansible with the repository's ansible.cfg."""
    return plugins.run("packages_present", args, *flags, python=SYSTEM_PYTHON, timeout=300)[1]


def _installed(name: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", name], capture_output=True, text=True,
                          check=False)
    return done.returncode == 0 and done.stdout.startswith("ii")


def _apt_knows(name: str) -> bool:
    """Whether apt's package lists hold the package and the system Python can drive apt."""
    if subprocess.run([SYSTEM_PYTHON, "-c", "import apt"], capture_output=True, check=False).returncode != 0:
        return False
    shown = subprocess.run(["apt-cache", "show", name], capture_output=True, text=True, check=False)
    return shown.returncode == 0 and f"Package: {name}" in shown.stdout


@debian
def test_installed_packages_end_the_task_before_apt() -> None:
    host = _run({"names": ["dpkg", "base-files"], "update_cache": True, "cache_valid_time": 3600})
    assert not host.get("failed"), host
    assert host["changed"] is False and host["missing"] == []
    # apt never ran: its result always says whether it updated the cache; and the cache was not refreshed
    assert "cache_updated" not in host and "stdout" not in host


@debian
def test_a_missing_package_reaches_apt_in_check_mode_and_nothing_is_installed() -> None:
    if _installed(ABSENT) or not _apt_knows(ABSENT):
        pytest.skip(f"needs apt's package lists with {ABSENT} in them, and {ABSENT} not installed")
    host = _run({"names": ["dpkg", ABSENT]}, "--check")
    assert not host.get("failed"), host
    assert host["missing"] == [ABSENT]
    assert host["changed"] is True and f"Inst {ABSENT} " in host["stdout"]  # apt's simulation: it would install it
    assert "cache_updated" in host
    assert not _installed(ABSENT)


@pytest.mark.parametrize(("names", "problem"), [([], "non-empty list"), ([""], "package names only"),
                                                ({"a": 1}, "non-empty list"), ([1], "package names only")])
def test_bad_names_fail_before_anything_runs(names: object, problem: str) -> None:
    host = _run({"names": names})
    assert host.get("failed") is True and "packages_present:" in host["msg"] and problem in host["msg"]
    assert "missing" not in host


def test_an_unknown_option_is_refused() -> None:
    host = _run({"names": ["dpkg"], "state": "absent"})
    assert host.get("failed") is True and "state" in host["msg"]
