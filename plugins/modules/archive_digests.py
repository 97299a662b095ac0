#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ai4os-kit contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module: SHA-256 of named members of a .zip or .tar.gz archive, read without unpacking it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: F821 - Ansible module boilerplate

DOCUMENTATION = r"""
---
module: archive_digests
short_description: SHA-256 of files inside a release archive (zip, tar.gz), without unpacking it
description:
  - Reads the archive with Python's zipfile/tarfile (no unzip or tar binary needed)
    and returns the SHA-256 of each named member. A member name matches with or
    without a leading C(./) and in any directory of the archive when no member has
    that exact path (release archives put binaries at the top or one level down).
  - Used by the artifacts role on the controller. The digests of the binaries in an
    archive whose own checksum matched the kit's pin are what the unpacked binaries on
    each host must equal, so an existing binary is verified, never trusted.
  - With O(cache), the result is kept next to the archive under the archive's own
    SHA-256; it is reused only while the archive still has that checksum.
options:
  path:
    description: The archive (C(.zip), C(.tar.gz)/C(.tgz), C(.tar)).
    type: path
    required: true
  members:
    description: Names of the files to digest.
    type: list
    elements: str
    required: true
  cache:
    description: JSON file keeping the digests of this archive (optional).
    type: path
author: ai4os-kit contributors
"""

EXAMPLES = r"""
- name: Digests of the binaries inside the verified archive
  ai4os.platform.archive_digests:
    path: /cache/traefik_v3.7.15_linux_amd64.tar.gz
    members: [traefik]
  delegate_to: localhost
"""

RETURN = r"""
digests:
  description: Member name -> SHA-256 (hex, lower case).
  returned: success
  type: dict
archive_sha256:
  description: SHA-256 of the archive itself.
  returned: success
  type: str
"""

import hashlib
import json
import os
import posixpath
import tarfile
import zipfile

from ansible.module_utils.basic import AnsibleModule

CHUNK = 1 << 20


def _sha256_stream(stream):
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(CHUNK), b""):
        digest.update(block)
    return digest.hexdigest()


def _sha256_file(path):
    with open(path, "rb") as handle:
        return _sha256_stream(handle)


def _pick(names, wanted):
    """The archive member that stands for `wanted` (exact path first, then a unique basename)."""
    normal = {posixpath.normpath(n.lstrip("/")): n for n in names if not n.endswith("/")}
    target = posixpath.normpath(wanted.lstrip("/"))
    if target in normal:
        return normal[target]
    by_base = [original for path, original in normal.items() if posixpath.basename(path) == target]
    return by_base[0] if len(by_base) == 1 else None


def digests_of(path, members):
    """{member: sha256} for every member; raises KeyError naming the missing ones."""
    found = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            missing = [m for m in members if _pick(names, m) is None]
            if missing:
                raise KeyError(missing)
            for member in members:
                with archive.open(_pick(names, member)) as stream:
                    found[member] = _sha256_stream(stream)
        return found
    with tarfile.open(path, mode="r:*") as archive:
        regular = {info.name: info for info in archive.getmembers() if info.isfile()}
        missing = [m for m in members if _pick(list(regular), m) is None]
        if missing:
            raise KeyError(missing)
        for member in members:
            stream = archive.extractfile(regular[_pick(list(regular), member)])
            found[member] = _sha256_stream(stream)
    return found


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            members=dict(type="list", elements="str", required=True),
            cache=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    path, members, cache = module.params["path"], module.params["members"], module.params["cache"]
    if not os.path.isfile(path):
        module.fail_json(msg="archive_digests: %s does not exist" % path)
    archive_sha256 = _sha256_file(path)
    if cache and os.path.isfile(cache):
        try:
            with open(cache) as handle:
                kept = json.load(handle)
            if kept.get("archive_sha256") == archive_sha256 and set(members) <= set(kept.get("digests", {})):
                module.exit_json(changed=False, archive_sha256=archive_sha256,
                                 digests=dict((m, kept["digests"][m]) for m in members))
        except (OSError, ValueError, AttributeError):
            pass  # an unreadable cache is recomputed
    try:
        digests = digests_of(path, members)
    except KeyError as missing:
        module.fail_json(msg="archive_digests: %s holds no file named %s (fix: check the binaries listed in "
                             "artifacts_layouts for this release)" % (path, ", ".join(missing.args[0])))
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        module.fail_json(msg="archive_digests: cannot read %s: %s" % (path, error))
    if cache and not module.check_mode:
        tmp = cache + ".tmp"
        with open(tmp, "w") as handle:
            json.dump({"archive_sha256": archive_sha256, "digests": digests}, handle, indent=1, sort_keys=True)
        os.replace(tmp, cache)
    module.exit_json(changed=False, archive_sha256=archive_sha256, digests=digests)


if __name__ == "__main__":
    main()
