"""``ai4os-kit accounting …``: collect from Nomad, export to APEL, summarise for PAPI, report."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import Any

from ai4os_kit.errors import InputError, KitError

DEFAULT_CONFIG = "/etc/ai4os-accounting/accounting.yml"


def _config(args: argparse.Namespace) -> Any:
    from ai4os_kit.accounting.config import load_config

    return load_config(Path(args.config))


def _collect(cfg: Any) -> int:
    from ai4os_kit.accounting.collector import collect
    from ai4os_kit.accounting.nomad_client import NomadSource
    from ai4os_kit.accounting.store import Store

    source = NomadSource(cfg.nomad)
    with Store(cfg.store) as store:
        result = collect(source, store, cfg.owner_meta_key)
        total = store.count()
    print(f"collect: {result.listed} allocation(s) in Nomad (index {result.nomad_index}), {result.fetched} read, "
          f"{result.written} written, {result.gone} closed as garbage-collected; {total} in {cfg.store}")
    for problem in result.problems:
        print(f"error: {problem}")
    return 1 if result.problems else 0


def _export_line(kind: str, result: Any, cfg: Any) -> str:
    return (f"export-{'apel' if kind == 'cloud' else 'gpu'}: {result.records} {kind} record(s) in "
            f"{result.messages} message(s) queued in {cfg.outgoing_dir}; {result.skipped} allocation(s) "
            "not accounted to EGI (no APEL site for the datacenter or no VO for the namespace)")


def _summary_line(count: int, out: Path) -> str:
    return f"summary: wrote {count} file(s) to {out} (PAPI reads them from $ACCOUNTING_PTH/summaries)"


def _export(cfg: Any, kinds: tuple[str, ...]) -> int:
    from ai4os_kit.accounting import apel
    from ai4os_kit.accounting.hostcert import check_host_certificate
    from ai4os_kit.accounting.ssmqueue import OutgoingQueue
    from ai4os_kit.accounting.store import Store

    check_host_certificate(cfg.host_cert, cfg.host_key, str(cfg.file))
    queue = OutgoingQueue(cfg.outgoing_dir)
    now = int(time.time())
    with Store(cfg.store) as store:
        for kind in kinds:
            export = apel.export_cloud if kind == "cloud" else apel.export_accelerator
            print(_export_line(kind, export(store, queue, cfg.export, now), cfg))
    return 0


def _export_all(cfg: Any) -> int:
    """APEL cloud records, and meanwhile in a second process GPU records and summaries (accounting.exporters)."""
    from ai4os_kit.accounting.exporters import export_all
    from ai4os_kit.accounting.hostcert import check_host_certificate

    check_host_certificate(cfg.host_cert, cfg.host_key, str(cfg.file))
    done = export_all(Path(cfg.store), Path(cfg.outgoing_dir), cfg.export, int(time.time()), Path(cfg.summaries_dir),
                      tuple(cfg.export.vos.keys()))
    print(_export_line("cloud", done.cloud, cfg))
    print(_export_line("gpu", done.gpu, cfg))
    print(_summary_line(len(done.summaries), cfg.summaries_dir))
    return 0


def _summary(cfg: Any, out: Path | None) -> int:
    from ai4os_kit.accounting.store import Store
    from ai4os_kit.accounting.summary import from_store, write_summaries

    now = int(time.time())
    with Store(cfg.store) as store:
        summaries = from_store(store, now)
    paths = write_summaries(summaries, out or cfg.summaries_dir, cfg.export.vos.keys())
    print(_summary_line(len(paths), out or cfg.summaries_dir))
    return 0


def _month(text: str) -> tuple[int, int]:
    today = dt.datetime.now(dt.timezone.utc)
    if text == "previous":
        return (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    if text == "current":
        return today.year, today.month
    try:
        stamp = dt.datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise InputError("command line", "--month", f"'{text}' is not YYYY-MM",
                         "write e.g. --month 2026-03, or previous / current") from None
    return stamp.year, stamp.month


def _report(cfg: Any, month: str, out: Path | None) -> int:
    from ai4os_kit.accounting.report import lent_rows, rows_from_totals, write_report
    from ai4os_kit.accounting.store import Store
    from ai4os_kit.accounting.timeslices import month_bounds

    year, mon = _month(month)
    lo, hi = month_bounds(year, mon)
    now = int(time.time())
    with Store(cfg.store) as store:
        totals = store.month_totals(lo, hi, now)
    rows = rows_from_totals(totals, cfg.export)
    paths = write_report(rows, out or cfg.reports_dir, year, mon, lent=lent_rows(totals, cfg.lent, cfg.export))
    print(f"report {year:04d}-{mon:02d}: {len(rows)} VO/site row(s); wrote " + ", ".join(map(str, paths)))
    return 0


def _check(cfg: Any) -> int:
    from ai4os_kit.accounting.hostcert import check_host_certificate
    from ai4os_kit.accounting.nomad_client import NomadSource
    from ai4os_kit.accounting.ssmqueue import OutgoingQueue

    subject = check_host_certificate(cfg.host_cert, cfg.host_key, str(cfg.file))
    print(f"ok: host certificate {cfg.host_cert} ({subject})")
    OutgoingQueue(cfg.outgoing_dir).probe()
    print(f"ok: SSM outgoing queue {cfg.outgoing_dir}")
    source = NomadSource(cfg.nomad)
    stubs, index = source.list_allocations()
    jobs = len(source.job_owners(cfg.owner_meta_key))
    print(f"ok: Nomad at {cfg.nomad.address}: {len(stubs)} allocation(s), {jobs} job(s), index {index}")
    return 0


def cmd_accounting(args: argparse.Namespace) -> int:
    cfg = _config(args)
    action = args.accounting_command
    if action == "collect":
        return _collect(cfg)
    if action == "export-apel":
        return _export(cfg, ("cloud",))
    if action == "export-gpu":
        return _export(cfg, ("gpu",))
    if action == "summary":
        return _summary(cfg, Path(args.out) if args.out else None)
    if action == "report":
        return _report(cfg, args.month, Path(args.out) if args.out else None)
    if action == "check":
        return _check(cfg)
    if action == "run":
        status = _collect(cfg)  # a malformed allocation does not stop the export of the others
        _export_all(cfg)
        return status
    raise KitError(f"unknown accounting command {action}")


def register(subparsers: Any) -> None:
    """Add ``accounting`` and its sub-commands to the kit's CLI."""
    p = subparsers.add_parser(
        "accounting", help="usage accounting: Nomad → EGI APEL, PAPI summaries, monthly report",
        description="Collect per-allocation usage from Nomad into a local store, queue APEL cloud and GPU "
                    "records for ssmsend, write PAPI's usage summaries and a monthly report. "
                    "See docs/accounting.md.")
    sub = p.add_subparsers(dest="accounting_command", metavar="ACTION", required=True)
    helps = {
        "run": "collect, then export-apel beside export-gpu and summary (a second process): what the systemd "
               "timer runs",
        "collect": "read new and changed allocations from Nomad into the store",
        "export-apel": "queue APEL cloud records (v0.4) for changed and running allocations",
        "export-gpu": "queue monthly APEL GPU accelerator records",
        "summary": "write the per-namespace/user CSV summaries PAPI's statistics endpoint reads",
        "report": "write the monthly report (CSV, Markdown, PNG plot of CPU- and GPU-hours per VO and site)",
        "check": "check the host certificate, the SSM queue directory and the Nomad connection",
    }
    for name, text in helps.items():
        q = sub.add_parser(name, help=text, description=text)
        q.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE",
                       help=f"accounting configuration (default: {DEFAULT_CONFIG})")
        if name in ("summary", "report"):
            q.add_argument("--out", metavar="DIR", default=None, help="write here instead of the configured directory")
        if name == "report":
            q.add_argument("--month", default="previous", metavar="YYYY-MM",
                           help="month to report: YYYY-MM, previous (default) or current")
        q.set_defaults(func=cmd_accounting)
