#!/usr/bin/env bash
# Run the gpu_facts parser (plugins/module_utils/ai4os_gpu.py) against the LIVE
# nvidia-smi and NVML of a GPU machine, from the repository root:
#   bash scripts/device/gpu_facts_check.sh
# It prints the facts and exits non-zero unless they are complete, healthy and
# agree between nvidia-smi (CSV and XML) and NVML (pynvml, when importable).
# Writes the raw output under $OUT (if set) for adding new fixtures to tests/cluster/data/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$(mktemp -d)}"
fields="$(python3 -c 'import sys; sys.path.insert(0, "plugins/module_utils"); import ai4os_gpu; print(",".join(ai4os_gpu.QUERY_FIELDS))')"
nvidia-smi --query-gpu="$fields" --format=csv >"$out/query.csv"
nvidia-smi -q -x >"$out/q.xml"
python3 - "$out" <<'PY'
import json, sys
sys.path.insert(0, "plugins/module_utils")
import ai4os_gpu as gpu

out = sys.argv[1]
query = gpu.parse_query_csv(open(f"{out}/query.csv").read())
xml = gpu.parse_smi_xml(open(f"{out}/q.xml").read())
try:
    import pynvml
except ImportError:
    nvml = None
    print("pynvml not importable: NVML cross-check skipped")
else:
    pynvml.nvmlInit()
    raw = {"driver": pynvml.nvmlSystemGetDriverVersion(), "cuda_driver": pynvml.nvmlSystemGetCudaDriverVersion(), "gpus": []}
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        raw["gpus"].append({"index": i, "name": pynvml.nvmlDeviceGetName(h), "uuid": pynvml.nvmlDeviceGetUUID(h),
                            "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total)})
    pynvml.nvmlShutdown()
    raw = json.loads(json.dumps(raw, default=lambda b: b.decode()))
    json.dump(raw, open(f"{out}/nvml.json", "w"), indent=1)
    nvml = gpu.parse_nvml_report(raw)
facts = gpu.summarize(query, xml, nvml)
print(json.dumps(facts, indent=1))
bad = [k for k in ("model", "driver_version", "cuda_version", "memory_mib") if not facts[k]]
if bad or not facts["nvml_healthy"] or facts["count"] < 1:
    sys.exit(f"FAIL: missing {bad} or unhealthy: {facts['problems']}")
print(f"OK: {facts['count']} x {facts['model']} ({facts['memory_mib']} MiB), driver {facts['driver_version']}, CUDA {facts['cuda_version']}")
PY
