"""Parse rendered Nomad/Consul HCL and check its keys against what the agents accept.

The parser is python-hcl2 (module ``hcl2``). Two incompatible distributions install
that module name: python-hcl2 >= 5 (quoted strings, ``__is_block__`` markers) and
bc-python-hcl2 (pulled in by checkov; every attribute wrapped in a one-item list).
Whichever one the environment ends up with, ``load`` returns the same canonical shape:

- an attribute -> its value (strings unquoted),
- a block -> a list of bodies (dicts), one per occurrence,
- a labelled block (``plugin "docker" {}``) -> a list of ``{label: body}``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import hcl2
import yaml

KEYS_DIR = Path(__file__).resolve().parents[1] / "cluster" / "agent_keys"
_META = ("__is_block__", "__start_line__", "__end_line__", "__comments__", "__inline_comments__")


def _wrapped_style() -> bool:
    """True for bc-python-hcl2 (attributes wrapped in lists)."""
    return hcl2.loads("a = 1\n")["a"] == [1]


WRAPPED = _wrapped_style()


_NUMBER_EXPR = re.compile(r"^\$\{(-?[0-9]+)\}$")


def _unquote(value: Any) -> Any:
    """Strip python-hcl2's quotes; turn bc-python-hcl2's ``${-1}`` back into the number."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, str) and _NUMBER_EXPR.match(value):
        return int(value[2:-1])
    return value


def _is_new_block(item: Any) -> bool:
    return isinstance(item, dict) and item.get("__is_block__") is True


def _canon_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): _canon_value(v) for k, v in value.items() if k not in _META}
    if isinstance(value, list):
        return [_canon_value(v) for v in value]
    return _unquote(value)


def _canon_body(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in _META:
            continue
        out[_unquote(key)] = _canon_entry(value)
    return out


def _canon_entry(value: Any) -> Any:
    if WRAPPED:
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return [_canon_block_item_wrapped(v) for v in value]
        if isinstance(value, list) and len(value) == 1:
            return _canon_value(value[0])
        return _canon_value(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if all(_is_new_block(v) for v in value):
            return [_canon_body(v) for v in value]
        if all(len(v) == 1 and _is_new_block(next(iter(v.values()))) for v in value):
            return [{_unquote(k): _canon_body(b) for k, b in v.items()} for v in value]
    return _canon_value(value)


def _canon_block_item_wrapped(item: dict[str, Any]) -> dict[str, Any]:
    if len(item) == 1:
        (label, body), = item.items()
        if isinstance(body, dict):  # labelled block: the body is a dict, attributes are lists
            return {_unquote(label): _canon_body(body)}
    return _canon_body(item)


def loads(text: str) -> dict[str, Any]:
    """Parse HCL text into the canonical shape (raises on a syntax error)."""
    return _canon_body(hcl2.loads(text if text.endswith("\n") else text + "\n"))


def heredoc(data: str) -> str:
    """A job's ``<<-EOT`` string as Nomad writes it out: indentation stripped, HCL's escapes undone."""
    return textwrap.dedent(data).strip("\n").replace("$${", "${").replace("%%{", "%{") + "\n"


def load_keys(agent: str) -> dict[str, Any]:
    """The accepted-key table of ``nomad`` or ``consul`` (agent_keys/<agent>.yml)."""
    return yaml.safe_load((KEYS_DIR / f"{agent}.yml").read_text(encoding="utf-8"))


def unknown_keys(config: dict[str, Any], schema: dict[str, Any], path: str = "") -> list[str]:
    """Dotted paths of keys in ``config`` that ``schema`` does not accept."""
    errors: list[str] = []
    for key, value in config.items():
        where = f"{path}{key}"
        if key not in schema:
            errors.append(where)
            continue
        rule = schema[key]
        if rule is None or rule == "any":
            continue
        errors += _check_block(value, rule, where)
    return errors


def _check_block(value: Any, rule: dict[str, Any], where: str) -> list[str]:
    bodies = value if isinstance(value, list) else [value]
    errors: list[str] = []
    for body in bodies:
        if not isinstance(body, dict):
            errors.append(f"{where} (a block is expected, got {type(body).__name__})")
            continue
        if "_label" in rule:
            for label, inner in body.items():
                inner_rule = rule["_label"].get(label, rule["_label"].get("*"))
                if inner_rule is None:
                    errors.append(f'{where} "{label}"')
                else:
                    errors += unknown_keys(inner, inner_rule, f'{where} "{label}".')
        else:
            errors += unknown_keys(body, rule, f"{where}.")
    return errors


def first(config: dict[str, Any], dotted: str) -> Any:
    """Value at ``a.b.c`` taking the first body of every block on the way (KeyError if absent)."""
    node: Any = config
    for part in dotted.split("."):
        if isinstance(node, list):
            node = node[0]
        node = node[part]
    return node[0] if isinstance(node, list) and node and isinstance(node[0], dict) and len(node) == 1 else node


def labelled(config: dict[str, Any], dotted: str) -> dict[str, Any]:
    """``{label: body}`` of a labelled block at ``dotted`` (e.g. ``client.host_volume``)."""
    node = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[part]
        if isinstance(node, list):
            node = node[0]
    merged: dict[str, Any] = {}
    for item in node.get(parts[-1], []):
        merged.update(item)
    return merged
