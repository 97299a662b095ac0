"""`ai4os-kit provision` and `ai4os-kit destroy` (registered by ai4os_kit.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path



def cmd_provision(args: argparse.Namespace) -> int:
    from ai4os_kit.terraform import provision  # the cloud libraries load only for these commands

    return provision.provision(Path(args.inventory), plan_only=args.plan_only,
                               allow_destroy=args.allow_destroy or (), allow_destroy_all=args.allow_destroy_all)


def cmd_destroy(args: argparse.Namespace) -> int:
    from ai4os_kit.terraform import provision

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
    p.add_argument("--allow-destroy", nargs="+", metavar="NODE", default=[],
                   help="let the plan destroy or replace the servers/data volumes of these nodes (without it, a plan "
                        "that would is refused and nothing changes)")
    p.add_argument("--allow-destroy-all", action="store_true",
                   help="let the plan destroy or replace any server or data volume")
    p.set_defaults(func=cmd_provision)

    p = subparsers.add_parser(
        "destroy", help="destroy every cloud resource of the inventory (asks first)",
        description="Run terraform plan -destroy, show what would be destroyed, ask for confirmation "
                    "(or --yes) and destroy it. hosts.yml is rewritten without addresses.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_destroy)
