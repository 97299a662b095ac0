"""Role preflight changes nothing it checks: the squatting process still runs."""


def test_checks_left_the_port_owner_alone(host):
    assert host.service("testbed-squatter").is_running
    assert host.socket("tcp://0.0.0.0:4646").is_listening


def test_tools_installed(host):
    assert host.package("pciutils").is_installed
