"""The first play of playbooks/site.yml runs the same validation as `ai4os-kit check`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ai4os_kit.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_validate(inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory / "hosts.yml"),
         str(ROOT / "playbooks" / "validate.yml"), *extra],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_validate_play_passes_and_fails_like_check(sample_inventory: Path) -> None:
    assert main(["plan", "--no-write", str(sample_inventory)]) == 0
    assert main(["plan", str(sample_inventory)]) == 0
    good = run_validate(sample_inventory, "--check")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "OK — 2 site(s), 13 node(s)" in " ".join(good.stdout.split())
    assert "changed=0" in good.stdout

    platform = sample_inventory / "platform.yml"
    platform.write_text(platform.read_text().replace("ai4os_nomad_region: ai4os", "ai4os_nomad_region: Not_A_Region"))
    bad = run_validate(sample_inventory)
    assert bad.returncode != 0
    assert "ai4os_nomad_region" in bad.stdout and "fix:" in bad.stdout, bad.stdout
