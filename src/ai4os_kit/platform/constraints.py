"""What a Nomad client of the plan offers and whether it satisfies a constraint
(Nomad's operators evaluated against the node attributes the plan gives)."""

from __future__ import annotations

import re
from typing import Any

from ai4os_kit.platform.nomad_job import Constraint

CONTRACT_DRIVERS = ("docker", "exec", "raw_exec")
INTERP = re.compile(r"^\$\{([a-zA-Z0-9_.\-]+)\}$")


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


