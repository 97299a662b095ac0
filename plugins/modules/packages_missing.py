#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ai4os-kit contributors
# Apache License 2.0 (see LICENSE)
"""Ansible module: which of the named Debian packages are not installed (dpkg's database, read only)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: F821 - Ansible module boilerplate

DOCUMENTATION = r"""
---
module: packages_missing
short_description: The named Debian packages that are not installed, from dpkg's database
description:
  - Runs one C(dpkg-query) for all the names and returns those that dpkg does not
    record as installed (status C(installed), no error flag; a package on hold
    counts as installed). Changes nothing.
  - The roles run it before M(ansible.builtin.apt) and run apt only when something
    is missing. apt's own "already installed" test opens the whole package cache on
    the node (about a second per task and node, most of a no-op converge's node
    time); dpkg-query reads the status file only.
  - A name dpkg-query cannot answer exactly (a version C(name=1.2), a pattern, a
    virtual package, a package that is not known at all) is returned as missing,
    so apt decides about it as before.
options:
  names:
    description: Package names (C(name) or C(name:arch)).
    type: list
    elements: str
    required: true
author: ai4os-kit contributors
"""

EXAMPLES = r"""
- name: Packages of the role not installed yet
  ai4os.platform.packages_missing:
    names: [nftables, xfsprogs]
  register: role_packages

- name: Install the packages of the role
  ansible.builtin.apt:
    name: "{{ role_packages.missing }}"
    state: present
  when: role_packages.missing | length > 0
"""

RETURN = r"""
missing:
  description: The names, in the order given, that are not installed.
  returned: success
  type: list
  elements: str
"""

import re

from ansible.module_utils.basic import AnsibleModule

# A name dpkg-query answers exactly: Debian's package name syntax, optionally with an architecture.
PLAIN = re.compile(r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$")


def installed_names(output):
    """The packages dpkg lists as installed, by 'name:arch' and by plain name.

    Each line of output is '<binary:Package>\\t<Architecture>\\t<db:Status-Abbrev>'; the
    abbreviation is the desired action, the status and the error flag: 'ii ' is installed,
    'hi ' installed and held, a status other than 'i' or a flag means not (fully) installed.
    """
    names = set()
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        package, arch, status = fields
        if len(status) >= 2 and status[1] == "i" and not status[2:].strip():
            plain = package.split(":", 1)[0]
            names.update((package, plain, "%s:%s" % (plain, arch)))
    return names


def missing_of(names, output):
    """The names, in order, that are not among the installed packages in dpkg-query's output."""
    installed = installed_names(output)
    return [name for name in names if not PLAIN.match(name) or name not in installed]


def main():
    module = AnsibleModule(argument_spec=dict(names=dict(type="list", elements="str", required=True)),
                           supports_check_mode=True)
    names = module.params["names"]
    plain = [name for name in names if PLAIN.match(name)]
    output = ""
    if plain:
        dpkg_query = module.get_bin_path("dpkg-query", required=True)
        # Exit status 1 only says that some name is not known to dpkg: those are missing.
        rc, output, err = module.run_command(
            [dpkg_query, "--show", "--showformat=${binary:Package}\\t${Architecture}\\t${db:Status-Abbrev}\\n",
             "--"] + plain, environ_update={"LC_ALL": "C"})
        if rc not in (0, 1):
            module.fail_json(msg="packages_missing: dpkg-query failed (exit %d): %s" % (rc, err.strip()))
    module.exit_json(changed=False, missing=missing_of(names, output))


if __name__ == "__main__":
    main()
