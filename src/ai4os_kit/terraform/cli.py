"""`ai4os-kit provision` and `ai4os-kit destroy` (registered by ai4os_kit.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ai4os_kit.terraform import provision


def cmd_provision(args: argparse.Namespace) -> int:
    return provision.provision(Path(args.inventory), plan_only=args.plan_only)


def cmd_destroy(args: argparse.Namespace) -> int:
    return provision.destroy(Path(args.inventory), yes=args.yes)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "provision", help="create the cloud resources with Terraform and write the Ansible inventory",
        description="Render <INVENTORY>/terraform/main.tf.json from the node plan, refresh the cloud "
                    "credentials, run terraform init/plan/apply (progress shown) and write "
                    "<INVENTORY>/hosts.yml from Terraform's `inventory` output.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--plan-only", action="store_true",
                   help="show what would change (terraform plan) and change nothing")
    p.set_defaults(func=cmd_provision)

    p = subparsers.add_parser(
        "destroy", help="destroy every cloud resource of the inventory (asks first)",
        description="Run terraform plan -destroy, show what would be destroyed, ask for confirmation "
                    "(or --yes) and destroy it. hosts.yml is rewritten without addresses.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_destroy)
