"""The results: a markdown table for people and the JSON shape the issue asks for."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .measure import RunResult

SCENARIOS = ("full", "noop", "changed", "verify")
TOOLS = ("mirror_sync", "bandersnatch")
LABELS = {"mirror_sync": "mirror-sync", "bandersnatch": "bandersnatch 8.2"}


@dataclass
class Results:
    projects: int
    files: int
    workers: int
    wrk_requests_per_s: Optional[float] = None
    runs: dict[str, dict[str, RunResult]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load: str = ""
    filesystem: str = ""
    extra_rows: list[str] = field(default_factory=list)
    engine: str = ""

    def add(self, scenario: str, tool: str, result: RunResult) -> None:
        self.runs.setdefault(scenario, {})[tool] = result

    def as_json(self) -> dict[str, object]:
        scenarios: dict[str, dict[str, Optional[dict[str, float]]]] = {}
        for s in SCENARIOS:
            runs = self.runs.get(s, {})
            scenarios[s] = {t: (runs[t].as_json() if t in runs else None) for t in TOOLS}
        return {
            "projects": self.projects,
            "workers": self.workers,
            "wrk_requests_per_s": round(self.wrk_requests_per_s, 1) if self.wrk_requests_per_s is not None else None,
            "filesystem": self.filesystem,
            "engine": self.engine,
            "scenarios": scenarios,
        }


def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "n/a"
    r = a / b
    return f"{r:.3f}" if r < 0.1 else f"{r:.2f}"


def markdown(res: Results) -> str:
    wrk = f"{res.wrk_requests_per_s:,.0f}" if res.wrk_requests_per_s is not None else "wrk not installed"
    out = [
        f"{res.projects:,} projects, {res.files:,} files (+ as many .metadata files), workers = {res.workers}, "
        f"wrk against the same nginx: {wrk} requests/s" + (f"; load average at start {res.load}" if res.load else "")
        + (f"; work directory on {res.filesystem}" if res.filesystem else "") + (f"; mirror-sync: {res.engine}" if res.engine else ""),
        "",
        "| scenario | tool | wall s | CPU s | peak RSS MB | largest process / tree PSS MB | requests | requests/s | TCP connections | exit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in list(SCENARIOS) + [k for k in res.runs if k not in SCENARIOS]:
        runs = res.runs.get(s, {})
        for t in TOOLS:
            if t not in runs:
                continue
            r = runs[t]
            rate = f"{r.requests / r.wall_s:,.0f}" if r.wall_s > 0 and r.requests else ""
            errs = f" ({r.errors} errors)" if r.errors else ""
            out.append(
                f"| {s} | {LABELS[t]} | {r.wall_s:.3f} | {r.cpu_s:.2f} | {r.peak_rss_mb:.0f} | "
                f"{r.largest_process_mb:.0f} / {r.tree_pss_mb:.0f} | {r.requests:,}{errs} | {rate} | {r.connections or ''} | {r.returncode} |"
            )
        if all(t in runs for t in TOOLS):
            a, b = runs["mirror_sync"], runs["bandersnatch"]
            out.append(
                f"| {s} | **ratio ms/bs** | **{_ratio(a.wall_s, b.wall_s)}** | {_ratio(a.cpu_s, b.cpu_s)} | "
                f"{_ratio(a.peak_rss_mb, b.peak_rss_mb)} | | {_ratio(a.requests, b.requests)} | | | |"
            )
    full = res.runs.get("full", {})
    if res.wrk_requests_per_s and full:
        rates = [f"{LABELS[t]} {full[t].requests / full[t].wall_s:,.0f} requests/s = {full[t].requests / full[t].wall_s / res.wrk_requests_per_s:.1%} of wrk"
                 for t in TOOLS if t in full and full[t].wall_s > 0]
        out.append("")
        out.append("Full-sync request rate: " + "; ".join(rates))
    out.extend(res.extra_rows)
    if res.notes:
        out.append("")
        out.extend(f"- {n}" for n in res.notes)
    return "\n".join(out) + "\n"
