"""OSCAR: the serverless inference clusters PAPI sends each VO's inference services to.

The kit builds no Kubernetes: an institution runs OSCAR next to the platform and lists each
VO's cluster in ``ai4os_oscar_clusters`` (roles/oscar/defaults/main.yml documents the keys);
the papi role writes them into PAPI's ``main.yaml`` (``oscar.clusters.<vo>.{endpoint,
cluster_id}``, read by ai4papi/routers/v1/inference/oscar.py).

``ai4os-kit check --online`` calls :func:`online_check`: every cluster is called with the
``oscar-python`` client, built with exactly the options PAPI builds it with (endpoint,
cluster_id, the user's OIDC token, ``ssl: "true"`` — so the certificate is checked against
the same CA bundle as PAPI's). Without a token only ``/health`` (no authentication in OSCAR)
is called; with a test account's token (``--token`` or $AI4OS_KIT_OIDC_TOKEN) also what PAPI
calls for that user: ``/system/info``, ``/system/config`` (whose ``oidc_groups`` must admit
the VO and whose ``minio_provider`` PAPI hands to users) and ``/system/services``.
"""

from __future__ import annotations

import os
from typing import Any

from ai4os_kit.platform.oidc import TOKEN_ENV

SETTING = "ai4os_oscar_clusters"


def clusters(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{vo: cluster}`` from the plan's settings (checked by the component rules)."""
    value = (plan.get("settings") or {}).get(SETTING) or {}
    return {str(vo): dict(c) for vo, c in value.items() if isinstance(c, dict)}


def oidc_group(vo: str, cluster: dict[str, Any]) -> str:
    """The group OSCAR must admit the VO's users by (OIDC_GROUPS): set, or the VO name."""
    return str(cluster.get("oidc_group") or vo)


def _client(cluster: dict[str, Any], token: str) -> Any:
    # Imported here: oscar-python pulls boto3 and aiohttp, too slow for every CLI start.
    from oscar_python.client import Client

    # The options PAPI passes (ai4papi/routers/v1/inference/oscar.py get_client_from_auth).
    return Client({"cluster_id": cluster["cluster_id"], "endpoint": cluster["endpoint"],
                   "oidc_token": token, "ssl": "true"})


def _why(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return ("its TLS certificate does not verify against the public CA bundle PAPI uses "
                f"({type(exc).__name__})")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        body = (exc.response.text or "").strip().splitlines()
        return f"HTTP {exc.response.status_code}" + (f": {body[0][:200]}" if body else "")
    if isinstance(exc, requests.exceptions.RequestException):
        return f"no answer ({type(exc).__name__}: {str(exc)[:200]})"
    return f"{type(exc).__name__}: {exc}"


def check_cluster(entries: dict[str, dict[str, Any]], token: str | None) -> list[str]:
    """Report lines for one cluster: ``entries`` are the ``{vo: cluster}`` that share its endpoint and id."""
    import requests

    vos = list(entries)
    cluster = entries[vos[0]]
    where = f"{cluster['endpoint']} (cluster {cluster['cluster_id']}, VO {', '.join(vos)})"
    client = _client(cluster, token or "")
    try:
        client.health_check()
    except (requests.exceptions.RequestException, ValueError) as exc:
        return [f"FAIL oscar: {where} does not answer /health: {_why(exc)}. Fix: check the endpoint in "
                f"{SETTING} and that the cluster is up and reachable over https from the platform"]
    lines = [f"OK   oscar: {where} answers /health"]
    if not token:
        return lines + [f"OK   oscar: no test token given (--token or ${TOKEN_ENV}); "
                        "authenticated calls of PAPI not checked"]
    try:
        info = client.get_cluster_info().json()
        config = client.get_cluster_config().json()
        client.list_services()
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        fix = ("the cluster refuses the token: list the platform's issuer in OSCAR's OIDC_ISSUERS and a group "
               "of the test account in OIDC_GROUPS" if status in (401, 403) else "see the cluster's logs")
        return lines + [f"FAIL oscar: {where} refuses what PAPI calls for a user: {_why(exc)}. Fix: {fix}"]
    except (requests.exceptions.RequestException, ValueError) as exc:
        return lines + [f"FAIL oscar: {where} answers PAPI's calls with something unreadable: {_why(exc)}"]
    backend = (info.get("serverless_backend") or {}).get("name") or "no serverless backend"
    lines.append(f"OK   oscar: {where} runs OSCAR {info.get('version', '?')} on Kubernetes "
                 f"{info.get('kubernetes_version', '?')} ({backend})")
    return lines + _config_lines(entries, config, where)


def _config_lines(entries: dict[str, dict[str, Any]], config: dict[str, Any], where: str) -> list[str]:
    lines = []
    groups = list((config.get("config") or {}).get("oidc_groups") or [])
    for vo, cluster in entries.items():
        group = oidc_group(vo, cluster)
        if group in groups:
            lines.append(f"OK   oscar: {where} admits VO {vo} (group {group})")
        else:
            lines.append(f"FAIL oscar: {where} does not admit VO {vo}: its OIDC groups are "
                         f"[{', '.join(groups)}], not '{group}'. Fix: add {group} to OSCAR's OIDC_GROUPS, "
                         f"or set oidc_group of {vo} in {SETTING} to the group the cluster uses")
    minio = (config.get("minio_provider") or {}).get("endpoint") or ""
    expected = next((c["minio_endpoint"] for c in entries.values() if c.get("minio_endpoint")), None)
    if not minio:
        lines.append(f"FAIL oscar: {where} reports no MinIO storage provider (PAPI gives users its "
                     "minio_provider for asynchronous calls). Fix: deploy OSCAR with its MinIO")
    elif expected and minio.rstrip("/") != str(expected).rstrip("/"):
        lines.append(f"FAIL oscar: {where} reports MinIO {minio}, not {expected}. Fix: correct minio_endpoint "
                     f"in {SETTING}, or the cluster's MinIO")
    else:
        lines.append(f"OK   oscar: {where} stores inputs and outputs in MinIO {minio}")
    return lines


def online_check(plan: dict[str, Any], token: Any = None) -> list[str]:
    """Report lines for ``ai4os-kit check --online`` ("OK ..." / "FAIL ...").

    ``token`` is a token string, the CLI's argparse namespace (its ``token``) or None
    (then $AI4OS_KIT_OIDC_TOKEN).
    """
    if token is not None and not isinstance(token, str):
        token = getattr(token, "token", None)
    token = token or os.environ.get(TOKEN_ENV) or None
    if not (plan.get("components") or {}).get("oscar", {}).get("enabled"):
        return ["OK   oscar: switched off, nothing to check"]
    configured = clusters(plan)
    shared: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for vo, cluster in configured.items():
        shared.setdefault((str(cluster["endpoint"]), str(cluster["cluster_id"])), {})[vo] = cluster
    lines: list[str] = []
    for entries in shared.values():
        lines += check_cluster(entries, token)
    missing = [vo["name"] for vo in plan["platform"]["vos"] if vo["name"] not in configured]
    if missing:
        lines.append(f"OK   oscar: no cluster for VO {', '.join(missing)} (PAPI's inference routes fail for them)")
    return lines
