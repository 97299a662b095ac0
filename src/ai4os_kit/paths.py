"""Where the kit's data lives, and the names of the files of an inventory.

ROOT is the repository root of a checkout (found from this file, or given by
$AI4OS_KIT_ROOT); an installed wheel carries the data the CLI reads (catalogue,
schemas, the sample inventory) in ``ai4os_kit/_bundled``, laid out like the
repository (see setup.py).
"""

from __future__ import annotations

import os
from pathlib import Path

# The files of an inventory directory.
PLATFORM_FILE = "platform.yml"
SITES_FILE = "sites.yml"
SECRETS_FILE = "secrets.yml"
PASS_FILE = ".vault-pass"
HOSTS_FILE = "hosts.yml"
TERRAFORM_DIR = "terraform"
BACKUPS_DIR = "backups"  # Raft snapshots and data archives (playbooks/backup.yml)
# What the kit writes into an inventory (never copied into a new one).
GENERATED = (HOSTS_FILE, SECRETS_FILE, PASS_FILE, "*.tmp", TERRAFORM_DIR, BACKUPS_DIR)
VAULT_PASSWORD_ENV = "ANSIBLE_VAULT_PASSWORD_FILE"

_MARKER = Path("catalog") / "components.yml"


def _find_root() -> Path:
    env = os.environ.get("AI4OS_KIT_ROOT")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / _MARKER).is_file():
            return parent
    return here.parent / "_bundled"


ROOT = _find_root()
CATALOG_FILE = ROOT / "catalog" / "components.yml"
SCHEMA_DIR = ROOT / "schemas"
SAMPLE_INVENTORY = ROOT / "inventories" / "sample"


def checkout_path(*parts: str) -> Path:
    """A path that only a checkout of the kit has (roles, playbooks, Terraform modules).

    KitError naming $AI4OS_KIT_ROOT when the kit runs from an installed wheel.
    """
    from ai4os_kit.errors import KitError

    path = ROOT.joinpath(*parts)
    if not path.exists():
        raise KitError(f"{path} is missing: this command needs a checkout of ai4os-kit (its roles, playbooks and "
                       "Terraform modules), not only the installed package; run it from a clone of the "
                       "repository or set AI4OS_KIT_ROOT to one")
    return path
