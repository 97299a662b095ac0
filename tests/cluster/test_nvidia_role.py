"""nvidia role, bad input: a GPU node without a GPU stops before anything is installed,
with a message naming the host and the fix.

The PCI bus is a *test double* (a directory shaped like /sys/bus/pci/devices with
`vendor` and `class` files): no GPU can be obtained on the test machines.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cluster_helpers import ROOT, run_playbook

PLAYBOOK = """\
- name: GPU check of the nvidia role
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the role's PCI check
      ansible.builtin.include_role:
        name: nvidia
        tasks_from: pci.yml
    - name: Report
      ansible.builtin.debug:
        msg: "GPUS={{ nvidia_pci_gpus }}"
"""


def _bus(tmp_path: Path, devices: dict[str, tuple[str, str]]) -> Path:
    bus = tmp_path / "pci"
    for address, (vendor, klass) in devices.items():
        (bus / address).mkdir(parents=True)
        (bus / address / "vendor").write_text(vendor + "\n")
        (bus / address / "class").write_text(klass + "\n")
    return bus


def _run(tmp_path: Path, bus: Path):
    bus.mkdir(exist_ok=True)
    playbook = tmp_path / "pci.yml"
    playbook.write_text(PLAYBOOK)
    return run_playbook(tmp_path, playbook, "-e", f"nvidia_pci_devices_dir={bus}")


VIRTIO_NET = ("0x1af4", "0x020000")
H100 = ("0x10de", "0x030200")  # the vendor/class of the H100 in data/gpu-h100 (PCI id 0x233010DE)
NVSWITCH = ("0x10de", "0x068000")


def test_gpu_node_with_a_gpu_passes(tmp_path: Path) -> None:
    proc = _run(tmp_path, _bus(tmp_path, {"0000:00:03.0": VIRTIO_NET, "0000:00:06.0": H100}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "GPUS=1" in proc.stdout


@pytest.mark.parametrize("devices", [{"0000:00:03.0": VIRTIO_NET}, {"0000:00:03.0": VIRTIO_NET, "0000:00:07.0": NVSWITCH}, {}])
def test_gpu_node_without_a_gpu_stops_with_host_and_fix(tmp_path: Path, devices: dict) -> None:
    proc = _run(tmp_path, _bus(tmp_path, devices) if devices else tmp_path / "empty")
    assert proc.returncode != 0
    assert "localhost is in the gpu pool (group nvidia) but has no NVIDIA GPU on its PCI bus" in proc.stdout
    assert "Fix: give the pool a flavor that passes a GPU through" in proc.stdout
    assert "GPUS=" not in proc.stdout


def test_role_files_exist() -> None:
    assert (ROOT / "roles" / "nvidia" / "tasks" / "pci.yml").is_file()
