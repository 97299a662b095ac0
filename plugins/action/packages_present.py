# -*- coding: utf-8 -*-
# Copyright: ai4os-kit contributors
# Apache License 2.0 (see LICENSE)
"""Action plugin packages_present: dpkg's answer first, apt only for what is missing, in one task.

The roles ran two tasks for their packages: ``packages_missing`` (one dpkg-query)
and ``ansible.builtin.apt`` when something was missing. On a converge where
nothing changes the second was a skipped task on every host, and a skipped task
still costs the controller a forked worker, its templates and the host's
variables. Here the two modules run from one task: the check always, apt only
when the check names a package. Documentation: plugins/modules/packages_present.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: F821 - Ansible plugin boilerplate

from ansible.errors import AnsibleActionFail
from ansible.module_utils.six import string_types
from ansible.plugins.action import ActionBase

# Checked by ActionBase.validate_argument_spec, as the kit's other action plugin (artifact_fetch) does.
# names is raw: a number must not become a package name by type conversion (_names says what is wrong).
ARGUMENT_SPEC = {
    "names": {"type": "raw", "required": True},
    "install_recommends": {"type": "bool", "default": False},
    "update_cache": {"type": "bool"},
    "cache_valid_time": {"type": "int"},
}
APT_OPTIONS = ("install_recommends", "update_cache", "cache_valid_time")  # passed to apt as given


def _names(value):
    """The package names of the task's ``names``, or the message that says what is wrong with it."""
    if isinstance(value, string_types):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        return None, "names must be a non-empty list of package names (got %r)" % (value,)
    bad = [v for v in value if not isinstance(v, string_types) or not v.strip()]
    if bad:
        return None, "names must hold package names only (not %r)" % (bad,)
    return [v.strip() for v in value], None


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # nothing is copied: both modules take their arguments only
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        names, problem = _names(args["names"])
        if problem:
            raise AnsibleActionFail("packages_present: %s" % problem)
        check = self._execute_module(module_name="packages_missing", module_args={"names": names},
                                     task_vars=task_vars)
        if check.get("failed"):
            result.update(check)
            return result
        missing = check.get("missing", [])
        if not missing:
            result.update(changed=False, missing=[])
            return result
        apt_args = {"name": names, "state": "present"}
        apt_args.update((key, args[key]) for key in APT_OPTIONS if args[key] is not None)
        installed = self._execute_module(module_name="ansible.builtin.apt", module_args=apt_args,
                                         task_vars=task_vars)
        result.update(installed)
        result["missing"] = missing
        return result
