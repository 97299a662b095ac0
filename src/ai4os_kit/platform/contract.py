"""The job contract: does a Nomad job spec fit the nodes the plan produces?

A job passes when
- it parses as HCL and holds exactly one ``job`` block;
- its ``region`` is the platform's region (a missing region means Nomad's
  ``global``, which is exactly the inconsistency the kit removes);
- its datacenters are sites of the plan and its namespace exists
  (``default`` plus one per VO);
- every task uses a driver of the cluster contract (docker, exec, raw_exec);
- every constraint (job, group and task level) is satisfiable by at least one
  Nomad client of its datacenters, and each group as a whole is placeable;
- its Traefik tags form valid routers: a rule in Traefik v3 syntax whose host
  names lie under the domain of every site the job can land in, known entry
  points, a service that exists, middlewares that are defined (across all
  checked jobs for ``@consulcatalog`` ones), router names unique.

Node attributes come from the plan: ``node.datacenter``, ``node.class``,
``node.unique.name``, ``node.region``, ``meta.*`` and the fingerprints the
cluster contract guarantees (``attr.kernel.name``, ``attr.driver.*``).
``meta.status`` is ``test`` in the plan until node admission passes; with
``assume_admitted`` (the default when node_admission is on) it is ``ready``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ai4os_kit.errors import InputError, KitError
from ai4os_kit.platform.constraints import (
    CONTRACT_DRIVERS,
    KNOWN_OPERATORS,
    node_attributes,
    satisfies,
)
from ai4os_kit.platform.nomad_job import Job, parse_job
from ai4os_kit.platform.traefik_rules import (
    Routers,
    collect_routers,
    parse_rule,
    under,
    valid_host,
)

DEFAULT_ENTRYPOINTS = ("web", "websecure")
SERVICE_SCHEMES = ("http", "https", "h2c")


@dataclass(frozen=True)
class Violation:
    """One way a job breaks the contract."""

    job: str
    where: str
    problem: str

    def __str__(self) -> str:
        return f"job {self.job}: {self.where}: {self.problem}"


# ------------------------------------------------------------------ checking

@dataclass
class Contract:
    """What jobs are checked against, derived from the plan."""

    region: str
    namespaces: set[str]
    site_domains: dict[str, str]                  # datacenter -> domain
    nodes: list[dict[str, str]]                   # attributes of every Nomad client
    entrypoints: tuple[str, ...] = DEFAULT_ENTRYPOINTS

    @classmethod
    def from_plan(cls, plan: dict[str, Any], assume_admitted: bool | None = None,
                  entrypoints: Iterable[str] = DEFAULT_ENTRYPOINTS) -> "Contract":
        region = plan["platform"]["region"]
        if assume_admitted is None:
            assume_admitted = bool(plan.get("components", {}).get("node_admission", {}).get("enabled", True))
        return cls(
            region=region,
            namespaces={"default", plan["platform"]["namespace"]} | {vo["namespace"] for vo in plan["platform"]["vos"]},
            site_domains={s["datacenter"]: s["domain"] for s in plan["sites"]},
            nodes=[node_attributes(n, region, assume_admitted) for n in plan["nodes"] if n["nomad"]["client"]],
            entrypoints=tuple(entrypoints),
        )


def _check_header(job: Job, c: Contract) -> list[Violation]:
    out = []
    if job.region is None:
        out.append(Violation(job.name, "region", f"not set (Nomad would use 'global'); set region = \"{c.region}\""))
    elif job.region != c.region:
        out.append(Violation(job.name, "region", f"'{job.region}' differs from the platform region '{c.region}'"))
    if not job.datacenters:
        out.append(Violation(job.name, "datacenters", "empty: the job can land nowhere"))
    for dc in job.datacenters:
        if dc not in c.site_domains and "*" not in dc:
            out.append(Violation(job.name, "datacenters", f"'{dc}' is not a site of the plan ({', '.join(sorted(c.site_domains))})"))
    if job.namespace not in c.namespaces:
        out.append(Violation(job.name, "namespace", f"'{job.namespace}' does not exist (namespaces: {', '.join(sorted(c.namespaces))})"))
    if job.type not in ("service", "batch", "system", "sysbatch"):
        out.append(Violation(job.name, "type", f"unknown job type '{job.type}'"))
    return out


def _check_placement(job: Job, c: Contract) -> list[Violation]:
    out = []
    in_dcs = [n for n in c.nodes if n["node.datacenter"] in job.datacenters]
    for group in job.groups:
        for task, driver in group.drivers:
            if driver not in CONTRACT_DRIVERS:
                out.append(Violation(job.name, f"group {group.name} task {task}",
                                     f"driver '{driver}' is not offered by the cluster ({', '.join(CONTRACT_DRIVERS)})"))
        for con in group.constraints:
            if con.operator not in KNOWN_OPERATORS:
                out.append(Violation(job.name, con.where, f"unknown constraint operator '{con.operator}'"))
            elif not any(satisfies(n, con) for n in in_dcs):
                out.append(Violation(job.name, con.where,
                                     f"constraint {con.attribute} {con.operator} {con.value!r} matches no Nomad client "
                                     f"in datacenters {', '.join(job.datacenters) or '(none)'}"))
        if in_dcs and not any(all(satisfies(n, con) for con in group.constraints) for n in in_dcs):
            out.append(Violation(job.name, f"group {group.name}", "no single node satisfies all its constraints together"))
    if not in_dcs and job.datacenters:
        out.append(Violation(job.name, "datacenters", "no Nomad client in these datacenters"))
    return out


def _check_routers(job: Job, c: Contract, acc: Routers) -> list[Violation]:
    out = []
    domains = {c.site_domains[dc] for dc in job.datacenters if dc in c.site_domains}
    for name, router in acc.routers.items():
        if name.startswith("service:"):
            scheme = router["scheme"]
            if scheme not in SERVICE_SCHEMES:
                out.append(Violation(job.name, f"traefik service {name[8:]}", f"scheme '{scheme}' is not one of {SERVICE_SCHEMES}"))
            continue
        where = f"traefik router {name}"
        rule = router.get("rule")
        if not rule:
            out.append(Violation(job.name, where, "has no rule"))
        else:
            try:
                matchers = parse_rule(rule)
            except ValueError as exc:
                out.append(Violation(job.name, where, f"rule {rule!r} is invalid: {exc}"))
                matchers = []
            hosts = [a[0] for m, a in matchers if m == "Host"]
            if matchers and not hosts:
                out.append(Violation(job.name, where, "rule names no Host(): it would capture every site's traffic"))
            for host in hosts:
                if not valid_host(host):
                    out.append(Violation(job.name, where, f"host '{host}' is not a valid DNS name"))
                for domain in sorted(domains):
                    if not under(host, domain):
                        out.append(Violation(job.name, where, f"host '{host}' is not under the site domain '{domain}'"))
        for ep in filter(None, router.get("entrypoints", "").split(",")):
            if ep not in c.entrypoints:
                out.append(Violation(job.name, where, f"entry point '{ep}' is not one of {', '.join(c.entrypoints)}"))
        service = router.get("service")
        if service and service not in acc.services and service not in acc.consul_names:
            out.append(Violation(job.name, where, f"service '{service}' is neither a Consul service nor defined by tags"))
    return out


def check_job(job: Job, contract: Contract) -> tuple[list[Violation], Routers]:
    """Violations of one job, and its Traefik objects (for the cross-job checks)."""
    acc = Routers()
    for group in job.groups:
        for consul_name, tags in group.services:
            collect_routers(tags, consul_name, acc)
    out = _check_header(job, contract) + _check_placement(job, contract) + _check_routers(job, contract, acc)
    return out, acc


def check_jobs(jobs: list[Job], contract: Contract) -> list[Violation]:
    """Check every job and what they share: router names and @consulcatalog middlewares."""
    out: list[Violation] = []
    seen: dict[str, str] = {}
    defined: set[str] = set()
    used: list[tuple[str, str, str]] = []
    for job in jobs:
        violations, acc = check_job(job, contract)
        out += violations
        defined |= acc.middlewares
        for name, router in acc.routers.items():
            if name.startswith("service:"):
                continue
            if name in seen and seen[name] != job.name:
                out.append(Violation(job.name, f"traefik router {name}", f"name also used by job {seen[name]}"))
            seen[name] = job.name
            for mw in filter(None, router.get("middlewares", "").split(",")):
                used.append((job.name, name, mw))
    for job_name, router, mw in used:
        base, _, provider = mw.partition("@")
        if provider in ("", "consulcatalog") and base not in defined:
            out.append(Violation(job_name, f"traefik router {router}", f"middleware '{mw}' is defined by no checked job"))
    return out


def check_files(paths: Iterable[Path], plan: dict[str, Any], **kwargs: Any) -> list[Violation]:
    """Parse and check job files (``*.nomad.hcl``) against the plan."""
    contract = Contract.from_plan(plan, **kwargs)
    jobs: list[Job] = []
    out: list[Violation] = []
    for path in paths:
        try:
            jobs.append(parse_job(Path(path).read_text(encoding="utf-8"), str(path)))
        except KitError as exc:
            out.append(Violation(Path(path).name, "file", str(exc)))
    return out + check_jobs(jobs, contract)


def job_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into the ``*.nomad.hcl`` files under them."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out += sorted(p.rglob("*.nomad.hcl")) if p.is_dir() else [p]
    return out


# ---------------------------------------------------------------------- CLI

def cmd_contract(args: argparse.Namespace) -> int:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    plan = build_plan(load_inventory(args.inventory))
    files = job_files(args.jobs)
    if not files:
        raise InputError("command line", "JOBS", "no *.nomad.hcl files found",
                         "render the jobs first (ansible-playbook playbooks/platform.yml -e platform_job_submit=false) "
                         "and give their directory")
    violations = check_files(files, plan, entrypoints=args.entrypoint or DEFAULT_ENTRYPOINTS)
    for v in violations:
        print(f"FAIL {v}")
    print(f"{len(files)} job(s) checked against {len(plan['nodes'])} node(s): "
          f"{'OK' if not violations else str(len(violations)) + ' violation(s)'}")
    return 1 if violations else 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "contract", help="check rendered Nomad jobs against the node plan",
        description="Parse Nomad job specs (HCL) and check region, datacenters, namespaces, drivers, "
                    "constraints (each satisfiable by a node of the plan) and Traefik routers.")
    p.add_argument("inventory", metavar="INVENTORY", help="inventory directory")
    p.add_argument("jobs", metavar="JOBS", nargs="+", type=Path, help="job files or directories of *.nomad.hcl")
    p.add_argument("--entrypoint", action="append", metavar="NAME",
                   help="a Traefik entry point name routers may use (repeatable; default: web, websecure)")
    p.set_defaults(func=cmd_contract)
