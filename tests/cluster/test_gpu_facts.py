"""gpu_facts: parsing real H100 nvidia-smi/NVML output, health, and the module end to end.

No GPU can be obtained on the test machines: the end-to-end tests use a *test double*
of nvidia-smi (a shell script printing the real H100 output captured in data/gpu-h100).
The live check on a real GPU is scripts/device/gpu_facts_check.sh.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from support.cluster_helpers import ansible_bin, ansible_env
from support import plugins

gpu = plugins.load("plugins/module_utils/ai4os_gpu.py")

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_UUID = "GPU-00000000-1111-2222-3333-444444444444"


def test_query_csv_of_a_real_h100(h100: Path) -> None:
    gpus = gpu.parse_query_csv((h100 / "nvidia-smi-query.csv").read_text())
    assert len(gpus) == 1
    card = gpus[0]
    assert card["index"] == 0
    assert card["name"] == H100_NAME
    assert card["uuid"] == H100_UUID
    assert card["memory_mib"] == 81559
    assert card["driver_version"] == "580.159.04"
    assert card["compute_capability"] == "9.0"
    assert card["pci_device_id"] == "0x233010de"
    assert card["mig_mode"] == "Disabled"
    assert card["ecc_mode"] == "Enabled"
    assert card["broken"] is False


def test_xml_of_a_real_h100(h100: Path) -> None:
    report = gpu.parse_smi_xml((h100 / "nvidia-smi-q.xml").read_text())
    assert report["driver_version"] == "580.159.04"
    assert report["cuda_version"] == "13.0"
    assert report["attached"] == 1
    assert report["gpus"][0]["uuid"] == H100_UUID
    assert report["gpus"][0]["memory_mib"] == 81559
    assert report["gpus"][0]["healthy"] is True


def test_nvml_report_of_a_real_h100(h100: Path) -> None:
    report = gpu.parse_nvml_report(json.loads((h100 / "nvml.json").read_text()))
    assert report["driver_version"] == "580.159.04"
    assert report["cuda_version"] == "13.0"
    # NVML counts bytes, nvidia-smi MiB: 85520809984 B = 81559 MiB
    assert report["gpus"][0]["memory_mib"] == 81559


def test_all_sources_agree_on_the_h100(h100: Path) -> None:
    facts = gpu.summarize(
        gpu.parse_query_csv((h100 / "nvidia-smi-query.csv").read_text()),
        gpu.parse_smi_xml((h100 / "nvidia-smi-q.xml").read_text()),
        gpu.parse_nvml_report(json.loads((h100 / "nvml.json").read_text())),
    )
    assert facts["present"] is True
    assert facts["count"] == 1
    assert facts["model"] == H100_NAME
    assert facts["models"] == [H100_NAME]
    assert facts["memory_mib"] == 81559
    assert facts["memory_total_mib"] == 81559
    assert facts["driver_version"] == "580.159.04"
    assert facts["cuda_version"] == "13.0"
    assert facts["problems"] == []
    assert facts["nvml_healthy"] is True
    assert "broken" not in facts["gpus"][0]
    assert gpu.short_model(facts["model"]) == "H100 80GB HBM3"


def _with_extra_rows(csv_text: str, count: int) -> str:
    """Derived from the real H100 row: the same card repeated with new index/uuid (an 8-GPU box)."""
    header, row = csv_text.strip().splitlines()[:2]
    rows = [header]
    for index in range(count):
        fields = row.split(", ")
        fields[0] = str(index)
        fields[2] = H100_UUID[:-2] + "%02d" % index
        rows.append(", ".join(fields))
    return "\n".join(rows) + "\n"


def test_multi_gpu_box_counts_and_sums(h100: Path) -> None:
    gpus = gpu.parse_query_csv(_with_extra_rows((h100 / "nvidia-smi-query.csv").read_text(), 8))
    facts = gpu.summarize(gpus)
    assert facts["count"] == 8
    assert facts["memory_total_mib"] == 8 * 81559
    assert [g["index"] for g in facts["gpus"]] == list(range(8))
    assert facts["nvml_healthy"] is True


def test_noheader_nounits_csv_is_refused() -> None:
    with pytest.raises(gpu.GpuParseError, match="--format=csv"):
        gpu.parse_query_csv("0, NVIDIA H100 80GB HBM3, 81559\n")


def test_lost_gpu_is_unhealthy(h100: Path) -> None:
    text = (h100 / "nvidia-smi-query.csv").read_text().replace("36, 0 %", "[GPU is lost], [GPU is lost]")
    facts = gpu.summarize(gpu.parse_query_csv(text))
    assert facts["nvml_healthy"] is False
    assert "reports an error value" in facts["problems"][0]


def test_pending_row_remap_is_unhealthy(h100: Path) -> None:
    xml = (h100 / "nvidia-smi-q.xml").read_text().replace(
        "<remapped_row_pending>No</remapped_row_pending>", "<remapped_row_pending>Yes</remapped_row_pending>"
    )
    facts = gpu.summarize(gpu.parse_query_csv((h100 / "nvidia-smi-query.csv").read_text()), gpu.parse_smi_xml(xml))
    assert facts["nvml_healthy"] is False
    assert "remapped rows pending Yes" in facts["problems"][0]


def test_nvml_and_smi_disagreeing_is_unhealthy(h100: Path) -> None:
    nvml = json.loads((h100 / "nvml.json").read_text())
    nvml["gpus"] = []
    facts = gpu.summarize(
        gpu.parse_query_csv((h100 / "nvidia-smi-query.csv").read_text()), None, gpu.parse_nvml_report(nvml)
    )
    assert facts["nvml_healthy"] is False
    assert "NVML sees GPUs []" in facts["problems"][0]


def test_no_gpu_is_not_present() -> None:
    facts = gpu.summarize([])
    assert facts == {
        "present": False,
        "count": 0,
        "model": None,
        "models": [],
        "memory_mib": None,
        "memory_total_mib": 0,
        "driver_version": None,
        "cuda_version": None,
        "nvml_healthy": False,
        "problems": ["nvidia-smi lists no GPU"],
        "gpus": [],
    }


def test_driver_unreachable_message_is_found() -> None:
    out = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n"
    )
    assert gpu.no_driver_reason(out).startswith("NVIDIA-SMI has failed")
    assert gpu.no_driver_reason("all fine\n") is None


def test_broken_xml_is_a_parse_error() -> None:
    with pytest.raises(gpu.GpuParseError, match="not XML"):
        gpu.parse_smi_xml("<nvidia_smi_log>")


# --- the module, run by ansible on localhost -------------------------------------------


def _fake_smi(tmp_path: Path, h100: Path, failing: bool = False) -> Path:
    """TEST DOUBLE of nvidia-smi (no GPU here): prints the real H100 output."""
    script = tmp_path / "fake-nvidia-smi"
    if failing:
        body = (
            'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver." \n'
            "exit 9\n"
        )
    else:
        body = textwrap.dedent(
            f"""\
            case "$1" in
              -q) cat '{h100 / "nvidia-smi-q.xml"}' ;;
              --query-gpu=*) cat '{h100 / "nvidia-smi-query.csv"}' ;;
              *) echo "unexpected arguments: $*" >&2; exit 2 ;;
            esac
            """
        )
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def _module(tmp_path: Path, args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [ansible_bin("ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", "gpu_facts", "-a", args, "-o"],
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout.strip().splitlines()[-1]
    return proc.returncode, json.loads(out.split("=>", 1)[1])


def test_module_reports_the_h100(tmp_path: Path, h100: Path) -> None:
    smi = _fake_smi(tmp_path, h100)
    rc, result = _module(tmp_path, f"nvidia_smi={smi} require_gpu=true use_nvml=false")
    assert rc == 0, result
    facts = result["ansible_facts"]["ai4os_gpu"]
    assert facts["model"] == H100_NAME
    assert facts["count"] == 1
    assert facts["memory_mib"] == 81559
    assert facts["driver_version"] == "580.159.04"
    assert facts["nvml_healthy"] is True
    assert result["changed"] is False


def test_module_fails_on_gpu_node_without_driver(tmp_path: Path, h100: Path) -> None:
    smi = _fake_smi(tmp_path, h100, failing=True)
    rc, result = _module(tmp_path, f"nvidia_smi={smi} require_gpu=true host_label=ifca-gpu-1")
    assert rc != 0
    assert result["msg"].startswith("ifca-gpu-1 is a GPU node but no healthy NVIDIA GPU is visible")
    assert "couldn't communicate with the NVIDIA driver" in result["msg"]
    assert "Fix: give the node a GPU flavor" in result["msg"]


def test_module_fails_on_gpu_node_without_nvidia_smi(tmp_path: Path) -> None:
    rc, result = _module(tmp_path, f"nvidia_smi={tmp_path}/absent/nvidia-smi require_gpu=true host_label=ifca-gpu-2")
    assert rc != 0
    assert "ifca-gpu-2 is a GPU node" in result["msg"]


def test_module_without_requirement_just_reports_absence(tmp_path: Path) -> None:
    rc, result = _module(tmp_path, "nvidia_smi=nvidia-smi-not-installed")
    assert rc == 0
    assert result["ansible_facts"]["ai4os_gpu"]["present"] is False
