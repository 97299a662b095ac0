"""Bootstrap the test-bed's tenant side (idempotent) and write clouds.yaml.

Creates: project ai4os-test with a member user and an application credential;
quotas sized for the kit's tests; flavors (plain and GPU flavors carrying
Accelerator:* extra specs and a PCI alias for the simulated NVIDIA GPUs, one
of them private); two images with os_distro/os_version properties; a project
network, an external network for floating IPs; a key pair; and the egi.eu
identity provider with an `openid` protocol (Keystone federation as on EGI
sites). Run by bootstrap.sh with the OpenStack venv's Python.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import openstack
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
import yaml

HOST = "127.0.0.1"
AUTH_URL = f"http://{HOST}:5000/v3"
REGION = "RegionOne"
ADMIN_PASS = os.environ.get("ADMIN_PASS", "ai4os-testbed-admin")
PROJECT = "ai4os-test"
MEMBER = "ai4os-member"
MEMBER_PASS = "ai4os-testbed-member"
APP_CRED = "ai4os-tests"
KEYPAIR = "ai4os-operator"
CHECKIN_ISSUER = "https://aai.egi.eu/auth/realms/egi"

# Sizes the tests reason about: change tests/cloud together with these.
QUOTA = {"instances": 20, "cores": 200, "ram": 512 * 1024, "volumes": 20, "gigabytes": 4000,
         "floatingips": 4, "networks": 10, "routers": 4}
GPU_SPECS = {"Accelerator:Type": "GPU", "Accelerator:Vendor": "NVIDIA", "Accelerator:Model": "A100 80GB PCIe"}
FLAVORS = [
    # name, vcpus, ram MiB, disk GB, extra specs, public
    ("m1.small", 1, 2048, 20, {}, True),
    ("m1.medium", 2, 4096, 20, {}, True),
    ("m1.large", 4, 8192, 40, {}, True),
    ("m1.xlarge", 8, 16384, 80, {}, True),
    ("m1.2xlarge", 16, 32768, 80, {}, True),
    ("g1.a100.1", 8, 32768, 80, {**GPU_SPECS, "Accelerator:Number": "1",
                                  "pci_passthrough:alias": "nvidia-a100:1"}, True),
    ("g1.a100.2", 16, 65536, 80, {**GPU_SPECS, "Accelerator:Number": "2",
                                   "pci_passthrough:alias": "nvidia-a100:2"}, True),
    ("p1.a100.1", 8, 32768, 80, {**GPU_SPECS, "Accelerator:Number": "1",
                                  "pci_passthrough:alias": "nvidia-a100:1"}, False),
]
IMAGES = [
    ("ubuntu-22.04", {"os_distro": "ubuntu", "os_version": "22.04"}),
    ("ubuntu-20.04", {"os_distro": "ubuntu", "os_version": "20.04"}),
]


def connect(**auth: str) -> openstack.connection.Connection:
    return openstack.connect(auth_url=AUTH_URL, region_name=REGION, user_domain_name="Default",
                             project_domain_name="Default", **auth)


def ensure_identity(admin: openstack.connection.Connection) -> tuple[str, str]:
    idn = admin.identity
    project = idn.find_project(PROJECT, domain_id="default") or idn.create_project(
        name=PROJECT, domain_id="default", description="ai4os-kit tests")
    user = idn.find_user(MEMBER, domain_id="default") or idn.create_user(
        name=MEMBER, password=MEMBER_PASS, domain_id="default", default_project_id=project.id)
    for role_name in ("member", "reader"):
        role = idn.find_role(role_name)
        idn.assign_project_role_to_user(project, user, role)
    admin_user = idn.find_user("admin", domain_id="default")
    idn.assign_project_role_to_user(project, admin_user, idn.find_role("admin"))
    return project.id, user.id


def ensure_federation(admin: openstack.connection.Connection, project_id: str) -> None:
    """The EGI Check-in identity provider as EGI sites configure it (idp egi.eu, protocol openid)."""
    idn = admin.identity
    group = idn.find_group("egi-vo-members", domain_id="default") or idn.create_group(
        name="egi-vo-members", domain_id="default")
    idn.assign_project_role_to_group(project_id, group, idn.find_role("member"))
    rules = [{"local": [{"user": {"name": "{0}", "type": "ephemeral"}, "group": {"id": group.id}}],
              "remote": [{"type": "HTTP_OIDC_SUB"}, {"type": "HTTP_OIDC_ISS", "any_one_of": [CHECKIN_ISSUER]}]}]
    if not idn.find_mapping("egi-checkin"):
        idn.create_mapping(id="egi-checkin", rules=rules)
    if not idn.find_identity_provider("egi.eu"):
        idn.create_identity_provider(id="egi.eu", remote_ids=[CHECKIN_ISSUER], domain_id="default", is_enabled=True)
    if not any(p.id == "openid" for p in idn.federation_protocols("egi.eu")):
        idn.create_federation_protocol("egi.eu", id="openid", mapping_id="egi-checkin")


def ensure_quotas(admin: openstack.connection.Connection, project_id: str) -> None:
    admin.set_compute_quotas(project_id, instances=QUOTA["instances"], cores=QUOTA["cores"], ram=QUOTA["ram"])
    admin.set_volume_quotas(project_id, volumes=QUOTA["volumes"], gigabytes=QUOTA["gigabytes"])
    admin.set_network_quotas(project_id, floatingip=QUOTA["floatingips"], network=QUOTA["networks"],
                             router=QUOTA["routers"])


def ensure_flavors(admin: openstack.connection.Connection, project_id: str) -> None:
    for name, vcpus, ram, disk, specs, public in FLAVORS:
        flavor = admin.compute.find_flavor(name, ignore_missing=True)
        if flavor is None:
            flavor = admin.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=public)
            if not public:
                admin.compute.flavor_add_tenant_access(flavor, project_id)
        if specs:
            admin.compute.create_flavor_extra_specs(flavor, specs)


def ensure_images(admin: openstack.connection.Connection, project_id: str) -> None:
    for name, props in IMAGES:
        if admin.image.find_image(name, ignore_missing=True):
            continue
        admin.image.create_image(name, data=io.BytesIO(b"\0" * 1024), disk_format="raw", container_format="bare",
                                 visibility="public", wait=True, timeout=120, **props)
    deadline = time.monotonic() + 120
    while any(admin.image.find_image(n).status != "active" for n, _ in IMAGES):
        if time.monotonic() > deadline:
            sys.exit("images did not become active")
        time.sleep(1)


def ensure_networks(admin: openstack.connection.Connection, project_id: str) -> None:
    net = admin.network
    public = net.find_network("public")
    if public is None:
        public = net.create_network(name="public", is_router_external=True, provider_network_type="flat",
                                    provider_physical_network="public")
        net.create_subnet(network_id=public.id, name="public-subnet", ip_version=4, cidr="203.0.113.0/24",
                          gateway_ip="203.0.113.1", is_dhcp_enabled=False)
    if net.find_network("ai4os-net", project_id=project_id) is None:
        private = net.create_network(name="ai4os-net", project_id=project_id)
        net.create_subnet(network_id=private.id, name="ai4os-subnet", ip_version=4, cidr="10.10.0.0/24",
                          project_id=project_id)
    if net.find_router("ai4os-router", project_id=project_id) is None:
        # Floating IPs need a router between the project subnet and the external network.
        subnet = net.find_subnet("ai4os-subnet", project_id=project_id)
        router = net.create_router(name="ai4os-router", project_id=project_id,
                                   external_gateway_info={"network_id": public.id})
        net.add_interface_to_router(router, subnet_id=subnet.id)


def operator_public_key() -> str:
    """A fresh ed25519 public key in OpenSSH format (the private half is not kept: nothing boots)."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " ai4os-testbed"


def ensure_member_side(project_id: str) -> dict[str, str]:
    member = connect(username=MEMBER, password=MEMBER_PASS, project_id=project_id)
    if member.compute.find_keypair(KEYPAIR, ignore_missing=True) is None:
        member.compute.create_keypair(name=KEYPAIR, public_key=operator_public_key())
    user_id = member.current_user_id
    for cred in member.identity.application_credentials(user=user_id):
        if cred.name == APP_CRED:
            member.identity.delete_application_credential(user_id, cred.id)
    cred = member.identity.create_application_credential(user_id, APP_CRED, description="ai4os-kit tests")
    return {"application_credential_id": cred.id, "application_credential_secret": cred.secret}


def write_clouds(path: Path, project_id: str, app_cred: dict[str, str]) -> None:
    base = {"region_name": REGION, "identity_api_version": 3, "interface": "public"}
    clouds = {
        "ai4os-testbed": {**base, "auth_type": "v3applicationcredential",
                          "auth": {"auth_url": AUTH_URL, **app_cred}},
        "ai4os-testbed-member": {**base, "auth": {"auth_url": AUTH_URL, "username": MEMBER, "password": MEMBER_PASS,
                                                  "project_id": project_id, "user_domain_name": "Default"}},
        "ai4os-testbed-admin": {**base, "auth": {"auth_url": AUTH_URL, "username": "admin", "password": ADMIN_PASS,
                                                 "project_name": "admin", "user_domain_name": "Default",
                                                 "project_domain_name": "Default"}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# Written by scripts/openstack-testbed/bootstrap.py for the local test-bed.\n")
        yaml.safe_dump({"clouds": clouds}, out, sort_keys=False)


def wait_for_hypervisor(admin: openstack.connection.Connection) -> None:
    deadline = time.monotonic() + 180
    while not list(admin.compute.hypervisors()):
        if time.monotonic() > deadline:
            sys.exit("nova-compute did not register a hypervisor in 180 s")
        time.sleep(2)


def main() -> None:
    clouds_file = Path(sys.argv[1])
    admin = connect(username="admin", password=ADMIN_PASS, project_name="admin")
    project_id, _user = ensure_identity(admin)
    ensure_federation(admin, project_id)
    ensure_quotas(admin, project_id)
    ensure_flavors(admin, project_id)
    ensure_networks(admin, project_id)
    ensure_images(admin, project_id)
    app_cred = ensure_member_side(project_id)
    write_clouds(clouds_file, project_id, app_cred)
    wait_for_hypervisor(admin)
    print(f"bootstrapped project {PROJECT} ({project_id}); clouds.yaml: {clouds_file}")


if __name__ == "__main__":
    main()
