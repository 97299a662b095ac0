#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: ai4os-kit contributors
# Apache License 2.0 (see LICENSE)
"""Documentation of the action plugin packages_present (plugins/action/packages_present.py).

The work is the action plugin's: it runs packages_missing and, when something is
missing, ansible.builtin.apt. This file only documents it (ansible-doc reads it);
run on its own, it fails and says so.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: F821 - Ansible module boilerplate

DOCUMENTATION = r"""
---
module: packages_present
short_description: Debian packages installed, apt run only when dpkg says one is missing
description:
  - Asks dpkg which of the named packages are not installed (M(packages_missing),
    one C(dpkg-query), read only) and runs M(ansible.builtin.apt) with all the names
    only when one is missing. One task where the roles had two (on a converge that
    changes nothing, the apt task was skipped on every host but still cost the
    controller a worker per host).
  - A half-installed or removed package, a version pin (C(name=1.2)), a pattern or
    a virtual package counts as missing, so apt decides about those as it would.
  - Check mode and diff mode are those of the two modules (apt reports what it would
    install). Runs as an action plugin (plugins/action/packages_present.py).
options:
  names:
    description: Package names (C(name) or C(name:arch)), or one name.
    type: list
    elements: str
    required: true
  install_recommends:
    description: Passed to apt. The roles never install apt's Recommends.
    type: bool
    default: false
  update_cache:
    description: Passed to apt (refresh the package lists before installing).
    type: bool
  cache_valid_time:
    description: Passed to apt (seconds an earlier refresh counts as fresh).
    type: int
author: ai4os-kit contributors
"""

EXAMPLES = r"""
- name: Packages of the role
  packages_present:
    names: [nftables, xfsprogs]
    update_cache: true
    cache_valid_time: 3600
"""

RETURN = r"""
missing:
  description: The names that dpkg did not record as installed before the task (empty when apt did not run).
  returned: success
  type: list
  elements: str
"""

import json
import sys


def main():
    # Only reached where Ansible does not find the action plugin: no argument spec here (the plugin has it).
    print(json.dumps({"failed": True, "msg": "packages_present runs as an action plugin "
                                             "(plugins/action/packages_present.py): set action_plugins "
                                             "(ansible.cfg) to the kit's plugins/action"}))
    sys.exit(1)


if __name__ == "__main__":
    main()
