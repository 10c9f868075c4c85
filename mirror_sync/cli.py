"""The `mirror-sync` command line."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sqlite3
import sys
import time
from types import FrameType
from typing import Any, Callable, Optional, Sequence

from . import __version__
from .config import Config, load_config
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_TERMINATED,
    MirrorSyncError,
)

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

    add = sub.add_parser("add", help="add the organisation's own wheels or sdists to the local directory and publish them",
                         description="Validate each distribution (name, version, wheel tags, core metadata), copy it "
                         "into the directory the key 'local' names and publish its project at once. One bad file: "
                         "nothing is added.")
    add.add_argument("files", nargs="+", metavar="FILE", help="a wheel (.whl) or sdist (.tar.gz, .zip)")
    add.add_argument("--json", action="store_true")

    rebuild = sub.add_parser(
        "rebuild-state",
        help="rebuild a damaged or lost state.sqlite from the mirror on disk (re-hashes the files, downloads nothing)",
        description="Rebuild state.sqlite from the published pages under web/simple/ and the files under web/packages/, "
        "which are re-hashed; nothing is downloaded. The old state is kept as state.sqlite.before-rebuild-<time>. "
        "The next sync reads every project's page once and downloads no file the mirror holds.",
    )
    rebuild.add_argument("--json", action="store_true")
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

    return Syncer(cfg, dry_run=args.dry_run, allow_mass_delete=args.allow_mass_delete).run().to_json()


def _run_verify(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from .verify import Verifier

    return Verifier(cfg, full=args.full, repair=args.repair).run().to_json()


def _run_status(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from .observe.status import read_status

    return read_status(cfg).to_json()


def _run_stats(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from .observe.stats import run_stats

    return run_stats(cfg).to_json()


def _run_rebuild(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from .rebuild import Rebuilder

    return Rebuilder(cfg).run().to_json()


def _run_add(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from .add import add_files

    return add_files(cfg, [Path(f) for f in args.files]).to_json()


COMMANDS: dict[str, Callable[[Config, argparse.Namespace], dict[str, Any]]] = {
    "add": _run_add,
    "sync": _run_sync,
    "verify": _run_verify,
    "status": _run_status,
    "stats": _run_stats,
    "rebuild-state": _run_rebuild,
}
# commands that use the mirror's state: an sqlite error on it becomes one sentence about it
STATE_COMMANDS = ("sync", "verify", "status", "rebuild-state", "add")


def _human(summary: dict[str, Any]) -> str:
    command = summary.get("command")
    if command == "status":
        from .observe.status import format_status

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
            for item in plan["delete"][:50]:
                text += f"\n  delete: {item['project']}: {item['path'].rsplit('/', 1)[-1]} ({item.get('reason', '')})"
        text += _policy_text(summary.get("policy"))
    elif command == "add":
        text = f"add: {'ok' if summary['ok'] else 'FAILED'}; " + ", ".join(a["filename"] for a in summary["added"])
        text += f"; mirror holds {summary['projects']['total']} projects, {summary['files']['total']} files"
    elif command == "rebuild-state":
        text = (
            f"rebuild-state: {summary['projects']} projects, {summary['files']} files ({summary['bytes']} bytes) re-hashed "
            f"in {summary['duration_s']} s; pages rewritten {summary['rewritten_pages']}, projects left out "
            f"{len(summary['skipped'])}, files left out {len(summary['dropped'])}"
        )
        if summary.get("previous_state"):
            text += f"; the old state is {summary['previous_state']}"
        for item in summary["skipped"][:50]:
            text += f"\n  left out: {item['project']}: {item['error']}"
        for item in summary["dropped"][:50]:
            text += f"\n  left out: {item['project']}: {item['file']}: {item['error']} (the next sync fetches it again)"
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


def _policy_text(policy: Optional[dict[str, Any]]) -> str:
    """The policy's part of a summary: what it holds back (and until when), what it blocks (and by
    which advisory), which names are reserved for the local packages."""
    if not policy:
        return ""
    text = f"\npolicy: held back {len(policy['held'])} files, blocked {len(policy['blocked'])} files"
    if policy.get("next_maturity"):
        text += f"; the first held file matures {policy['next_maturity']}"
    if policy.get("reserved"):
        text += f"; reserved for local packages: {', '.join(policy['reserved'])}"
    for item in policy["blocked"][:50]:
        text += f"\n  blocked: {item['project']} {item.get('version')}: {item['filename']} ({item.get('advisory')})"
    for item in policy["held"][:50]:
        until = f"until {item['matures']}" if item.get("matures") else f"({item['rule']})"
        text += f"\n  held: {item['project']} {item.get('version')}: {item['filename']} {until}"
    return text


def _prepare(cfg: Config, args: argparse.Namespace) -> None:
    """Before the command: the mirror directory must suit it (exit 5 with one sentence otherwise),
    and an HTTPS upstream is verified with the trust the configuration chooses."""
    from .fsutil import check_directory

    command = args.command
    dry_run = getattr(args, "dry_run", False)
    repair = getattr(args, "repair", False)
    if command in ("sync", "verify", "status", "add"):
        writes = command in ("verify", "add") or (command == "sync" and not dry_run)
        # what a run writes, and must be able to write where it exists (a web/ made by root once);
        # status and a dry run only read the state
        entries = (cfg.state_path, cfg.lock_path, cfg.web, cfg.simple_dir, cfg.packages_dir) if writes else (cfg.state_path,)
        check_directory(cfg.directory, create=command in ("sync", "add") and not dry_run, writable=writes, entries=entries)
    if command == "rebuild-state":  # the state itself may be anything: it is moved aside
        check_directory(cfg.directory, create=False, writable=True, entries=(cfg.lock_path, cfg.web, cfg.simple_dir))
    if command == "verify" and repair and cfg.state_path.is_file():
        _check_state(cfg, args)
    if command in ("sync", "add") or (command == "verify" and repair):
        from . import tls

        bundle = str(cfg.ca_bundle) if cfg.ca_bundle else None
        tls.use(tls.trust_for(bundle, cfg.upstream_from_pip, check=cfg.upstream.startswith("https:")))


def _rebuild_command(args: argparse.Namespace) -> str:
    return f"mirror-sync -c {args.config} rebuild-state"


def _check_state(cfg: Config, args: argparse.Namespace) -> None:
    """Before a repair, which removes every file the state does not reference: the state must be
    sound (sqlite's quick check), or the repair would delete what a damaged table lost."""
    from .state import State, StateDamagedError

    state = State(cfg.state_path, readonly=True)
    try:
        problems = state.quick_check()
    finally:
        state.close()
    if problems:
        raise StateDamagedError(
            f"the mirror's state {cfg.state_path} is damaged ({problems[0]}), so verify --repair would remove files it "
            f"lost track of; the mirror itself is intact: rebuild the state from {cfg.web} with '{_rebuild_command(args)}' "
            "(it re-hashes the files and downloads nothing)"
        )


def _run(cfg: Config, args: argparse.Namespace) -> dict[str, Any]:
    """The command; an sqlite error on the mirror's state comes out as the engine's own error."""
    try:
        _prepare(cfg, args)
        return COMMANDS[args.command](cfg, args)
    except sqlite3.Error as exc:
        if args.command not in STATE_COMMANDS:
            raise MirrorSyncError(f"a database of {args.command} failed ({exc})") from None
        from .state import state_error

        raise state_error(exc, cfg.state_path, _rebuild_command(args)) from None


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM: systemd, cron's timeout), handled as Ctrl-C is: the run unwinds,
    records itself as interrupted, and releases its lock."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_stop_signal(signum: int, frame: Optional[FrameType]) -> None:
    # the first signal stops the run; those that come while it cleans up are ignored (a second
    # Ctrl-C must not cut the cleanup short: kill -9 remains, and is safe)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_repeated_signal)
    raise Stopped(signum)


def _on_repeated_signal(signum: int, frame: Optional[FrameType]) -> None:
    os.write(2, b"mirror-sync: already stopping; the run ends when its cleanup is done\n")


def _install_signal_handlers() -> None:
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup'd or started ignoring it: keep that
                signal.signal(sig, _on_stop_signal)
    except ValueError:  # not the main thread (mirror_sync used as a library): leave them be
        pass


def _interrupted(exc: KeyboardInterrupt) -> tuple[str, int]:
    signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
    if signum == signal.SIGINT:
        return "interrupted (Ctrl-C); the mirror stays consistent and the next run resumes", EXIT_INTERRUPTED
    return f"stopped by {signal.Signals(signum).name}; the mirror stays consistent and the next run resumes", EXIT_TERMINATED


def error_kind(exc: MirrorSyncError) -> str:
    """What failed, for the JSON report of a fatal error: the exception's class without "Error", in
    snake case (LockedError: "locked", DeleteGuardError: "delete_guard"; MirrorSyncError itself: "error")."""
    name = type(exc).__name__
    if type(exc) is MirrorSyncError or not name.endswith("Error") or name == "Error":
        return "error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name[: -len("Error")]).lower()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    _install_signal_handlers()
    as_json = getattr(args, "json", False)
    cfg: Optional[Config] = None
    try:
        cfg = load_config(args.config)
        summary = _run(cfg, args)
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
            print(json.dumps({"command": args.command, "ok": False, "error": str(exc), "exit_code": exc.exit_code,
                              "kind": error_kind(exc)}))
        else:
            print(f"mirror-sync: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        message, code = _interrupted(exc)
        if cfg is not None and args.command == "sync" and not getattr(args, "dry_run", False):
            try:
                _write_metrics(cfg, args.command, {"command": args.command, "ok": False, "error": message, "failures": []})
            except Exception as metrics_exc:  # metrics never hide the real outcome
                log.warning("event=metrics-failed error=%r", str(metrics_exc))
        if as_json:
            print(json.dumps({"command": args.command, "ok": False, "error": message, "exit_code": code, "interrupted": True,
                              "kind": "interrupted"}))
        print(f"mirror-sync: {message}", file=sys.stderr)
        return code
    if as_json:
        print(json.dumps(summary))
    else:
        print(_human(summary))
    return EXIT_OK if summary.get("ok", True) else EXIT_PROBLEMS


FRONT_PAGE_MAX_AGE = 3600.0  # a run that changed nothing refreshes an older front page only


def _front_page_current(cfg: Config, command: str, summary: dict[str, Any]) -> bool:
    """A sync that succeeded and changed nothing writes nothing, the front page included, while
    the page is under an hour old (its "last sync" line then lags by less than that)."""
    if command != "sync" or not summary.get("ok") or summary.get("changed") is not False:
        return False
    try:
        return time.time() - (cfg.web / "index.html").stat().st_mtime < FRONT_PAGE_MAX_AGE
    except OSError:
        return False


def _write_metrics(cfg: Config, command: str, summary: dict[str, Any]) -> None:
    """After every run: the Prometheus textfile, when configured; and, after a sync or the
    statistics, the mirror's front page (web/index.html), which never hides the run's outcome."""
    if command in ("sync", "stats") and not summary.get("dry_run") and cfg.web.is_dir() and not _front_page_current(cfg, command, summary):
        try:
            from .observe.frontpage import write_front_page
            from .observe.stats import output_directory
            from .observe.status import read_status

            write_front_page(cfg.web, read_status(cfg).to_json(), stats_summary=output_directory(cfg) / "summary.json")
        except Exception as exc:  # the front page is for people; the run's result stands
            log.warning("event=front-page-failed error=%r", str(exc))
    if not cfg.metrics.textfile_directory:
        return
    from .observe.metrics import record_run
    from .observe.status import read_status

    record_run(cfg, command, summary, read_status(cfg).to_json())
