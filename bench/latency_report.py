"""The latency scenario's markdown: the link as measured, then one row per run with its floor."""
from __future__ import annotations

from typing import Any, Optional

from .latency import SCENARIOS, LatencyResults, LinkRun

LABELS = {"mirror_sync": "mirror-sync", "bandersnatch": "bandersnatch 8.2"}


def _ms(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    return f"{v:.1f}" if isinstance(v, (int, float)) else "–"


def link_lines(res: LatencyResults) -> list[str]:
    c = res.calibration
    idle = c.get("idle_connect_ms", {})
    one, four = c.get("bulk_one_file", {}), c.get("bulk_four_files", {})
    connects = [v for r in res.runs for v in ([r.connect_ms["max"]] if r.connect_ms else [])]
    medians = [r.connect_ms["median"] for r in res.runs if r.connect_ms]
    holds = [float(r.link["hold_max_ms"]) for r in res.runs if r.link.get("hold_max_ms") is not None]
    read_late = sum(int(r.link.get("read_late", 0)) for r in res.runs)
    drops = sum(int(r.link.get("queue_dropped", 0)) + int(r.link.get("user_dropped", 0)) + int(r.link.get("overruns", 0)) for r in res.runs)
    cc = c.get("congestion_control", {})
    t = res.tbf
    out = [
        f"Link: round trip set to **{res.rtt_ms:g} ms**, bandwidth **{res.mbit:g} Mbit/s** "
        f"(tbf on both ends of the veth pair, burst {t.get('burst', 0):,} B, queue limit {t.get('limit', 0):,} B; "
        f"TCP congestion control {cc.get('upstream', '?')} upstream, {cc.get('client', '?')} on the client); {res.addresses}.",
        "",
        f"- delay as applied, idle: TCP connect {_ms(idle, 'min')} / {_ms(idle, 'median')} / {_ms(idle, 'max')} ms (min / median / max of {idle.get('n', 0)})",
    ]
    if connects:
        worst = max(connects)
        p99 = max(r.connect_ms["p99"] for r in res.runs if r.connect_ms)
        out.append(f"- under load (a probe connects every 0.5 s during every run, {sum(r.connect_ms.get('n', 0) for r in res.runs if r.connect_ms):,} probes): "
                   f"TCP connect median {min(medians):.1f}–{max(medians):.1f} ms per run, p99 at most {p99:.1f} ms, worst **{worst:.1f} ms** "
                   f"(the worst added delay: {worst - res.rtt_ms:+.1f} ms over the set round trip; it includes queueing in tbf behind "
                   "the tool's downloads and the probing thread's own wait for a CPU)")
    if holds:
        packets = sum(int(r.link.get("packets", 0)) for r in res.runs)
        late = [sum(int(r.link.get(k, 0)) for r in res.runs) for k in ("late_1ms", "late_5ms", "late_20ms")]
        out.append(f"- the delay program held {packets:,} packets {res.rtt_ms:g} ms each (from the kernel's receive stamp, released in 1 ms batches: +-0.5 ms); "
                   f"held more than 1 / 5 / 20 ms too long: {late[0]:,} / {late[1]:,} / {late[2]:,}; longest hold {max(holds):.2f} ms, "
                   f"read by the program only after they were due: {read_late}; packets dropped or lost by the queue: {drops}; "
                   f"the program's CPU: {sum(float(r.link.get('delay_cpu_s', 0)) for r in res.runs):.1f} s over all runs")
    if one:
        out.append(f"- bulk transfer, curl over new connections: one {one['bytes'] / 1e6:.1f} MB file **{one['mbit']:.0f} Mbit/s**; "
                   f"the same file four times at once **{four.get('mbit', 0):.0f} Mbit/s** "
                   f"({four.get('mbit', 0) / res.mbit:.0%} of the set bandwidth: TCP/IP and Ethernet headers take ~4 %)")
    return out


def _row(r: LinkRun) -> str:
    x = r.result
    c = r.connect_ms
    conn = f"{c['median']:.0f} / {c['max']:.0f}" if c else "–"
    return (f"| {r.scenario} | {LABELS[r.setting.tool]} | {r.setting.workers} | {x.wall_s:.2f} | {r.floor.seconds:.2f} ({r.floor.bound}) | "
            f"**{r.floor.ratio(x.wall_s):.2f}** | {r.utilisation:.0%} | {r.syns:,} | {x.requests:,}{f' ({x.errors} errors)' if x.errors else ''} | "
            f"{x.bytes_sent / 1e6:,.1f} | {conn} | {x.cpu_s:.2f} | {x.tree_pss_mb:.0f} | {x.returncode} |")


def _find(res: LatencyResults, scenario: str, tool: str, workers: int) -> Optional[LinkRun]:
    for r in res.runs:
        if r.scenario == scenario and r.setting.tool == tool and r.setting.workers == workers:
            return r
    return None


def markdown(res: LatencyResults) -> str:
    out = [
        f"{res.projects:,} projects, {res.files:,} files (+ as many .metadata files), {res.upstream_bytes / 1e9:.2f} GB, "
        f"median file {res.median_file_bytes / 1e3:.0f} KB, {len(res.big_files)} files >= 20 MB "
        f"({', '.join(f'{b / 1e6:.0f}' for b in sorted(res.big_files))} MB); mirror-sync: {res.engine}"
        + (f"; load average at start {res.load}" if res.load else "") + (f"; work directory on {res.filesystem}" if res.filesystem else ""),
        "",
        *link_lines(res),
        "",
        "| scenario | tool | workers | wall s | floor s | wall ÷ floor | link used | TCP connections | requests | MB sent | connect ms median / max | CPU s | tree PSS MB | exit |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in SCENARIOS:
        runs = [r for r in res.runs if r.scenario == s]
        for r in runs:
            out.append(_row(r))
        for b in (r for r in runs if r.setting.tool == "bandersnatch"):
            for m in (r for r in runs if r.setting.tool == "mirror_sync"):
                ratio = m.result.wall_s / b.result.wall_s if b.result.wall_s > 0 else float("nan")
                out.append(f"| {s} | **mirror-sync W={m.setting.workers} ÷ bandersnatch W={b.setting.workers}** | | **{ratio:.2f}** | | | | | | | | | "
                           f"{m.result.tree_pss_mb / b.result.tree_pss_mb if b.result.tree_pss_mb else float('nan'):.2f} | |")
    out.append("")
    out.append("floor = max(bytes ÷ bandwidth, requests × RTT ÷ workers), from this run's own bytes (HTTP headers and bodies, "
               "the access log) and requests; link used = bytes on the wire downstream ÷ (wall × bandwidth); "
               "TCP connections = SYNs the tool sent to the upstream.")
    if res.notes:
        out.append("")
        out.extend(f"- {n}" for n in res.notes)
    return "\n".join(out) + "\n"
