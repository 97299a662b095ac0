"""The Ansible inventory (hosts.yml) rendered from the plan.

Both paths produce it from this one module: `ai4os-kit plan` (no addresses
yet) and `ai4os-kit provision` / discovery (addresses from Terraform's
`inventory` output or from server metadata), so they are identical in shape.
``render`` gives the inventory as a dict; ``write_plan`` writes the same
inventory for a plan, streamed and in a compact form that stays fast at
100,000 nodes (see "fast writer" below); ``write`` writes any inventory dict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.model.catalog import NODE_ROLES
from ai4os_kit.model.plan import no_cycle_collection, node_certs
from ai4os_kit.paths import HOSTS_FILE


TESTBED_CONNECTION = {"ansible_connection": "community.docker.docker"}  # test-bed nodes: containers


def _pool_hostvars(node: dict[str, Any]) -> dict[str, Any]:
    """The host variables a node shares with the other nodes of its pool (in a plan from build_plan)."""
    return {
        "ai4os_node_site": node["site"],
        "ai4os_node_datacenter": node["datacenter"],
        "ai4os_node_role": node["role"],
        "ai4os_node_pool": node["pool"],
        "ai4os_node_consul_server": node["consul"]["server"],
        "ai4os_node_nomad_server": node["nomad"]["server"],
        "ai4os_node_nomad_client": node["nomad"]["client"],
        "ai4os_node_class": node["nomad"]["node_class"],
        "ai4os_node_meta": node["nomad"]["meta"],
        "ai4os_node_volume_gb": node["volume"]["size_gb"] if node["volume"] else 0,
        "ai4os_node_data_mount": node["volume"]["mount"] if node["volume"] else None,
    }


def node_hostvars(node: dict[str, Any]) -> dict[str, Any]:
    """Host variables every role reads (prefixed ai4os_node_); the plan's objects, not copies."""
    hostvars = _pool_hostvars(node)
    hostvars["ai4os_node_bastion"] = node["bastion"]
    hostvars["ai4os_node_certs"] = node["certs"]
    return hostvars


def plan_vars(plan: dict[str, Any]) -> dict[str, Any]:
    """Facts the plan derived that roles read (``all.vars``): never re-derived in Jinja.

    ai4os_plan_sites        name, datacenter, domain, location, testbed of every site
    ai4os_plan_datacenters  node role -> datacenters that have nodes of that role
    ai4os_plan_components   names of the switched-on components (requirements included)
    ai4os_plan_topology     multi_site (sites reach each other only through public addresses),
                            nomad_server_sites, nomad_servers, lent_sites (docs/federation.md)
    """
    datacenters: dict[str, list[str]] = {role: [] for role in NODE_ROLES}
    for node in plan["nodes"]:
        if node["datacenter"] not in datacenters[node["role"]]:
            datacenters[node["role"]].append(node["datacenter"])
    return {
        "ai4os_plan_sites": [{"name": s["name"], "datacenter": s["datacenter"], "domain": s["domain"],
                              "location": dict(s["location"]), "testbed": s["testbed"]} for s in plan["sites"]],
        "ai4os_plan_datacenters": {role: sorted(dcs) for role, dcs in datacenters.items()},
        "ai4os_plan_components": sorted(name for name, c in plan["components"].items() if c["enabled"]),
        "ai4os_plan_topology": dict(plan["topology"]),
    }


def role_ports(plan: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Node role -> the port table rows that listen on nodes of that role (``ai4os_node_ports``)."""
    keys = ("component", "name", "protocol", "port_min", "port_max", "exposure")
    return {role: [{k: port[k] for k in keys} for port in plan["ports"] if role in port["node_roles"]]
            for role in NODE_ROLES}


def render(plan: dict[str, Any], addresses: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The YAML inventory as a dict.

    ``addresses`` maps node name -> connection variables (ansible_host,
    ansible_user, ansible_ssh_common_args, ...), merged into the host vars.
    Test-bed sites connect through the Docker connection to a container named
    like the node. Each node role's group carries ``ai4os_node_ports`` (a node
    is in exactly one role group). Host variables hold the plan's objects (a
    pool's nodes share their meta): read it, or deep-copy it before changing it.
    """
    addresses = addresses or {}
    testbed_sites = {s["name"] for s in plan["sites"] if s["testbed"]}
    hosts: dict[str, Any] = {}
    with no_cycle_collection():
        for node in plan["nodes"]:
            hv = node_hostvars(node)
            if node["site"] in testbed_sites:
                hv.update(TESTBED_CONNECTION, ansible_host=node["name"])
            hv.update(addresses.get(node["name"], {}))
            hosts[node["name"]] = hv
        ports = role_ports(plan)
        children: dict[str, Any] = {}
        for group, names in plan["groups"].items():
            children[group] = {"hosts": dict.fromkeys(names)}
            if group in ports:
                children[group]["vars"] = {"ai4os_node_ports": ports[group]}
    return {"all": {"vars": plan_vars(plan), "hosts": hosts, "children": children}}


HEADER = "---\n# Written by ai4os-kit from the node plan; do not edit (edit platform.yml / sites.yml).\n"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]  # libyaml when present
    """A safe dumper that writes a repeated object out again instead of an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _block(data: Any, indent: int) -> str:
    """``data`` as block YAML, every line indented by ``indent`` spaces."""
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 30)
    pad = " " * indent
    return "".join(pad + line for line in text.splitlines(keepends=True))


def dump(inventory: dict[str, Any]) -> str:
    """Any inventory dict as block YAML (libyaml); `write_plan` writes a plan's faster."""
    return HEADER + _block(inventory, 0)


def write(inventory_dir: Path, inventory: dict[str, Any]) -> Path:
    """Write an inventory dict (``render``'s, possibly changed) to hosts.yml atomically."""
    return _replace(inventory_dir / HOSTS_FILE, [dump(inventory)])


def _replace(target: Path, chunks: Iterable[str]) -> Path:
    """Write the chunks to a temp file, then rename it over ``target`` (readers never see half a file)."""
    tmp = target.with_suffix(".yml.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(chunks)
    tmp.replace(target)
    return target


# ----------------------------------------------------------------- fast writer
#
# hosts.yml of a plan, written straight from it: block YAML for the small parts
# (all.vars, group vars) and one line per host in flow style. The first host of
# each pool anchors the variables every node of the pool shares (&<its name>);
# the pool's other hosts merge them with YAML's merge key (<<: *anchor), which
# Ansible's YAML loader applies as PyYAML's does. A group's hosts are a flow
# mapping of names without values ({a, b}: both null). Scalars are written plain
# when YAML reads them back as the same string, otherwise double-quoted. The tests
# check that the file loads to exactly render()'s dict and that
# `ansible-inventory --list` reads the same inventory from it as from dump()'s.

_PLAIN = re.compile(r"[A-Za-z/][A-Za-z0-9_./-]*")   # no indicator, number, timestamp or space
_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})  # YAML 1.1 booleans, null
_ANCHOR = re.compile(r"[A-Za-z0-9_-]+")             # the characters libyaml allows in an anchor
_KEY_MAX = 128                                       # longer keys: libyaml writes them as explicit (? key)
_PLACEHOLDER = "ai4osnodename"                       # the node name in a pool's certificate text
MEMBERS_PER_LINE = 8


def _plain(text: str) -> bool:
    return _PLAIN.fullmatch(text) is not None and text.lower() not in _WORDS


def _str(text: str) -> str:
    """A string as a YAML scalar that loads back to exactly ``text`` (``text`` itself when plain)."""
    if _plain(text):
        return text
    if text.isascii() and "\x7f" not in text:
        return json.dumps(text)  # JSON's escapes (\", \\, \n, \uXXXX) are YAML double-quoted escapes
    return yaml.dump(text, Dumper=_Dumper, default_style='"', allow_unicode=True, width=1 << 30).rstrip("\n")


def _simple_key(key: Any) -> bool:
    return type(key) is str and len(key) <= _KEY_MAX


def _flow(value: Any) -> str:
    """A value in YAML flow style (one line) that loads back to ``value``."""
    kind = type(value)
    if kind is str:
        return _str(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is int:
        return str(value)
    if kind is list:
        return "[" + ", ".join([_flow(v) for v in value]) + "]"
    if kind is dict and all(map(_simple_key, value)):
        return "{" + ", ".join([f"{_str(k)}: {_flow(v)}" for k, v in value.items()]) + "}"
    # floats, other keys: libyaml's own flow text
    return yaml.dump(value, Dumper=_Dumper, default_flow_style=True, width=1 << 30).rstrip("\n").removesuffix("\n...")


def _certs_template(node: dict[str, Any], region: str) -> str | None:
    """The flow text of a pool's certificates with the node name left open (None if it would not fit).

    It fits when the node's certificates are node_certs' and the node's name reads plain.
    """
    name, role, datacenter = node["name"], node["role"], node["datacenter"]
    if not _plain(name) or node["certs"] != node_certs(name, role, datacenter, region):
        return None
    text = _flow(node_certs(_PLACEHOLDER, role, datacenter, region))
    return text if text.replace(_PLACEHOLDER, name) == _flow(node["certs"]) else None


def _host_lines(plan: dict[str, Any], addresses: dict[str, dict[str, Any]], quoted: dict[str, str]) -> Iterator[str]:
    """``all.hosts``: a pool's first node anchors the variables its pool shares, the others merge them.

    ``quoted`` collects the node names that YAML must read quoted (for the groups).
    """
    testbed_sites = {s["name"] for s in plan["sites"] if s["testbed"]}
    region = plan["platform"]["region"]
    shared: dict[str, Any] | None = None
    anchor = ""
    anchors: set[str] = set()
    template: str | None = None
    for node in plan["nodes"]:
        name = node["name"]
        key = _str(name)
        if key is not name:
            quoted[name] = key
        pool_vars = _pool_hostvars(node)
        first = pool_vars != shared
        if first:  # a pool's first node (or a node unlike the one before it)
            shared = pool_vars
            anchor = name if _ANCHOR.fullmatch(name) and name not in anchors else f"pool{len(anchors)}"
            while anchor in anchors:
                anchor += "_"
            anchors.add(anchor)
            template = _certs_template(node, region)
        certs = node["certs"]
        # Certificates are node_certs(name, ...) in a plan from build_plan: the pool's text with this
        # name in it (checked for each node; a plain name needs no quotes there).
        fast = template is not None and key is name and certs == node_certs(name, node["role"], node["datacenter"], region)
        certs_text = template.replace(_PLACEHOLDER, name) if fast else _flow(certs)  # type: ignore[union-attr]
        if not first and name not in addresses and node["site"] not in testbed_sites:
            bastion = "true" if node["bastion"] else "false"
            yield f"    {key}: {{<<: *{anchor}, ai4os_node_bastion: {bastion}, ai4os_node_certs: {certs_text}}}\n"
            continue
        own: dict[str, Any] = {"ai4os_node_bastion": node["bastion"], "ai4os_node_certs": certs}
        if node["site"] in testbed_sites:
            own.update(TESTBED_CONNECTION, ansible_host=name)
        own.update(addresses.get(name, ()))
        items = [f"{_str(k)}: {certs_text if v is certs else _flow(v)}" for k, v in own.items() if _simple_key(k)]
        others = {k: v for k, v in own.items() if not _simple_key(k)}  # keys only block YAML writes
        if first or others:
            merge = f"&{anchor}\n{_block(shared, 8)}" if first else f"*{anchor}\n"
            yield (f"    {key}:\n      <<: {merge}" + "".join(f"      {item}\n" for item in items)
                   + (_block(others, 6) if others else ""))
        else:
            yield f"    {key}: {{<<: *{anchor}, {', '.join(items)}}}\n"


def _members(names: list[str], quoted: dict[str, str]) -> str:
    """A group's hosts, node names as the plan's groups hold them, as a flow mapping of keys
    without values ({a, b}: both null), a few a line."""
    if not names:
        return "{}"
    texts = [quoted.get(n) or _str(n) for n in names] if quoted else names
    cut = len(texts) - len(texts) % MEMBERS_PER_LINE
    lines = list(map(", ".join, zip(*[iter(texts[:cut])] * MEMBERS_PER_LINE)))  # full lines, at C speed
    if cut < len(texts):
        lines.append(", ".join(texts[cut:]))
    return "{" + ",\n        ".join(lines) + "}"


MERGE_NOTE = ("# A pool's first host holds the variables the pool's nodes share (&<its name>), the other hosts\n"
              "# merge them (<<: *<that name>); `ansible-inventory -i hosts.yml --host NODE` shows a node's.\n")


def _lines(plan: dict[str, Any], addresses: dict[str, dict[str, Any]]) -> Iterator[str]:
    yield HEADER + MERGE_NOTE
    yield "all:\n  vars:\n" + _block(plan_vars(plan), 4)
    quoted: dict[str, str] = {}
    if plan["nodes"]:
        yield "  hosts:\n"
        yield from _host_lines(plan, addresses, quoted)
    else:
        yield "  hosts: {}\n"
    ports = role_ports(plan)
    yield "  children:\n" if plan["groups"] else "  children: {}\n"
    for group, names in plan["groups"].items():
        yield f"    {_str(group)}:\n      hosts: {_members(names, quoted)}\n"
        if group in ports:
            yield "      vars:\n" + _block({"ai4os_node_ports": ports[group]}, 8)


def _batched(lines: Iterable[str], size: int = 1 << 20) -> Iterator[str]:
    """The lines joined into chunks of about ``size`` characters (fewer, larger writes)."""
    chunk: list[str] = []
    length = 0
    for line in lines:
        chunk.append(line)
        length += len(line)
        if length >= size:
            yield "".join(chunk)
            chunk, length = [], 0
    yield "".join(chunk)


def write_plan(inventory_dir: Path, plan: dict[str, Any], addresses: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write hosts.yml for a plan: the inventory ``write(dir, render(plan, addresses))`` writes, streamed.

    Any plan-shaped dict is written exactly; in one from build_plan a pool's nodes share their
    variables, so each pool is anchored once (a pool whose nodes differ is anchored more often).
    """
    with no_cycle_collection():
        return _replace(inventory_dir / HOSTS_FILE, _batched(_lines(plan, addresses or {})))
