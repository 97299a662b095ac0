"""`ai4os-kit contract` (registered by ai4os_kit.cli): the command line of the job contract.

The checker (ai4os_kit.platform.contract, with the HCL parser) is imported when the command
runs, so that `ai4os-kit --help` and every other command start without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ai4os_kit.errors import InputError


def cmd_contract(args: argparse.Namespace) -> int:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan
    from ai4os_kit.platform.contract import DEFAULT_ENTRYPOINTS, Violation, check_files, check_papi, job_files

    plan = build_plan(load_inventory(args.inventory, check_vault=False))
    files = job_files(args.jobs)
    if not files and not args.papi:
        raise InputError("command line", "JOBS", "no *.nomad.hcl files found",
                         "render the jobs first (ansible-playbook playbooks/platform.yml -e platform_job_submit=false) "
                         "and give their directory, or give PAPI's templates with --papi")
    options = {"entrypoints": args.entrypoint or DEFAULT_ENTRYPOINTS, "middlewares": args.middleware or ()}
    violations: list[Violation] = []
    checked = 0
    if files:
        violations += check_files(files, plan, rule_syntax=args.rule_syntax or "v3", **options)
        checked += len(files)
    if args.papi:
        count, found, notes = check_papi(args.papi, plan, rule_syntax=args.rule_syntax or "v2", **options)
        violations += found
        checked += count
        for note in notes:
            print(f"note {note}")
    for v in violations:
        print(f"FAIL {v}")
    print(f"{checked} job(s) checked against {len(plan['nodes'])} node(s): "
          f"{'OK' if not violations else str(len(violations)) + ' violation(s)'}")
    return 1 if violations else 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "contract", help="check Nomad jobs (rendered, or PAPI's own templates) against the node plan",
        description="Parse Nomad job specs (HCL) and check region, datacenters, namespaces, drivers, "
                    "constraints and device requests (each satisfiable by a node of the plan) and Traefik routers.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("jobs", metavar="JOBS", nargs="*", type=Path, help="job files or directories of *.nomad.hcl")
    p.add_argument("--papi", type=Path, metavar="DIR",
                   help="a checkout of ai4os/ai4-papi (or its etc/): check its job templates, filled as PAPI fills them")
    p.add_argument("--entrypoint", action="append", metavar="NAME",
                   help="a Traefik entry point name routers may use (repeatable; default: web, websecure)")
    p.add_argument("--middleware", action="append", metavar="NAME",
                   help="a @consulcatalog middleware defined by a job not checked here (repeatable)")
    p.add_argument("--rule-syntax", choices=("v2", "v3"),
                   help="Traefik's core.defaultRuleSyntax (default: v3 for JOBS, v2 for --papi)")
    p.set_defaults(func=cmd_contract)
