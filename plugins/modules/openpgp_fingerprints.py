#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ai4os-kit contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module: fingerprints of the primary keys in an OpenPGP public key file (no gpg needed)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: F821 - Ansible module boilerplate

DOCUMENTATION = r"""
---
module: openpgp_fingerprints
short_description: Fingerprints of the primary keys in an OpenPGP public key file
description:
  - Reads an armored (C(.asc)) or binary OpenPGP public key file and returns the
    fingerprint of every primary key (public-key packet, tag 6) in it, computed as
    RFC 4880 (SHA-1 for version 4 keys) and RFC 9580 (SHA-256 for version 6 keys) define it.
    Subkeys are not listed. No gpg binary is needed on the host.
  - The artifacts role uses it to check that an apt repository's signing key file
    holds exactly the pinned key before apt is told to trust it.
options:
  path:
    description: The key file.
    type: path
    required: true
author: ai4os-kit contributors
"""

EXAMPLES = r"""
- name: Fingerprints of the downloaded signing key
  ai4os.platform.openpgp_fingerprints:
    path: /var/cache/ai4os/keys/docker.asc
  register: key
"""

RETURN = r"""
fingerprints:
  description: Primary key fingerprints, upper-case hex, in file order.
  returned: success
  type: list
  elements: str
armored:
  description: Whether the file is ASCII-armored (apt wants C(.asc) for those, C(.gpg) otherwise).
  returned: success
  type: bool
"""

import base64
import binascii
import hashlib

from ansible.module_utils.basic import AnsibleModule

PUBLIC_KEY = 6


def dearmor(data):
    """The binary packets of an armored block, or `data` unchanged when it is not armored."""
    text = data.decode("ascii", "replace")
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in text:
        return data
    body = text.split("-----BEGIN PGP PUBLIC KEY BLOCK-----", 1)[1].split("-----END PGP PUBLIC KEY BLOCK-----", 1)[0]
    lines = body.strip().splitlines()
    if any(":" in line for line in lines[:1]):  # armor headers end at the first empty line
        lines = lines[[i for i, line in enumerate(lines) if not line.strip()][0] + 1:]
    payload = "".join(line.strip() for line in lines if line.strip() and not line.startswith("="))
    return base64.b64decode(payload, validate=True)


def packets(data):
    """(tag, body) of every packet (old and new packet formats; partial lengths are refused)."""
    pos = 0
    while pos < len(data):
        head = data[pos]
        if not head & 0x80:
            raise ValueError("not an OpenPGP packet at byte %d" % pos)
        if head & 0x40:  # new format
            tag = head & 0x3F
            first = data[pos + 1]
            if first < 192:
                length, pos = first, pos + 2
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 2] + 192, pos + 3
            elif first == 255:
                length, pos = int.from_bytes(data[pos + 2:pos + 6], "big"), pos + 6
            else:
                raise ValueError("partial body length in a key file")
        else:  # old format
            tag, kind = (head >> 2) & 0x0F, head & 0x03
            if kind == 3:
                length, pos = len(data) - pos - 1, pos + 1
            else:
                size = (1, 2, 4)[kind]
                length, pos = int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size
        if pos + length > len(data):
            raise ValueError("truncated packet")
        yield tag, data[pos:pos + length]
        pos += length


def fingerprint(body):
    version = body[0]
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    if version == 6:
        return hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise ValueError("public key version %d is not supported (4 and 6 are)" % version)


def fingerprints_of(data):
    return [fingerprint(body) for tag, body in packets(dearmor(data)) if tag == PUBLIC_KEY]


def main():
    module = AnsibleModule(argument_spec=dict(path=dict(type="path", required=True)), supports_check_mode=True)
    path = module.params["path"]
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        found = fingerprints_of(data)
    except (OSError, ValueError, IndexError, binascii.Error) as error:
        module.fail_json(msg="openpgp_fingerprints: %s is not a readable OpenPGP public key file: %s" % (path, error))
    module.exit_json(changed=False, fingerprints=found, armored=dearmor(data) is not data)


if __name__ == "__main__":
    main()
