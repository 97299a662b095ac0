# -*- coding: utf-8 -*-
# Copyright: ai4os-kit contributors
# Apache License 2.0 (see LICENSE)
"""Parse what ``nvidia-smi`` and NVML report into the kit's GPU facts.

Pure functions, no I/O: the ``gpu_facts`` module runs the commands and hands
their output here, the unit tests feed real H100 output (tests/cluster/data/).

Facts shape (``ai4os_gpu``)::

    {present, count, model, models, memory_mib, memory_total_mib,
     driver_version, cuda_version, nvml_healthy, problems: [str],
     gpus: [{index, name, uuid, memory_mib, compute_capability,
             pci_bus_id, pci_device_id, mig_mode, ecc_mode}]}

``model`` is the name NVML reports (the name the ``nomad-device-nvidia``
plugin fingerprints and PAPI lists), e.g. ``NVIDIA H100 80GB HBM3``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: F821 - Ansible module_utils boilerplate

import csv
import io
import re
import xml.etree.ElementTree as ElementTree

# The fields gpu_facts asks nvidia-smi for (``--query-gpu=...``), in order.
QUERY_FIELDS = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "driver_version",
    "compute_cap",
    "pci.bus_id",
    "pci.device_id",
    "mig.mode.current",
    "ecc.mode.current",
)

# Values nvidia-smi prints instead of a value; all mean "unknown".
_NOT_A_VALUE = ("[n/a]", "n/a", "[not supported]", "[unknown error]", "")

# Values that mean the GPU (or the driver's view of it) is broken.
_BROKEN_MARKERS = ("[gpu is lost]", "[gpu requires reset]", "err!", "[unknown error]")

# nvidia-smi messages that mean the driver/NVML cannot be reached at all.
NO_DRIVER_MARKERS = (
    "couldn't communicate with the nvidia driver",
    "nvml: driver/library version mismatch",
    "no devices were found",
    "unable to determine the device handle",
    "failed to initialize nvml",
)


class GpuParseError(ValueError):
    """nvidia-smi output could not be understood."""


def _field_name(header):
    """``memory.total [MiB]`` -> ``memory.total``."""
    return header.split("[", 1)[0].strip()


def _clean(value):
    value = value.strip()
    return None if value.lower() in _NOT_A_VALUE else value


def _mib(value):
    """``81559 MiB`` / ``81559`` -> 81559; unknown -> None."""
    value = _clean(value or "")
    if value is None:
        return None
    match = re.match(r"^(\d+)\s*(MiB)?$", value)
    if not match:
        raise GpuParseError("memory value %r is not in MiB" % value)
    return int(match.group(1))


def parse_query_csv(text):
    """Parse ``nvidia-smi --query-gpu=... --format=csv`` (with header).

    The header decides which column is which, so any superset of
    QUERY_FIELDS in any order is accepted. Returns a list of GPU dicts.
    """
    rows = [row for row in csv.reader(io.StringIO(text), skipinitialspace=True) if row]
    if not rows:
        return []
    header = [_field_name(h) for h in rows[0]]
    missing = [f for f in ("index", "name", "memory.total") if f not in header]
    if missing:
        raise GpuParseError(
            "nvidia-smi CSV has no header with %s (got %r); run it with --format=csv"
            % (", ".join(missing), rows[0])
        )
    gpus = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise GpuParseError("nvidia-smi CSV line %d has %d fields, header has %d" % (number, len(row), len(header)))
        gpus.append(_gpu_from_record(dict(zip(header, row))))
    return gpus


def _gpu_from_record(record):
    raw = [v.strip().lower() for v in record.values()]
    index = _clean(record.get("index", ""))
    return {
        "index": int(index) if index is not None else None,
        "name": _clean(record.get("name", "")),
        "uuid": _clean(record.get("uuid", "")),
        "memory_mib": _mib(record.get("memory.total", "")),
        "driver_version": _clean(record.get("driver_version", "")),
        "compute_capability": _clean(record.get("compute_cap", "")),
        "pci_bus_id": _clean(record.get("pci.bus_id", "")),
        "pci_device_id": _lower(_clean(record.get("pci.device_id", ""))),
        "mig_mode": _clean(record.get("mig.mode.current", "")),
        "ecc_mode": _clean(record.get("ecc.mode.current", "")),
        "broken": any(v in _BROKEN_MARKERS for v in raw),
    }


def _lower(value):
    return value.lower() if value else value


def _text(element, path):
    found = element.find(path)
    if found is None or found.text is None:
        return None
    return _clean(found.text)


def parse_smi_xml(text):
    """Parse ``nvidia-smi -q -x``: driver and CUDA version, per-GPU health.

    Returns ``{driver_version, cuda_version, attached, gpus: [{uuid, name,
    memory_mib, recovery_action, remapped_row_pending, remapped_row_failure,
    healthy}]}``.
    """
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise GpuParseError("nvidia-smi -q -x output is not XML: %s" % exc)
    if root.tag != "nvidia_smi_log":
        raise GpuParseError("nvidia-smi -q -x output has root <%s>, expected <nvidia_smi_log>" % root.tag)
    attached = _text(root, "attached_gpus")
    gpus = [_xml_gpu(gpu) for gpu in root.findall("gpu")]
    return {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
        "attached": int(attached) if attached is not None else len(gpus),
        "gpus": gpus,
    }


def _xml_gpu(gpu):
    recovery = _text(gpu, "gpu_recovery_action")
    pending = _text(gpu, "remapped_rows/remapped_row_pending")
    failure = _text(gpu, "remapped_rows/remapped_row_failure")
    healthy = (recovery in (None, "None")) and pending != "Yes" and failure != "Yes"
    return {
        "uuid": _text(gpu, "uuid"),
        "name": _text(gpu, "product_name"),
        "memory_mib": _mib(_text(gpu, "fb_memory_usage/total") or ""),
        "recovery_action": recovery,
        "remapped_row_pending": pending,
        "remapped_row_failure": failure,
        "healthy": healthy,
    }


def parse_nvml_report(report):
    """Normalise what the module reads through pynvml (see gpu_facts).

    ``report`` = ``{driver, cuda_driver, gpus: [{index, name, uuid,
    memory_total_bytes, ...}]}``; the same shape as tests/cluster/data/nvml.json.
    """
    cuda = report.get("cuda_driver")
    gpus = []
    for gpu in report.get("gpus", []):
        total = gpu.get("memory_total_bytes")
        gpus.append(
            {
                "index": gpu.get("index"),
                "name": gpu.get("name"),
                "uuid": gpu.get("uuid"),
                "memory_mib": int(total) // (1024 * 1024) if total is not None else None,
            }
        )
    return {
        "driver_version": report.get("driver"),
        "cuda_version": "%d.%d" % (cuda // 1000, (cuda % 1000) // 10) if isinstance(cuda, int) else None,
        "gpus": gpus,
    }


def summarize(query_gpus, xml_report=None, nvml_report=None):
    """Combine the parsed sources into the facts dict (see module doc)."""
    problems = []
    xml_report = xml_report or {}
    if not query_gpus:
        problems.append("nvidia-smi lists no GPU")
    for gpu in query_gpus:
        if gpu["broken"]:
            problems.append("GPU %s (%s) reports an error value" % (gpu["index"], gpu["uuid"]))
    for gpu in xml_report.get("gpus", []):
        if not gpu["healthy"]:
            problems.append(
                "GPU %s needs attention (recovery action %s, remapped rows pending %s, failure %s)"
                % (gpu["uuid"], gpu["recovery_action"], gpu["remapped_row_pending"], gpu["remapped_row_failure"])
            )
    if xml_report and xml_report.get("attached") != len(query_gpus):
        problems.append("nvidia-smi -q reports %s GPUs, the query %d" % (xml_report.get("attached"), len(query_gpus)))
    if nvml_report is not None:
        nvml_uuids = sorted(g["uuid"] for g in nvml_report["gpus"])
        smi_uuids = sorted(g["uuid"] for g in query_gpus)
        if nvml_uuids != smi_uuids:
            problems.append("NVML sees GPUs %s, nvidia-smi %s" % (nvml_uuids, smi_uuids))
    drivers = sorted(set(g["driver_version"] for g in query_gpus if g["driver_version"]))
    driver = drivers[0] if drivers else xml_report.get("driver_version")
    if nvml_report and nvml_report.get("driver_version") and driver and nvml_report["driver_version"] != driver:
        problems.append("NVML driver %s differs from nvidia-smi's %s" % (nvml_report["driver_version"], driver))
    names = [g["name"] for g in query_gpus if g["name"]]
    memories = [g["memory_mib"] for g in query_gpus if g["memory_mib"] is not None]
    cuda = xml_report.get("cuda_version") or (nvml_report or {}).get("cuda_version")
    return {
        "present": bool(query_gpus),
        "count": len(query_gpus),
        "model": _most_common(names),
        "models": sorted(set(names)),
        "memory_mib": min(memories) if memories else None,
        "memory_total_mib": sum(memories),
        "driver_version": driver,
        "cuda_version": cuda,
        "nvml_healthy": bool(query_gpus) and not problems,
        "problems": problems,
        "gpus": [dict((k, v) for k, v in g.items() if k != "broken") for g in query_gpus],
    }


def _most_common(names):
    if not names:
        return None
    return sorted(set(names), key=lambda n: (-names.count(n), n))[0]


def no_driver_reason(output):
    """The line of nvidia-smi's output that says the driver is unreachable, or None."""
    for line in (output or "").splitlines():
        if any(marker in line.lower() for marker in NO_DRIVER_MARKERS):
            return line.strip()
    return None


def short_model(name):
    """``NVIDIA H100 80GB HBM3`` -> ``H100 80GB HBM3`` (for node meta)."""
    if not name:
        return name
    for prefix in ("NVIDIA ", "Tesla "):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name
