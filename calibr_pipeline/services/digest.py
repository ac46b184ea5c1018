"""The weekly insight digest of one tenant: Markdown with matplotlib charts.

Reads the analytics models (analytics_overview, top_skus, competitor_trends) for the ISO
week starting ``week_start`` (a Monday) and the seven weeks before it, writes
``digest.md`` and four PNG charts into ``<directory>/<tenant>/<week_start>/``, and
returns them for the warehouse row, the Dagster metadata and the alert delivery.

The output is deterministic (no timestamps in the text, PNGs saved without a
creation-time or software stamp), so re-running a week rewrites identical files.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from calibr_pipeline.domain.money import from_minor_units

CHART_FILES = ("revenue_margin.png", "price_index.png", "top_movers.png", "trend_flags.png")


@dataclass
class Digest:
    tenant: str
    week_start: dt.date
    markdown: str
    summary: str  # a few lines for Slack
    charts: dict[str, bytes] = field(default_factory=dict)
    directory: Path | None = None
    headline: dict[str, object] = field(default_factory=dict)


def _d(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def _money(minor: int | None, currency: str) -> str:
    if minor is None:
        return "n/a"
    return f"{from_minor_units(int(minor), currency):,} {currency}"


def _change(now: float | None, before: float | None) -> str:
    if now is None or before is None or before == 0:
        return "n/a"
    return f"{100 * (now - before) / abs(before):+.1f}%"


def build_digest(session: Session, tenant_id: int, tenant_slug: str, week_start: dt.date) -> Digest:
    if week_start.weekday() != 0:
        raise ValueError(f"a digest week starts on a Monday, not {week_start:%A} {week_start}")
    week_end = week_start + dt.timedelta(days=6)
    history_start = week_start - dt.timedelta(weeks=7)
    overview = session.execute(
        text(
            "SELECT project_slug, currency, day, revenue_minor, margin_minor, units, price_index, price_changes, "
            "runs_applied, runs_partial, runs_failed FROM analytics_overview "
            "WHERE tenant_id = :tenant AND day BETWEEN :start AND :end ORDER BY project_slug, day"
        ),
        {"tenant": tenant_id, "start": history_start, "end": week_end},
    ).all()
    by_project: dict[str, list] = defaultdict(list)
    for row in overview:
        by_project[row.project_slug].append(row)
    lines = [f"# Weekly digest: {tenant_slug}, week of {week_start.isoformat()}", ""]
    summary_lines = []
    headline: dict[str, object] = {}
    for slug, rows in sorted(by_project.items()):
        currency = rows[0].currency
        this_week = [r for r in rows if week_start <= _d(r.day) <= week_end]
        last_week = [r for r in rows if week_start - dt.timedelta(days=7) <= _d(r.day) < week_start]

        def total(rs, attr):
            values = [getattr(r, attr) for r in rs if getattr(r, attr) is not None]
            return sum(int(v) for v in values) if values else None

        revenue, revenue_before = total(this_week, "revenue_minor"), total(last_week, "revenue_minor")
        margin, margin_before = total(this_week, "margin_minor"), total(last_week, "margin_minor")
        units = total(this_week, "units") or 0
        indexes = [float(r.price_index) for r in this_week if r.price_index is not None]
        price_index = round(sum(indexes) / len(indexes), 3) if indexes else None
        margin_pct = round(100 * margin / revenue, 1) if margin is not None and revenue else None
        changes = total(this_week, "price_changes") or 0
        runs = {k: total(this_week, f"runs_{k}") or 0 for k in ("applied", "partial", "failed")}
        headline[slug] = {
            "revenue": str(from_minor_units(revenue or 0, currency)), "currency": currency, "units": units,
            "margin_pct": margin_pct, "price_index": price_index, "price_changes": changes,
        }
        lines += [
            f"## {slug}",
            "",
            "| | this week | last week | change |",
            "|---|---:|---:|---:|",
            f"| Revenue | {_money(revenue, currency)} | {_money(revenue_before, currency)} | {_change(revenue, revenue_before)} |",
            f"| Gross margin | {_money(margin, currency)} | {_money(margin_before, currency)} | {_change(margin, margin_before)} |",
            f"| Units | {units} | {total(last_week, 'units') or 0} | {_change(units, total(last_week, 'units'))} |",
            "",
            f"Margin: {'n/a' if margin_pct is None else f'{margin_pct}%'}. "
            f"Price index vs the market median: {'n/a' if price_index is None else price_index} (1.0 = at the market). "
            f"Our price changes: {changes}. Rule runs: {runs['applied']} applied, {runs['partial']} partial, {runs['failed']} failed.",
            "",
        ]
        summary_lines.append(
            f"{slug}: revenue {_money(revenue, currency)} ({_change(revenue, revenue_before)} w/w), "
            f"margin {'n/a' if margin_pct is None else f'{margin_pct}%'}, price index {price_index if price_index is not None else 'n/a'}"
        )
    if not by_project:
        lines += ["No analytics for this week yet.", ""]
        summary_lines.append("No analytics for this week yet.")

    top = session.execute(
        text(
            "SELECT metric, rank, sku, currency, value, previous_value FROM top_skus "
            "WHERE tenant_id = :tenant AND week_start = :week AND metric IN ('revenue', 'mover') AND rank <= 5 "
            "ORDER BY metric, rank"
        ),
        {"tenant": tenant_id, "week": week_start},
    ).all()
    lines += ["## Top SKUs by revenue", ""]
    lines += [f"{r.rank}. `{r.sku}`: {_money(r.value, r.currency)}" for r in top if r.metric == "revenue"] or ["(no sales)"]
    lines += ["", "## Biggest movers (revenue vs last week)", ""]
    movers = [r for r in top if r.metric == "mover"]
    lines += [f"{r.rank}. `{r.sku}`: {_money(r.value, r.currency)} (last week {_money(r.previous_value, r.currency)})" for r in movers] or ["(none)"]

    flags = session.execute(
        text(
            "SELECT flag, sku, explanation, as_of_day FROM competitor_trends "
            "WHERE tenant_id = :tenant AND as_of_day = (SELECT MAX(as_of_day) FROM competitor_trends "
            "WHERE tenant_id = :tenant AND as_of_day BETWEEN :start AND :end) ORDER BY flag, sku, position"
        ),
        {"tenant": tenant_id, "start": week_start, "end": week_end},
    ).all()
    flag_counts: dict[str, int] = defaultdict(int)
    for f in flags:
        flag_counts[f.flag] += 1
    lines += ["", "## Trend flags", ""]
    if flags:
        lines.append(f"As of {_d(flags[0].as_of_day).isoformat()}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(flag_counts.items())) + ".")
        lines.append("")
        lines += [f"- **{f.flag.replace('_', ' ')}** `{f.sku}`: {f.explanation}" for f in flags[:15]]
        if len(flags) > 15:
            lines.append(f"- … and {len(flags) - 15} more in `competitor_trends`.")
    else:
        lines.append("No trend flags this week.")
    lines += ["", "## Charts", ""] + [f"![{name[:-4].replace('_', ' ')}]({name})" for name in CHART_FILES] + [""]
    charts = _charts(by_project, movers, flag_counts, week_start)
    return Digest(
        tenant=tenant_slug,
        week_start=week_start,
        markdown="\n".join(lines),
        summary="\n".join(summary_lines),
        charts=charts,
        headline=headline,
    )


def _amount(minor, currency: str) -> float:
    # Chart coordinates only; every figure in the text stays exact.
    return float(from_minor_units(int(minor or 0), currency))


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    # No Software/creation stamps: the same data gives the same bytes.
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    return buffer.getvalue()


def _charts(by_project: dict[str, list], movers: list, flag_counts: dict[str, int], week_start: dt.date) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    charts: dict[str, bytes] = {}
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    for slug, rows in sorted(by_project.items()):
        days = [_d(r.day) for r in rows]
        ax.plot(days, [_amount(r.revenue_minor, r.currency) for r in rows], label=f"{slug} revenue")
        ax.plot(days, [_amount(r.margin_minor, r.currency) for r in rows], linestyle="--", label=f"{slug} margin")
    ax.axvline(week_start, color="grey", linewidth=0.8)
    ax.set_title("Revenue and gross margin per day (8 weeks)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.autofmt_xdate()
    charts["revenue_margin.png"] = _png(fig)

    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    for slug, rows in sorted(by_project.items()):
        points = [(_d(r.day), float(r.price_index)) for r in rows if r.price_index is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=slug)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_title("Price index (our price ÷ market median)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.autofmt_xdate()
    charts["price_index.png"] = _png(fig)

    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    ax.barh([m.sku for m in movers][::-1], [_amount(m.value, m.currency) for m in movers][::-1])
    ax.set_title("Biggest revenue movers vs last week")
    charts["top_movers.png"] = _png(fig)

    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    names = sorted(flag_counts)
    ax.bar([n.replace("_", "\n") for n in names], [flag_counts[n] for n in names])
    ax.set_title("Trend flags")
    charts["trend_flags.png"] = _png(fig)
    return charts


def write_digest(digest: Digest, root: Path) -> Path:
    folder = root / digest.tenant / digest.week_start.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digest.md").write_text(digest.markdown, encoding="utf-8")
    for name, data in digest.charts.items():
        (folder / name).write_bytes(data)
    digest.directory = folder
    return folder


def revenue_total(digest: Digest) -> Decimal:
    return sum((Decimal(str(h["revenue"])) for h in digest.headline.values()), Decimal(0))
