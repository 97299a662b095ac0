"""Drive the Terraform CLI with its machine-readable ``-json`` UI.

``init``, ``plan``, ``apply`` and ``destroy`` stream one JSON message per
line; the runner turns them into short progress lines (resource started /
done / failed, the change summary) and collects error diagnostics into one
:class:`~ai4os_kit.errors.KitError`. Outputs come from ``terraform output
-json`` (never from the state file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ai4os_kit.errors import KitError

PLAN_FILE = "ai4os.tfplan"
# OpenStack settings in the caller's environment (a sourced openrc) would take
# precedence over clouds.yaml in the provider and mix credentials across sites:
# Terraform gets only what the kit passes (OS_CLIENT_CONFIG_FILE).
SCRUBBED_PREFIXES = ("OS_",)
Echo = Callable[[str], None]


@dataclass
class Change:
    """One planned resource change (a ``planned_change`` message of ``terraform plan -json``)."""

    address: str
    action: str  # create | update | delete | replace | read | noop | move | forget
    resource_type: str = ""
    resource_name: str = ""
    resource_key: str | int | None = None  # the for_each key: the node name in the kit's modules


@dataclass
class PlanResult:
    """What a plan would do."""

    changes: list[Change] = field(default_factory=list)
    add: int = 0
    change: int = 0
    remove: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.add or self.change or self.remove)


def find_terraform(binary: str | None = None) -> str:
    """Path of the terraform CLI (AI4OS_TERRAFORM, else PATH)."""
    name = binary or os.environ.get("AI4OS_TERRAFORM") or "terraform"
    path = shutil.which(name)
    if path is None:
        raise KitError(f"the Terraform CLI ('{name}') is not installed or not on PATH; "
                       "install Terraform >= 1.9 (or set AI4OS_TERRAFORM to its path)")
    return path


def _diagnostic_text(diag: Mapping[str, Any]) -> str:
    text = str(diag.get("summary", "")).strip()
    detail = str(diag.get("detail", "")).strip()
    if detail:
        text += f": {detail}"
    if diag.get("address"):
        text = f"{diag['address']}: {text}"
    elif diag.get("range", {}).get("filename"):
        text = f"{diag['range']['filename']}:{diag['range'].get('start', {}).get('line', '?')}: {text}"
    return text


class Terraform:
    """One Terraform working directory (a root module)."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None,
                 echo: Echo = print, binary: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.binary = find_terraform(binary)
        self.echo = echo
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
        self.env.update(env or {})
        self.env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "NO_COLOR": "1"})

    # -------------------------------------------------------------- process

    def _messages(self, args: list[str], what: str) -> Iterator[dict[str, Any]]:
        """Run ``terraform ARGS`` and yield its JSON messages; raise on failure."""
        errors: list[str] = []
        # stderr goes to a file: a full pipe must never block Terraform while stdout is read.
        with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as err_file:
            proc = subprocess.Popen([self.binary, *args], cwd=self.workdir, env=self.env, text=True,
                                    stdout=subprocess.PIPE, stderr=err_file)
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if msg.get("type") == "diagnostic" and msg.get("@level") == "error":
                    errors.append(_diagnostic_text(msg.get("diagnostic", {})))
                yield msg
            code = proc.wait()
            err_file.seek(0)
            stderr = err_file.read()
        self.last_exit_code = code
        if code not in (0, 2) or (code == 2 and "-detailed-exitcode" not in args):
            if not errors:
                errors = [line for line in stderr.splitlines() if line.strip() and "CLI configuration" not in line][-5:]
            unique = list(dict.fromkeys(errors)) or ["(no message)"]
            raise KitError(f"terraform {what} failed in {self.workdir}:\n  " + "\n  ".join(unique))

    def _progress(self, msg: Mapping[str, Any]) -> None:
        kind = msg.get("type")
        hook = msg.get("hook", {})
        address = hook.get("resource", {}).get("addr", "")
        if kind == "apply_start":
            self.echo(f"  {hook.get('action', 'apply')}: {address} ...")
        elif kind == "apply_progress":
            self.echo(f"  still {hook.get('action', 'applying')}: {address} ({hook.get('elapsed_seconds', 0)}s)")
        elif kind == "apply_complete":
            self.echo(f"  done: {address} ({hook.get('elapsed_seconds', 0)}s)")
        elif kind == "apply_errored":
            self.echo(f"  FAILED: {address}")
        elif kind == "change_summary":
            self.echo(f"  {msg.get('@message', '')}")
        elif kind == "diagnostic" and msg.get("@level") == "warning":
            summary = msg.get("diagnostic", {}).get("summary", "")
            if "CLI configuration" not in summary:
                self.echo(f"  warning: {_diagnostic_text(msg.get('diagnostic', {}))}")

    # -------------------------------------------------------------- commands

    def init(self) -> None:
        self.echo(f"terraform init ({self.workdir})")
        for _ in self._messages(["init", "-json", "-input=false", "-no-color"], "init"):
            pass

    def plan(self, destroy: bool = False, out: str = PLAN_FILE, targets: list[str] | None = None) -> PlanResult:
        self.echo("terraform plan" + (" -destroy" if destroy else "") + (f" ({len(targets)} targets)" if targets else ""))
        args = ["plan", "-json", "-input=false", "-no-color", "-detailed-exitcode", f"-out={out}"]
        if destroy:
            args.append("-destroy")
        args += [f"-target={target}" for target in targets or []]
        result = PlanResult()
        for msg in self._messages(args, "plan"):
            if msg.get("type") == "planned_change":
                change = msg.get("change", {})
                resource = change.get("resource", {})
                result.changes.append(Change(resource.get("addr", ""), change.get("action", ""),
                                             resource.get("resource_type", ""), resource.get("resource_name", ""),
                                             resource.get("resource_key")))
            elif msg.get("type") == "change_summary":
                summary = msg.get("changes", {})
                result.add, result.change, result.remove = (int(summary.get(k, 0)) for k in ("add", "change", "remove"))
            self._progress(msg)
        result.changes.sort(key=lambda c: c.address)
        for change in result.changes:
            self.echo(f"    {change.action:<8} {change.address}")
        return result

    def apply(self, plan_file: str = PLAN_FILE) -> None:
        self.echo("terraform apply")
        try:
            for msg in self._messages(["apply", "-json", "-input=false", "-no-color", "-auto-approve", plan_file],
                                      "apply"):
                self._progress(msg)
        finally:
            # A saved plan holds every value of the run; it is used once.
            (self.workdir / plan_file).unlink(missing_ok=True)

    def output(self) -> dict[str, Any]:
        """Root outputs as {name: value}."""
        proc = subprocess.run([self.binary, "output", "-json", "-no-color"], cwd=self.workdir, env=self.env,
                              text=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise KitError(f"terraform output failed in {self.workdir}: {proc.stderr.strip()[-500:]}")
        try:
            outputs = json.loads(proc.stdout or "{}")
        except json.JSONDecodeError as exc:
            raise KitError(f"terraform output -json printed no JSON: {exc}") from exc
        return {name: item.get("value") for name, item in outputs.items()}

    def _run(self, args: list[str], what: str, empty_if: str | None = None) -> str:
        proc = subprocess.run([self.binary, *args], cwd=self.workdir, env=self.env, text=True,
                              capture_output=True, check=False)
        if proc.returncode != 0:
            if empty_if and empty_if in proc.stderr:
                return ""
            raise KitError(f"terraform {what} failed in {self.workdir}: {proc.stderr.strip()[-500:]}")
        return proc.stdout

    def state_list(self) -> list[str]:
        """Addresses of the resources in the state ([] before the first apply, local or remote backend)."""
        out = self._run(["state", "list", "-no-color"], "state list", empty_if="No state file was found")
        return [line for line in out.splitlines() if line]

    def state_rm(self, addresses: list[str]) -> None:
        """Forget resources (they stay in the cloud, untouched)."""
        if addresses:
            self.echo("terraform state rm " + " ".join(addresses))
            self._run(["state", "rm", "-no-color", *addresses], "state rm")
