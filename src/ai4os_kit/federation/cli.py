"""`ai4os-kit federation offer | accept | join | revoke | status` (registered by ai4os_kit.cli).

offer and join run on the lender's inventory (B), accept and revoke on the
borrower's (A). Every file exchanged is YAML an operator reviews before sending
(docs/federation.md).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from ai4os_kit.errors import KitError


def _load(inventory: str) -> tuple[Any, dict[str, Any]]:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    inv = load_inventory(inventory)
    return inv, build_plan(inv)


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def cmd_offer(args: argparse.Namespace) -> int:
    from ai4os_kit.federation import lender

    inv, plan = _load(args.inventory)
    path = lender.offer(inv.path, plan, args.site, args.to, _list(args.namespaces), args.pool, args.institution,
                        args.outbound_address, Path(args.out) if args.out else None)
    print(f"wrote the request {path}: review it, then send it to {args.to}'s operator; the nodes' keys stay in "
          f"{lender.exchange_dir(inv.path, args.to) / lender.KEYS_FILE} (ansible-vault)")
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    from ai4os_kit.federation import borrower

    inv, plan = _load(args.inventory)
    written, record, fingerprint = borrower.accept(inv, plan, Path(args.request), _list(args.namespaces) or None,
                                                   args.days, args.type, Path(args.out) if args.out else None)
    print(f"wrote the join bundle {written} and the record {record}")
    print(f"this platform's CA: {fingerprint}  (tell the lender over a channel you trust; `federation join` checks it)")
    print(f"next: `ai4os-kit provision {args.inventory}` opens the Nomad servers' RPC port to the lender's "
          "addresses; then send the bundle")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from ai4os_kit.federation import lender
    from ai4os_kit.model import ansible_inventory
    from ai4os_kit.terraform.provision import current_addresses

    path = lender.join(Path(args.inventory), Path(args.bundle), args.ca_fingerprint)
    print(f"the bundle checks out (CA, signature, request, certificates, scope, expiry): kept as {path}")
    inv, plan = _load(args.inventory)  # the lent nodes leave this platform's Nomad plays (group federation_lent)
    hosts = ansible_inventory.write_plan(inv.path, plan, current_addresses(plan, inv.path))
    print(f"wrote the Ansible inventory {hosts}")
    if not args.apply:
        print(f"next: ansible-playbook -i {hosts} playbooks/federation-join.yml (or join again with --apply)")
        return 0
    from ai4os_kit.day2 import playbook

    rc = playbook.run(inv.path, "federation-join.yml", None, shlex.split(args.ansible_args))
    if rc != 0:
        raise KitError(f"playbooks/federation-join.yml stopped (exit {rc}); the Ansible output above says why")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from ai4os_kit.day2 import playbook
    from ai4os_kit.federation import borrower
    from ai4os_kit.terraform import provision

    inventory = Path(args.inventory)
    record = borrower.revoke(inventory, args.site)
    nodes = [n["name"] for n in record["nodes"]]
    print(f"revoked {args.site} (lent by {record['lender']}): {len(nodes)} node(s); the record is in federation/revoked/")

    def step(name: str) -> None:
        extra = {"federation_revoked_site": args.site, "federation_revoked_nodes": nodes, "federation_step": name}
        rc = playbook.run(inventory, "federation-revoke.yml", extra, shlex.split(args.ansible_args))
        if rc != 0:
            raise KitError(f"playbooks/federation-revoke.yml stopped (exit {rc}) during the {name} of {args.site}'s "
                           "nodes; the Ansible output above says why. Run it again with the command line it printed")

    if not args.no_drain:
        step("drain")
    if args.no_provision:
        print(f"left to do: `ai4os-kit provision {args.inventory}` (closes the security groups to the lender's "
              "addresses), then the purge step of playbooks/federation-revoke.yml (federation_step: purge)")
        return 0
    provision.provision(inventory)
    step("purge")
    print(f"{args.site}'s nodes are drained, cut off and purged; their certificates expire on {record['not_after']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ai4os_kit.model import lending

    inv, _ = _load(args.inventory)
    if not inv.lent:
        print("nothing is lent to this platform")
    for record in inv.lent:
        state = "EXPIRED" if lending.expired(record) else "valid"
        print(f"{record['site']}: lent by {record['lender']}, {len(record['nodes'])} node(s), namespaces "
              f"{', '.join(record['scope']['namespaces'])}, type {record['scope']['type']}, "
              f"until {record['not_after']} ({state})")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("federation", help="share resources with another platform installation (offer, accept, "
                       "join, revoke, status; docs/federation.md)")
    actions = p.add_subparsers(dest="federation_command", metavar="ACTION", required=True)

    q = actions.add_parser("offer", help="lender: write a request to lend a site's nodes to another platform")
    q.add_argument("inventory", metavar="INVENTORY", help="the lender's inventory")
    q.add_argument("--site", required=True, help="the site whose nodes are lent")
    q.add_argument("--to", required=True, metavar="PLATFORM", help="the borrowing platform's name")
    q.add_argument("--namespaces", required=True, metavar="NS[,NS]", help="the borrower's VO namespaces offered")
    q.add_argument("--pool", action="append", metavar="POOL", help="a pool to lend (repeatable; default: every "
                   "pool of roles cpu, gpu, batch, tryme)")
    q.add_argument("--institution", help="the lender's name in the borrower's accounting (default: platform name)")
    q.add_argument("--outbound-address", action="append", default=[], metavar="ADDR",
                   help="a public address the site's nodes leave from (repeatable; added to those the kit knows)")
    q.add_argument("--out", metavar="FILE", help="also write the request here")
    q.set_defaults(func=cmd_offer)

    q = actions.add_parser("accept", help="borrower: sign a request with this platform's CA, write the join bundle")
    q.add_argument("inventory", metavar="INVENTORY", help="the borrower's inventory")
    q.add_argument("request", metavar="REQUEST", help="the lender's request file")
    q.add_argument("--namespaces", metavar="NS[,NS]", help="the namespaces the lent nodes serve (default: every "
                   "offered namespace this platform has)")
    q.add_argument("--days", type=int, default=30, help="validity of the certificates (1-90 days; default 30)")
    q.add_argument("--type", default="batch", help="node meta type of the lent nodes: batch (default; the "
                   "lender's site has no ingress for this platform's users) or compute")
    q.add_argument("--out", metavar="FILE", help="where to write the bundle (default federation/bundles/<site>.yml)")
    q.set_defaults(func=cmd_accept)

    q = actions.add_parser("join", help="lender: check the borrower's bundle and keep it")
    q.add_argument("inventory", metavar="INVENTORY", help="the lender's inventory (the one that made the offer)")
    q.add_argument("bundle", metavar="BUNDLE", help="the bundle file from the borrower")
    q.add_argument("--ca-fingerprint", required=True, metavar="SHA256",
                   help="the borrower's CA fingerprint (sha256:..., told by its operator over a trusted channel)")
    q.add_argument("--apply", action="store_true", help="then run playbooks/federation-join.yml: the lent nodes leave "
                   "this platform's region and join the borrower's")
    q.add_argument("--ansible-args", default="", help="more arguments for ansible-playbook (with --apply)")
    q.set_defaults(func=cmd_join)

    q = actions.add_parser("revoke", help="borrower: end a lent site's access (drain, close the security groups, purge)")
    q.add_argument("inventory", metavar="INVENTORY", help="the borrower's inventory")
    q.add_argument("site", metavar="SITE", help="the lent site")
    q.add_argument("--no-drain", action="store_true", help="do not drain the nodes first")
    q.add_argument("--no-provision", action="store_true", help="stop after the drain (provision and purge later)")
    q.add_argument("--ansible-args", default="", help="more arguments for ansible-playbook")
    q.set_defaults(func=cmd_revoke)

    q = actions.add_parser("status", help="borrower: the sites lent to this platform and until when")
    q.add_argument("inventory", metavar="INVENTORY")
    q.set_defaults(func=cmd_status)
