"""Monthly usage report: CPU-hours and GPU-hours per VO and site, as CSV, Markdown and a PNG plot."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ai4os_kit.accounting.apel import ExportContext
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.files import atomic_write
from ai4os_kit.accounting.timeslices import month_bounds, overlap
from ai4os_kit.errors import KitError

UNMAPPED = "(no VO)"


@dataclass(frozen=True)
class ReportRow:
    vo: str
    site: str
    allocations: int
    cpu_hours: float
    gpu_hours: float


Totals = dict[tuple[str, str], list[float]]  # (namespace, datacenter) -> [allocations, core-seconds, GPU-seconds]


def month_totals(usages: Iterable[Usage], year: int, month: int, now: int) -> Totals:
    """Allocations, core-seconds and GPU-seconds inside the month, per (namespace, datacenter)."""
    lo, hi = month_bounds(year, month)
    acc: Totals = defaultdict(lambda: [0, 0.0, 0.0])
    for u in usages:
        if u.start is None:
            continue
        secs = overlap(u.start, u.end if u.end is not None else now, lo, min(hi, now))
        if secs <= 0:
            continue
        row = acc[(u.namespace, u.datacenter or "")]
        row[0] += 1
        row[1] += u.cpu_millicores / 1000 * secs
        row[2] += u.gpu_count * secs
    return acc


def rows_from_totals(totals: Totals, ctx: ExportContext) -> list[ReportRow]:
    """Hours per (VO, site); the site is the APEL SiteName, else the datacenter."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for (namespace, datacenter), (count, core_secs, gpu_secs) in totals.items():
        vo = ctx.vos.get(namespace, ctx.default_vo) or f"{UNMAPPED}: {namespace}"
        site = ctx.site_names.get(datacenter, datacenter or "unknown")
        row = acc[(vo, site)]
        row[0] += count
        row[1] += core_secs / 3600
        row[2] += gpu_secs / 3600
    return [ReportRow(vo, site, int(v[0]), round(v[1], 2), round(v[2], 2)) for (vo, site), v in sorted(acc.items())]


@dataclass(frozen=True)
class LentRow:
    lender: str
    site: str
    vo: str
    allocations: int
    cpu_hours: float
    gpu_hours: float


def lent_rows(totals: Totals, lent: dict[str, str], ctx: ExportContext) -> list[LentRow]:
    """Hours used on the nodes other installations lend (``lent``: datacenter -> lending institution),
    per (institution, site, VO): what each lender gave this platform's users."""
    acc: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for (namespace, datacenter), (count, core_secs, gpu_secs) in totals.items():
        if datacenter not in lent:
            continue
        vo = ctx.vos.get(namespace, ctx.default_vo) or f"{UNMAPPED}: {namespace}"
        row = acc[(lent[datacenter], datacenter, vo)]
        row[0] += count
        row[1] += core_secs / 3600
        row[2] += gpu_secs / 3600
    return [LentRow(lender, site, vo, int(v[0]), round(v[1], 2), round(v[2], 2))
            for (lender, site, vo), v in sorted(acc.items())]


def month_rows(usages: Iterable[Usage], ctx: ExportContext, year: int, month: int, now: int) -> list[ReportRow]:
    """Hours used inside the month, per (VO, site)."""
    return rows_from_totals(month_totals(usages, year, month, now), ctx)


def _plot(rows: list[ReportRow], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vos = sorted({r.vo for r in rows}) or ["(none)"]
    sites = sorted({r.site for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    width = 0.8 / max(1, len(sites))
    for ax, metric, label in ((axes[0], "cpu_hours", "CPU-hours"), (axes[1], "gpu_hours", "GPU-hours")):
        for i, site in enumerate(sites):
            values = [sum(getattr(r, metric) for r in rows if r.vo == vo and r.site == site) for vo in vos]
            ax.bar([x + i * width for x in range(len(vos))], values, width, label=site)
        ax.set_xticks([x + width * (len(sites) - 1) / 2 for x in range(len(vos))], vos, rotation=20, ha="right")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per VO and site")
        if sites:
            ax.legend(title="site", fontsize="small")
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def write_report(rows: list[ReportRow], out_dir: Path, year: int, month: int, platform: str = "AI4OS",
                 lent: list[LentRow] | None = None) -> list[Path]:
    """Write ``<YYYY-MM>.csv``, ``.md`` and ``.png`` into ``out_dir``; with ``lent`` rows also
    ``<YYYY-MM>-lent.csv`` and a section of the Markdown (usage per lending institution)."""
    stem = f"{year:04d}-{month:02d}"
    csv_path, md_path, png_path = (out_dir / f"{stem}.{ext}" for ext in ("csv", "md", "png"))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["vo", "site", "allocations", "cpu_hours", "gpu_hours"])
    writer.writerows([r.vo, r.site, r.allocations, f"{r.cpu_hours:.2f}", f"{r.gpu_hours:.2f}"] for r in rows)
    lines = [f"# {platform} usage, {stem}", "",
             "CPU-hours are reserved cores × hours; GPU-hours are GPUs × hours, inside the month (UTC).", "",
             f"![CPU-hours and GPU-hours per VO and site]({stem}.png)", "",
             "| VO | site | allocations | CPU-hours | GPU-hours |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r.vo} | {r.site} | {r.allocations} | {r.cpu_hours:,.2f} | {r.gpu_hours:,.2f} |" for r in rows]
    lines.append(f"| **total** | | {sum(r.allocations for r in rows)} | {sum(r.cpu_hours for r in rows):,.2f} | "
                 f"{sum(r.gpu_hours for r in rows):,.2f} |")
    lent_buf = io.StringIO()
    if lent:
        writer = csv.writer(lent_buf, lineterminator="\n")
        writer.writerow(["lender", "site", "vo", "allocations", "cpu_hours", "gpu_hours"])
        writer.writerows([r.lender, r.site, r.vo, r.allocations, f"{r.cpu_hours:.2f}", f"{r.gpu_hours:.2f}"] for r in lent)
        lines += ["", "## Usage of lent nodes, per lending institution", "",
                  "Sites other platform installations lend (docs/federation.md); included in the table above.", "",
                  "| lender | site | VO | allocations | CPU-hours | GPU-hours |", "|---|---|---|---:|---:|---:|"]
        lines += [f"| {r.lender} | {r.site} | {r.vo} | {r.allocations} | {r.cpu_hours:,.2f} | {r.gpu_hours:,.2f} |"
                  for r in lent]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(csv_path, buf.getvalue())
        atomic_write(md_path, "\n".join(lines) + "\n")
        _plot(rows, f"{platform} usage {stem}", png_path)
        if lent:
            atomic_write(out_dir / f"{stem}-lent.csv", lent_buf.getvalue())
    except OSError as exc:
        raise KitError(f"cannot write the report to {out_dir}: {exc.strerror or exc}; "
                       "check reports_dir in the accounting config") from None
    return [csv_path, md_path, png_path] + ([out_dir / f"{stem}-lent.csv"] if lent else [])
