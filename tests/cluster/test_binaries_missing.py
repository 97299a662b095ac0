"""The "binaries not available" stop (shared by the consul, nomad and nvidia roles).

Nomad and Consul cannot be obtained on the test machines: the roles must then say so,
with the reason and the fix, under the marker the molecule wrapper turns into SKIPPED,
and leave the binary-dependent steps out. A mirror whose checksum list disagrees with
the kit's pinned SHA256 must fail hard before anything is fetched or installed.
"""

from __future__ import annotations

from pathlib import Path

from support.cluster_helpers import run_playbook

PLAYBOOK = """\
- name: Binary step of the cluster roles
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Try to install the binary
      ansible.builtin.include_role:
        name: consul
        tasks_from: binary.yml
      vars:
        consul_binary_name: consul
        consul_binary_version: "2.0.2"
        consul_binary_sha256: 96e56c9d06b4a15bfa316afa39af926c1b67d189f66388dc1eecbb7c26faeed4
        consul_binary_dir: "{{ playbook_dir }}/bin"
        consul_binary_fact: consul_binary_available
    - name: Report
      ansible.builtin.debug:
        msg: "AVAILABLE={{ consul_binary_available }} MISSING={{ consul_binaries_missing | default([]) | join(',') }}"
"""


def _run(tmp_path: Path, url: str):
    playbook = tmp_path / "binary.yml"
    playbook.write_text(PLAYBOOK)
    return run_playbook(tmp_path, playbook, "-e", f"ai4os_artifacts_url={url}", "-e", "consul_arch=amd64")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_marker_line_gives_the_wrapper_a_complete_reason(tmp_path: Path) -> None:
    """tests/testbed reads the SKIP reason up to the end of the marker's line."""
    import re

    proc = _run(tmp_path, "''")
    reasons = re.findall(r"AI4OS-SKIP: (.+?)(?:\"|'|\\n|$)", proc.stdout, re.MULTILINE)
    assert reasons == ["binaries not available: consul 2.0.2"]


def test_no_mirror_configured(tmp_path: Path) -> None:
    proc = _run(tmp_path, "''")
    out = _one_line(proc.stdout)
    assert proc.returncode == 0, out[-3000:]
    assert "AI4OS-SKIP: binaries not available: consul 2.0.2" in out
    assert "Cannot be fetched: ai4os_artifacts_url is empty." in out
    assert "Fix: point ai4os_artifacts_url at the official release location or at a mirror" in out
    assert "AVAILABLE=False MISSING=consul 2.0.2" in out


def test_mirror_without_the_release(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    proc = _run(tmp_path, str(mirror))
    out = _one_line(proc.stdout)
    assert proc.returncode == 0, out[-3000:]
    assert f"Cannot be fetched: {mirror}/consul/2.0.2/consul_2.0.2_SHA256SUMS does not exist." in out
    assert "AVAILABLE=False" in out
    assert not (tmp_path / "bin").exists()


def test_release_location_that_does_not_answer(tmp_path: Path) -> None:
    proc = _run(tmp_path, "http://127.0.0.1:9")
    out = _one_line(proc.stdout)
    assert proc.returncode == 0, out[-3000:]
    assert "Cannot be fetched: http://127.0.0.1:9/consul/2.0.2/consul_2.0.2_SHA256SUMS answered -1" in out


def test_checksum_list_disagreeing_with_the_pin_fails_hard(tmp_path: Path) -> None:
    release = tmp_path / "mirror" / "consul" / "2.0.2"
    release.mkdir(parents=True)
    (release / "consul_2.0.2_SHA256SUMS").write_text(
        "0" * 64 + "  consul_2.0.2_linux_amd64.zip\n" + "96e56c9d06b4a15bfa316afa39af926c1b67d189f66388dc1eecbb7c26faeed4  consul_2.0.2_linux_arm64.zip\n"
    )
    proc = _run(tmp_path, str(tmp_path / "mirror"))
    out = _one_line(proc.stdout)
    assert proc.returncode != 0
    assert "CHECKSUM MISMATCH" in out and "lists " + "0" * 64 + " for consul_2.0.2_linux_amd64.zip" in out
    assert "AI4OS-SKIP" not in out and "AVAILABLE=" not in out
    assert not (tmp_path / "bin").exists()
