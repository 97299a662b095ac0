#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ai4os-kit contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module: NVIDIA GPU facts (model, count, memory, driver, NVML health)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: F821 - Ansible module boilerplate

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU facts for node meta and PAPI's GPU model list
description:
  - Runs C(nvidia-smi --query-gpu=... --format=csv) and C(nvidia-smi -q -x) and,
    when the Python NVML binding (C(pynvml), package nvidia-ml-py) is importable,
    reads the same facts through NVML and cross-checks them.
  - Returns C(ansible_facts.ai4os_gpu) with the model, the GPU count, per-GPU and
    total memory (MiB), the driver and CUDA versions and whether NVML is healthy.
  - With O(require_gpu=true) it fails, naming the host and the fix, when no
    healthy GPU is visible (a GPU node without a GPU).
options:
  nvidia_smi:
    description: Path or name of the nvidia-smi binary.
    type: str
    default: nvidia-smi
  use_nvml:
    description: Cross-check through pynvml when it is importable.
    type: bool
    default: true
  require_gpu:
    description: Fail unless at least one healthy GPU is visible.
    type: bool
    default: false
  host_label:
    description: Name used for the host in failure messages (pass inventory_hostname).
    type: str
    default: ""
author: ai4os-kit contributors
"""

EXAMPLES = r"""
- name: Read GPU facts and insist on a GPU
  ai4os.platform.gpu_facts:
    require_gpu: true
    host_label: "{{ inventory_hostname }}"
"""

RETURN = r"""
ansible_facts:
  description: C(ai4os_gpu) with present, count, model, models, memory_mib,
    memory_total_mib, driver_version, cuda_version, nvml_healthy, problems, gpus.
  returned: always
  type: dict
"""

import os
import socket

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.ai4os.platform.plugins.module_utils import ai4os_gpu as gpu
except ImportError:  # used by path (ANSIBLE_MODULE_UTILS=plugins/module_utils)
    from ansible.module_utils import ai4os_gpu as gpu  # type: ignore[no-redef]

FIX = (
    "give the node a GPU flavor with the GPU passed through and the NVIDIA driver loaded "
    "(check `nvidia-smi` on the node), or move it out of the gpu pool in sites.yml"
)


def _run_smi(module, binary, args):
    rc, out, err = module.run_command([binary] + args)
    return rc, out, err


def _read_nvml():
    """NVML through pynvml, in the shape of tests/cluster/data/nvml.json; None if unavailable."""
    try:
        import pynvml  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    pynvml.nvmlInit()
    try:
        report = {
            "driver": _str(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver": pynvml.nvmlSystemGetCudaDriverVersion(),
            "gpus": [],
        }
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            report["gpus"].append(
                {
                    "index": index,
                    "name": _str(pynvml.nvmlDeviceGetName(handle)),
                    "uuid": _str(pynvml.nvmlDeviceGetUUID(handle)),
                    "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                }
            )
        return report
    finally:
        pynvml.nvmlShutdown()


def _str(value):
    return value.decode() if isinstance(value, bytes) else value


def gather(module):
    """Return (facts, failure message or None)."""
    params = module.params
    binary = params["nvidia_smi"]
    if "/" not in binary:
        binary = module.get_bin_path(binary)
    elif not os.access(binary, os.X_OK):
        binary = None
    if not binary:
        facts = gpu.summarize([])
        facts["problems"] = ["%s is not installed (no NVIDIA driver)" % params["nvidia_smi"]]
        return facts
    query = "--query-gpu=" + ",".join(gpu.QUERY_FIELDS)
    rc, out, err = _run_smi(module, binary, [query, "--format=csv"])
    if rc != 0:
        facts = gpu.summarize([])
        reason = gpu.no_driver_reason(out + "\n" + err) or (err or out).strip() or "exit code %d" % rc
        facts["problems"] = ["nvidia-smi failed: %s" % reason]
        return facts
    query_gpus = gpu.parse_query_csv(out)
    xml_report = None
    rc, out, err = _run_smi(module, binary, ["-q", "-x"])
    if rc == 0:
        xml_report = gpu.parse_smi_xml(out)
    nvml_report = None
    if params["use_nvml"]:
        try:
            raw = _read_nvml()
        except Exception as exc:  # pynvml raises NVMLError subclasses; any of them means NVML is not healthy
            facts = gpu.summarize(query_gpus, xml_report)
            facts["problems"].append("NVML failed: %s" % exc)
            facts["nvml_healthy"] = False
            return facts
        nvml_report = gpu.parse_nvml_report(raw) if raw is not None else None
    facts = gpu.summarize(query_gpus, xml_report, nvml_report)
    facts["nvml_source"] = "pynvml" if nvml_report is not None else "nvidia-smi"
    return facts


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi=dict(type="str", default="nvidia-smi"),
            use_nvml=dict(type="bool", default=True),
            require_gpu=dict(type="bool", default=False),
            host_label=dict(type="str", default=""),
        ),
        supports_check_mode=True,
    )
    try:
        facts = gather(module)
    except gpu.GpuParseError as exc:
        module.fail_json(msg="could not parse nvidia-smi output: %s" % exc)
    facts.setdefault("nvml_source", "none")
    host = module.params["host_label"] or socket.gethostname()
    if module.params["require_gpu"] and not facts["nvml_healthy"]:
        module.fail_json(
            msg="%s is a GPU node but no healthy NVIDIA GPU is visible: %s. Fix: %s."
            % (host, "; ".join(facts["problems"]) or "no GPU found", FIX),
            ansible_facts={"ai4os_gpu": facts},
        )
    module.exit_json(changed=False, ansible_facts={"ai4os_gpu": facts})


if __name__ == "__main__":
    main()
