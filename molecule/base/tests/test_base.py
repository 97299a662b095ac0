"""Behaviour of role base on a converged test-bed node."""

import pytest


def test_admin_account(host):
    user = host.user("opsadmin")
    assert user.exists
    assert "sudo" in user.groups
    assert user.password in ("!", "!*")  # key-only: no usable password
    keys = host.file("/home/opsadmin/.ssh/authorized_keys")
    assert keys.mode == 0o600
    assert keys.content_string.strip().endswith("molecule@ai4os")
    assert not host.user("formeradmin").exists


def test_admin_can_sudo_without_password(host):
    with host.sudo():
        out = host.run("sudo -n -u opsadmin sudo -n true")
    assert out.rc == 0, out.stderr


def test_sshd_effective_settings(host):
    with host.sudo():
        cfg = host.check_output("sshd -T")
    settings = dict(line.split(" ", 1) for line in cfg.splitlines())
    assert settings["passwordauthentication"] == "no"
    assert settings["permitrootlogin"] == "without-password"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["maxauthtries"] == "3"
    assert settings["x11forwarding"] == "no"


def test_sshd_running_and_listening(host):
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_sshd_refuses_password_login(host):
    # The daemon itself offers only public keys (no password, no keyboard-interactive).
    out = host.run(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o PreferredAuthentications=password "
        "opsadmin@127.0.0.1 true"
    )
    assert out.rc != 0
    assert "Permission denied (publickey)" in out.stderr


@pytest.mark.parametrize(
    "line",
    [
        "fs.inotify.max_user_watches = 1048576",
        "net.bridge.bridge-nf-call-iptables = 1",
        "net.ipv4.ip_forward = 1",
    ],
)
def test_sysctls_persisted(host, line):
    assert line in host.file("/etc/sysctl.d/60-ai4os.conf").content_string.splitlines()


def test_kernel_modules_at_boot(host):
    modules = host.file("/etc/modules-load.d/ai4os.conf").content_string.split()
    assert "br_netfilter" in modules


def test_time_sync(host):
    assert host.service("chrony").is_enabled
    assert "server ntp.example.org iburst" in host.file("/etc/chrony/conf.d/ai4os.conf").content_string


def test_package_hold(host):
    assert "hold" in host.check_output("dpkg --get-selections openssh-server")
