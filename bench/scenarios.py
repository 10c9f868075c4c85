"""The benchmark run: generate the upstream, serve it with nginx, run every scenario for both tools."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from . import bandersnatch as bs
from . import mirrorsync as ms
from . import scratchfs, system
from .compare import compare
from .measure import RunResult, clean_env, run_measured
from .nginx import Nginx, free_port
from .profile import PySpy
from .scratchfs import ScratchFs, in_work_directory
from .report import Results
from .upstream import Shape, Upstream
from .wheels import SizeModel
from .wrk import run_wrk

# alternate which tool goes first, so neither always meets a warmer page cache
ORDER = {"full": ("mirror_sync", "bandersnatch"), "noop": ("bandersnatch", "mirror_sync"),
         "changed": ("mirror_sync", "bandersnatch"), "verify": ("bandersnatch", "mirror_sync")}


@dataclass
class Options:
    projects: int
    workers: int
    wheels_per_release: int = 1
    change_fraction: float = 0.01
    tools: tuple[str, ...] = ("mirror_sync", "bandersnatch")
    workdir: Optional[Path] = None
    keep: bool = False
    verify_full: bool = True
    fsync: Optional[bool] = None
    wrk_seconds: int = 10
    profile_dir: Optional[Path] = None
    venv: Path = Path(__file__).resolve().parent / ".venv" / f"bandersnatch-{bs.VERSION}"
    seed: int = 1
    timeout: float = 3600.0
    scratch_fs: bool = True  # run on a fresh loop-mounted ext4 when root (see scratchfs.py)
    sizes: SizeModel = SizeModel("tiny")  # ~1 KB files: the CPU per file, not the bytes, is measured here
    engine: Optional[str] = None  # a commit to export mirror_sync/ from; None: the working tree


@dataclass
class Tool:
    name: str
    sync_cmd: list[str]
    verify_cmd: list[str]
    env: dict[str, str]
    packages_dir: Path
    logs: Path
    cwd: Path = ms.REPO  # mirror-sync: the engine's root (`python -m` imports from the current directory first)


def _tools(opts: Options, work: Path, base_url: str, log: Callable[[str], None], engine_root: Path = ms.REPO) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    if "mirror_sync" in opts.tools:
        env = clean_env(ms.env_extra(engine_root))
        ms.precompile(engine_root)
        if not ms.available(env, engine_root):
            raise RuntimeError("`python -m mirror_sync --help` does not work with the engine under test")
        cfg = work / "mirror-sync.yml"
        ms.write_config(cfg, directory=work / "mirror-sync", upstream=f"{base_url}/simple/", workers=opts.workers, fsync=opts.fsync)
        tools["mirror_sync"] = Tool("mirror_sync", ms.sync_cmd(cfg), ms.verify_cmd(cfg, opts.verify_full), env,
                                    work / "mirror-sync" / "web" / "packages", logs, engine_root)
        if opts.verify_full:
            tools["mirror_sync_stat"] = Tool("mirror_sync", [], ms.verify_cmd(cfg, False), env,
                                             work / "mirror-sync" / "web" / "packages", logs, engine_root)
    if "bandersnatch" in opts.tools or opts.profile_dir:
        log(f"bandersnatch {bs.VERSION}: virtualenv {opts.venv}")
        extra = ("py-spy",) if opts.profile_dir else ()
        exe = bs.ensure_venv(opts.venv, extra)
    if "bandersnatch" in opts.tools:
        cfg = work / "bandersnatch.conf"
        bs.write_config(cfg, directory=work / "bandersnatch", master=base_url, workers=opts.workers)
        verify_cfg = work / "bandersnatch-verify.conf"
        bs.write_verify_config(verify_cfg, cfg)
        tools["bandersnatch"] = Tool("bandersnatch", bs.sync_cmd(exe, cfg), bs.verify_cmd(exe, verify_cfg), clean_env(),
                                     work / "bandersnatch" / "web" / "packages", logs)
    return tools


def _check(tool: Tool, scenario: str, r: RunResult, results: Results) -> None:
    problems = run_problems(tool.name, r)
    if problems:
        results.notes.append(f"{scenario} / {tool.name}: " + "; ".join(problems) + f" (log: {r.log})")


def run_problems(tool_name: str, r: RunResult) -> list[str]:
    """What went wrong in one run, as phrases (none: it went well): exit code, HTTP errors, a summary
    that is not ok (mirror-sync), error lines in the log (bandersnatch)."""
    problems = []
    if r.returncode != 0:
        try:
            last = [line for line in r.log.read_text(errors="replace").splitlines() if line.strip()][-1:]
        except OSError:
            last = []
        problems.append(f"exit code {r.returncode}" + (f" ({last[0].strip()[:200]})" if last else ""))
    if r.errors:
        problems.append(f"{r.errors} HTTP error responses")
    if tool_name == "mirror_sync":
        try:
            summary = json.loads(r.log.with_suffix(".stdout").read_text() or "{}")
        except ValueError:
            summary = {}
            problems.append("no JSON summary on stdout")
        if summary and not summary.get("ok", False):
            problems.append(f"summary says not ok: {str(summary.get('failures') or summary)[:300]}")
    else:
        text = r.log.read_text(errors="replace")
        errors = [line for line in text.splitlines() if " ERROR" in line or "Traceback" in line]
        if errors:
            problems.append(f"{len(errors)} error lines in its log, first: {errors[0][:200]}")
    return problems


def read_tree(root: Path) -> None:
    """Read every file under `root` once, so a measurement starts with it in the page cache."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                with open(os.path.join(dirpath, name), "rb", buffering=0) as fh:
                    while fh.read(1 << 20):
                        pass
            except OSError:
                pass


def can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches() -> None:
    """Write back, then drop the page cache, dentries and inodes: the next run reads from disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def _measure(tool: Tool, scenario: str, cmd: list[str], nginx: Nginx, opts: Options, spy: Optional[PySpy]) -> RunResult:
    os.sync()  # the previous run's dirty pages are not charged to this one
    on_start = None
    if spy is not None and tool.name == "mirror_sync":
        on_start = lambda pid: spy.attach(pid, f"mirror_sync-{scenario}")  # noqa: E731
    r = run_measured(cmd, env=tool.env, log=tool.logs / f"{scenario}-{tool.name}.log", cwd=tool.cwd,
                     count_requests=nginx.traffic_since_mark, timeout=opts.timeout, on_start=on_start)
    if on_start is not None and spy is not None:
        spy.finish()
    return r


def run(opts: Options, log: Callable[[str], None] = print) -> Results:
    if opts.scratch_fs and not opts.keep:
        why_not = scratchfs.available()
        if why_not is None:
            # ~1.9 releases per project on average: an estimate of the files, for the image's size
            files = opts.projects * opts.wheels_per_release * 2
            data = files * 180_000 * 3 if opts.sizes.kind == "lognormal" else 0  # upstream + two mirrors
            with ScratchFs(files, opts.workdir, data_bytes=data) as mountpoint:
                log(f"work directory on a fresh ext4 file system ({mountpoint})")
                return in_work_directory(mountpoint, opts.keep, log, "fresh ext4 on a loop device", lambda w: _run(opts, w, log))
        log(f"work directory on the existing file system: no fresh ext4 ({why_not})")
    return in_work_directory(opts.workdir, opts.keep, log, "existing file system", lambda w: _run(opts, w, log))


def _run(opts: Options, work: Path, log: Callable[[str], None]) -> Results:
    still_missing = system.ensure(log)
    if "nginx" in still_missing or "time" in still_missing:
        raise RuntimeError(f"the benchmark needs the Debian packages {still_missing} (apt-get install -y {' '.join(still_missing)})")
    engine_root = ms.REPO
    if opts.engine:
        engine_root = work / "engine"
        engine = f"commit {ms.export(opts.engine, engine_root)} (mirror_sync/ exported with git archive)"
    else:
        engine = ms.describe()
    log(f"mirror-sync under test: {engine}")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    up = Upstream.generate(work / "upstream", base_url, Shape(opts.projects, opts.wheels_per_release, seed=opts.seed, sizes=opts.sizes))
    up.write_pages()
    log(f"upstream: {len(up.projects):,} projects, {up.file_count():,} files, serial {up.serial} "
        f"({time.perf_counter() - t0:.1f} s)")
    results = Results(projects=len(up.projects), files=up.file_count(), workers=opts.workers,
                      load=" ".join(f"{x:.2f}" for x in os.getloadavg()), engine=engine)
    tools = _tools(opts, work, base_url, log, engine_root)
    spy = None
    if opts.profile_dir is not None:
        spy = PySpy(opts.venv / "bin" / "py-spy", opts.profile_dir)
    (work / "nginx").mkdir()
    nginx = Nginx(work / "nginx", work / "upstream", port)
    nginx.write_config(up.serial, up.serials())
    nginx.start()
    try:
        log(f"nginx on {base_url}; wrk for {opts.wrk_seconds} s with {opts.workers} connections")
        results.wrk_requests_per_s = run_wrk(base_url, up.sync_paths(), work, opts.workers, opts.wrk_seconds)
        wrk_requests, wrk_errors = nginx.requests_since_mark()
        if wrk_errors:
            results.notes.append(f"wrk: {wrk_errors} of {wrk_requests} responses were errors (see {nginx.prefix}/error.log)")

        def scenario(name: str, verify: bool = False, label: Optional[str] = None, before: Optional[Callable[[Tool], None]] = None) -> None:
            for tname in ORDER[name]:
                if tname not in tools:
                    continue
                tool = tools[tname]
                if before is not None:
                    before(tool)
                r = _measure(tool, label or name, tool.verify_cmd if verify else tool.sync_cmd, nginx, opts, spy)
                name_shown = label or name
                log(f"  {name_shown:8} {tname:13} wall {r.wall_s:8.3f} s  cpu {r.cpu_s:8.2f} s  peak {r.peak_rss_mb:6.0f} MB  "
                    f"requests {r.requests:7}  exit {r.returncode}")
                results.add(name_shown, tname, r)
                _check(tool, name_shown, r, results)

        def check_files(when: str) -> None:
            expected = up.expected_files()
            for key, tool in tools.items():
                if key == "mirror_sync_stat":
                    continue
                c = compare(f"{tool.name} after {when}", tool.packages_dir, expected)
                log("  " + c.line())
                if not c.exact:
                    if tool.name == "bandersnatch" and not c.missing and when == "changed":
                        results.notes.append(c.line() + " — bandersnatch's sync never deletes files upstream removed")
                    else:
                        results.notes.append(c.line())
                else:
                    results.notes.append(c.line())

        log("full initial sync")
        scenario("full")
        check_files("full")
        log("no-op sync")
        scenario("noop")
        mutation = up.mutate(opts.change_fraction)
        nginx.reload(up.serial, up.serials())
        log(f"changed: {len(mutation.changed)} projects got a release, {len(mutation.removed)} files removed upstream")
        scenario("changed")
        check_files("changed")
        log("verify of the complete mirror" + (" (mirror-sync --full: re-hash like bandersnatch)" if opts.verify_full else "")
            + ", page cache warm: each tool's tree is read once first")
        scenario("verify", verify=True, before=lambda tool: read_tree(tool.packages_dir.parent.parent))
        if can_drop_caches():
            log("verify again with a cold page cache (dropped before each tool's run)")
            scenario("verify", verify=True, label="verify (cold cache)", before=lambda _tool: drop_caches())
        else:
            results.notes.append("verify (cold cache) not measured: dropping the page cache needs root")
        if "mirror_sync_stat" in tools:
            r = _measure(tools["mirror_sync_stat"], "verify-stat", tools["mirror_sync_stat"].verify_cmd, nginx, opts, None)
            log(f"  verify without --full (size/mtime) mirror_sync wall {r.wall_s:8.3f} s  cpu {r.cpu_s:8.2f} s")
            results.add("verify (stat)", "mirror_sync", r)
            _check(tools["mirror_sync_stat"], "verify (stat)", r, results)
    finally:
        nginx.stop()
    return results
