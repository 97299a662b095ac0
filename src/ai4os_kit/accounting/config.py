"""The accounting configuration file (rendered by the ``accounting`` role).

Every problem is an :class:`InputError` naming the file, the key, the line
and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai4os_kit.accounting.apel import ExportContext
from ai4os_kit.accounting.nomad_client import NomadSettings
from ai4os_kit.errors import InputError
from ai4os_kit.yamlio import KeyPath, format_path, line_of, load_yaml

EXAMPLE = "docs/accounting.md (section 'Configuration file')"


@dataclass(frozen=True)
class AccountingConfig:
    file: Path
    store: Path
    nomad: NomadSettings
    owner_meta_key: str
    export: ExportContext
    outgoing_dir: Path
    host_cert: Path | None
    host_key: Path | None
    summaries_dir: Path
    reports_dir: Path
    # Nomad datacenter of a site another installation lends -> the lending institution
    # (federation/lent/*.yml of the inventory; the report shows their usage apart).
    lent: dict[str, str] = field(default_factory=dict)


class _Reader:
    def __init__(self, file: Path, data: Any, lines: dict[KeyPath, int]) -> None:
        self.file, self.data, self.lines = file, data, lines

    def fail(self, path: KeyPath, problem: str, fix: str) -> InputError:
        return InputError(str(self.file), format_path(path), problem, fix, line=line_of(self.lines, path))

    def get(self, path: KeyPath, kind: type | tuple[type, ...], required: bool = True, default: Any = None) -> Any:
        node: Any = self.data
        for i, key in enumerate(path):
            if not isinstance(node, dict):
                raise self.fail(path[:i], "expected a mapping", f"write it as 'key: value' lines; see {EXAMPLE}")
            if key not in node or node[key] is None:
                if required:
                    raise self.fail(path, "missing", f"set it; see {EXAMPLE}")
                return default
            node = node[key]
        if not isinstance(node, kind) or isinstance(node, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(path, f"expected {names}, got {type(node).__name__} {node!r}", f"see {EXAMPLE}")
        return node

    def path(self, path: KeyPath, required: bool = True) -> Path | None:
        value = self.get(path, str, required)
        if value is None:
            return None
        if not value.startswith("/"):
            raise self.fail(path, f"'{value}' is not an absolute path", "give the full path, starting with /")
        return Path(value)

    def str_map(self, path: KeyPath) -> dict[str, str]:
        value = self.get(path, dict, required=False, default={})
        for key, item in value.items():
            if not isinstance(item, str) or not item:
                raise self.fail(path + (key,), f"expected a non-empty string, got {item!r}", f"see {EXAMPLE}")
        return {str(k): v for k, v in value.items()}


def load_config(file: Path | str) -> AccountingConfig:
    """Read and check the accounting configuration."""
    file = Path(file)
    if not file.is_file():
        raise InputError(str(file), "", "accounting configuration not found",
                         "pass --config with the file the accounting role renders "
                         "(/etc/ai4os-accounting/accounting.yml), or write one as in " + EXAMPLE)
    data, lines = load_yaml(file)
    r = _Reader(file, data if data is not None else {}, lines)
    r.get((), dict)
    unknown = sorted(set(r.data) - {"store", "nomad", "apel", "ssm", "summaries_dir", "reports_dir", "lent"})
    if unknown:
        raise r.fail((unknown[0],), "unknown key", "remove it or fix its spelling (store, nomad, apel, ssm, "
                                                  "summaries_dir, reports_dir, lent)")
    address = r.get(("nomad", "address"), str)
    if not address.startswith(("http://", "https://")):
        raise r.fail(("nomad", "address"), f"'{address}' is not an http(s) URL",
                     "write it as https://HOST:4646 (the Nomad HTTP API)")
    timeout = r.get(("nomad", "timeout"), int, required=False, default=30)
    nomad = NomadSettings(
        address=address, token_file=r.path(("nomad", "token_file"), False), ca_cert=r.path(("nomad", "ca_cert"), False),
        client_cert=r.path(("nomad", "client_cert"), False), client_key=r.path(("nomad", "client_key"), False),
        region=r.get(("nomad", "region"), str, required=False), timeout=timeout)
    if bool(nomad.client_cert) != bool(nomad.client_key):
        raise r.fail(("nomad", "client_key" if nomad.client_cert else "client_cert"), "missing",
                     "set both nomad.client_cert and nomad.client_key, or neither")
    cpu_duration = r.get(("apel", "cpu_duration"), str, required=False, default="reserved")
    if cpu_duration not in ("reserved", "omit"):
        raise r.fail(("apel", "cpu_duration"), f"'{cpu_duration}' is not reserved or omit",
                     "use reserved (CpuCount x WallDuration, as caso reports VMs) or omit")
    fqan_format = r.get(("apel", "fqan_format"), str, required=False, default="/{vo}/Role=NULL/Capability=NULL")
    if "{vo}" not in fqan_format:
        raise r.fail(("apel", "fqan_format"), "does not contain {vo}", "write e.g. /{vo}/Role=NULL/Capability=NULL")
    for key in ("compute_service", "cloud_type", "fqan_format", "default_vo"):
        value = (r.data.get("apel") or {}).get(key)
        if isinstance(value, str) and not (value.isascii() and value.isprintable()):
            raise r.fail(("apel", key), "contains characters APEL records cannot carry (non-ASCII or control)",
                         "use printable ASCII only")
    export = ExportContext(
        site_names=r.str_map(("apel", "sites")), vos=r.str_map(("apel", "vos")),
        compute_service=r.get(("apel", "compute_service"), str), fqan_format=fqan_format,
        cpu_duration=cpu_duration, default_vo=r.get(("apel", "default_vo"), str, required=False),
        **({"cloud_type": r.get(("apel", "cloud_type"), str)} if "cloud_type" in (r.data.get("apel") or {}) else {}))
    return AccountingConfig(
        file=file, store=r.path(("store",)) or Path(), nomad=nomad,
        owner_meta_key=r.get(("nomad", "owner_meta_key"), str, required=False, default="owner"),
        export=export, outgoing_dir=r.path(("ssm", "outgoing_dir")) or Path(),
        host_cert=r.path(("ssm", "host_cert"), False), host_key=r.path(("ssm", "host_key"), False),
        summaries_dir=r.path(("summaries_dir",)) or Path(), reports_dir=r.path(("reports_dir",)) or Path(),
        lent=r.str_map(("lent",)))
