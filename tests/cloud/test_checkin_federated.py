"""A successful EGI Check-in login, end to end, as on an EGI site.

EGI sites put Apache mod_auth_openidc in front of Keystone: it validates the
Check-in access token and hands its claims to Keystone's `openid` protocol of
identity provider `egi.eu`, whose mapping makes the user a member of the VO's
project. Here every piece is real: the OpenID provider (npm oidc-provider,
standing in for Check-in, which cannot be reached from these machines),
Apache with mod_auth_openidc (Debian packages, .ci/setup.d/25-keystone-oidc.sh)
introspecting the token, and the test-bed's Keystone behind it. The kit's own
code (checkin.federated_token, refresh_credentials) then writes a clouds.yaml
that openstacksdk uses against nova.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cloudbed import CLOUD, lab_site, plan_for
from support import oidc_op
from support.ci import unavailable

from ai4os_kit.cloud import checkin
from ai4os_kit.errors import InputError
from ai4os_kit.model import egi_sites

pytestmark = pytest.mark.integration

APACHE = Path("/usr/sbin/apache2")
MODULES = Path("/usr/lib/apache2/modules")
KEYSTONE = "http://127.0.0.1:5000"
FEDERATION_AUTH = "/v3/OS-FEDERATION/identity_providers/egi.eu/protocols/openid/auth"
MODS = ["mpm_event", "authn_core", "authz_core", "authz_user", "proxy", "proxy_http", "auth_openidc"]

APACHE_CONF = """\
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {dir}/httpd.pid
ErrorLog {dir}/error.log
LogLevel warn auth_openidc:info
Mutex file:{dir} default
User nobody
Group nogroup
{load}
OIDCCryptoPassphrase {passphrase}
OIDCCABundlePath {dir}/ca.pem
OIDCOAuthSSLValidateServer On
OIDCOAuthIntrospectionEndpoint {introspection}
OIDCOAuthIntrospectionEndpointAuth client_secret_basic
OIDCOAuthClientID {client_id}
OIDCOAuthClientSecret {client_secret}
OIDCOAuthRemoteUserClaim sub
# claims reach Keystone as OIDC-<claim> headers: HTTP_OIDC_SUB, HTTP_OIDC_ISS in its environment
OIDCClaimPrefix OIDC-
<Location "{auth_path}">
    AuthType oauth20
    Require valid-user
</Location>
ProxyPass "/" "{keystone}/"
ProxyPassReverse "/" "{keystone}/"
"""


def _require_apache() -> None:
    missing = [str(MODULES / f"mod_{m}.so") for m in MODS if not (MODULES / f"mod_{m}.so").is_file()]
    if not APACHE.is_file() or missing:
        unavailable(f"Apache or its modules are missing ({', '.join(missing) or APACHE})",
                    ".ci/setup.d/25-keystone-oidc.sh installs apache2-bin and libapache2-mod-auth-openidc")


@pytest.fixture(scope="module")
def checkin_op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[oidc_op.OP]:
    """The stand-in Check-in (a real OpenID provider) in front of which Apache's mod_auth_openidc sits."""
    _require_apache()
    op, = oidc_op.start_providers(tmp_path_factory.mktemp("checkin-op"))
    yield op
    oidc_op.stop(op)


@pytest.fixture(scope="module")
def foreign_op(tmp_path_factory: pytest.TempPathFactory, checkin_op: oidc_op.OP) -> Iterator[oidc_op.OP]:
    """Another provider with the same accounts: its tokens mean nothing to the site."""
    tmp = tmp_path_factory.mktemp("foreign-op")
    op = oidc_op._start(tmp, *oidc_op._make_ca(tmp))
    yield op
    op.process.terminate()
    op.process.wait(timeout=10)


@pytest.fixture(scope="module")
def federated_keystone(checkin_op: oidc_op.OP, testbed: Path) -> Iterator[str]:
    """Keystone behind Apache mod_auth_openidc; returns the identity URL (…/v3) the site publishes."""
    session = requests.Session()
    session.trust_env = False
    discovery = session.get(f"{checkin_op.issuer}/.well-known/openid-configuration",
                            verify=str(checkin_op.ca_file), timeout=10).json()
    # world-readable: Apache's workers run as nobody and read the CA bundle
    workdir = Path(tempfile.mkdtemp(prefix="ai4os-apache-"))
    workdir.chmod(0o755)
    shutil.copy(checkin_op.ca_file, workdir / "ca.pem")
    (workdir / "ca.pem").chmod(0o644)
    port = oidc_op._free_port()
    client = next(c for c in oidc_op.CLIENTS if c["client_id"] == oidc_op.RESOURCE_SERVER)
    conf = workdir / "httpd.conf"
    conf.write_text(APACHE_CONF.format(
        port=port, dir=workdir, passphrase=secrets.token_hex(16), introspection=discovery["introspection_endpoint"],
        client_id=client["client_id"], client_secret=client["client_secret"], auth_path=FEDERATION_AUTH,
        keystone=KEYSTONE, load="\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in MODS)))
    proc = subprocess.Popen([str(APACHE), "-f", str(conf), "-DFOREGROUND"], stdout=subprocess.DEVNULL,
                            stderr=open(workdir / "stderr.log", "wb"))  # noqa: SIM115 (closed with the process)
    url = f"http://127.0.0.1:{port}/v3"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"Apache exited: {(workdir / 'stderr.log').read_text()}"
                                 f"{(workdir / 'error.log').read_text() if (workdir / 'error.log').exists() else ''}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("Apache did not answer within 30 s") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def trusts_the_op(testbed: Path, checkin_op: oidc_op.OP) -> Iterator[None]:
    """Keystone's egi.eu identity provider also accepts the stand-in issuer (restored afterwards)."""
    import openstack
    from openstack.config import loader

    admin = openstack.connection.Connection(
        config=loader.OpenStackConfig(config_files=[str(testbed)]).get_one(cloud=f"{CLOUD}-admin"))
    idn = admin.identity
    idp = idn.get_identity_provider("egi.eu")
    mapping = idn.get_mapping("egi-checkin")
    old_remote_ids, old_rules = list(idp.remote_ids), [dict(r) for r in mapping.rules]
    rules = [dict(rule, remote=[dict(m, any_one_of=[*m["any_one_of"], checkin_op.issuer])
                                if m.get("type") == "HTTP_OIDC_ISS" else m for m in rule["remote"]])
             for rule in old_rules]
    idn.update_identity_provider(idp, remote_ids=[*old_remote_ids, checkin_op.issuer])
    idn.update_mapping(mapping, rules=rules)
    yield
    idn.update_identity_provider(idp, remote_ids=old_remote_ids)
    idn.update_mapping(mapping, rules=old_rules)
    admin.close()


@pytest.fixture
def site(federated_keystone: str, trusts_the_op: None, admin_conn: Any, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> egi_sites.ResolvedSite:
    """The test-bed as an EGI site (EGI's site file format), its Keystone behind mod_auth_openidc."""
    project = admin_conn.identity.find_project("ai4os-test", domain_id="default")
    sites = tmp_path / "egi-sites"
    sites.mkdir()
    (sites / "schema.json").write_text((egi_sites.BUNDLED_DIR / "schema.json").read_text())
    (sites / "LOCAL-TESTBED.yaml").write_text(yaml.safe_dump({
        "gocdb": "LOCAL-TESTBED", "endpoint": federated_keystone, "protocol": "openid",
        "vos": [{"name": "vo.ai4eosc.eu", "auth": {"project_id": project.id}}]}))
    monkeypatch.setenv(egi_sites.SITES_DIR_ENV, str(sites))
    return egi_sites.resolve({"name": "lab", "egi_site": "LOCAL-TESTBED", "vo": "vo.ai4eosc.eu"}, 0,
                             egi_sites.load_sites())


def test_checkin_token_becomes_a_project_scoped_keystone_token(checkin_op: oidc_op.OP, site: Any,
                                                                admin_conn: Any) -> None:
    token = checkin_op.token("alice", kind="access_token")
    scoped = checkin.federated_token(site, token)
    assert scoped.project_id == site.project_id
    assert scoped.token and scoped.expires_at
    user = admin_conn.identity.get_user(scoped.user_id)
    assert user.name == "alice"  # the mapping made the token's `sub` the (shadow) user


def test_refresh_writes_a_clouds_yaml_that_openstacksdk_uses(checkin_op: oidc_op.OP, site: Any,
                                                             tmp_path: Path) -> None:
    import openstack
    from openstack.config import loader

    lab = {**lab_site(), "auth": "checkin", "egi_site": "LOCAL-TESTBED", "vo": "vo.ai4eosc.eu"}
    del lab["cloud"]
    plan = plan_for(tmp_path / "inv", [lab])
    target = tmp_path / "kit" / "clouds.yaml"
    token = checkin_op.token("alice", kind="access_token")
    checkin.refresh_credentials(plan, target, {"OIDC_ACCESS_TOKEN": token})
    entry = yaml.safe_load(target.read_text())["clouds"]["ai4os-lab"]
    assert entry["auth_type"] == "token" and entry["auth"]["project_id"] == site.project_id
    conn = openstack.connection.Connection(
        config=loader.OpenStackConfig(config_files=[str(target)]).get_one(cloud="ai4os-lab"))
    assert "g1.a100.1" in {f.name for f in conn.compute.flavors()}


def test_token_of_another_issuer_is_rejected(foreign_op: oidc_op.OP, site: Any) -> None:
    token = foreign_op.token("alice", kind="access_token")  # same user name, wrong provider
    with pytest.raises(InputError) as err:
        checkin.federated_token(site, token)
    assert "rejected the Check-in token (401)" in err.value.problem
