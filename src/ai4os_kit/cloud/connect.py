"""Open an openstacksdk connection to a plan site's cloud.

`cloud:` sites use the operator's clouds.yaml (OS_CLIENT_CONFIG_FILE or the
usual places); EGI sites use the kit's clouds.yaml that
:func:`ai4os_kit.cloud.checkin.refresh_credentials` wrote.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import openstack
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as os_exc
from openstack.config import loader

from ai4os_kit.cloud.checkin import cloud_name
from ai4os_kit.errors import InputError, KitError
from ai4os_kit.paths import SITES_FILE


def connect(site: Mapping[str, Any], index: int, kit_clouds: Path | None = None,
            operator_clouds: str | None = None) -> openstack.connection.Connection:
    """An authenticated connection to the site's project; InputError/KitError say what to fix.

    ``operator_clouds``: a clouds.yaml searched before the usual places for `cloud:` sites.
    """
    name = cloud_name(site)
    egi = bool(site.get("egi_site"))
    try:
        if egi and kit_clouds:
            config_files: list[str] | None = [str(kit_clouds)]
        else:
            config_files = [operator_clouds, *loader.CONFIG_FILES] if operator_clouds else None
        options = {"region_name": site["region"]} if site.get("region") else {}
        config = loader.OpenStackConfig(config_files=config_files).get_one(cloud=name, **options)
        conn = openstack.connection.Connection(config=config)
        conn.authorize()
    except os_exc.ConfigException as exc:
        raise InputError(SITES_FILE, f"ai4os_sites[{index}].cloud",
                         f"cloud '{name}' cannot be used: {exc}",
                         "add it to your clouds.yaml (~/.config/openstack/clouds.yaml or OS_CLIENT_CONFIG_FILE), "
                         "or fix the name") from None
    except ks_exc.Unauthorized:
        raise InputError(SITES_FILE, f"ai4os_sites[{index}]",
                         f"the credentials of cloud '{name}' were rejected (401)",
                         "renew them: a new application credential in clouds.yaml, or a fresh Check-in token "
                         "for EGI sites") from None
    except (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.DiscoveryFailure) as exc:
        raise KitError(f"cannot reach cloud '{name}' of site {site['name']}: {exc}") from None
    except (os_exc.SDKException, ks_exc.ClientException) as exc:
        raise KitError(f"cloud '{name}' of site {site['name']} failed: {exc}") from None
    return conn


@contextlib.contextmanager
def site_connections(plan: Mapping[str, Any], env: Mapping[str, str] | None = None,
                     verify: bool | str = True) -> Iterator[Iterator[tuple[int, Mapping[str, Any], Callable[[], Any]]]]:
    """For every cloud site of the plan: (index, site, open) where ``open()`` connects.

    EGI Check-in sites get fresh tokens in a private temporary clouds.yaml
    (read-only use: no application credential is created); it is removed on exit.
    """
    from ai4os_kit.cloud import checkin

    operator_clouds = (env or {}).get("OS_CLIENT_CONFIG_FILE")
    with tempfile.TemporaryDirectory(prefix="ai4os-cloud-") as tmp:
        kit_clouds = Path(tmp) / "clouds.yaml"
        indexes = [i for i, s in enumerate(plan["sites"]) if not s.get("testbed")]
        if any(plan["sites"][i].get("egi_site") for i in indexes):
            checkin.refresh_credentials(plan, kit_clouds, env, verify=verify, app_credentials=False)

        def opener(i: int) -> Callable[[], Any]:
            return lambda: connect(plan["sites"][i], i, kit_clouds, operator_clouds)

        yield ((i, plan["sites"][i], opener(i)) for i in indexes)
