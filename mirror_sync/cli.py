"""The `mirror-sync` command line."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Optional, Sequence

from . import __version__
from .config import Config, load_config
from .errors import MirrorSyncError

log = logging.getLogger("mirror_sync")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirror-sync", description="Mirror a PyPI-compatible simple index into a directory.")
    parser.add_argument("-c", "--config", required=True, help="YAML configuration file")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--version", action="version", version=f"mirror-sync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sync = sub.add_parser("sync", help="bring the mirror up to date")
    sync.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    sync.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    sync.add_argument("--allow-mass-delete", action="store_true", help="let this run delete more than max_delete_ratio")

    verify = sub.add_parser("verify", help="check published pages and files against the state")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--full", action="store_true", help="re-hash every file")
    verify.add_argument("--repair", action="store_true", help="re-fetch missing or corrupt files, remove unreferenced ones")

    status = sub.add_parser("status", help="last sync, serials, lag, size")
    status.add_argument("--json", action="store_true")

    stats = sub.add_parser("stats", help="download statistics from the access logs")
    stats.add_argument("--json", action="store_true")
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("mirror_sync")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def _run_sync(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from .sync import Syncer

    return Syncer(cfg, dry_run=args.dry_run, allow_mass_delete=args.allow_mass_delete).run()


def _run_verify(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from .verify import Verifier

    return Verifier(cfg, full=args.full, repair=args.repair).run()


def _run_status(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from .status import read_status

    return read_status(cfg)


def _run_stats(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from .stats import run_stats

    return run_stats(cfg)


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], dict[str, Any]]] = {
    "sync": _run_sync,
    "verify": _run_verify,
    "status": _run_status,
    "stats": _run_stats,
}


def _human(summary: dict[str, Any]) -> str:
    command = summary.get("command")
    if command == "status":
        from .status import format_status

        return format_status(summary)
    if command == "sync":
        p, f = summary["projects"], summary["files"]
        head = "sync (dry run)" if summary.get("dry_run") else "sync"
        text = (
            f"{head}: {'ok' if summary['ok'] else 'FAILED'} in {summary['duration_s']} s; projects synced {p['synced']}, "
            f"deleted {p['deleted']}, failed {p['failed']}; files downloaded {f['downloaded']} ({f['bytes_downloaded']} bytes), "
            f"deleted {f['deleted']}; mirror holds {p['total']} projects, {f['total']} files"
        )
        if summary.get("plan"):
            plan = summary["plan"]
            text += f"\nplan: fetch {len(plan['fetch'])} files ({plan['fetch_bytes']} bytes), delete {len(plan['delete'])} files"
    elif command == "verify":
        text = (
            f"verify: {'ok' if summary['ok'] else 'PROBLEMS'}; {summary['checked_pages']} pages, {summary['checked_files']} files checked; "
            f"missing {len(summary['missing'])}, corrupt {len(summary['corrupt'])}, orphans {len(summary['orphans'])}, "
            f"repaired {summary['repaired']}, removed {summary['removed']}"
        )
    else:
        text = json.dumps(summary, indent=2)
    for failure in summary.get("failures", [])[:50]:
        who = failure.get("project") or "-"
        text += f"\n  failed: {who}: {failure.get('error')}"
    return text


def _prepare(cfg: Config, args: argparse.Namespace) -> None:
    """Before the command: the mirror directory must suit it (exit 5 with one sentence otherwise),
    and an HTTPS upstream is verified with the trust the configuration chooses."""
    from .fsutil import check_directory

    command = args.command
    dry_run = getattr(args, "dry_run", False)
    repair = getattr(args, "repair", False)
    if command in ("sync", "verify", "status"):
        writes = command == "verify" or (command == "sync" and not dry_run)
        # what a run writes, and must be able to write where it exists (a web/ made by root once);
        # status and a dry run only read the state
        entries = (cfg.state_path, cfg.lock_path, cfg.web, cfg.simple_dir, cfg.packages_dir) if writes else (cfg.state_path,)
        check_directory(cfg.directory, create=command == "sync" and not dry_run, writable=writes, entries=entries)
    if command == "sync" or (command == "verify" and repair):
        from . import tls

        bundle = str(cfg.ca_bundle) if cfg.ca_bundle else None
        tls.use(tls.trust_for(bundle, cfg.upstream_from_pip, check=cfg.upstream.startswith("https:")))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    as_json = getattr(args, "json", False)
    cfg: Optional[Config] = None
    try:
        cfg = load_config(args.config)
        _prepare(cfg, args)
        summary = COMMANDS[args.command](cfg, args)
        _write_metrics(cfg, args.command, summary)
    except MirrorSyncError as exc:
        log.error("%s", exc)
        if cfg is not None and args.command != "status" and not getattr(args, "dry_run", False):
            failed = {"command": args.command, "ok": False, "error": str(exc), "failures": [{"project": "", "error": str(exc)}]}
            try:
                _write_metrics(cfg, args.command, failed)
            except Exception as metrics_exc:  # metrics never hide the real error
                log.warning("event=metrics-failed error=%r", str(metrics_exc))
        if as_json:
            print(json.dumps({"command": args.command, "ok": False, "error": str(exc), "exit_code": exc.exit_code}))
        else:
            print(f"mirror-sync: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mirror-sync: interrupted; the mirror stays consistent, the next run resumes", file=sys.stderr)
        return 130
    if as_json:
        print(json.dumps(summary))
    else:
        print(_human(summary))
    return 0 if summary.get("ok", True) else 1


def _write_metrics(cfg: Config, command: str, summary: dict[str, Any]) -> None:
    """Prometheus textfile after every run, when configured."""
    if not cfg.metrics.textfile_directory:
        return
    from .metrics import record_run
    from .status import read_status

    record_run(cfg, command, summary, read_status(cfg))
