"""Render the accounting role's templates with ansible-playbook itself (localhost, the real template module).

Used by test_accounting_role.py (the files the role writes) and test_accounting_caso.py (cASO run with the
configuration the role writes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "accounting"
PLAYBOOK = """
- name: Render the accounting role's templates
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {root}/inventories/sample/platform.yml
    - {root}/inventories/sample/sites.yml
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
    - {out}/site-vars.yml    # what an operator sets in the inventory (vars_files win over play vars)
  vars:
    out: {out}
  tasks:
    - name: Check the cASO sites as the role does
      ansible.builtin.include_tasks: {role}/tasks/check_caso.yml
    - name: Render the configuration files
      ansible.builtin.template:
        src: "{role}/templates/{{{{ item }}}}.j2"
        dest: "{{{{ out }}}}/{{{{ item }}}}"
        mode: "0600"
      loop: [accounting.yml, nomad-policy.hcl, ssm-sender.cfg]
    - name: Render the services
      ansible.builtin.template:
        src: "{role}/templates/{{{{ item.src }}}}"
        dest: "{{{{ out }}}}/{{{{ item.unit }}}}.service"
        mode: "0600"
      loop: "{{{{ accounting_units }}}}"
    - name: Render the timers
      ansible.builtin.template:
        src: "{role}/templates/timer.j2"
        dest: "{{{{ out }}}}/{{{{ item.unit }}}}.timer"
        mode: "0600"
      loop: "{{{{ accounting_units }}}}"
      vars:
        accounting_timer: "{{{{ item }}}}"
    - name: Render cASO's configuration and unit
      ansible.builtin.template:
        src: "{role}/templates/caso.{{{{ pair.1 }}}}.j2"
        dest: "{{{{ out }}}}/caso-{{{{ pair.0.name }}}}.{{{{ pair.1 }}}}"
        mode: "0600"
      vars:
        item: "{{{{ pair.0 }}}}"  # the role's templates know the site as item
      loop: "{{{{ accounting_caso_sites | product(['conf', 'service']) | list }}}}"
      loop_control:
        loop_var: pair
      no_log: true
"""


def render_role(out: Path, site_vars: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Render every template of the role into ``out`` with the inventory variables ``site_vars``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "site-vars.yml").write_text(yaml.safe_dump(site_vars))
    book = out / "render.yml"
    book.write_text(PLAYBOOK.format(root=ROOT, role=ROLE, out=out))
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-e",
                           f"ansible_python_interpreter={sys.executable}", str(book)],
                          cwd=out, env=env, capture_output=True, text=True, timeout=300)
