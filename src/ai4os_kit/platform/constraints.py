"""What a Nomad client of the plan offers and whether it satisfies a constraint
(Nomad's operators evaluated against the node attributes the plan gives)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from ai4os_kit.platform.nomad_job import Constraint, Device

CONTRACT_DRIVERS = ("docker", "exec", "raw_exec")
INTERP = re.compile(r"^\$\{([a-zA-Z0-9_.\-]+)\}$")


NODE_ID_NAMESPACE = uuid.UUID("5b7e0c55-8f3c-4c4e-9a57-6a1f0c2d9e01")


def node_id(name: str) -> str:
    """A stand-in for the node's ``${node.unique.id}`` (Nomad makes a random UUID when a client
    first starts; the plan cannot know it, so each node gets a stable UUID of the same form)."""
    return str(uuid.uuid5(NODE_ID_NAMESPACE, name))


def node_attributes(node: dict[str, Any], region: str, assume_admitted: bool) -> dict[str, str]:
    """The ``${...}`` attributes a Nomad client of the plan offers.

    ``meta.status`` is the status the plan writes (``test``) unless ``assume_admitted``: node
    admission runs on the cluster and sets ``ready`` once the node passes its checks.
    """
    nomad = node["nomad"]
    attrs = {
        "node.datacenter": node["datacenter"],
        "node.unique.id": node_id(node["name"]),
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


def device_attributes(device: dict[str, Any], model: str | None) -> dict[str, str]:
    """The ``${device.*}`` attributes of one device group the plan's node offers."""
    attrs = {"device.type": device["type"], "device.vendor": device["vendor"]}
    if model is not None:
        attrs["device.model"] = model
    return attrs


def offers(devices: list[dict[str, Any]], request: Device) -> bool:
    """Whether a node with the plan's ``devices`` can give ``request`` (name, count, constraints).

    A request names a device as <type>, <vendor>/<type> or <vendor>/<type>/<model>; the node's
    models are the NVIDIA device plugin's names (an unknown model satisfies no model constraint).
    """
    if request.count <= 0:
        return True
    parts = request.name.split("/")
    for device in devices:
        want_type = parts[-1] if len(parts) < 3 else parts[1]
        if want_type != device["type"] or (len(parts) >= 2 and parts[0] != device["vendor"]):
            continue
        if device["count"] < request.count:
            continue
        for model in device.get("models") or [None]:
            if len(parts) == 3 and parts[2] != model:
                continue
            attrs = device_attributes(device, model)
            if all(satisfies(attrs, c) for c in request.constraints):
                return True
    return False
