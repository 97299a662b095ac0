"""Traefik routers as jobs declare them in Consul service tags: rule parsing
(Traefik v3 matchers, or v2 ones where the router or Traefik's
core.defaultRuleSyntax says v2) and the routers, services and middlewares of a job."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Traefik v3 rule matchers -> number of arguments (None: one or more).
MATCHERS: dict[str, int | None] = {
    "Host": 1, "HostRegexp": 1, "Path": 1, "PathPrefix": 1, "PathRegexp": 1, "Method": 1,
    "Header": 2, "HeaderRegexp": 2, "Query": None, "QueryRegexp": 2, "ClientIP": 1,
}
# Traefik v2 rule matchers (v2 syntax, still read by Traefik v3 with ruleSyntax v2): most take
# one or more arguments (Host(`a`, `b`) is how PAPI writes its routers).
MATCHERS_V2: dict[str, int | None] = {
    "Host": None, "HostHeader": None, "HostRegexp": None, "Path": None, "PathPrefix": None, "Method": None,
    "Headers": 2, "HeadersRegexp": 2, "Query": None, "ClientIP": None,
}
RULE_SYNTAXES = {"v2": MATCHERS_V2, "v3": MATCHERS}
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def parse_rule(rule: str, syntax: str = "v3") -> list[tuple[str, list[str]]]:
    """Parse a Traefik rule (``syntax`` v3 or v2); return its matchers [(name, args)]; ValueError when invalid."""
    matchers = RULE_SYNTAXES[syntax]
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
        if name not in matchers:
            raise ValueError(f"unknown matcher {name!r} (Traefik {syntax} knows {', '.join(matchers)})")
        take("(")
        args = [take()]
        while peek() == ",":
            take(",")
            args.append(take())
        take(")")
        if any(not (a.startswith("`") and a.endswith("`")) for a in args):
            raise ValueError(f"{name}: arguments must be `backquoted`")
        want = matchers[name]
        if want is not None and len(args) != want:
            raise ValueError(f"{name} takes {want} argument(s) in Traefik {syntax}, got {len(args)}")
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


def valid_host(host: str) -> bool:
    labels = host.split(".")
    return len(host) <= 253 and len(labels) >= 2 and all(HOST_LABEL.match(label) for label in labels)


def under(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


@dataclass
class Routers:
    routers: dict[str, dict[str, str]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    middlewares: set[str] = field(default_factory=set)
    consul_names: set[str] = field(default_factory=set)


def collect_routers(tags: list[str], consul_name: str, acc: Routers) -> None:
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


