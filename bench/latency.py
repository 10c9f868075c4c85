"""The latency scenario, the benchmark's headline: both tools sync over a link with a round trip and
a bandwidth (bench/netns.py) from an upstream whose files have realistic sizes (wheels.SizeModel).

Per run it records what the loopback scenario does (wall, CPU, peak memory, requests) and what the
link shows: bytes on the wire (link utilisation), TCP connections opened (SYNs the delay program
saw), the round trip while the run loaded the link (a probe connects every `probe_interval`), and
the floor `max(bytes / bandwidth, requests x RTT / workers)` with wall / floor. Scenarios: full,
no-op, 1 %-changed — each for mirror-sync and bandersnatch at equal workers, and for mirror-sync at
more workers (bandersnatch refuses more than 10).
"""
from __future__ import annotations

import math
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from . import bandersnatch as bs
from . import mirrorsync as ms
from . import netns, scratchfs, system
from .compare import compare
from .floor import Floor, floor, utilisation
from .measure import RunResult, clean_env, run_measured
from .netns import PROBE_PORT, Link, Probe, probe_once, summary
from .nginx import Nginx
from .scenarios import run_problems
from .scratchfs import ScratchFs, in_work_directory
from .upstream import Shape, Upstream
from .wheels import SizeModel

SCENARIOS = ("full", "noop", "changed")
BANDERSNATCH_MAX_WORKERS = 10


@dataclass
class LatencyOptions:
    projects: int = 5_000
    workers: int = 10  # both tools (bandersnatch's maximum)
    ms_workers: tuple[int, ...] = (32,)  # mirror-sync also at these
    rtt_ms: float = 50.0
    mbit: float = 200.0
    sizes: SizeModel = SizeModel("lognormal")
    wheels_per_release: int = 1
    change_fraction: float = 0.01
    tools: tuple[str, ...] = ("mirror_sync", "bandersnatch")
    workdir: Optional[Path] = None
    keep: bool = False
    fsync: Optional[bool] = None
    venv: Path = Path(__file__).resolve().parent / ".venv" / f"bandersnatch-{bs.VERSION}"
    engine: Optional[str] = None  # a commit to export mirror_sync/ from; None: the working tree
    seed: int = 1
    timeout: float = 3600.0
    scratch_fs: bool = True
    probe_interval: float = 0.5


@dataclass(frozen=True)
class Setting:
    tool: str  # "mirror_sync" | "bandersnatch"
    workers: int

    @property
    def key(self) -> str:
        return f"{self.tool}@{self.workers}"


def settings(opts: LatencyOptions) -> list[Setting]:
    """Equal workers first (mirror-sync, bandersnatch), then mirror-sync's other settings."""
    out = []
    if "mirror_sync" in opts.tools:
        out.append(Setting("mirror_sync", opts.workers))
    if "bandersnatch" in opts.tools:
        out.append(Setting("bandersnatch", opts.workers))
    if "mirror_sync" in opts.tools:
        out.extend(Setting("mirror_sync", w) for w in opts.ms_workers if w != opts.workers)
    return out


@dataclass
class LinkRun:
    scenario: str
    setting: Setting
    result: RunResult
    floor: Floor
    utilisation: float
    syns: int  # TCP connections the tool opened to the upstream
    link: dict[str, Any]  # the delay program's counters and the wire bytes during the run
    connect_ms: dict[str, float]  # probes during the run
    request_ms: dict[str, float]
    probe_failures: int
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "tool": self.setting.tool, "workers": self.setting.workers, **r.as_json(),
            "exit": r.returncode, "bytes_sent": r.bytes_sent, "tree_pss_mb": round(r.tree_pss_mb, 1),
            "largest_process_mb": round(r.largest_process_mb, 1),
            "floor_s": round(self.floor.seconds, 3), "floor_bound": self.floor.bound,
            "wall_over_floor": round(self.floor.ratio(r.wall_s), 3),
            "link_utilisation": round(self.utilisation, 4), "tcp_connections": self.syns,
            "connections_in_access_log": r.connections,
            "probe_connect_ms": {k: round(v, 3) for k, v in self.connect_ms.items()},
            "probe_request_ms": {k: round(v, 3) for k, v in self.request_ms.items()},
            "probe_failures": self.probe_failures,
            "delay": self.link, "problems": self.problems,
        }


@dataclass
class LatencyResults:
    projects: int
    files: int
    upstream_bytes: int
    median_file_bytes: int
    big_files: list[int]
    rtt_ms: float
    mbit: float
    tbf: dict[str, int]
    addresses: str
    engine: str
    calibration: dict[str, Any] = field(default_factory=dict)
    runs: list[LinkRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load: str = ""
    filesystem: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": "latency", "projects": self.projects, "files": self.files, "upstream_bytes": self.upstream_bytes,
            "median_file_bytes": self.median_file_bytes, "big_files": self.big_files,
            "link": {"rtt_ms": self.rtt_ms, "mbit": self.mbit, "tbf": self.tbf, "addresses": self.addresses},
            "calibration": self.calibration, "engine": self.engine, "filesystem": self.filesystem,
            "runs": {s: {r.setting.key: r.as_json() for r in self.runs if r.scenario == s} for s in SCENARIOS},
            "notes": self.notes,
        }


class Prober:
    """A new connection and one request every `interval` seconds, in a thread, until stopped."""

    def __init__(self, host: str, interval: float) -> None:
        self.host = host
        self.interval = interval
        self.probes: list[Probe] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtt-probe", daemon=True)

    def start(self) -> "Prober":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.probes.append(probe_once(self.host))
            except OSError:
                self.failures += 1

    def stop(self) -> "Prober":
        self._stop.set()
        self._thread.join(timeout=10)
        return self


def _curl(urls: list[str], timeout: float = 120) -> dict[str, Any]:
    """Download `urls` at once, one curl each (one new connection each): bytes, seconds, Mbit/s."""
    fmt = "%{size_download} %{time_connect} %{time_starttransfer} %{time_total}\n"
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["curl", "-s", "-S", "--noproxy", "*", "-o", "/dev/null", "-w", fmt, u],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()) for u in urls]
    outs = [p.communicate(timeout=timeout) for p in procs]
    wall = time.perf_counter() - t0
    total = 0
    connect = []
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"curl failed on the link: {err.strip()[:200]}")
        size, t_conn, _ttfb, _t_total = out.split()
        total += int(float(size))
        connect.append(float(t_conn) * 1000.0)
    return {"files": len(urls), "bytes": total, "seconds": round(wall, 3), "mbit": round(total * 8 / wall / 1e6, 1),
            "connect_ms": round(max(connect), 3)}


def calibrate(link: Link, up: Upstream, base_url: str, log: Callable[[str], None]) -> dict[str, Any]:
    """The link as the runs will find it: idle round trips, and what a plain bulk transfer achieves."""
    link.mark()
    idle = [probe_once(link.ns_ip) for _ in range(20)]
    biggest = f"{base_url}/{up.largest_files(1)[0].path}"
    single = _curl([biggest])
    parallel = _curl([biggest] * 4)  # the same file four times: the transfers end together
    delay = link.since_mark()
    cc = subprocess.run([*link.exec_prefix(), "sysctl", "-n", "net.ipv4.tcp_congestion_control"], capture_output=True, text=True).stdout.strip()
    out = {
        "idle_connect_ms": {k: round(v, 3) for k, v in summary([p.connect_ms for p in idle]).items()},
        "idle_request_ms": {k: round(v, 3) for k, v in summary([p.request_ms for p in idle]).items()},
        "bulk_one_file": single, "bulk_four_files": parallel, "delay": delay,
        "congestion_control": {"upstream": cc, "client": Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()},
    }
    log(f"link idle: TCP connect {out['idle_connect_ms'].get('median', 0):.2f} ms median (max {out['idle_connect_ms'].get('max', 0):.2f}); "
        f"curl of one {single['bytes'] / 1e6:.1f} MB file {single['mbit']} Mbit/s, four files at once {parallel['mbit']} Mbit/s")
    return out


@dataclass
class _Tool:
    setting: Setting
    cmd: list[str]
    env: dict[str, str]
    packages_dir: Path
    cwd: Path  # mirror-sync: the engine's root (`python -m` imports from the current directory first)


def _tools(opts: LatencyOptions, work: Path, base_url: str, engine_root: Path, log: Callable[[str], None]) -> dict[str, _Tool]:
    out: dict[str, _Tool] = {}
    exe: Optional[Path] = None
    env = clean_env(ms.env_extra(engine_root))
    if "mirror_sync" in opts.tools:
        ms.precompile(engine_root)
        if not ms.available(env, engine_root):
            raise RuntimeError("`python -m mirror_sync --help` does not work with the engine under test")
    for s in settings(opts):
        if s.tool == "mirror_sync":
            cfg = work / f"mirror-sync-w{s.workers}.yml"
            ms.write_config(cfg, directory=work / f"mirror-sync-w{s.workers}", upstream=f"{base_url}/simple/", workers=s.workers, fsync=opts.fsync)
            out[s.key] = _Tool(s, ms.sync_cmd(cfg), env, work / f"mirror-sync-w{s.workers}" / "web" / "packages", engine_root)
        else:
            if s.workers > BANDERSNATCH_MAX_WORKERS:
                raise RuntimeError(f"bandersnatch allows at most {BANDERSNATCH_MAX_WORKERS} workers (asked: {s.workers})")
            if exe is None:
                log(f"bandersnatch {bs.VERSION}: virtualenv {opts.venv}")
                exe = bs.ensure_venv(opts.venv)
            cfg = work / f"bandersnatch-w{s.workers}.conf"
            bs.write_config(cfg, directory=work / f"bandersnatch-w{s.workers}", master=base_url, workers=s.workers)
            out[s.key] = _Tool(s, bs.sync_cmd(exe, cfg), clean_env(), work / f"bandersnatch-w{s.workers}" / "web" / "packages", work)
    return out


def _measure(tool: _Tool, scenario: str, nginx: Nginx, link: Link, opts: LatencyOptions, logs: Path) -> LinkRun:
    os.sync()  # the previous run's dirty pages are not charged to this one
    link.mark()
    prober = Prober(link.ns_ip, opts.probe_interval).start()
    try:
        r = run_measured(tool.cmd, env=tool.env, log=logs / f"{scenario}-{tool.setting.key}.log", cwd=tool.cwd,
                         count_requests=nginx.traffic_since_mark, timeout=opts.timeout)
    finally:
        prober.stop()
    d = link.since_mark()
    s = tool.setting
    run = LinkRun(
        scenario=scenario, setting=s, result=r,
        floor=floor(r.bytes_sent, opts.mbit, r.requests, opts.rtt_ms, s.workers),
        utilisation=utilisation(int(d["down_bytes"]), r.wall_s, opts.mbit),
        syns=int(d.get("syns", {}).get("80", 0)), link=d,
        connect_ms=summary([p.connect_ms for p in prober.probes]),
        request_ms=summary([p.request_ms for p in prober.probes]),
        probe_failures=prober.failures,
        problems=run_problems(s.tool, r),
    )
    return run


def estimate_bytes(opts: LatencyOptions) -> int:
    """Upstream bytes expected for the options (to size the scratch file system; sparse, so generous)."""
    files = int(opts.projects * 1.9 * opts.wheels_per_release)
    m = opts.sizes
    if m.kind != "lognormal":
        return files * 3_000
    body = files * m.median_bytes * math.exp(m.sigma ** 2 / 2)
    return int(body + m.big_count(files) * 2 * m.big_bytes)


def run(opts: LatencyOptions, log: Callable[[str], None] = print) -> LatencyResults:
    if os.geteuid() == 0:  # only root can install what is missing, and only root can use it
        still = system.ensure(log, system.LATENCY_PACKAGES)
        if still:
            raise RuntimeError(f"the latency scenario needs the Debian packages {still} (apt-get install -y {' '.join(still)})")
    reason = netns.why_not()
    if reason is not None:
        raise SkipScenario(reason)
    mirrors = len(settings(opts))
    if opts.scratch_fs and not opts.keep:
        why_not = scratchfs.available()
        if why_not is None:
            files = int(opts.projects * 2 * opts.wheels_per_release)
            with ScratchFs(files * (1 + mirrors), opts.workdir, data_bytes=int(estimate_bytes(opts) * (1 + mirrors) * 1.3)) as mnt:
                log(f"work directory on a fresh ext4 file system ({mnt})")
                return in_work_directory(mnt, opts.keep, log, "fresh ext4 on a loop device", lambda w: _run(opts, w, log))
        log(f"work directory on the existing file system: no fresh ext4 ({why_not})")
    return in_work_directory(opts.workdir, opts.keep, log, "existing file system", lambda w: _run(opts, w, log))


class SkipScenario(Exception):
    """The latency scenario cannot run on this host (the message says why)."""


def _run(opts: LatencyOptions, work: Path, log: Callable[[str], None]) -> LatencyResults:
    engine_root = ms.REPO
    if opts.engine:
        engine_root = work / "engine"
        commit = ms.export(opts.engine, engine_root)
        engine = f"commit {commit} (mirror_sync/ exported with git archive)"
    else:
        engine = ms.describe()
    log(f"mirror-sync under test: {engine}")
    with Link(opts.rtt_ms, opts.mbit, log) as link:
        base_url = f"http://{link.ns_ip}"
        t0 = time.perf_counter()
        up = Upstream.generate(work / "upstream", base_url, Shape(opts.projects, opts.wheels_per_release, seed=opts.seed, sizes=opts.sizes))
        up.write_pages()
        sizes = sorted(up.file_sizes())
        big = [s for s in sizes if s >= opts.sizes.big_bytes]
        log(f"upstream: {len(up.projects):,} projects, {len(sizes):,} files, {sum(sizes) / 1e9:.2f} GB, median {sizes[len(sizes) // 2] / 1e3:.0f} KB, "
            f"{len(big)} files >= {opts.sizes.big_bytes / 1e6:.0f} MB ({time.perf_counter() - t0:.1f} s)")
        res = LatencyResults(projects=len(up.projects), files=len(sizes), upstream_bytes=sum(sizes), median_file_bytes=sizes[len(sizes) // 2],
                             big_files=big, rtt_ms=opts.rtt_ms, mbit=opts.mbit, tbf=link.tbf,
                             addresses=f"{link.host_ip} (host) - {link.ns_ip} (upstream, namespace {link.ns})", engine=engine,
                             load=" ".join(f"{x:.2f}" for x in os.getloadavg()))
        tools = _tools(opts, work, base_url, engine_root, log)
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        (work / "nginx").mkdir()
        nginx = Nginx(work / "nginx", work / "upstream", 80, host=link.ns_ip, wrap=link.exec_prefix(), probe_port=PROBE_PORT)
        nginx.write_config(up.serial, up.serials())
        nginx.start()
        try:
            res.calibration = calibrate(link, up, base_url, log)

            def scenario(name: str) -> None:
                for tool in tools.values():
                    r = _measure(tool, name, nginx, link, opts, logs)
                    res.runs.append(r)
                    rr = r.result
                    log(f"  {name:8} {tool.setting.key:16} wall {rr.wall_s:8.2f} s  floor {r.floor.seconds:7.2f} s ({r.floor.bound})  "
                        f"x{r.floor.ratio(rr.wall_s):.2f}  link {r.utilisation:4.0%}  conns {r.syns:4}  requests {rr.requests:6}  "
                        f"connect max {r.connect_ms.get('max', 0):6.1f} ms  cpu {rr.cpu_s:7.2f} s  pss {rr.tree_pss_mb:4.0f} MB  exit {rr.returncode}")
                    if r.problems:
                        res.notes.append(f"{name} / {tool.setting.key}: " + "; ".join(r.problems) + f" (log: {rr.log})")

            def check_files(when: str) -> None:
                expected = up.expected_files()
                for tool in tools.values():
                    c = compare(f"{tool.setting.key} after {when}", tool.packages_dir, expected)
                    log("  " + c.line())
                    note = c.line()
                    if not c.exact and tool.setting.tool == "bandersnatch" and not c.missing and when == "changed":
                        note += " — bandersnatch's sync never deletes files upstream removed"
                    res.notes.append(note)

            log(f"full initial sync over the link ({opts.rtt_ms:g} ms, {opts.mbit:g} Mbit/s)")
            scenario("full")
            check_files("full")
            log("no-op sync")
            scenario("noop")
            mutation = up.mutate(opts.change_fraction)
            nginx.reload(up.serial, up.serials())
            log(f"changed: {len(mutation.changed)} projects got a release, {len(mutation.removed)} files removed upstream")
            scenario("changed")
            check_files("changed")
        finally:
            nginx.stop()
    return res
