"""Role volumes: the data volume is xfs, mounted at /data, in fstab by UUID."""


def data_device(host) -> str:
    return host.file("/etc/ai4os-testbed/loop-data").content_string.strip()


def test_xfs_created_with_label(host):
    dev = data_device(host)
    with host.sudo():
        assert host.check_output(f"blkid -s TYPE -o value {dev}") == "xfs"
        assert host.check_output(f"blkid -s LABEL -o value {dev}") == "ai4os-data"


def test_mounted_at_data_dir(host):
    mount = host.mount_point("/data")
    assert mount.exists
    assert mount.filesystem == "xfs"
    assert mount.device == data_device(host)
    assert "noatime" in mount.options


def test_fstab_entry_by_uuid(host):
    uuid = host.check_output(f"blkid -s UUID -o value {data_device(host)}")
    entries = [line.split() for line in host.file("/etc/fstab").content_string.splitlines() if line.strip()]
    assert [f"UUID={uuid}", "/data", "xfs"] in [entry[:3] for entry in entries]


def test_volume_is_writable(host):
    assert host.run("touch /data/.probe && rm /data/.probe").rc == 0


def test_refused_disks_were_not_mounted(host):
    assert not host.mount_point("/data-ext4").exists
    assert not host.mount_point("/data-missing").exists


def test_failed_quota_mount_left_no_fstab_entry(host):
    # Where pquota could not be mounted (this kernel) the role removed its fstab line again.
    if host.mount_point("/data-quota").exists:
        assert "prjquota" in host.mount_point("/data-quota").options
    else:
        assert "/data-quota" not in host.file("/etc/fstab").content_string
