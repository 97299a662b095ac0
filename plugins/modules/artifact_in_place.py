"""Ansible module: is a verified release already installed on this host, exactly as the artifacts role leaves it?"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: F821 - Ansible module boilerplate

DOCUMENTATION = r"""
---
module: artifact_in_place
short_description: Read-only check that a release installed by the artifacts role is complete and unchanged
description:
  - Looks at what the artifacts role's install tasks leave on a host and reports
    whether all of it is there as they would leave it - the version directory
    (root:root, 0755), the verified archive in it (root:root, 0644, the pinned
    SHA-256), each binary with the SHA-256 read from inside the verified archive,
    owned by root with mode 0755, and each link on the PATH pointing at its binary.
  - The role runs its install tasks only when this says something differs, so a
    re-run costs one task per release instead of a dozen. Every binary and the
    archive are read and hashed on every run (nothing is trusted because it exists).
  - Changes nothing; supports check mode.
options:
  home:
    description: The release's version directory (C(/opt/ai4os/<name>/<version>)).
    type: path
    required: true
  archive:
    description: File name of the archive inside O(home).
    type: str
    required: true
  archive_sha256:
    description: The pinned SHA-256 of the archive.
    type: str
    required: true
  digests:
    description: Binary name (relative to O(home)) -> SHA-256 read from the verified archive.
    type: dict
    required: true
  bin_dir:
    description: Directory of the links on the PATH (one per binary, named after it).
    type: path
    required: true
author: ai4os-kit contributors
"""

EXAMPLES = r"""
- name: Is the verified release already in place on the host
  artifact_in_place:
    home: /opt/ai4os/traefik/3.7.15
    archive: traefik_v3.7.15_linux_amd64.tar.gz
    archive_sha256: "{{ artifacts_release.sha256 }}"
    digests: "{{ artifacts_fetch.digests }}"
    bin_dir: /usr/local/bin
  register: artifacts_in_place
"""

RETURN = r"""
in_place:
  description: Everything is there as the install tasks leave it.
  returned: success
  type: bool
differences:
  description: What differs, one line per path (empty when O(in_place)).
  returned: success
  type: list
  elements: str
stale_binaries:
  description: >-
    The binaries (keys of O(digests)) that are missing, not owned by root, not mode 0755
    or not the ones in the verified archive: what the install tasks remove and unpack again.
  returned: success
  type: list
  elements: str
"""

import hashlib
import os
import stat

from ansible.module_utils.basic import AnsibleModule

CHUNK = 1 << 20


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _regular(path):
    """lstat of a regular file (not a link), or None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _binary_problem(path, digest):
    """What is wrong with one unpacked binary, or None."""
    info = _regular(path)
    if info is None:
        return "missing"
    if (info.st_uid, info.st_gid) != (0, 0):
        return "not owned by root"
    if stat.S_IMODE(info.st_mode) != 0o755:
        return "not mode 0755"
    if _sha256(path) != str(digest).lower():
        return "differs from the verified archive"
    return None


def check(home, archive, archive_sha256, digests, bin_dir):
    """(lines naming what differs from the state the install tasks leave, stale binaries);
    ([], []) when nothing does. Every file is read once."""
    try:
        info = os.lstat(home)
    except OSError:
        return ["%s: missing" % home], sorted(digests)
    found = []
    if not stat.S_ISDIR(info.st_mode) or (info.st_uid, info.st_gid) != (0, 0) or stat.S_IMODE(info.st_mode) != 0o755:
        found.append("%s: not a root:root 0755 directory" % home)
    path = os.path.join(home, archive)
    info = _regular(path)
    if info is None:
        found.append("%s: missing" % path)
    elif (info.st_uid, info.st_gid) != (0, 0) or stat.S_IMODE(info.st_mode) != 0o644:
        found.append("%s: not root:root 0644" % path)
    elif _sha256(path) != archive_sha256.lower():
        found.append("%s: not the verified archive" % path)
    stale = []
    for name, digest in sorted(digests.items()):
        path = os.path.join(home, name)
        problem = _binary_problem(path, digest)
        if problem:
            found.append("%s: %s" % (path, problem))
            stale.append(name)
        link = os.path.join(bin_dir, name)
        if not os.path.islink(link) or os.readlink(link) != path:
            found.append("%s: not a link to %s" % (link, path))
    return found, stale


def main():
    module = AnsibleModule(
        argument_spec=dict(
            home=dict(type="path", required=True),
            archive=dict(type="str", required=True),
            archive_sha256=dict(type="str", required=True),
            digests=dict(type="dict", required=True),
            bin_dir=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    found, stale = check(p["home"], p["archive"], p["archive_sha256"], p["digests"], p["bin_dir"])
    module.exit_json(changed=False, in_place=not found, differences=found, stale_binaries=stale)


if __name__ == "__main__":
    main()
