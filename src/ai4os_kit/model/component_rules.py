"""Settings rules of the platform components, as data.

`ai4os-kit check` calls :func:`check_component_settings` with platform.yml;
the first task of ``playbooks/platform.yml`` runs this module
(``python -m ai4os_kit.model.component_rules``) on the merged Ansible variables
(platform.yml + secrets.yml), so the same rules stop a run before anything is
submitted to Nomad.

A rule only applies when its component is switched on. Keys are either flat
platform.yml keys (``ai4os_storage_webdav_url``) or dotted paths into a
mapping (``ai4os_oidc.issuer``). Rules of kind ``secret`` read secrets.yml and
are skipped when no secrets are given (``ai4os-kit check`` checks the vault
file separately).

The settings a component knows are the keys of ``<component>_settings`` in
``roles/<component>/defaults/main.yml`` (one place documents each default);
an ``ai4os_<component>_<setting>`` key naming no such setting is an error
with a "did you mean".
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import yaml

from ai4os_kit.errors import InputError
from ai4os_kit.paths import ROOT

ROLES_DIR = ROOT / "roles"
# Settings that moved to another component: old key -> where it lives now.
MOVED = {"ai4os_papi_oscar_clusters": "ai4os_oscar_clusters (component oscar, ai4os_enable_oscar: true)"}
MISSING = object()
DB_SCHEMES = ("postgresql", "mysql", "sqlite", "mssql")


@dataclass(frozen=True)
class Rule:
    """One requirement on one setting of one component."""

    component: str
    key: str                    # flat key or dotted path (ai4os_oidc.issuer)
    kind: str                   # see CHECKS (required, https, scheme, secret, file, vo_keys, ...)
    fix: str
    fallback: str | None = None  # key used when `key` is not set
    arg: tuple[str, ...] = ()    # kind-specific argument (schemes, provider name)


RULES: tuple[Rule, ...] = (
    # storage: the users' Nextcloud (WebDAV) the rclone sidecars mount
    Rule("storage", "ai4os_storage_webdav_url", "required",
         "set ai4os_storage_webdav_url to the WebDAV root of your Nextcloud, "
         "e.g. https://share.example.org/remote.php/webdav/"),
    Rule("storage", "ai4os_storage_webdav_url", "https",
         "use the https:// URL of the WebDAV endpoint (credentials travel in it)"),
    # mlflow: a tracking server needs a database
    Rule("mlflow", "ai4os_mlflow_backend_store_uri", "required",
         "set ai4os_mlflow_backend_store_uri to a database URI, e.g. "
         "postgresql://mlflow@db.example.org/mlflow (put the password in secrets.yml as "
         "ai4os_mlflow_backend_store_password)"),
    Rule("mlflow", "ai4os_mlflow_backend_store_uri", "scheme",
         "use a SQLAlchemy database URI (postgresql://, mysql://, sqlite:///, mssql://)", arg=DB_SCHEMES),
    # vault: JWT auth on the platform issuer
    Rule("vault", "ai4os_vault_jwt_issuer", "required",
         "set ai4os_oidc.issuer (or ai4os_vault_jwt_issuer) to the https issuer whose tokens Vault accepts",
         fallback="ai4os_oidc.issuer"),
    Rule("vault", "ai4os_vault_jwt_issuer", "https",
         "Vault's JWT auth must fetch the issuer's keys over https: use an https:// issuer",
         fallback="ai4os_oidc.issuer"),
    # oidc: issuer, clients and the secrets of confidential clients
    Rule("oidc", "ai4os_oidc.issuer", "required", "set ai4os_oidc.issuer to your provider's issuer URL"),
    Rule("oidc", "ai4os_oidc.issuer", "https",
         "use the provider's https:// issuer URL (tokens and keys must not travel in clear text)"),
    Rule("oidc", "ai4os_oidc.clients.oauth2_proxy", "required",
         "register a confidential client for the admin UIs' forward-auth and set ai4os_oidc.clients.oauth2_proxy"),
    Rule("oidc", "ai4os_oidc.clients.nomad", "required",
         "register a confidential client for Nomad's OIDC login and set ai4os_oidc.clients.nomad"),
    Rule("oidc", "ai4os_oidc.operators_group", "required",
         "set ai4os_oidc.operators_group to the entitlement (Check-in) or role (Keycloak) of platform operators"),
    Rule("oidc", "ai4os_oidc.keycloak.audience", "provider_required",
         "set ai4os_oidc.keycloak.audience to the audience your realm puts in tokens for PAPI", arg=("keycloak",)),
    Rule("oidc", "ai4os_oidc_ca_file", "file",
         "point ai4os_oidc_ca_file at a readable PEM bundle (relative paths are relative to the inventory)"),
    Rule("oidc", "ai4os_oidc_oauth2_proxy_client_secret", "secret",
         "put the secret of client ai4os_oidc.clients.oauth2_proxy into secrets.yml "
         "(ansible-vault edit secrets.yml) as ai4os_oidc_oauth2_proxy_client_secret"),
    Rule("oidc", "ai4os_oidc_oauth2_proxy_cookie_secret", "secret",
         "run `ai4os-kit secrets INVENTORY`, or add 32 random base64 characters to secrets.yml as "
         "ai4os_oidc_oauth2_proxy_cookie_secret"),
    Rule("oidc", "ai4os_oidc_nomad_client_secret", "secret",
         "put the secret of client ai4os_oidc.clients.nomad into secrets.yml as ai4os_oidc_nomad_client_secret"),
    # oscar: the existing OSCAR cluster of each VO (PAPI's main.yaml oscar.clusters)
    Rule("oscar", "ai4os_oscar_clusters", "required",
         "map each VO to its OSCAR cluster, e.g. ai4os_oscar_clusters: {vo.ai4eosc.eu: "
         "{endpoint: https://inference.example.org, cluster_id: oscar-cluster}} (docs/platform.md, oscar)"),
    Rule("oscar", "ai4os_oscar_clusters", "vo_keys",
         "key ai4os_oscar_clusters by VO names listed in ai4os_vos"),
    Rule("oscar", "ai4os_oscar_clusters", "oscar_clusters",
         "give each VO {endpoint: https://<OSCAR API host> (no trailing slash), cluster_id: <id>} and optionally "
         "oidc_group (the group OSCAR admits the VO by) and minio_endpoint (https://...)"),
    # drift: detector threshold, batch size, where runs and packages come from
    Rule("drift", "ai4os_drift_alpha", "fraction",
         "set ai4os_drift_alpha to the p-value below which a feature drifts, a number between 0 and 1 (e.g. 0.01)"),
    Rule("drift", "ai4os_drift_min_samples", "int_min",
         "set ai4os_drift_min_samples to a whole number of values per feature, at least 2 (e.g. 20)", arg=("2",)),
    Rule("drift", "ai4os_drift_reports_kept", "int_min",
         "set ai4os_drift_reports_kept to how many reports to keep per model, at least 1", arg=("1",)),
    Rule("drift", "ai4os_drift_mlflow_tracking_uri", "scheme",
         "use an http:// or https:// MLflow tracking URI, or leave it empty for the platform's MLflow",
         arg=("http", "https")),
    Rule("drift", "ai4os_drift_pip_index_url", "https",
         "use the https:// URL of your package index mirror (the packages' hashes are checked too), or leave it empty"),
    # provenance: its Nomad read token, what it records, where digests come from
    Rule("provenance", "ai4os_secret_nomad_token_provenance", "secret",
         "run `ai4os-kit secrets INVENTORY` (it generates the recorder's Nomad token)"),
    Rule("provenance", "ai4os_provenance_job_prefixes", "string_list",
         "list the job name prefixes to record, e.g. [module-] (PAPI's marketplace deployments)"),
    Rule("provenance", "ai4os_provenance_default_registry", "host_port",
         "give the registry's API host name (and :port), without https:// or a path, e.g. registry.example.org"),
)


def _lookup(data: dict[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def _is_empty(value: Any) -> bool:
    return value is MISSING or value is None or (isinstance(value, (str, list, dict)) and not value)


def _check_required(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    what = f" (nor {rule.fallback})" if rule.fallback else ""
    return f"{rule.component} is switched on but {rule.key}{what} is not set" if _is_empty(value) else None


def _https_problem(value: Any) -> str | None:
    parsed = urlparse(str(value))
    if parsed.scheme != "https" or not parsed.hostname:
        return f"'{value}' is not an https:// URL"
    return None


def _check_https(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    return None if _is_empty(value) else _https_problem(value)


def _check_scheme(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if _is_empty(value):
        return None
    scheme = urlparse(str(value)).scheme.split("+")[0]
    if scheme not in rule.arg:
        return f"'{value}' has scheme '{scheme or '(none)'}', expected one of {', '.join(rule.arg)}"
    return None


def _check_secret(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    return f"{rule.component} is switched on but secret {rule.key} is missing" if _is_empty(value) else None


def _check_file(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if _is_empty(value):
        return None
    path = Path(str(value))
    if not path.is_absolute():
        path = ctx["base"] / path
    return None if path.is_file() else f"file '{value}' does not exist"


def _check_vo_keys(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if _is_empty(value) or not isinstance(value, dict):
        return None
    unknown = sorted(set(value) - ctx["vos"])
    return f"unknown VO(s) {', '.join(unknown)}" if unknown else None


OSCAR_CLUSTER_KEYS = {"endpoint": True, "cluster_id": True, "oidc_group": False, "minio_endpoint": False}


def _oscar_cluster_problems(vo: str, cluster: Any) -> list[str]:
    if not isinstance(cluster, dict):
        return [f"VO {vo}: expected a mapping with endpoint and cluster_id, got {type(cluster).__name__}"]
    out = []
    for key in sorted(set(cluster) - set(OSCAR_CLUSTER_KEYS)):
        close = difflib.get_close_matches(str(key), list(OSCAR_CLUSTER_KEYS), n=1)
        out.append(f"VO {vo}: unknown key '{key}'" + (f" (did you mean {close[0]}?)" if close else ""))
    for key, required in OSCAR_CLUSTER_KEYS.items():
        value = cluster.get(key)
        if _is_empty(value) or not isinstance(value, str):
            if required or key in cluster:
                out.append(f"VO {vo}: {key} is not set" if _is_empty(value) else f"VO {vo}: {key} must be a string")
            continue
        if key.endswith("endpoint"):
            problem = _https_problem(value)
            if problem:
                out.append(f"VO {vo}: {key} {problem}")
            elif key == "endpoint" and (value.endswith("/") or urlparse(value).query):
                out.append(f"VO {vo}: endpoint '{value}' ends with '/' or has a query (PAPI appends /system/... to it)")
    return out


def _check_oscar_clusters(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if _is_empty(value):
        return None
    if not isinstance(value, dict):
        return f"expected a mapping of VO name to cluster, got {type(value).__name__}"
    problems = [p for vo, cluster in value.items() for p in _oscar_cluster_problems(str(vo), cluster)]
    return "; ".join(problems) or None


def _check_fraction(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if value is MISSING:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        return f"{value!r} is not a number between 0 and 1"
    return None


def _check_int_min(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if value is MISSING:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < int(rule.arg[0]):
        return f"{value!r} is not a whole number of at least {rule.arg[0]}"
    return None


def _check_string_list(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if value is MISSING:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        return f"{value!r} is not a non-empty list of non-empty strings"
    return None


def _check_host_port(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if _is_empty(value):
        return None
    host, _, port = str(value).rpartition(":") if ":" in str(value) else (str(value), "", "")
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    if not re.fullmatch(rf"{label}(\.{label})*", host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        return f"'{value}' is not a host name with an optional :port"
    return None


def _check_provider_required(value: Any, rule: Rule, ctx: dict[str, Any]) -> str | None:
    if ctx["provider"] != rule.arg[0] or not _is_empty(value):
        return None
    return f"provider is {rule.arg[0]} but {rule.key} is not set"


CHECKS: dict[str, Callable[[Any, Rule, dict[str, Any]], str | None]] = {
    "required": _check_required,
    "https": _check_https,
    "scheme": _check_scheme,
    "secret": _check_secret,
    "file": _check_file,
    "vo_keys": _check_vo_keys,
    "provider_required": _check_provider_required,
    "oscar_clusters": _check_oscar_clusters,
    "fraction": _check_fraction,
    "int_min": _check_int_min,
    "string_list": _check_string_list,
    "host_port": _check_host_port,
}


def default_settings(component: str) -> dict[str, Any] | None:
    """A component's settings with their defaults (<component>_settings in its role defaults)."""
    defaults = ROLES_DIR / component / "defaults" / "main.yml"
    if not defaults.is_file():
        return None
    data = yaml.safe_load(defaults.read_text(encoding="utf-8")) or {}
    settings = data.get(f"{component}_settings")
    return dict(settings) if isinstance(settings, dict) else None


def known_settings(component: str) -> list[str] | None:
    """Setting names of a component (keys of <component>_settings in its role defaults)."""
    settings = default_settings(component)
    return sorted(settings) if settings is not None else None


# A container image is pinned when its reference ends in a content digest: a tag can be moved
# to other content by whoever controls the registry, a digest cannot.
PINNED_IMAGE = re.compile(r"@sha256:[0-9a-f]{64}$")
ALLOW_UNPINNED = "ai4os_allow_unpinned_images"


def _unpinned_image_errors(platform: dict[str, Any], enabled: set[str], file: str) -> list[InputError]:
    """Every image setting of a switched-on component that is not pinned by digest.

    Settings named ``image`` or ``<x>_image`` count; the value is platform.yml's
    ``ai4os_<component>_<setting>`` or the role default. ``ai4os_allow_unpinned_images: true``
    accepts tags (the operator's decision, e.g. until the digests are recorded).
    """
    if platform.get(ALLOW_UNPINNED) is True:
        return []
    errors = []
    for component in sorted(enabled):
        for setting, default in sorted((default_settings(component) or {}).items()):
            if setting != "image" and not setting.endswith("_image"):
                continue
            key = f"ai4os_{component}_{setting}"
            value = platform.get(key, default)
            if isinstance(value, str) and value and not PINNED_IMAGE.search(value):
                errors.append(InputError(
                    file, key, f"image '{value}' is not pinned by digest: whoever controls the registry can move its "
                    "tag to other content", f"set {key}: <image>@sha256:<digest> (read the digest with "
                    "`skopeo inspect docker://<image>` or `docker buildx imagetools inspect <image>`, from a "
                    f"machine you trust), or accept tags for now with {ALLOW_UNPINNED}: true"))
    return errors


def _unknown_setting_errors(platform: dict[str, Any], enabled: set[str], file: str) -> list[InputError]:
    errors: list[InputError] = []
    components = sorted(enabled, key=len, reverse=True)
    for key in sorted(k for k in platform if k.startswith("ai4os_")):
        owner = next((c for c in components if key.startswith(f"ai4os_{c}_")), None)
        if owner is None:
            continue
        known = known_settings(owner)
        setting = key[len(f"ai4os_{owner}_"):]
        if known is None or setting in known:
            continue
        close = difflib.get_close_matches(setting, known, n=1)
        hint = f"did you mean ai4os_{owner}_{close[0]}? " if close else ""
        if key in MOVED:
            hint = f"it moved: use {MOVED[key]}; "
        errors.append(InputError(file, key, f"{owner} has no setting '{setting}'",
                                 f"{hint}settings of {owner}: {', '.join(known)} (docs/platform.md)"))
    return errors


def check_component_settings(platform: dict[str, Any], enabled: set[str], file: str,
                             secrets: dict[str, Any] | None = None) -> list[InputError]:
    """Every broken settings rule of the switched-on components, as InputErrors (empty: all good).

    ``platform`` is platform.yml as a dict; ``secrets`` (optional) secrets.yml, for the
    rules of kind ``secret``. Nothing is fetched over the network here: reachability of
    the issuer is checked by ``ai4os-kit check --online`` (ai4os_kit.platform.oidc).
    """
    ctx = {
        "base": Path(file).resolve().parent,
        "vos": {vo.get("name") for vo in platform.get("ai4os_vos") or [] if isinstance(vo, dict)},
        "provider": _lookup(platform, "ai4os_oidc.provider"),
    }
    errors: list[InputError] = []
    for rule in RULES:
        if rule.component not in enabled:
            continue
        if rule.kind == "secret":
            if secrets is None:
                continue
            value = _lookup(secrets, rule.key)
        else:
            value = _lookup(platform, rule.key)
            if _is_empty(value) and rule.fallback:
                value = _lookup(platform, rule.fallback)
        problem = CHECKS[rule.kind](value, rule, ctx)
        if problem:
            where = str(Path(file).resolve().parent / "secrets.yml") if rule.kind == "secret" else file
            errors.append(InputError(where, rule.key, problem, rule.fix))
    return errors + _unknown_setting_errors(platform, enabled, file) + _unpinned_image_errors(platform, enabled, file)


def main() -> int:
    """Playbook entry point: merged Ansible variables as JSON on stdin ({"vars": {...}, "file": "..."}).

    Resolves the ``ai4os_enable_*`` switches against the catalogue (requirements pulled
    in), checks every rule, and prints {"enabled": [...], "errors": [...]} as JSON.
    Exit 2 when there is an error. Used by the platform_job role before anything is
    rendered or submitted.
    """
    from ai4os_kit.model.catalog import load_catalog, resolve

    doc = json.load(sys.stdin)
    merged: dict[str, Any] = doc["vars"]
    file = doc.get("file", "platform.yml")
    flags = {k[len("ai4os_enable_"):]: bool(v) for k, v in merged.items() if k.startswith("ai4os_enable_")}
    try:
        enabled = list(resolve(flags, load_catalog(), file=file).enabled)
        errors = check_component_settings(merged, set(enabled), file, secrets=merged)
    except InputError as err:
        enabled, errors = [], [err]
    print(json.dumps({"enabled": enabled, "errors": [e.render() for e in errors]}))
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
