"""`ai4os-kit provision` and `ai4os-kit destroy`.

provision: validate the inventory, build the plan, render the root module
(<INVENTORY>/terraform/main.tf.json), refresh cloud credentials, then
``terraform init`` / ``plan`` / ``apply`` with progress output, and write
<INVENTORY>/hosts.yml from Terraform's ``inventory`` output (``terraform
output -json``; state files are never read). Every input problem is reported
before Terraform starts, so nothing is created from a bad inventory.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ai4os_kit.cloud import flavors
from ai4os_kit.cloud.flavors import FlavorIds
from ai4os_kit.errors import InputError, KitError
from ai4os_kit.model import ansible_inventory
from ai4os_kit.model.node_contract import connection_vars
from ai4os_kit.model.plan import cloud_sites
from ai4os_kit.paths import PLATFORM_FILE, SITES_FILE
from ai4os_kit.terraform import render
from ai4os_kit.terraform.runner import Echo, PlanResult, Terraform

ROOT_DIR = "terraform"
CLOUDS_FILE = "clouds.yaml"
S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

LoadPlan = Callable[[Path], dict[str, Any]]
PrepareRoot = Callable[[Mapping[str, Any], Path, FlavorIds], None]
Credentials = Callable[[Mapping[str, Any], Path], dict[str, str]]
ResolveFlavors = Callable[[Mapping[str, Any], Mapping[str, str]], FlavorIds]
Preflight = Callable[[Mapping[str, Any], Mapping[str, str], Echo], None]


def root_dir(inventory: Path) -> Path:
    return Path(inventory) / ROOT_DIR


# ------------------------------------------------------------------ checks before Terraform

def check_backend_env(plan: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """A remote backend needs its credentials in the environment."""
    kind = render.backend_type(plan)
    if kind == "local":
        return
    missing = [name for name in S3_ENV if not env.get(name)]
    if missing:
        how = "`openstack ec2 credentials create` on the Swift project" if kind == "swift" else "your object store"
        raise InputError(PLATFORM_FILE, f"{render.BACKEND_SETTING}.type",
                         f"the {kind} backend needs {' and '.join(missing)} in the environment",
                         f"export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (from {how}), "
                         "or use `type: local`")


def check_inputs(plan: Mapping[str, Any], env: Mapping[str, str]) -> None:
    """Everything that can be checked without a cloud; raises InputError."""
    if not cloud_sites(plan):
        raise InputError(SITES_FILE, "ai4os_sites", "no cloud site to provision (every site is a test-bed)",
                         "add a site with egi_site or cloud, or use the local test-bed instead")
    render.render_backend(plan)
    check_backend_env(plan, env)


def prepare_root(plan: Mapping[str, Any], directory: Path, flavor_ids: FlavorIds) -> None:
    """Render and write the root module."""
    render.write_root(render.render_root(plan, directory, flavor_ids=flavor_ids), directory)


def resolve_flavors(plan: Mapping[str, Any], env: Mapping[str, str]) -> FlavorIds:
    """Flavor ids for requirements-only pools, from the clouds (openstacksdk)."""
    return flavors.resolve(plan, Path(env["OS_CLIENT_CONFIG_FILE"]))


def cloud_preflight(plan: Mapping[str, Any], env: Mapping[str, str], echo: Echo) -> None:
    """`check --online` before Terraform: a flavor, image, network, key pair or
    quota problem stops here, before anything is created (InputErrors, exit 2).
    What of the plan exists already is not counted again against the quota."""
    from ai4os_kit.cloud import preflight  # noqa: PLC0415 (import cycle through discovery)

    echo("preflight: checking flavors, image, network, key pair and quota on every site ...")
    findings = preflight.require_ready(plan, env)
    echo(f"preflight: {len(findings)} check(s) passed")


# ------------------------------------------------------------------ credentials

def _operator_clouds(env: Mapping[str, str]) -> dict[str, Any]:
    """The operator's clouds as openstacksdk reads them (clouds.yaml merged with secure.yaml).

    OS_CLIENT_CONFIG_FILE / OS_CLIENT_SECURE_FILE of ``env`` when set, else
    the usual places (./, ~/.config/openstack/, /etc/openstack/).
    """
    from openstack.config import loader

    config_file, secure_file = env.get("OS_CLIENT_CONFIG_FILE"), env.get("OS_CLIENT_SECURE_FILE")
    config = loader.OpenStackConfig(config_files=[config_file] if config_file else None,
                                    secure_files=[secure_file] if secure_file else None, load_envvars=False)
    return dict(config.cloud_config.get("clouds") or {})


def cloud_credentials(plan: Mapping[str, Any], directory: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Fresh credentials for every site in one kit-owned clouds.yaml (0600).

    EGI Check-in sites get a new project-scoped token (ai4os_kit.cloud.checkin);
    sites with `cloud:` get their entry copied from the operator's clouds.yaml
    (the provider reads a single file). Returns the environment for Terraform.
    """
    from ai4os_kit.cloud import checkin

    env = dict(os.environ if env is None else env)
    clouds_file = directory / CLOUDS_FILE
    operator = _operator_clouds(env)
    copied: dict[str, Any] = {}
    for index, site in enumerate(plan["sites"]):
        if site.get("testbed") or not site.get("cloud"):
            continue
        if site["cloud"] not in operator:
            raise InputError(SITES_FILE, f"ai4os_sites[{index}].cloud",
                             f"cloud '{site['cloud']}' is not in your clouds.yaml",
                             "add it to ~/.config/openstack/clouds.yaml (or point OS_CLIENT_CONFIG_FILE at a "
                             "clouds.yaml that has it), or fix the name")
        copied[site["cloud"]] = operator[site["cloud"]]
    if copied:
        checkin.write_clouds(clouds_file, copied)
    checkin.refresh_credentials(plan, clouds_file, env)
    return {"OS_CLIENT_CONFIG_FILE": str(clouds_file)}


# ------------------------------------------------------------------ inventory hand-off

def addresses_from_output(plan: Mapping[str, Any], output: Mapping[str, Any] | None,
                          strict: bool = True) -> dict[str, dict[str, Any]]:
    """Node name -> connection variables, from the root's `inventory` output.

    Every cloud node of the plan must be in it (else the state and the plan
    disagree and the inventory would be wrong); strict=False returns those
    that are.
    """
    if not isinstance(output, Mapping):
        raise KitError("Terraform has no `inventory` output; the root module was not applied by this kit")
    hosts: dict[str, Any] = {}
    for site_part in output.values():
        hosts.update((site_part or {}).get("hosts") or {})
    cloud = {site["name"] for site in cloud_sites(plan)}
    wanted = [node["name"] for node in plan["nodes"] if node["site"] in cloud]
    missing = [name for name in wanted if name not in hosts]
    if missing and strict:
        raise KitError(f"Terraform's inventory output lacks {', '.join(missing)}: the state does not match "
                       "the plan; run `ai4os-kit provision` again")
    return {name: connection_vars(hosts[name]) for name in wanted if name in hosts}


def current_addresses(plan: Mapping[str, Any], inventory: Path) -> dict[str, dict[str, Any]]:
    """Connection variables of the nodes provisioned so far ({} before the first provision).

    For commands that rewrite hosts.yml (e.g. `ai4os-kit plan`) and must keep
    the addresses: asks `terraform output` in <INVENTORY>/terraform (no cloud
    access; a remote backend needs its credentials in the environment).
    """
    directory = root_dir(inventory)
    if not (directory / ".terraform").is_dir():
        return {}
    output = Terraform(directory, echo=lambda _: None).output().get("inventory")
    return addresses_from_output(plan, output, strict=False) if output else {}


def write_inventory(plan: Mapping[str, Any], inventory: Path, output: Mapping[str, Any] | None) -> Path:
    addresses = addresses_from_output(plan, output)
    return ansible_inventory.write_plan(Path(inventory), dict(plan), addresses)


# ------------------------------------------------------------------ commands

def load_plan(inventory: Path) -> dict[str, Any]:
    from ai4os_kit.model.inventory import load_inventory
    from ai4os_kit.model.plan import build_plan

    return build_plan(load_inventory(inventory))


@dataclass
class Steps:
    """The steps around Terraform. Tests replace the cloud-facing ones only
    where the OpenStack provider and Keystone cannot be reached (see
    tests/terraform/test_tf_provision.py)."""

    load_plan: LoadPlan = load_plan
    prepare_root: PrepareRoot = prepare_root
    credentials: Credentials = cloud_credentials
    flavors: ResolveFlavors = resolve_flavors
    preflight: Preflight = cloud_preflight
    guarded: Mapping[tuple[str, str], str] = field(default_factory=lambda: dict(GUARDED))


def _start(inventory: Path, echo: Echo, steps: Steps, check_cloud: bool = True) -> tuple[dict[str, Any], Terraform]:
    plan = steps.load_plan(inventory)
    directory = root_dir(inventory)
    check_inputs(plan, os.environ)  # bad input stops here, before anything is written
    env = steps.credentials(plan, directory)
    if check_cloud:
        steps.preflight(plan, env, echo)  # cloud-side problems stop here, before Terraform runs
    steps.prepare_root(plan, directory, steps.flavors(plan, env))
    echo(f"rendered {directory / render.ROOT_FILE} (to run terraform by hand there: "
         f"OS_CLIENT_CONFIG_FILE={env.get('OS_CLIENT_CONFIG_FILE', '<your clouds.yaml>')} terraform ...)")
    tf = Terraform(directory, env=env, echo=echo)
    tf.init()
    return plan, tf


def _summary(result: PlanResult) -> str:
    return f"{result.add} to add, {result.change} to change, {result.remove} to destroy"


# Resources whose loss loses a node or its data, by (resource type, name in modules/node_pool).
# A plan that deletes or replaces a server is applied only when the operator names the node
# (--allow-destroy NAME) or allows all; data volumes carry prevent_destroy and are never destroyed
# by the kit: a volume whose node goes is forgotten by Terraform and kept in the project.
GUARDED: dict[tuple[str, str], str] = {
    ("openstack_compute_instance_v2", "this"): "server",
    ("openstack_blockstorage_volume_v3", "data"): "data volume",
}
VOLUME = "data volume"


@dataclass(frozen=True)
class Doomed:
    """A guarded resource the plan would delete or replace (or, for a volume, that leaves the plan)."""

    kind: str      # server | data volume
    name: str      # the node name (the for_each key), or the address
    action: str    # delete | replace
    address: str

    def __str__(self) -> str:
        if self.kind == VOLUME and self.action == "delete":
            return f"data volume of {self.name} would leave Terraform's care (kept in the project): {self.address}"
        verb = "destroyed" if self.action == "delete" else "replaced (destroyed and created anew)"
        return f"{self.kind} of {self.name} would be {verb}: {self.address}"


def doomed(result: PlanResult, guarded: Mapping[tuple[str, str], str] = GUARDED) -> list[Doomed]:
    """The guarded resources a plan deletes or replaces."""
    return [Doomed(guarded[(c.resource_type, c.resource_name)],
                   str(c.resource_key) if c.resource_key is not None else c.address, c.action, c.address)
            for c in result.changes
            if (c.resource_type, c.resource_name) in guarded and c.action in ("delete", "replace")]


def state_guarded(state: list[str], guarded: Mapping[tuple[str, str], str] = GUARDED) -> list[Doomed]:
    """The guarded resources in Terraform's state (``...<type>.<name>["<node>"]`` addresses)."""
    out = []
    for address in state:
        for (rtype, rname), kind in guarded.items():
            if f'{rtype}.{rname}["' in address and address.endswith('"]'):
                out.append(Doomed(kind, address.rsplit('["', 1)[1][:-2], "delete", address))
    return out


def state_volumes(state: list[str], guarded: Mapping[tuple[str, str], str] = GUARDED) -> list[Doomed]:
    """The data volumes in Terraform's state."""
    return [d for d in state_guarded(state, guarded) if d.kind == VOLUME]


def leaving_volumes(plan: Mapping[str, Any], state: list[str],
                    guarded: Mapping[tuple[str, str], str] = GUARDED) -> list[Doomed]:
    """Data volumes in the state whose node no longer has one in the plan.

    prevent_destroy would make `terraform plan` fail on them; the kit asks the operator first and
    then removes them from the state (the volume stays in the project, detached).
    """
    wanted = {n["name"] for n in plan["nodes"] if n.get("volume")}
    return [v for v in state_volumes(state, guarded) if v.name not in wanted]


def refuse_unallowed(found: list[Doomed], allow: Sequence[str], allow_all: bool, echo: Echo) -> None:
    """InputError (nothing applied) when the plan loses a server or volume the operator did not name."""
    if not found:
        return
    refused = [] if allow_all else [d for d in found if d.name not in allow]
    for d in found:
        echo(f"  {'REFUSED' if d in refused else 'allowed'}: {d}")
    if refused:
        names = " ".join(sorted({d.name for d in refused}))
        raise InputError("command line", "--allow-destroy",
                         f"the plan would remove the server or data volume of {names} (listed above); "
                         "nothing was changed",
                         f"if they are meant to go (a pool shrank or was removed), re-run with --allow-destroy {names} "
                         "(or --allow-destroy-all); otherwise restore their pools in sites.yml. Data volumes are "
                         "kept in the project either way (docs/terraform.md, 'Removing nodes')")


def keep_volumes(tf: Terraform, volumes: list[Doomed], echo: Echo) -> None:
    """Forget data volumes in Terraform's state; they stay in the cloud with their data."""
    if not volumes:
        return
    tf.state_rm([v.address for v in volumes])
    for v in volumes:
        echo(f"kept the data volume {v.name}-data in the project (detached, data intact); delete it when it is "
             f"no longer needed: openstack volume delete {v.name}-data")


def provision(inventory: Path, plan_only: bool = False, echo: Echo = print, steps: Steps | None = None,
              allow_destroy: Sequence[str] = (), allow_destroy_all: bool = False) -> int:
    """Render, plan and apply; refuse to lose a server or data volume the operator did not name."""
    steps = steps or Steps()
    plan, tf = _start(inventory, echo, steps)
    state = tf.state_list()
    unknown = sorted(set(allow_destroy) - {d.name for d in state_guarded(state, steps.guarded)})
    if unknown:
        raise InputError("command line", "--allow-destroy", f"{', '.join(unknown)}: no server or data volume of that "
                         "name exists", "name nodes listed by `ai4os-kit provision --plan-only` (node names, e.g. "
                         "ifca-cpu-2)")
    volumes = leaving_volumes(plan, state, steps.guarded)
    if volumes and plan_only:
        for d in volumes:
            echo(f"  would go: {d}")
        echo("plan only: the data volumes above are protected (prevent_destroy), so Terraform cannot plan until "
             "they leave its state; `ai4os-kit provision --allow-destroy NAME...` keeps them in the project and "
             "then plans and applies; nothing was changed")
        return 0
    if volumes:  # asked before anything changes; the servers of the same nodes are checked after the plan
        refuse_unallowed(volumes, allow_destroy, allow_destroy_all, echo)
        keep_volumes(tf, volumes, echo)
    result = tf.plan()
    found = doomed(result, steps.guarded)
    if plan_only:
        for d in found:
            echo(f"  would go: {d}")
        echo(f"plan only: {_summary(result)}; nothing was changed")
        return 0
    refuse_unallowed(found, allow_destroy, allow_destroy_all, echo)
    if result.has_changes:
        tf.apply()
    else:
        echo("no changes: the clouds match the plan")
    target = write_inventory(plan, inventory, tf.output().get("inventory"))
    echo(f"wrote the Ansible inventory {target}")
    return 0


def _confirm(inventory: Path, result: PlanResult, ask: Callable[[str], str]) -> bool:
    if not sys.stdin.isatty() and ask is input:
        raise InputError("command line", "--yes", "destroy needs confirmation but there is no terminal to ask",
                         "re-run with --yes to destroy without asking")
    answer = ask(f"Destroy {result.remove} resource(s) of {inventory}? Type 'yes' to confirm: ")
    return answer.strip() == "yes"


def destroy(inventory: Path, yes: bool = False, echo: Echo = print, steps: Steps | None = None,
            ask: Callable[[str], str] = input) -> int:
    steps = steps or Steps()
    plan, tf = _start(inventory, echo, steps, check_cloud=False)  # destroying needs no quota
    state = tf.state_list()
    volumes = state_volumes(state, steps.guarded)  # every data volume stays
    kept = {v.address for v in volumes}
    # prevent_destroy protects the data volumes: everything else is targeted, the volumes are kept.
    result = tf.plan(destroy=True, targets=[a for a in state if a not in kept and not a.startswith("data.")]
                     if kept else None)
    if not result.has_changes:
        echo("nothing to destroy")
        keep_volumes(tf, volumes, echo)
        return 0
    for v in volumes:
        echo(f"  kept: data volume of {v.name} ({v.address})")
    if not yes and not _confirm(inventory, result, ask):
        echo("not confirmed: nothing was destroyed")
        return 1
    tf.apply()
    keep_volumes(tf, volumes, echo)
    target = ansible_inventory.write_plan(Path(inventory), plan)
    echo(f"destroyed; {target} no longer has addresses")
    return 0
