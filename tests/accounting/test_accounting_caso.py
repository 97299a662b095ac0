"""cASO, as installed with the kit, run against the local OpenStack test-bed with the configuration the
accounting role renders: VM records (APEL cloud v0.4) and GPU accelerator records of a tagged project land
in a real dirq queue, the one ssmsend reads.

The test-bed (scripts/openstack-testbed, started by .ci/setup.d/20-openstack.sh) is a real Keystone, Nova
(fake virt driver), Glance and Neutron; nothing here is a test double. The test FAILS in CI (CI=true) when
the test-bed is not up and is skipped elsewhere with the reason. What it creates (project, users, flavor,
network, servers) carries a random suffix and is deleted afterwards.

What an operator does at a site, done here with the admin account as docs/accounting.md tells it: tag the
project (accounting_caso_tag) and give it the VO property (accounting_caso_vo_property), set the
Accelerator:* extra specs on the GPU flavor, and give cASO's user the reader role on the project and on
the system.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support import openstack_testbed
import pytest
import yaml
from apel_queue import queued_records
from role_render import ROLE, render_role

ADMIN_CLOUD = "ai4os-testbed-admin"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
VO = "vo.caso-test.ai4os.eu"
SITE = "AI4OS-TESTBED"
GPU_SPECS = {"Accelerator:Type": "GPU", "Accelerator:Vendor": "NVIDIA", "Accelerator:Model": "A100",
             "Accelerator:Number": "2"}
TIMEOUT_S = 240

pytestmark = pytest.mark.integration


def _admin() -> Any:
    """An admin connection to the test-bed; fails in CI, skips elsewhere when the test-bed is not up."""
    openstack_testbed.require(ADMIN_CLOUD)
    return openstack_testbed.connect(ADMIN_CLOUD)


def _wait(what: str, done: Any) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        result = done()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"test-bed: {what} did not happen within {TIMEOUT_S} s")


@pytest.fixture(scope="module")
def site() -> Iterator[dict[str, Any]]:
    """A project accounted by cASO, with a running GPU server and a deleted CPU server."""
    import openstack

    admin = _admin()
    idn = admin.identity
    suffix = secrets.token_hex(3)
    made: dict[str, Any] = {"suffix": suffix}
    try:
        project = idn.create_project(name=f"ai4os-caso-{suffix}", domain_id="default",
                                     tags=[DEFAULTS["accounting_caso_tag"]])
        made["project"] = project.id
        # `openstack project set --property accounting:VO=...`: a free-form attribute of the project
        reply = idn.patch(f"/projects/{project.id}", json={"project": {DEFAULTS["accounting_caso_vo_property"]: VO}})
        assert reply.status_code == 200, reply.text
        password = secrets.token_urlsafe(16)
        reader, member = idn.find_role("reader"), idn.find_role("member")
        accountant = idn.create_user(name=f"ai4os-caso-{suffix}", password=password, domain_id="default")
        made["users"] = [accountant.id]
        idn.assign_project_role_to_user(project, accountant, reader)
        reply = idn.put(f"/system/users/{accountant.id}/roles/{reader.id}")  # finds projects by tag
        assert reply.status_code in (200, 201, 204), reply.text
        tenant_password = secrets.token_urlsafe(16)
        tenant = idn.create_user(name=f"ai4os-caso-tenant-{suffix}", password=tenant_password,
                                 domain_id="default", default_project_id=project.id)
        made["users"].append(tenant.id)
        idn.assign_project_role_to_user(project, tenant, member)

        net = admin.network.create_network(name=f"ai4os-caso-{suffix}", project_id=project.id)
        made["network"] = net.id
        admin.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.77.0.0/24", project_id=project.id)
        flavor = admin.compute.create_flavor(name=f"ai4os-caso-gpu-{suffix}", vcpus=2, ram=2048, disk=10,
                                             is_public=False)
        made["flavor"] = flavor.id
        admin.compute.create_flavor_extra_specs(flavor, GPU_SPECS)
        admin.compute.flavor_add_tenant_access(flavor, project.id)

        auth = admin.config.config["auth"]
        made.update(auth_url=auth["auth_url"], region=admin.config.get_region_name(), user=accountant.name,
                    password=password, tenant=tenant.name)
        conn = openstack.connect(auth_url=auth["auth_url"], username=tenant.name, password=tenant_password,
                                 project_id=project.id, user_domain_name="Default",
                                 region_name=made["region"], identity_api_version="3")
        image = next(i for i in conn.image.images() if i.status == "active")
        small = conn.compute.find_flavor("m1.small", ignore_missing=False)
        made["small"] = {"vcpus": small.vcpus, "ram": small.ram, "disk": small.disk}
        gpu_server = conn.compute.create_server(name="caso-gpu-vm", flavor_id=flavor.id, image_id=image.id,
                                                networks=[{"uuid": net.id}])
        cpu_server = conn.compute.create_server(name="caso-cpu-vm", flavor_id=small.id, image_id=image.id,
                                                networks=[{"uuid": net.id}])
        made["servers"] = [gpu_server.id, cpu_server.id]
        for server in (gpu_server, cpu_server):
            conn.compute.wait_for_server(server, wait=TIMEOUT_S)
        conn.compute.delete_server(cpu_server)
        _wait("deleting the CPU server", lambda: conn.compute.find_server(cpu_server.id) is None)
        made.update(gpu_server=gpu_server.id, cpu_server=cpu_server.id)
        test_project = idn.find_project("ai4os-test", domain_id="default")
        made["untagged"] = test_project.id if test_project else None
        conn.close()
        yield made
    finally:
        _clean(admin, made)
        admin.close()


def _clean(admin: Any, made: dict[str, Any]) -> None:
    """Delete what the fixture made; a failure to clean up fails the test too (the next run would trip on it)."""
    problems = []
    for server in made.get("servers", []):
        try:
            if admin.compute.find_server(server, all_projects=True) is not None:
                admin.compute.delete_server(server, ignore_missing=True)
                _wait(f"deleting server {server}",
                      lambda: admin.compute.find_server(server, all_projects=True) is None)
        except Exception as exc:
            problems.append(f"server {server}: {exc}")
    steps = [("flavor", lambda i: admin.compute.delete_flavor(i, ignore_missing=True)),
             ("network", lambda i: admin.network.delete_network(i, ignore_missing=True)),
             ("project", lambda i: admin.identity.delete_project(i, ignore_missing=True))]
    for key, delete in steps:
        if made.get(key):
            try:
                if key == "network":
                    for port in admin.network.ports(network_id=made[key]):
                        admin.network.delete_port(port, ignore_missing=True)
                delete(made[key])
            except Exception as exc:
                problems.append(f"{key} {made[key]}: {exc}")
    for user in made.get("users", []):
        try:
            admin.identity.delete_user(user, ignore_missing=True)
        except Exception as exc:
            problems.append(f"user {user}: {exc}")
    assert not problems, f"test-bed clean-up failed (suffix {made['suffix']}): {problems}"


def test_caso_with_the_role_configuration_queues_vm_and_gpu_records(site: dict[str, Any], tmp_path: Path) -> None:
    outgoing, state = tmp_path / "outgoing", tmp_path / "state"
    entry = {"name": "testbed", "site_name": SITE, "auth_url": site["auth_url"], "username": site["user"],
             "password": site["password"], "region_name": site["region"]}
    proc = render_role(tmp_path / "rendered", {"accounting_caso_sites": [entry],
                                               "accounting_outgoing_dir": str(outgoing),
                                               "accounting_state_dir": str(state)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (state / "caso-testbed").mkdir(parents=True)  # the role creates it
    conf = tmp_path / "rendered" / "caso-testbed.conf"
    started = int(time.time())
    run = subprocess.run([str(Path(sys.executable).parent / "caso-extract"), "--config-file", str(conf)],
                         capture_output=True, text=True, timeout=300)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    # cASO logs an extractor's failure and still exits 0 (other tagged projects of a shared test-bed may fail)
    assert f"Extracting records for project '{site['project']}'" in log, log[-4000:]
    assert f"cannot extract records for '{site['project']}'" not in log, log[-4000:]

    cloud, accelerator = queued_records(outgoing)
    records = {r["VMUUID"]: r for r in cloud}
    assert {site["gpu_server"], site["cpu_server"]} <= set(records), log[-4000:]
    assert site["untagged"] not in {r["LocalGroupId"] for r in cloud}  # untagged projects are not accounted
    gpu, cpu = records[site["gpu_server"]], records[site["cpu_server"]]
    for record in (gpu, cpu):
        assert (record["SiteName"], record["FQAN"], record["LocalGroupId"]) == (SITE, VO, site["project"])
        assert record["GlobalUserName"] == site["tenant"]  # needs the reader role on the system
        assert int(record["StartTime"]) <= started and int(record["WallDuration"]) >= 1
    assert (gpu["MachineName"], gpu["Status"], gpu["EndTime"]) == ("caso-gpu-vm", "started", "0")
    assert (int(gpu["CpuCount"]), int(gpu["Memory"]), int(gpu["Disk"])) == (2, 2048, 10)
    assert (cpu["MachineName"], cpu["Status"]) == ("caso-cpu-vm", "completed")
    assert int(cpu["StartTime"]) <= int(cpu["EndTime"]) <= started
    assert (int(cpu["CpuCount"]), int(cpu["Memory"]), int(cpu["Disk"])) == (
        site["small"]["vcpus"], site["small"]["ram"], site["small"]["disk"])

    (gpu_record,) = [r for r in accelerator if r["AssociatedRecord"] == site["gpu_server"]]
    assert (gpu_record["Type"], gpu_record["Model"], gpu_record["Count"]) == ("GPU", "NVIDIA A100", 2)
    assert (gpu_record["FQAN"], gpu_record["SiteName"], gpu_record["AssociatedRecordType"]) == (VO, SITE, "cloud")
    now = time.gmtime(started)
    assert (gpu_record["MeasurementYear"], gpu_record["MeasurementMonth"]) == (now.tm_year, now.tm_mon)
    assert 1 <= gpu_record["AvailableDuration"] <= int(gpu["WallDuration"]) + 5
    assert not [r for r in accelerator if r["AssociatedRecord"] == site["cpu_server"]]  # no GPU flavor
    assert list((state / "caso-testbed").glob("lastrun.*")), "cASO keeps its cursor in the state directory"
