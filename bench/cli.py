"""Command line of the benchmark: `python -m bench [--scenario latency|loopback] [--quick] [--projects N] [--workers W] [--json PATH]`.

The latency scenario (the default, bench/latency.py) syncs over a link with a round trip and a
bandwidth; the loopback scenario (bench/scenarios.py) measures CPU efficiency with zero latency.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import latency, latency_report, rootindex
from .report import markdown
from .scenarios import Options, run
from .wheels import SizeModel

QUICK_PROJECTS = 2_000
FULL_PROJECTS = 20_000
LATENCY_PROJECTS = 5_000
LATENCY_QUICK_PROJECTS = 500
EXIT_SKIPPED = 77  # the latency scenario cannot run here (not root, no netfilter queue): nothing was measured


def _workers_list(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if any(w < 1 for w in out):
        raise argparse.ArgumentTypeError("workers must be at least 1")
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="mirror-sync against bandersnatch 8.2 on a synthetic upstream served by nginx: "
                                "over a link with a round trip and a bandwidth (latency, the default), or on 127.0.0.1 (loopback).")
    p.add_argument("--scenario", choices=("latency", "loopback"), default="latency",
                   help="latency: the upstream behind a veth pair with --rtt-ms and --mbit (needs root; the headline); "
                        "loopback: nginx on 127.0.0.1, zero latency, CPU efficiency")
    p.add_argument("--quick", action="store_true",
                   help=f"a small upstream: {LATENCY_QUICK_PROJECTS:,} projects (latency) or {QUICK_PROJECTS:,} and a short wrk run (loopback)")
    p.add_argument("--projects", type=int, help=f"number of projects (default {LATENCY_PROJECTS:,} latency, {FULL_PROJECTS:,} loopback)")
    p.add_argument("--workers", type=int, help="concurrent requests for both tools (bandersnatch allows 1..10; default 10 latency, 8 loopback)")
    p.add_argument("--rtt-ms", type=float, default=50.0, help="latency: the round trip (default 50)")
    p.add_argument("--mbit", type=float, default=200.0, help="latency: the bandwidth in Mbit/s (default 200)")
    p.add_argument("--ms-workers", type=_workers_list, default=(32,), metavar="LIST",
                   help="latency: mirror-sync also at these workers, comma-separated (default 32; bandersnatch stops at 10)")
    p.add_argument("--sizes", choices=("tiny", "lognormal"),
                   help="file sizes: lognormal (median ~100 KB, a few >= 20 MB; default for latency) or tiny (~1 KB; default for loopback)")
    p.add_argument("--engine", metavar="REV", help="benchmark mirror_sync/ as committed at REV (e.g. HEAD; exported with git archive) "
                   "instead of the working tree")
    p.add_argument("--wheels", type=int, default=1, help="wheels per release (1..5, different tags; default 1)")
    p.add_argument("--change-fraction", type=float, default=0.01, help="share of projects changed in the 'changed' scenario")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    p.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table to this file")
    p.add_argument("--tools", default="mirror_sync,bandersnatch", help="comma-separated subset of mirror_sync,bandersnatch")
    p.add_argument("--verify", choices=("full", "stat"), default="full",
                   help="mirror-sync verify mode: full re-hashes every file like `bandersnatch verify` (default), stat checks size/mtime")
    fs = p.add_mutually_exclusive_group()
    fs.add_argument("--fsync", dest="fsync", action="store_true", default=None, help="mirror-sync: fsync: true")
    fs.add_argument("--no-fsync", dest="fsync", action="store_false", help="mirror-sync: fsync: false (default: the engine's default)")
    p.add_argument("--workdir", type=Path, help="where the temporary work directory (or the fresh ext4's image) goes (default: the system temp dir)")
    p.add_argument("--no-scratch-fs", dest="scratch_fs", action="store_false",
                   help="run in the work directory's own file system instead of a fresh loop-mounted ext4 (the default when root)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (trees, mirrors, logs)")
    p.add_argument("--profile", type=Path, metavar="DIR", help="sample mirror-sync runs with py-spy into DIR (perturbs timings a little)")
    p.add_argument("--venv", type=Path, help="bandersnatch's virtualenv (default bench/.venv/bandersnatch-8.2.0)")
    p.add_argument("--wrk-seconds", type=int, help="duration of the wrk run (default 10, 5 with --quick)")
    p.add_argument("--root-projects", type=int, default=700_000, help="projects for the root-index micro-benchmark")
    p.add_argument("--root-index-only", action="store_true", help="run only the root-index micro-benchmark")
    p.add_argument("--skip-root-index", action="store_true", help="loopback: do not run the root-index micro-benchmark")
    return p


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _root_index(projects: int, workdir: Optional[Path]) -> str:
    _log(f"root-index micro-benchmark: {projects:,} projects (synthesising the state first)")
    try:
        r = rootindex.run(projects, workdir=workdir)
    except ImportError as exc:
        return f"root index: the engine has no root renderer to call ({exc})\n"
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in r.phases.items())
    return (f"Root index for {r.projects:,} projects (engine Publisher.publish_root: state -> HTML + JSON, atomic writes): "
            f"**{r.seconds:.2f} s** (target < 5 s; {r.html_bytes / 1e6:.0f} MB HTML, {r.json_bytes / 1e6:.0f} MB JSON; "
            f"phases: {phases})\n")


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: nginx stopped, tool runs interrupted, work dir removed


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.root_index_only:
        print(_root_index(args.root_projects, args.workdir), end="")
        return 0
    tools = tuple(t.strip() for t in args.tools.split(",") if t.strip())
    unknown = set(tools) - {"mirror_sync", "bandersnatch"}
    if unknown or not tools:
        print(f"--tools: unknown {sorted(unknown)}", file=sys.stderr)
        return 2
    if args.scenario == "latency":
        return _latency(args, tools)
    workers = args.workers if args.workers is not None else 8
    if not 1 <= workers <= 10:
        print("--workers must be 1..10 (bandersnatch refuses more than 10)", file=sys.stderr)
        return 2
    projects = args.projects or (QUICK_PROJECTS if args.quick else FULL_PROJECTS)
    opts = Options(
        projects=projects,
        workers=workers,
        wheels_per_release=max(1, min(5, args.wheels)),
        change_fraction=args.change_fraction,
        tools=tools,
        workdir=args.workdir,
        keep=args.keep,
        verify_full=args.verify == "full",
        fsync=args.fsync,
        wrk_seconds=args.wrk_seconds or (5 if args.quick else 10),
        profile_dir=args.profile,
        scratch_fs=args.scratch_fs,
        sizes=SizeModel(args.sizes or "tiny"),
        engine=args.engine,
    )
    if args.venv:
        opts.venv = args.venv
    try:
        results = run(opts, _log)
    except KeyboardInterrupt:
        _log("interrupted; nginx stopped, work directory removed")
        return 130
    except RuntimeError as exc:
        _log(f"benchmark failed: {exc}")
        return 1
    if not args.skip_root_index:
        results.extra_rows.append("")
        results.extra_rows.append(_root_index(args.root_projects, args.workdir).rstrip("\n"))
    table = markdown(results)
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(results.as_json(), indent=2) + "\n")
    return 0


def _latency(args: argparse.Namespace, tools: tuple[str, ...]) -> int:
    workers = args.workers if args.workers is not None else latency.BANDERSNATCH_MAX_WORKERS
    if "bandersnatch" in tools and not 1 <= workers <= latency.BANDERSNATCH_MAX_WORKERS:
        print("--workers must be 1..10 (bandersnatch refuses more than 10); mirror-sync's other settings go in --ms-workers", file=sys.stderr)
        return 2
    if args.rtt_ms < 0 or args.mbit <= 0:
        print("--rtt-ms must be at least 0 and --mbit above 0", file=sys.stderr)
        return 2
    opts = latency.LatencyOptions(
        projects=args.projects or (LATENCY_QUICK_PROJECTS if args.quick else LATENCY_PROJECTS),
        workers=workers,
        ms_workers=args.ms_workers,
        rtt_ms=args.rtt_ms,
        mbit=args.mbit,
        sizes=SizeModel(args.sizes or "lognormal"),
        wheels_per_release=max(1, min(5, args.wheels)),
        change_fraction=args.change_fraction,
        tools=tools,
        workdir=args.workdir,
        keep=args.keep,
        fsync=args.fsync,
        engine=args.engine,
        scratch_fs=args.scratch_fs,
    )
    if args.venv:
        opts.venv = args.venv
    try:
        results = latency.run(opts, _log)
    except latency.SkipScenario as exc:
        _log(f"latency scenario skipped: {exc}")
        return EXIT_SKIPPED
    except KeyboardInterrupt:
        _log("interrupted; the link, nginx and the work directory are removed")
        return 130
    except RuntimeError as exc:
        _log(f"benchmark failed: {exc}")
        return 1
    table = latency_report.markdown(results)
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(results.as_json(), indent=2) + "\n")
    return 0
