"""plugins/modules/packages_missing.py: the gate the roles run before apt.

The parsing is checked on dpkg-query lines of each state dpkg records (the
abbreviations are dpkg-query(1)'s: desired action, status, error flag); the
module itself runs through ansible on this machine's real dpkg database.
"""

from __future__ import annotations

import shutil

import pytest
from support import plugins

MODULE = plugins.load("plugins/modules/packages_missing.py")

# One line per package as the module asks dpkg-query for them: binary:Package, Architecture, db:Status-Abbrev.
OUTPUT = "\n".join([
    "bash\tamd64\tii ",           # installed
    "nftables\tamd64\thi ",       # installed and held (the base role holds packages)
    "xfsprogs\tamd64\tiU ",       # unpacked, not configured: apt must finish it
    "dnsmasq-base\tamd64\trc ",   # removed, its configuration files left
    "unzip\tamd64\tiiR",          # installed but flagged for reinstallation
    "curl\tamd64\tun ",           # known, never installed
    "libc6:amd64\tamd64\tii ",    # Multi-Arch: same packages carry their architecture
    "not a dpkg-query line",
]) + "\n"


def test_only_installed_packages_without_an_error_flag_count() -> None:
    names = ["bash", "nftables", "xfsprogs", "dnsmasq-base", "unzip", "curl", "libc6", "libc6:amd64", "bash:amd64"]
    assert MODULE.missing_of(names, OUTPUT) == ["xfsprogs", "dnsmasq-base", "unzip", "curl"]


def test_names_dpkg_query_cannot_answer_are_left_to_apt() -> None:
    names = ["bash=5.2-1", "bash*", "Bash", "nosuchpackage", "libc6:arm64"]
    assert MODULE.missing_of(names, OUTPUT) == names


def _run(names: list[str]) -> dict:
    """The module run by ansible against this machine (connection local), as the roles run it."""
    returncode, host = plugins.run("packages_missing", {"names": names})
    assert returncode == 0, host
    return host


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-family machine (dpkg-query)")
def test_module_reads_this_machines_dpkg_database() -> None:
    # dpkg and base-files are installed on every Debian-family system; the other name is in no archive.
    host = _run(["dpkg", "ai4os-no-such-package", "base-files", "dpkg=0.0"])
    assert host["changed"] is False
    assert host["missing"] == ["ai4os-no-such-package", "dpkg=0.0"]
