"""Day-2 commands (registered by ai4os_kit.cli): add-node, remove-node, upgrade, backup, restore,
reset, status. Each runs one of the kit's playbooks against <INVENTORY>/hosts.yml in the open
(the command line is printed; --ansible-args passes more arguments to ansible-playbook)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ai4os_kit.day2 import nodes, playbook
from ai4os_kit.errors import InputError, KitError
from ai4os_kit.paths import BACKUPS_DIR


def _load(inventory: str) -> tuple[Any, dict[str, Any]]:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    inv = load_inventory(inventory)
    return inv, build_plan(inv)


def _confirm(question: str, expected: str, given: str | None, flag: str, ask: Callable[[str], str] = input) -> None:
    """Refuse (exit 2, nothing changed) unless the operator typed ``expected``, or gave ``flag``
    (--yes: a switch; any other: takes the expected text)."""
    how = flag if flag == "--yes" else f"{flag} {expected}"
    if given is not None:
        answer = given
    elif not sys.stdin.isatty() and ask is input:
        raise InputError("command line", flag, "this needs a confirmation but there is no terminal to ask",
                         f"re-run with {how}")
    else:
        answer = ask(f"{question} Type '{expected}' to confirm: ")
    if answer.strip() != expected:
        raise InputError("command line", flag, f"not confirmed (expected '{expected}'); nothing was changed",
                         f"type '{expected}' when asked, or pass {how}")


def _playbook(inventory: Path, name: str, extra: dict[str, Any], args: argparse.Namespace, what: str) -> None:
    rc = playbook.run(inventory, name, extra, shlex.split(args.ansible_args))
    if rc != 0:
        raise KitError(f"playbooks/{name} stopped (exit {rc}) during {what}; the Ansible output above names the host "
                       f"and what to do. See the state with: ai4os-kit status {args.inventory}")


def cmd_add_node(args: argparse.Namespace) -> int:
    from ai4os_kit.model.plan import cloud_sites
    from ai4os_kit.terraform import provision

    inv, plan = _load(args.inventory)
    before = playbook.inventory_hosts(inv.path)
    if args.nodes:
        new = [n for n in args.nodes if n in before]
        unknown = sorted(set(args.nodes) - set(before))
        if unknown:
            raise InputError("hosts.yml", unknown[0], "not a node of hosts.yml",
                             "provision it first (`ai4os-kit provision`), or name no node and let add-node provision")
    else:
        if not cloud_sites(plan):
            raise InputError("sites.yml", "ai4os_sites", "no cloud site: test-bed nodes are containers that "
                             "`ai4os-kit up` creates", "grow the pool, then `ai4os-kit up INVENTORY --no-deploy` and "
                             "`ai4os-kit add-node INVENTORY NODE...`")
        provision.provision(inv.path)  # refuses to destroy anything: add-node only adds
        new = [n for n in playbook.inventory_hosts(inv.path) if n not in before]
    if not new:
        print("nothing to add: hosts.yml has every node of the plan (grow a pool's count in sites.yml first)")
        return 0
    print(f"adding {len(new)} node(s): {', '.join(new)}")
    _playbook(inv.path, "scale.yml", {"day2_nodes": new}, args, "the addition")
    print(f"added {', '.join(new)}: converged, joined and (clients) admitted")
    return 0


def cmd_remove_node(args: argparse.Namespace) -> int:
    from ai4os_kit.terraform import provision

    inv, plan = _load(args.inventory)
    deployed = playbook.inventory_hosts(inv.path)
    names = nodes.check_removal(plan, deployed, args.nodes)
    testbed = {s["name"] for s in plan["sites"] if s["testbed"]}
    _confirm(f"Drain and remove {', '.join(names)} from {args.inventory}?", "yes", "yes" if args.yes else None, "--yes")
    _playbook(inv.path, "remove-node.yml", {"day2_nodes": names}, args, "the removal")
    cloud = [n for n in names if deployed[n].get("ai4os_node_site") not in testbed]
    if cloud and not args.keep_vms:
        provision.provision(inv.path, allow_destroy=cloud)
    playbook.forget_hosts(inv.path, [n for n in names if n not in cloud or args.keep_vms])
    print(f"removed {', '.join(names)} from the cluster" + (f"; destroyed the VMs of {', '.join(cloud)}"
                                                          if cloud and not args.keep_vms else ""))
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    extra: dict[str, Any] = {"day2_client_batch": args.batch}
    if args.rehearse:
        extra["day2_converge"] = False
    _playbook(Path(args.inventory), "upgrade.yml", extra, args, "the rolling upgrade")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    _playbook(Path(args.inventory), "backup.yml", {"day2_backup_data": not args.no_data}, args, "the backup")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    file = Path(args.file).resolve()
    if not file.is_file():
        raise InputError("command line", "--file", f"{file} does not exist",
                         f"name a file of {Path(args.inventory) / BACKUPS_DIR}")
    _confirm(f"Restore {file.name} into the running platform of {args.inventory} (its state goes back to that "
             "moment)?", "yes", "yes" if args.yes else None, "--yes")
    _playbook(Path(args.inventory), "restore.yml", {"day2_restore_file": str(file)}, args, "the restore")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    inv, plan = _load(args.inventory)
    name = plan["platform"]["name"]
    what = "software" + ("" if args.keep_data else " and data (Consul and Nomad state)")
    _confirm(f"Remove the kit's cluster {what} from the nodes of {args.inventory}"
             + (f" matching {args.limit}" if args.limit else "") + "?", name, args.confirm, "--confirm")
    extra = {"day2_reset_confirm": name, "day2_reset_keep_data": args.keep_data}
    if args.limit:
        args.ansible_args += " --limit " + shlex.quote(args.limit)
    _playbook(inv.path, "reset.yml", extra, args, "the reset")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ai4os_kit.day2 import status
    from ai4os_kit.model import secrets

    inv, plan = _load(args.inventory)
    deployed = playbook.inventory_hosts(inv.path)
    pw_file, _ = secrets.password_file(inv.path, create=False)
    values = secrets.read_secrets(inv.path, pw_file)
    missing = [k for k in ("ai4os_secret_nomad_token_status", "ai4os_secret_consul_token_status",
                           "ai4os_secret_ca_key", "ai4os_secret_ca_cert") if not values.get(k)]
    if missing:
        raise InputError(str(inv.path / "secrets.yml"), missing[0], "missing",
                         f"run `ai4os-kit secrets {args.inventory}` (it adds what is missing), then "
                         "playbooks/cluster.yml so the roles issue the status tokens")
    nomad_url, nomad_name = _endpoint(args.nomad, plan, deployed, "nomad", 4646)
    consul_url, consul_name = _endpoint(args.consul, plan, deployed, "consul", 8501)
    node_facts = _node_facts(inv.path, args) if args.nodes else None
    cas = [values["ai4os_secret_ca_cert"]] + ([values[secrets.CA_PREVIOUS]] if values.get(secrets.CA_PREVIOUS) else [])
    with status.private_dir() as private:
        cert, key = status.client_certificate(values["ai4os_secret_ca_key"], values["ai4os_secret_ca_cert"],
                                              f"status.{plan['platform']['region']}.{plan['platform']['name']}.client",
                                              Path(private))
        context = status.tls_context(cas, cert, key)
        nomad = status.Api("Nomad", nomad_url, "X-Nomad-Token", values["ai4os_secret_nomad_token_status"], context, nomad_name)
        consul = status.Api("Consul", consul_url, "X-Consul-Token", values["ai4os_secret_consul_token_status"], context,
                            consul_name)
        try:
            report = status.collect(plan, deployed, nomad, consul, status.wanted_versions(inv.platform), node_facts)
        except status.Unreachable as err:
            raise KitError(f"{err}\n  fix: from outside the sites' networks, open a tunnel through a server, e.g. "
                           f"ssh -N -L 4646:127.0.0.1:4646 -L 8501:127.0.0.1:8501 <user>@<server> (with the ProxyJump "
                           f"of hosts.yml), then: ai4os-kit status {args.inventory} --nomad https://localhost:4646 "
                           "--consul https://localhost:8501; a refused token: run playbooks/cluster.yml, which issues "
                           "the status tokens") from None
    if args.json:
        json.dump(report.data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(status.render(report.data))
    return 0 if report.data["healthy"] else status.EXIT_DRIFT


def _endpoint(given: str | None, plan: dict[str, Any], deployed: dict[str, Any], agent: str, port: int) -> tuple[str, str]:
    """(URL, name the server certificate must carry): --nomad/--consul as given, else the first server of hosts.yml."""
    from urllib.parse import urlparse

    if given:
        parsed = urlparse(given)
        if parsed.scheme != "https" or not parsed.hostname:
            raise InputError("command line", f"--{agent}", f"'{given}' is not an https:// URL",
                             f"give the API's address, e.g. https://localhost:{port}")
        return given.rstrip("/"), parsed.hostname
    servers = [n["name"] for n in plan["nodes"] if n[agent]["server"] and n["name"] in deployed]
    if not servers:
        raise InputError("hosts.yml", f"{agent}_servers", f"no {agent} server is deployed",
                         f"provision the platform first, or pass --{agent} https://<address>:{port}")
    first = servers[0]
    return f"https://{deployed[first].get('ansible_host') or first}:{port}", first


def _node_facts(inventory: Path, args: argparse.Namespace) -> dict[str, Any]:
    """What playbooks/status.yml read on the nodes (None for a node it could not reach)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ai4os-status-") as tmp:
        out = Path(tmp) / "nodes.json"
        playbook.run(inventory, "status.yml", {"day2_status_out": str(out)}, shlex.split(args.ansible_args),
                     to_stderr=args.json)
        found = json.loads(out.read_text()) if out.is_file() else {}
    return {name: found.get(name) for name in playbook.inventory_hosts(inventory)}


def _trailing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ansible-args", default="", metavar="ARGS",
                   help="more arguments for ansible-playbook, as one string (e.g. \"-v -e @extra.yml\")")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "add-node", help="add the plan's new nodes to the running platform, touching no other node",
        description="Provision the nodes the plan has and hosts.yml lacks (grow a pool's count in sites.yml first; "
                    "nothing is ever destroyed), then run playbooks/scale.yml: the new nodes converge alone, join, "
                    "and clients pass node admission. With NODE names: nodes already in hosts.yml (test-bed, or "
                    "provisioned by you).")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="nodes of hosts.yml to add (default: what provision adds)")
    _trailing(p)
    p.set_defaults(func=cmd_add_node)

    p = subparsers.add_parser(
        "remove-node", help="drain nodes, make them leave the cluster, then destroy their VMs",
        description="Shrink the node's pool in sites.yml first. Then: refused if a Consul datacenter or the Nomad "
                    "region would keep fewer than 3 servers or the cluster is not healthy; else one node at a time "
                    "is marked ineligible, drained with a deadline and leaves Nomad and Consul (servers leave Raft), "
                    "and finally `provision --allow-destroy NODE...` destroys the VMs (data volumes are kept).")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="the nodes to remove")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--keep-vms", action="store_true", help="leave the VMs (and hosts.yml) as they are")
    _trailing(p)
    p.set_defaults(func=cmd_remove_node)

    p = subparsers.add_parser(
        "upgrade", help="rolling upgrade (or re-converge) of the cluster, one server at a time, with snapshots",
        description="Run playbooks/upgrade.yml: preflight (versions pinned, cluster healthy, no downgrade), Raft "
                    "snapshots to <INVENTORY>/backups, Consul then Nomad servers one at a time with a health wait, "
                    "clients in batches (drained first), then the platform jobs. Set consul_version / nomad_version "
                    "first; also applies a rotated gossip key or CA.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--batch", default="1", metavar="N",
                   help="clients upgraded at once: a number or a percentage such as 25%% (default 1)")
    p.add_argument("--rehearse", action="store_true",
                   help="the orchestration alone (snapshots, drains, health waits) without converging any role")
    _trailing(p)
    p.set_defaults(func=cmd_upgrade)

    p = subparsers.add_parser(
        "backup", help="Raft snapshots and the platform's stateful data to <INVENTORY>/backups",
        description="Run playbooks/backup.yml: a checked Raft snapshot of every Consul datacenter and of the Nomad "
                    "region, and archives of the host data of Vault, MLflow, Prometheus/Grafana and the accounting "
                    "store where they are on; the newest 10 of each kind are kept (day2_backup_keep).")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--no-data", action="store_true", help="the Raft snapshots only")
    _trailing(p)
    p.set_defaults(func=cmd_backup)

    p = subparsers.add_parser(
        "restore", help="restore one backup file (a Raft snapshot or a component's data)",
        description="Run playbooks/restore.yml with one file of <INVENTORY>/backups: consul-<dc>-...snap restores "
                    "that datacenter, nomad-...snap the region (their state goes back to that moment), "
                    "data-<component>-<node>-....tar.gz unpacks on that node (stop the component first).")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--file", required=True, metavar="FILE", help="the backup file")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _trailing(p)
    p.set_defaults(func=cmd_restore)

    p = subparsers.add_parser(
        "reset", help="remove the kit's cluster software (and data) from nodes, for a re-install",
        description="Run playbooks/reset.yml after typing the platform's name: Nomad, Consul, the DNS forwarder and "
                    "the certificate check leave the nodes (with --keep-data their data directories stay). Users' "
                    "data (/nomad-storage), Docker, the NVIDIA driver and the OS baseline are never touched.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--keep-data", action="store_true", help="keep the Consul and Nomad data directories")
    p.add_argument("--limit", metavar="NODES", default=None, help="only these nodes (an Ansible pattern)")
    p.add_argument("--confirm", metavar="NAME", default=None, help="the platform's name, instead of being asked")
    _trailing(p)
    p.set_defaults(func=cmd_reset)

    p = subparsers.add_parser(
        "status", help="one screen of the running platform (read only)",
        description="Leaders, Raft peers and autopilot health of Consul and Nomad, every node (membership, "
                    "eligibility, node admission, versions, drift from the plan), the platform's jobs, certificates' "
                    "expiry and (--nodes) the accounting collector. Exit 0 healthy and as planned, 3 unhealthy or "
                    "drifted, 1 unreachable.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--nomad", metavar="URL", default=None,
                   help="Nomad API (default: https://<first server of hosts.yml>:4646)")
    p.add_argument("--consul", metavar="URL", default=None,
                   help="Consul API (default: https://<first server of hosts.yml>:8501)")
    p.add_argument("--nodes", action="store_true",
                   help="also read every node's certificates and the accounting collector over SSH (playbooks/status.yml)")
    _trailing(p)
    p.set_defaults(func=cmd_status)
