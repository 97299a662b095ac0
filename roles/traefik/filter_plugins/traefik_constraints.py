"""The constraint expression of Traefik's Consul catalog provider (filter traefik_consul_constraints).

Traefik evaluates ``providers.consulCatalog.constraints`` against the tags of every Consul
service instance (and against the union of a service's tags) with two functions only:
``Tag(`x`)`` (a tag equals x) and ``TagRegex(`re`)`` (some tag matches the Go regexp re),
combined with ``&&``, ``||`` and ``!``.  A constraint can therefore say "some tag is bad",
never "every tag is good" directly; this module turns the kit's allow-lists into regexps of
the *bad* tags (complements of finite word sets, built from a trie), so that a service
without the platform tag is admitted only when none of its tags is bad:

- of the labels Traefik decodes, it uses only those PAPI's deployments use (routers: rule,
  entrypoints, tls, tls.passthrough, middlewares, service, priority; HTTP services:
  loadbalancer.server.scheme, loadbalancer.passhostheader; middlewares: forwardauth,
  stripprefix) — no TLS store, no server URL or port of its own choosing, no UDP, no TCP
  services or middlewares, no servers transport;
- every rule is ``Host(...)`` or ``HostSNI(...)`` first, without ``||``, ``!`` or ``"``, so it
  matches nothing but the hosts it lists, and each listed host is
  ``<label>.<meta.domain>-<VO domain>`` or ``www.<label>.<meta.domain>-<VO domain>``
  (the two forms PAPI composes);
- its routers use only the allowed entry points, never reference a service of another
  provider (``@``) nor a platform service, and it defines no router, service or middleware
  named ``ai4os-*`` (the platform's names).

Tags are matched case-insensitively (Traefik's label keys and Host matching are).
"""

from __future__ import annotations

import re
from typing import Any

PLATFORM_TAG_KEY = "ai4os.platform"
BACKQUOTE = r"\x60"            # a raw ` cannot appear inside the constraint's `...` literals
HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
LABEL = r"[a-z0-9\-]"
ROUTER = r"^traefik\.(?:http|tcp)\.routers\.[^.=]+\."

# Traefik decodes only traefik.http.*, traefik.tcp.*, traefik.udp.* and
# traefik.tls.stores.default.* into configuration (pkg/config/label/label.go), reads
# traefik.enable and traefik.consulcatalog.*, and ignores every other key.
HTTP_KINDS = ("routers.", "services.", "middlewares.")
TCP_KINDS = ("routers.",)
ROUTER_OPTIONS = ("rule=", "entrypoints=", "tls=", "tls.passthrough=", "middlewares=", "service=", "priority=")
SERVICE_OPTIONS = ("loadbalancer.server.scheme=", "loadbalancer.passhostheader=")
MIDDLEWARE_TYPES = ("forwardauth.", "stripprefix.")
RULE_STARTS = ("host(" + "`", "hostsni(" + "`")


def _esc(char: str) -> str:
    return BACKQUOTE if char == "`" else (char if char.isalnum() else "\\" + char)


def _class(chars: set[str] | frozenset[str], negate: bool = False) -> str:
    return "[" + ("^" if negate else "") + "".join(_esc(c) for c in sorted(chars)) + "]"


def _trie(words: list[str]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word.lower():
            node = node.setdefault(char, {})
        node[""] = {}                       # end of a word
    return root


def _complement(node: dict[str, Any], alphabet: frozenset[str] | None, end: str, prefix_only: bool) -> str | None:
    """Regexp of the strings that leave the word set at this trie node (None: none can).

    ``alphabet`` None means any character but the ones after which the string ends
    (prefix checks); otherwise the string's characters come from ``alphabet`` and the
    string ends with ``end`` (a regexp).  ``prefix_only``: a completed word accepts
    whatever follows it.
    """
    terminal = "" in node
    if terminal and prefix_only:
        return None
    children = sorted(c for c in node if c)
    alternatives = [] if terminal else [end]
    if alphabet is None:
        alternatives.append(_class(set(children), negate=True) if children else "(?s:.)")
    elif alphabet - set(children):
        alternatives.append(_class(alphabet - set(children)))
    for char in children:
        rest = _complement(node[char], alphabet, end, prefix_only)
        if rest is not None:
            alternatives.append(_esc(char) + rest)
    return "(?:" + "|".join(alternatives) + ")"


def _required(regexp: str | None) -> str:
    if regexp is None:                      # only when the empty word is allowed: a caller's mistake
        raise ValueError("an allow-list may not contain the empty word")
    return regexp


def not_prefixed(words: list[str] | tuple[str, ...]) -> str:
    """Strings that start with none of ``words`` (the empty string included)."""
    return _required(_complement(_trie(list(words)), None, "$", prefix_only=True))


def not_one_of(words: list[str] | tuple[str, ...]) -> str:
    """Whole strings (up to the end) that are none of ``words``."""
    return _required(_complement(_trie(list(words)), None, "$", prefix_only=False))


def bad_host_arg(suffixes: list[str]) -> str:
    """The content of a backquoted host (and its closing backquote) outside
    ``<label>.<suffix>`` / ``www.<label>.<suffix>``."""
    not_suffix = _complement(_trie(suffixes), HOST_CHARS, BACKQUOTE, prefix_only=False)
    not_www = rf"(?:{LABEL}{{1,2}}|{LABEL}{{4,}}|[a-vx-z0-9\-]{LABEL}{{2}}|w[a-vx-z0-9\-]{LABEL}|ww[a-vx-z0-9\-])"
    return "(?:" + "|".join([
        rf"[^{BACKQUOTE}]*[^a-z0-9.{BACKQUOTE}\-]",      # a character no host name has
        r"\.",                                            # empty first label
        rf"{LABEL}*{BACKQUOTE}",                          # a single label (or nothing)
        rf"{not_www}\.{not_suffix}",
        rf"www\.(?:\.|{LABEL}*{BACKQUOTE})",
        rf"www\.{LABEL}+\.{not_suffix}",
    ]) + ")"


def bad_tag_regexps(suffixes: list[str], entrypoints: list[str]) -> list[str]:
    """One Go regexp per way a tag of a non-platform service can be bad."""
    suffixes = sorted({s.lower().strip(".") for s in suffixes if s})
    flags = "(?is)"
    return [flags + r for r in [
        r"^traefik\.(?:udp|tls)\.",
        r"^traefik\.http\." + not_prefixed(HTTP_KINDS),
        r"^traefik\.tcp\." + not_prefixed(TCP_KINDS),
        ROUTER + not_prefixed(ROUTER_OPTIONS),
        r"^traefik\.(?:http|tcp)\.(?:routers|services|middlewares)\.ai4os-",
        ROUTER + "rule=" + not_prefixed(RULE_STARTS),
        ROUTER + r"rule=.*(?:\|\||!|\")",
        ROUTER + rf"rule=host(?:sni)?\(\s*(?:{BACKQUOTE}[^{BACKQUOTE}]*{BACKQUOTE}\s*,\s*)*{BACKQUOTE}" + bad_host_arg(suffixes),
        ROUTER + "entrypoints=" + not_one_of(entrypoints),
        ROUTER + r"service=(?:ai4os-|[^@]*@)",
        r"^traefik\.http\.services\.[^.=]+\." + not_prefixed(SERVICE_OPTIONS),
        r"^traefik\.http\.middlewares\.[^.=]+\." + not_prefixed(MIDDLEWARE_TYPES),
    ]]


def traefik_consul_constraints(platform_tag: str, suffixes: list[str], entrypoints: list[str]) -> str:
    """``Tag(`ai4os.platform=<platform_tag>`) || !(TagRegex(bad 1) || ...)``: platform services
    pass, the others only without a bad tag."""
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{16,}", platform_tag or ""):
        raise ValueError("ai4os_secret_traefik_platform_tag must be at least 16 characters of [A-Za-z0-9_.:-] "
                         "(run ai4os-kit secrets)")
    bad = " || ".join(f"TagRegex(`{r}`)" for r in bad_tag_regexps(suffixes, entrypoints))
    return f"Tag(`{PLATFORM_TAG_KEY}={platform_tag}`) || !({bad})"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"traefik_consul_constraints": traefik_consul_constraints}
