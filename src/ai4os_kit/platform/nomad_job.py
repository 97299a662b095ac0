"""Nomad job specs as the job contract reads them: parsed from HCL (python-hcl2)
into jobs, groups, tasks, constraints and the services' tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hcl2

from ai4os_kit.errors import KitError


@dataclass
class Constraint:
    attribute: str
    operator: str
    value: str
    where: str


@dataclass
class Device:
    """A task's device request (resources { device "<name>" { count, constraint } })."""

    task: str
    name: str                                   # gpu, nvidia/gpu or nvidia/gpu/<model>
    count: int
    constraints: list[Constraint]


@dataclass
class Group:
    name: str
    constraints: list[Constraint]
    drivers: list[tuple[str, str]]              # (task, driver)
    services: list[tuple[str, list[str]]]       # (consul service name, tags)
    devices: list[Device] = field(default_factory=list)


@dataclass
class Job:
    name: str
    region: str | None
    datacenters: list[str]
    namespace: str
    type: str
    groups: list[Group] = field(default_factory=list)


def hcl_attr(body: dict[str, Any], key: str, default: Any = None) -> Any:
    """An attribute of an HCL body (python-hcl2 may wrap values in one-element lists)."""
    if key not in body:
        return default
    value = body[key]
    if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], dict):
        return value[0]
    return value


def hcl_blocks(body: dict[str, Any], name: str) -> list[tuple[str | None, dict[str, Any]]]:
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
    for _, c in hcl_blocks(body, "constraint"):
        out.append(Constraint(attribute=str(hcl_attr(c, "attribute", "")), operator=str(hcl_attr(c, "operator", "=")),
                              value=str(hcl_attr(c, "value", "")), where=where))
    return out


def _services(body: dict[str, Any], default_name: str) -> list[tuple[str, list[str]]]:
    out = []
    for _, svc in hcl_blocks(body, "service"):
        tags = hcl_attr(svc, "tags", []) or []
        out.append((str(hcl_attr(svc, "name", default_name)), [str(t) for t in tags]))
    return out


def _devices(task: str, body: dict[str, Any]) -> list[Device]:
    out = []
    for _, resources in hcl_blocks(body, "resources"):
        for dname, dev in hcl_blocks(resources, "device"):
            count = hcl_attr(dev, "count", 1)
            out.append(Device(task=task, name=str(dname or "gpu"), count=int(count) if str(count).isdigit() else 1,
                              constraints=_constraints(dev, f"task {task} device {dname}")))
    return out


def parse_job(text: str, source: str = "job") -> Job:
    """Parse a Nomad job spec (HCL); KitError when it does not parse."""
    try:
        doc = hcl2.loads(text)
    except Exception as exc:  # python-hcl2 raises lark errors of several kinds
        raise KitError(f"{source}: does not parse as HCL: {exc}") from None
    jobs = hcl_blocks(doc, "job")
    if len(jobs) != 1 or jobs[0][0] is None:
        raise KitError(f"{source}: expected exactly one labelled `job` block, found {len(jobs)}")
    name, body = jobs[0]
    assert name is not None
    job = Job(name=name, region=hcl_attr(body, "region"), datacenters=list(hcl_attr(body, "datacenters", []) or []),
              namespace=str(hcl_attr(body, "namespace", "default")), type=str(hcl_attr(body, "type", "service")))
    job_constraints = _constraints(body, "job")
    for gname, gbody in hcl_blocks(body, "group"):
        gname = gname or "?"
        constraints = job_constraints + _constraints(gbody, f"group {gname}")
        drivers: list[tuple[str, str]] = []
        devices: list[Device] = []
        services = _services(gbody, f"{name}-{gname}")
        for tname, tbody in hcl_blocks(gbody, "task"):
            tname = tname or "?"
            constraints += _constraints(tbody, f"group {gname} task {tname}")
            drivers.append((tname, str(hcl_attr(tbody, "driver", ""))))
            services += _services(tbody, f"{name}-{gname}-{tname}")
            devices += _devices(tname, tbody)
        job.groups.append(Group(name=gname, constraints=constraints, drivers=drivers, services=services,
                                devices=devices))
    return job


