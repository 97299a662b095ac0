"""Role docker: engine running with the kit's daemon.json; /nomad-storage shared."""

import json

testinfra_hosts = ["ai4os-docker-1"]  # the other nodes of the scenario serve the firewall tests


def test_daemon_json(host):
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["data-root"] == "/data/docker"
    assert daemon["exec-opts"] == ["native.cgroupdriver=systemd"]
    assert daemon["log-opts"] == {"max-size": "20m", "max-file": "5"}
    assert daemon["registry-mirrors"] == ["https://registry-cache.testbed.ai4os.test"]
    assert "runtimes" not in daemon  # no nvidia runtime on a CPU node


def test_engine_uses_the_configuration(host):
    assert host.service("docker").is_running
    with host.sudo():
        info = host.check_output("docker info --format '{{.DockerRootDir}} {{.CgroupDriver}} {{.Driver}}'")
    assert info == "/data/docker systemd overlay2"


def test_engine_runs_a_container(host):
    # No registry here: a one-binary image made from the node's own /usr/bin/true.
    script = (
        "set -e; tar -ch -C / usr/bin/true lib64/ld-linux-x86-64.so.2 lib/x86_64-linux-gnu/libc.so.6 "
        "| docker import - ai4os-probe:1 >/dev/null; docker run --rm ai4os-probe:1 /usr/bin/true && echo ran"
    )
    with host.sudo():
        out = host.run(f"bash -c '{script}'")
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "ran"


def test_data_root_on_the_data_volume(host):
    # dockerd may bind-mount its root onto itself; what counts is the device under it.
    data_device = host.file("/etc/ai4os-testbed/loop-data").content_string.strip()
    assert host.check_output("df --output=source /data/docker | tail -n 1") == data_device


def test_nomad_storage_shared_propagation(host):
    assert host.service("ai4os-nomad-storage").is_enabled
    # "shared" on a host; "shared,slave" inside a container (the node's root is a slave of the host's).
    propagation = host.check_output("findmnt -n -o PROPAGATION --mountpoint /nomad-storage").split(",")
    assert "shared" in propagation
