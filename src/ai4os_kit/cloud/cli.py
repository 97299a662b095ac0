"""Cloud commands: `ai4os-kit sites` and `ai4os-kit inventory --from-cloud`.

(`check --online` runs :func:`ai4os_kit.cloud.preflight.online_check`.)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ai4os_kit.errors import InputError
from ai4os_kit.model import egi_sites


def _say(line: str = "") -> None:
    print(line, flush=True)


def sites_rows(sites: dict[str, egi_sites.EgiSite], vo: str | None) -> list[dict[str, Any]]:
    """One row per site endpoint (offering ``vo`` when given)."""
    rows = []
    for site in egi_sites.sites_for_vo(sites, vo):
        row: dict[str, Any] = {"id": site.id, "gocdb": site.gocdb, "endpoint": site.endpoint,
                               "protocol": site.protocol, "region": site.region}
        if vo:
            row["project_id"] = site.projects[vo].project_id
            row["region"] = site.projects[vo].region or site.region
        else:
            row["vos"] = site.vos
        rows.append(row)
    return rows


def cmd_sites(args: argparse.Namespace) -> int:
    sites = egi_sites.load_sites()
    if args.vo and not egi_sites.sites_for_vo(sites, args.vo):
        known = sorted({vo for s in sites.values() for vo in s.vos})
        raise InputError("command line", "--vo", f"no EGI site offers VO '{args.vo}'{egi_sites._closest(args.vo, known)}",
                         "check the VO name (e.g. vo.ai4eosc.eu); `ai4os-kit sites` lists every site's VOs")
    rows = sites_rows(sites, args.vo)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max(len(r["id"]) for r in rows)
    for row in rows:
        extra = (f"project {row['project_id'] or '(found at login)'}" if args.vo
                 else f"{len(row['vos'])} VOs: {', '.join(row['vos'])}")
        region = f" region {row['region']}" if row["region"] else ""
        _say(f"{row['id']:<{width}}  {row['endpoint']}  protocol {row['protocol']}{region}  {extra}")
    _say(f"{len(rows)} site endpoint(s) from {egi_sites.sites_dir()}"
         + (f" offering {args.vo}" if args.vo else ""))
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    from ai4os_kit.cloud import discovery
    from ai4os_kit.model import ansible_inventory
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    if not args.from_cloud:
        raise InputError("command line", "--from-cloud", "nothing to do",
                         "use `ai4os-kit inventory --from-cloud INVENTORY` (`ai4os-kit plan` writes it from the plan)")
    inv = load_inventory(args.inventory, check_vault=False)
    plan = build_plan(inv)
    found = discovery.discover(plan)
    inventory = discovery.inventory_from_cloud(plan, found)
    for warning in found.warnings:
        _say(f"WARN  {warning}")
    if args.print:
        sys.stdout.write(ansible_inventory.dump(inventory))
        return 0
    target = ansible_inventory.write(inv.path, inventory)
    _say(f"found {len(found.nodes)} server(s); wrote {target}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "sites", help="list EGI Federated Cloud sites (optionally those offering a VO)",
        description="List the EGI site descriptions shipped with the kit (EGI's published format, validated "
                    f"by its schema; {egi_sites.SITES_DIR_ENV} points at a fresher copy).")
    p.add_argument("--vo", help="only sites offering this VO, with the VO's project id")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_sites)

    p = subparsers.add_parser(
        "inventory", help="rebuild the Ansible inventory from the servers' metadata (--from-cloud)",
        description="For operators who lost Terraform's state: list each site's servers with openstacksdk, "
                    "read the ai4os_* server metadata and write <INVENTORY>/hosts.yml as provisioning would.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--from-cloud", action="store_true", help="read the servers (required)")
    p.add_argument("--print", action="store_true", help="print the inventory instead of writing hosts.yml")
    p.set_defaults(func=cmd_inventory)
