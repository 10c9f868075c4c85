"""The mirror's front page: one static HTML file with inline SVG charts, written after each run.

What a person who opens the mirror's address in a browser needs: how to point pip and uv at it,
when it last synced and whether that worked, how far behind upstream it is, what it holds, and who
downloads what (from the `stats` command's summary.json). No JavaScript framework, readable without
JavaScript: a three-line inline script only puts the address the browser used into the examples when
the page does not know its own URL.

`render_front_page` is pure (dicts in, HTML out); `write_front_page` is the I/O edge the sync calls:
it reads the state's status and the statistics summary and replaces `<web>/index.html` atomically.
"""
from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..clock import utc_iso
from ..fsutil import write_atomic

PLACEHOLDER_HOST = "MIRROR-HOST"
PLACEHOLDER_ORIGIN = f"http://{PLACEHOLDER_HOST}"
TOP_PROJECTS = 10
DAYS_SHOWN = 30


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = max(0, round(seconds))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def bar_chart_svg(items: Sequence[tuple[str, int]], *, width: int = 560, bar_height: int = 22, title: str) -> str:
    """Horizontal bars, one per (label, value), longest first as given; an empty chart says so."""
    if not items:
        return f'<p class="empty">{_e(title)}: no downloads counted yet.</p>'
    label_w, gap = 200, 6
    top = max(v for _, v in items) or 1
    height = len(items) * (bar_height + gap)
    rows = []
    for i, (label, value) in enumerate(items):
        y = i * (bar_height + gap)
        w = max(1, round((width - label_w - 70) * value / top))
        rows.append(
            f'<text x="{label_w - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end">{_e(label)}</text>'
            f'<rect class="bar" x="{label_w}" y="{y}" width="{w}" height="{bar_height}"><title>{_e(label)}: {value}</title></rect>'
            f'<text x="{label_w + w + 6}" y="{y + bar_height * 0.7:.1f}">{value}</text>'
        )
    return (
        f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
        + "".join(rows) + "</svg>"
    )


def daily_chart_svg(days: Mapping[str, int], *, last_day: date, n_days: int = DAYS_SHOWN, width: int = 560,
                    height: int = 140, title: str) -> str:
    """One column per calendar day of the `n_days` up to `last_day` (missing days are 0)."""
    series = [(d, int(days.get(d, 0))) for d in ((last_day - timedelta(days=n_days - 1 - i)).isoformat()
                                                 for i in range(n_days))]
    if not any(v for _, v in series):
        return f'<p class="empty">{_e(title)}: no downloads counted yet.</p>'
    top = max(v for _, v in series)
    plot_h, axis = height - 24, 40
    col = (width - axis) / n_days
    bars = []
    for i, (day, value) in enumerate(series):
        h = 0 if value == 0 else max(1, round(plot_h * value / top))
        x = axis + i * col
        bars.append(f'<rect class="bar" x="{x + 1:.1f}" y="{plot_h - h}" width="{max(1.0, col - 2):.1f}" height="{h}">'
                    f'<title>{day}: {value}</title></rect>')
    labels = (
        f'<text x="{axis - 4}" y="10" text-anchor="end">{top}</text>'
        f'<text x="{axis - 4}" y="{plot_h}" text-anchor="end">0</text>'
        f'<text x="{axis}" y="{height - 6}">{series[0][0]}</text>'
        f'<text x="{width}" y="{height - 6}" text-anchor="end">{series[-1][0]}</text>'
    )
    return (
        f'<svg class="chart" role="img" aria-label="{_e(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
        + "".join(bars) + labels + "</svg>"
    )


def _top_projects(stats: Mapping[str, Any]) -> tuple[str, list[tuple[str, int]]]:
    top = stats.get("top") or {}
    for key, label in (("last_30_days", "last 30 days"), ("all_time", "all time")):
        rows = [(str(r["project"]), int(r["downloads"])) for r in top.get(key) or [] if r.get("downloads")]
        if rows:
            return label, rows[:TOP_PROJECTS]
    return "last 30 days", []


def render_front_page(status: Mapping[str, Any], stats: Mapping[str, Any] | None = None, *,
                      index_url: str | None = None, policy: Sequence[str] = (),
                      now: datetime | None = None) -> str:
    """The page's HTML. `status` is `mirror-sync status --json`'s object, `stats` the statistics summary
    (summary.json) or None, `index_url` the mirror's public simple-index URL if known, `policy` sentences
    about what the configuration holds back."""
    now = now or datetime.now(timezone.utc)
    known = bool(index_url)
    url = index_url or f"{PLACEHOLDER_ORIGIN}/simple/"
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    trusted = f"\ntrusted-host = {host}" if url.startswith("http://") else ""

    result = status.get("last_result")
    if not status.get("initialized", True) or not status.get("last_sync_finished"):
        sync_line, sync_class = "No sync has finished yet.", "warn"
    elif result in ("ok", "success", True):
        sync_line, sync_class = f"Last sync {_e(status['last_sync_finished'])}: succeeded.", "ok"
    else:
        line = (f"Last sync {_e(status['last_sync_finished'])}: {_e(result or 'failed')}"
                f" (last success: {_e(status.get('last_success') or 'never')}).")
        sync_line, sync_class = line, "bad"
    lag = status.get("lag_serials")
    facts = [
        ("Upstream", _e(status.get("upstream") or "")),
        ("Behind upstream", (f"{_e(lag) if lag is not None else '?'} serials; last success "
                             f"{human_duration(status.get('lag_seconds'))} ago")),
        ("Projects", f"{int(status.get('projects') or 0):,}"),
        ("Files", f"{int(status.get('files') or 0):,}"),
        ("Size", human_bytes(status.get("bytes"))),
    ]
    facts_html = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    policy_html = ("<h2>What this mirror leaves out</h2><ul>" + "".join(f"<li>{_e(p)}</li>" for p in policy) + "</ul>"
                   if policy else "")

    if stats:
        window, rows = _top_projects(stats)
        per_day = {d: int((v or {}).get("downloads", 0)) for d, v in (stats.get("days") or {}).items()}
        try:
            last_day = date.fromisoformat(str(stats.get("today") or stats.get("last_day")))
        except ValueError:
            last_day = now.date()
        totals = stats.get("totals") or {}
        stats_html = (
            f"<h2>Downloads</h2><p>{int(totals.get('downloads') or 0):,} files downloaded in all, "
            f"statistics of {_e(stats.get('generated') or '?')}.</p>"
            f"<h3>Most downloaded projects ({window})</h3>"
            + bar_chart_svg(rows, title=f"Most downloaded projects, {window}")
            + f"<h3>Downloads per day (last {DAYS_SHOWN} days)</h3>"
            + daily_chart_svg(per_day, last_day=last_day, title="Downloads per day")
        )
    else:
        stats_html = "<h2>Downloads</h2><p class=\"empty\">No download statistics on this mirror.</p>"

    script = "" if known else (
        "<script>for(const e of document.querySelectorAll('.url'))"
        f"e.textContent=e.textContent.split({json.dumps(PLACEHOLDER_ORIGIN)}).join(location.origin)"
        f".split({json.dumps(PLACEHOLDER_HOST)}).join(location.hostname);"
        "document.getElementById('url-note').remove();</script>"
    )
    hint = "" if known else (f"<p class=\"note\" id=\"url-note\">{PLACEHOLDER_ORIGIN} stands for the address "
                             "of this page.</p>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Python package mirror</title>
<style>
body{{font:16px/1.45 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}
pre{{background:#f3f3f3;padding:.6rem .8rem;overflow-x:auto}} th{{text-align:left;padding-right:1rem}}
.ok{{color:#17612a}} .bad{{color:#a01010;font-weight:bold}} .warn{{color:#8a5a00}}
.chart text{{font:12px system-ui,sans-serif;fill:#333}} .chart .bar{{fill:#3b6ea5}} .empty,.note{{color:#666}}
</style></head>
<body>
<h1>Python package mirror</h1>
<p class="sync {sync_class}">{sync_line}</p>
<h2>Use it</h2>
<p>One install:</p>
<pre class="url">pip install --index-url {_e(url)} PACKAGE</pre>
<p>For good, in <code>/etc/pip.conf</code> or <code>~/.config/pip/pip.conf</code>:</p>
<pre class="url">[global]
index-url = {_e(url)}{_e(trusted)}</pre>
<p>For uv, in <code>/etc/uv/uv.toml</code> or <code>~/.config/uv/uv.toml</code>:</p>
<pre class="url">[[index]]
url = "{_e(url)}"
default = true</pre>
{hint}
<h2>State</h2>
<table>{facts_html}</table>
{policy_html}
{stats_html}
<p class="note">Page written {utc_iso(now.timestamp())} by mirror-sync. The index: <a href="simple/">simple/</a>.</p>
{script}
</body></html>
"""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_front_page(web: Path, status: Mapping[str, Any], *, stats_summary: Path | None = None,
                     index_url: str | None = None, policy: Sequence[str] = ()) -> Path:
    """Render and atomically replace `<web>/index.html`; returns its path. `stats_summary` is the
    statistics' summary.json (default `<web>/stats/summary.json`), read if it exists."""
    stats = _read_json(stats_summary or web / "stats" / "summary.json")
    text = render_front_page(status, stats, index_url=index_url, policy=policy)
    target = web / "index.html"
    write_atomic(target, text.encode("utf-8"), fsync=False, mode=0o644)  # nginx serves it
    return target


__all__ = [
    "bar_chart_svg",
    "daily_chart_svg",
    "human_bytes",
    "human_duration",
    "render_front_page",
    "write_front_page",
]
