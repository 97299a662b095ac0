"""Register the test-bed's services and endpoints in Keystone (idempotent).

Run by start.sh with the OpenStack venv's Python once Keystone is up.
"""

import os

import openstack

HOST = "127.0.0.1"
REGION = "RegionOne"
SERVICES = {
    # type: (name, url)
    "placement": ("placement", f"http://{HOST}:8778"),
    "compute": ("nova", f"http://{HOST}:8774/v2.1"),
    "image": ("glance", f"http://{HOST}:9292"),
    "network": ("neutron", f"http://{HOST}:9696"),
    "block-storage": ("cinderv3", f"http://{HOST}:8776/v3/%(project_id)s"),
}


def admin() -> openstack.connection.Connection:
    return openstack.connect(
        auth_url=f"http://{HOST}:5000/v3", username="admin", password=os.environ.get("ADMIN_PASS", "ai4os-testbed-admin"),
        project_name="admin", user_domain_name="Default", project_domain_name="Default", region_name=REGION,
    )


def main() -> None:
    conn = admin()
    identity = conn.identity
    for service_type, (name, url) in SERVICES.items():
        service = next(iter(identity.services(type=service_type)), None) or identity.create_service(
            name=name, type=service_type, is_enabled=True)
        have = {e.interface for e in identity.endpoints(service_id=service.id)}
        for interface in ("public", "internal", "admin"):
            if interface not in have:
                identity.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=REGION)
    if not identity.find_project("service", domain_id="default"):
        identity.create_project(name="service", domain_id="default", description="test-bed services")
    print("catalog ready")


if __name__ == "__main__":
    main()
