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

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ai4os_kit.errors import KitError
from ai4os_kit.platform.constraints import (
    CONTRACT_DRIVERS,
    KNOWN_OPERATORS,
    node_attributes,
    offers,
    satisfies,
)
from ai4os_kit.platform.nomad_job import Job, parse_job
from ai4os_kit.platform.traefik_rules import (
    HOST_LABEL,
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
    devices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # node name -> devices
    vo_domains: dict[str, str] = field(default_factory=dict)                  # VO namespace -> VO domain
    rule_syntax: str = "v3"                       # Traefik's core.defaultRuleSyntax
    middlewares: frozenset[str] = frozenset()     # @consulcatalog middlewares defined outside the checked jobs
    any_region: bool = False                      # PAPI's templates: "global" is mapped to the agent's region

    @classmethod
    def from_plan(cls, plan: dict[str, Any], assume_admitted: bool | None = None,
                  entrypoints: Iterable[str] = DEFAULT_ENTRYPOINTS, rule_syntax: str = "v3",
                  middlewares: Iterable[str] = ()) -> "Contract":
        region = plan["platform"]["region"]
        if assume_admitted is None:
            # Nodes start at the status the plan writes; only node admission makes them ready.
            assume_admitted = bool(plan.get("components", {}).get("node_admission", {}).get("enabled", False))
        clients = [n for n in plan["nodes"] if n["nomad"]["client"]]
        return cls(
            region=region,
            namespaces={"default", plan["platform"]["namespace"]} | {vo["namespace"] for vo in plan["platform"]["vos"]},
            site_domains={s["datacenter"]: s["domain"] for s in plan["sites"]},
            nodes=[node_attributes(n, region, assume_admitted) for n in clients],
            entrypoints=tuple(entrypoints),
            devices={n["name"]: list(n["nomad"].get("devices") or []) for n in clients},
            vo_domains={vo["namespace"]: vo["domain"] for vo in plan["platform"]["vos"]},
            rule_syntax=rule_syntax,
            middlewares=frozenset(m.partition("@")[0] for m in middlewares),
        )

    def in_datacenters(self, job: Job) -> list[dict[str, str]]:
        """The clients a job can land on: its datacenters are globs, none means "*" (Nomad >= 1.6)."""
        patterns = job.datacenters or ["*"]
        return [n for n in self.nodes if any(fnmatch.fnmatchcase(n["node.datacenter"], p) for p in patterns)]


def _check_header(job: Job, c: Contract) -> list[Violation]:
    out = []
    if c.any_region and job.region in (None, "global", c.region):
        pass
    elif job.region is None:
        out.append(Violation(job.name, "region", f"not set (Nomad would use 'global'); set region = \"{c.region}\""))
    elif job.region != c.region:
        out.append(Violation(job.name, "region", f"'{job.region}' differs from the platform region '{c.region}'"))
    for dc in job.datacenters:
        if not any(fnmatch.fnmatchcase(site, dc) for site in c.site_domains):
            out.append(Violation(job.name, "datacenters", f"'{dc}' matches no site of the plan ({', '.join(sorted(c.site_domains))})"))
    if job.namespace not in c.namespaces:
        out.append(Violation(job.name, "namespace", f"'{job.namespace}' does not exist (namespaces: {', '.join(sorted(c.namespaces))})"))
    if job.type not in ("service", "batch", "system", "sysbatch"):
        out.append(Violation(job.name, "type", f"unknown job type '{job.type}'"))
    return out


def _check_placement(job: Job, c: Contract) -> list[Violation]:
    out = []
    in_dcs = c.in_datacenters(job)
    where_dcs = ", ".join(job.datacenters) or "* (none given)"
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
                                     f"in datacenters {where_dcs}"))
        for dev in group.devices:
            if not any(offers(c.devices.get(n["node.unique.name"], []), dev) for n in in_dcs):
                wanted = "; ".join(f"{k.attribute} {k.operator} {k.value!r}" for k in dev.constraints)
                out.append(Violation(job.name, f"group {group.name} task {dev.task}",
                                     f"device {dev.name} x{dev.count}{' (' + wanted + ')' if wanted else ''} is offered "
                                     f"by no Nomad client in datacenters {where_dcs}"))
        if in_dcs and not any(all(satisfies(n, con) for con in group.constraints)
                              and all(offers(c.devices.get(n["node.unique.name"], []), d) for d in group.devices)
                              for n in in_dcs):
            out.append(Violation(job.name, f"group {group.name}", "no single node satisfies all its constraints together"))
    if not in_dcs:
        out.append(Violation(job.name, "datacenters", f"no Nomad client in datacenters {where_dcs}"))
    return out


def _host_problems(job: Job, c: Contract, host: str, domains: set[str]) -> list[str]:
    """Why a router host is wrong: a platform host must lie under every site domain the job can land
    in; a user deployment's host (PAPI's form, with ${meta.domain}) under <meta.domain>-<VO domain>
    for every node it can land on."""
    if "${meta.domain}" not in host:
        problems = [] if valid_host(host) else [f"host '{host}' is not a valid DNS name"]
        return problems + [f"host '{host}' is not under the site domain '{d}'" for d in sorted(domains)
                           if not under(host, d)]
    vo_domain = c.vo_domains.get(job.namespace)
    if vo_domain is None:
        return [f"host '{host}' uses ${{meta.domain}} (a user deployment's name) outside a VO namespace"]
    problems = []
    for meta_domain in sorted({n.get("meta.domain", "") for n in c.in_datacenters(job)}):
        concrete = host.replace("${meta.domain}", meta_domain)
        if not HOST_LABEL.match(meta_domain):
            # PAPI joins it with "-" to the VO domain: one label makes <site>-<VO domain> a sibling of
            # the VO domain, in its DNS zone; anything else scatters deployments over foreign names.
            problems.append(f"node meta.domain {meta_domain!r} is not one DNS label: host '{concrete}' "
                            f"is not a sibling of the VO domain '{vo_domain}'")
        elif not valid_host(concrete):
            problems.append(f"host '{concrete}' (meta.domain {meta_domain!r}) is not a valid DNS name")
        elif not under(concrete, f"{meta_domain}-{vo_domain}"):
            problems.append(f"host '{concrete}' is not under '{meta_domain}-{vo_domain}'")
    return problems


def _check_routers(job: Job, c: Contract, acc: Routers) -> list[Violation]:
    out = []
    domains = {c.site_domains[n["node.datacenter"]] for n in c.in_datacenters(job)}
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
            syntax = router.get("ruleSyntax", c.rule_syntax)
            try:
                matchers = parse_rule(rule, syntax if syntax in ("v2", "v3") else "v3")
            except ValueError as exc:
                out.append(Violation(job.name, where, f"rule {rule!r} is invalid: {exc}"))
                matchers = []
            hosts = [h for m, args in matchers if m in ("Host", "HostSNI") for h in args]
            if matchers and not hosts:
                out.append(Violation(job.name, where, "rule names no Host(): it would capture every site's traffic"))
            for host in hosts:
                out += [Violation(job.name, where, p) for p in _host_problems(job, c, host, domains)]
        for ep in filter(None, router.get("entrypoints", "").split(",")):
            if ep not in c.entrypoints:
                out.append(Violation(job.name, where, f"entry point '{ep}' is not one of {', '.join(c.entrypoints)}"))
        service = router.get("service")
        # <name>@internal: Traefik's own services (api@internal is its API and dashboard).
        if service and service not in acc.services and service not in acc.consul_names \
                and not service.endswith("@internal"):
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
        if provider in ("", "consulcatalog") and base not in defined | contract.middlewares:
            out.append(Violation(job_name, f"traefik router {router}", f"middleware '{mw}' is defined by no checked job"))
    return out


def check_texts(texts: Iterable[tuple[str, str]], contract: Contract) -> list[Violation]:
    """Parse and check job specs given as (source, HCL text)."""
    jobs: list[Job] = []
    out: list[Violation] = []
    for source, text in texts:
        try:
            jobs.append(parse_job(text, source))
        except KitError as exc:
            out.append(Violation(Path(source).name, "file", str(exc)))
    return out + check_jobs(jobs, contract)


def check_files(paths: Iterable[Path], plan: dict[str, Any], **kwargs: Any) -> list[Violation]:
    """Parse and check job files (``*.nomad.hcl``) against the plan."""
    return check_texts(((str(p), Path(p).read_text(encoding="utf-8")) for p in paths), Contract.from_plan(plan, **kwargs))


def check_papi(root: Path, plan: dict[str, Any], **kwargs: Any) -> tuple[int, list[Violation], list[str]]:
    """PAPI's own templates (a checkout or its etc/), filled as PAPI fills them, against the plan:
    user deployments in the VO namespaces, PAPI's Traefik v2 rules, region "global" (Nomad maps it
    to the agent's region). Returns (number of filled jobs, violations, notes on what PAPI refuses)."""
    from ai4os_kit.platform.papi_templates import papi_jobs

    kwargs.setdefault("rule_syntax", "v2")
    contract = Contract.from_plan(plan, **kwargs)
    contract.any_region = True
    texts, notes = papi_jobs(root, plan)
    return len(texts), check_texts(texts, contract), notes


def job_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into the ``*.nomad.hcl`` files under them."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out += sorted(p.rglob("*.nomad.hcl")) if p.is_dir() else [p]
    return out
