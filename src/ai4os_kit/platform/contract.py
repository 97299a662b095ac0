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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import hcl2

from ai4os_kit.errors import InputError, KitError

CONTRACT_DRIVERS = ("docker", "exec", "raw_exec")
DEFAULT_ENTRYPOINTS = ("web", "websecure")
SERVICE_SCHEMES = ("http", "https", "h2c")
# Traefik v3 rule matchers -> number of arguments (None: one or more).
MATCHERS: dict[str, int | None] = {
    "Host": 1, "HostRegexp": 1, "Path": 1, "PathPrefix": 1, "PathRegexp": 1, "Method": 1,
    "Header": 2, "HeaderRegexp": 2, "Query": None, "QueryRegexp": 2, "ClientIP": 1,
}
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
INTERP = re.compile(r"^\$\{([a-zA-Z0-9_.\-]+)\}$")


@dataclass(frozen=True)
class Violation:
    """One way a job breaks the contract."""

    job: str
    where: str
    problem: str

    def __str__(self) -> str:
        return f"job {self.job}: {self.where}: {self.problem}"


@dataclass
class Constraint:
    attribute: str
    operator: str
    value: str
    where: str


@dataclass
class Group:
    name: str
    constraints: list[Constraint]
    drivers: list[tuple[str, str]]              # (task, driver)
    services: list[tuple[str, list[str]]]       # (consul service name, tags)


@dataclass
class Job:
    name: str
    region: str | None
    datacenters: list[str]
    namespace: str
    type: str
    groups: list[Group] = field(default_factory=list)


# ------------------------------------------------------------------ parsing

def _attr(body: dict[str, Any], key: str, default: Any = None) -> Any:
    """An attribute of an HCL body (python-hcl2 may wrap values in one-element lists)."""
    if key not in body:
        return default
    value = body[key]
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], dict):
        return value[0]
    return value


def _blocks(body: dict[str, Any], name: str) -> list[tuple[str | None, dict[str, Any]]]:
    """The blocks ``name`` of a body as (label, body) pairs."""
    raw = body.get(name, [])
    items = raw if isinstance(raw, list) else [raw]
    out: list[tuple[str | None, dict[str, Any]]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if len(item) == 1 and isinstance(next(iter(item.values())), dict):
            label, inner = next(iter(item.items()))
            out.append((str(label).strip('"'), inner))
        else:
            out.append((None, item))
    return out


def _constraints(body: dict[str, Any], where: str) -> list[Constraint]:
    out = []
    for _, c in _blocks(body, "constraint"):
        out.append(Constraint(attribute=str(_attr(c, "attribute", "")), operator=str(_attr(c, "operator", "=")),
                              value=str(_attr(c, "value", "")), where=where))
    return out


def _services(body: dict[str, Any], default_name: str) -> list[tuple[str, list[str]]]:
    out = []
    for _, svc in _blocks(body, "service"):
        tags = _attr(svc, "tags", []) or []
        out.append((str(_attr(svc, "name", default_name)), [str(t) for t in tags]))
    return out


def parse_job(text: str, source: str = "job") -> Job:
    """Parse a Nomad job spec (HCL); KitError when it does not parse."""
    try:
        doc = hcl2.loads(text)
    except Exception as exc:  # python-hcl2 raises lark errors of several kinds
        raise KitError(f"{source}: does not parse as HCL: {exc}") from None
    jobs = _blocks(doc, "job")
    if len(jobs) != 1 or jobs[0][0] is None:
        raise KitError(f"{source}: expected exactly one labelled `job` block, found {len(jobs)}")
    name, body = jobs[0]
    assert name is not None
    job = Job(name=name, region=_attr(body, "region"), datacenters=list(_attr(body, "datacenters", []) or []),
              namespace=str(_attr(body, "namespace", "default")), type=str(_attr(body, "type", "service")))
    job_constraints = _constraints(body, "job")
    for gname, gbody in _blocks(body, "group"):
        gname = gname or "?"
        constraints = job_constraints + _constraints(gbody, f"group {gname}")
        drivers: list[tuple[str, str]] = []
        services = _services(gbody, f"{name}-{gname}")
        for tname, tbody in _blocks(gbody, "task"):
            tname = tname or "?"
            constraints += _constraints(tbody, f"group {gname} task {tname}")
            drivers.append((tname, str(_attr(tbody, "driver", ""))))
            services += _services(tbody, f"{name}-{gname}-{tname}")
        job.groups.append(Group(name=gname, constraints=constraints, drivers=drivers, services=services))
    return job


# ------------------------------------------------------------------- nodes

def node_attributes(node: dict[str, Any], region: str, assume_admitted: bool) -> dict[str, str]:
    """The ``${...}`` attributes a Nomad client of the plan offers."""
    nomad = node["nomad"]
    attrs = {
        "node.datacenter": node["datacenter"],
        "node.unique.name": node["name"],
        "node.region": region,
        "node.pool": "default",
        "attr.unique.hostname": node["name"],
        "attr.kernel.name": "linux",
        "attr.os.name": "linux",
    }
    if nomad.get("node_class"):
        attrs["node.class"] = nomad["node_class"]
    for drv in CONTRACT_DRIVERS:
        attrs[f"attr.driver.{drv}"] = "1"
    for key, value in (nomad.get("meta") or {}).items():
        attrs[f"meta.{key}"] = "" if value is None else str(value)
    if assume_admitted and "meta.status" in attrs:
        attrs["meta.status"] = "ready"
    return attrs


def _split_set(value: str) -> set[str]:
    return {v.strip() for v in value.split(",") if v.strip()}


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def satisfies(attrs: dict[str, str], c: Constraint) -> bool:
    """Whether a node with ``attrs`` satisfies constraint ``c`` (Nomad's operators)."""
    op = c.operator
    if op in ("distinct_hosts", "distinct_property"):
        return True
    m = INTERP.match(c.attribute)
    left = attrs.get(m.group(1)) if m else c.attribute
    if op == "is_set":
        return left is not None
    if op == "is_not_set":
        return left is None
    if left is None:
        return False
    right = c.value
    if op in ("=", "==", "is"):
        return left == right
    if op in ("!=", "not"):
        return left != right
    if op == "regexp":
        return re.search(right, left) is not None
    if op == "set_contains":
        return _split_set(right) <= _split_set(left)
    if op in ("set_contains_any",):
        return bool(_split_set(right) & _split_set(left))
    if op in ("<", "<=", ">", ">="):
        try:
            a, b = float(left), float(right)
        except ValueError:
            a, b = left, right  # type: ignore[assignment]
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]  # type: ignore[operator]
    if op in ("version", "semver"):
        for clause in right.split(","):
            mm = re.match(r"\s*(>=|<=|>|<|=|!=)?\s*(\S+)", clause)
            if not mm:
                return False
            cmp, ver = mm.group(1) or "=", mm.group(2)
            a, b = _version_key(left), _version_key(ver)
            if not {"=": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[cmp]:
                return False
        return True
    return False


KNOWN_OPERATORS = {"=", "==", "is", "!=", "not", "regexp", "set_contains", "set_contains_any", "is_set",
                   "is_not_set", "distinct_hosts", "distinct_property", "<", "<=", ">", ">=", "version", "semver"}


# ------------------------------------------------------------------ traefik

def parse_rule(rule: str) -> list[tuple[str, list[str]]]:
    """Parse a Traefik v3 rule; return its matchers [(name, args)]; ValueError when invalid."""
    tokens = re.findall(r"`[^`]*`|&&|\|\||[()!,]|[A-Za-z]+|\S", rule)
    pos = 0
    found: list[tuple[str, list[str]]] = []

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected or 'more'} at token {pos + 1}, got {tok!r}")
        pos += 1
        return tok

    def term() -> None:
        if peek() == "!":
            take("!")
        if peek() == "(":
            take("(")
            expr()
            take(")")
            return
        name = take()
        if name not in MATCHERS:
            raise ValueError(f"unknown matcher {name!r} (Traefik v3 knows {', '.join(MATCHERS)})")
        take("(")
        args = [take()]
        while peek() == ",":
            take(",")
            args.append(take())
        take(")")
        if any(not (a.startswith("`") and a.endswith("`")) for a in args):
            raise ValueError(f"{name}: arguments must be `backquoted`")
        want = MATCHERS[name]
        if want is not None and len(args) != want:
            raise ValueError(f"{name} takes {want} argument(s) in Traefik v3, got {len(args)}")
        found.append((name, [a[1:-1] for a in args]))

    def expr() -> None:
        term()
        while peek() in ("&&", "||"):
            take()
            term()

    expr()
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos]!r} after the rule")
    return found


def _valid_host(host: str) -> bool:
    labels = host.split(".")
    return len(host) <= 253 and len(labels) >= 2 and all(HOST_LABEL.match(label) for label in labels)


def _under(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


@dataclass
class _Routers:
    routers: dict[str, dict[str, str]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    middlewares: set[str] = field(default_factory=set)
    consul_names: set[str] = field(default_factory=set)


def _collect_traefik(tags: list[str], consul_name: str, acc: _Routers) -> None:
    if "traefik.enable=true" not in tags:
        return
    acc.consul_names.add(consul_name)
    for tag in tags:
        key, _, value = tag.partition("=")
        parts = key.split(".")
        if key.startswith("traefik.http.routers.") and len(parts) >= 5:
            acc.routers.setdefault(parts[3], {})[".".join(parts[4:])] = value
        elif key.startswith("traefik.http.services.") and len(parts) >= 5:
            acc.services.add(parts[3])
            if ".".join(parts[4:]) == "loadbalancer.server.scheme":
                acc.routers.setdefault(f"service:{parts[3]}", {})["scheme"] = value
        elif key.startswith("traefik.http.middlewares.") and len(parts) >= 5:
            acc.middlewares.add(parts[3])


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
            namespaces={"default"} | {vo["namespace"] for vo in plan["platform"]["vos"]},
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


def _check_routers(job: Job, c: Contract, acc: _Routers) -> list[Violation]:
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
                if not _valid_host(host):
                    out.append(Violation(job.name, where, f"host '{host}' is not a valid DNS name"))
                for domain in sorted(domains):
                    if not _under(host, domain):
                        out.append(Violation(job.name, where, f"host '{host}' is not under the site domain '{domain}'"))
        for ep in filter(None, router.get("entrypoints", "").split(",")):
            if ep not in c.entrypoints:
                out.append(Violation(job.name, where, f"entry point '{ep}' is not one of {', '.join(c.entrypoints)}"))
        service = router.get("service")
        if service and service not in acc.services and service not in acc.consul_names:
            out.append(Violation(job.name, where, f"service '{service}' is neither a Consul service nor defined by tags"))
    return out


def check_job(job: Job, contract: Contract) -> tuple[list[Violation], _Routers]:
    """Violations of one job, and its Traefik objects (for the cross-job checks)."""
    acc = _Routers()
    for group in job.groups:
        for consul_name, tags in group.services:
            _collect_traefik(tags, consul_name, acc)
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
    from ai4os_kit.inventory import load_inventory
    from ai4os_kit.plan import build_plan

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
