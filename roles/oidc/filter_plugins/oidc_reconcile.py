"""Reconciling Nomad's OIDC auth method and binding rules with what the oidc role renders.

Nomad answers an auth method with MaxTokenTTL as Go's time.Duration String() ("8h0m0s",
api/acl.go ACLAuthMethod.MarshalJSON) and lists binding rules as stubs without Selector,
BindType or BindName (api/acl.go ACLBindingRuleListStub): the role reads each rule of its
auth method in full and compares every field it sets.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def go_duration(value: str) -> str:
    """A duration ("8h", "90m", "1h30m") as Go's Duration.String() writes it ("8h0m0s", "1h30m0s")."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)", str(value))
    if not parts or "".join(n + u for n, u in parts) != str(value):
        raise ValueError(f"not a duration: {value!r} (use e.g. 8h, 90m, 1h30m)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        raise ValueError(f"sub-second durations are not used here: {value!r}")
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    s_text = f"{s:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{int(h)}h{int(m)}m{s_text}"
    if m:
        return f"{int(m)}m{s_text}"
    return s_text


def oidc_differences(current: Any, wanted: Any, path: str = "") -> list[str]:
    """Paths of the fields of ``wanted`` whose value ``current`` does not have (recursively in dicts)."""
    if isinstance(wanted, dict):
        if not isinstance(current, dict):
            return [path or "."]
        out: list[str] = []
        for key, value in wanted.items():
            out += oidc_differences(current.get(key), value, f"{path}.{key}" if path else key)
        return out
    return [] if current == wanted else [path or "."]


def oidc_binding_rule_actions(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """What to do so that the auth method's rules are exactly ``wanted`` (matched by Description):
    create the missing, update (with their ID) those that differ, delete the others."""
    by_description: dict[str, dict[str, Any]] = {}
    delete: list[str] = []
    for rule in current:
        if rule.get("Description") in by_description or rule.get("Description") not in {w["Description"] for w in wanted}:
            delete.append(rule["ID"])
        else:
            by_description[rule["Description"]] = rule
    create, update = [], []
    for rule in wanted:
        have = by_description.get(rule["Description"])
        if have is None:
            create.append(rule)
        elif oidc_differences(have, rule):
            update.append(dict(rule, ID=have["ID"]))
    return {"to_create": create, "to_update": update, "to_delete": delete}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"go_duration": go_duration, "oidc_differences": oidc_differences,
                "oidc_binding_rule_actions": oidc_binding_rule_actions}
