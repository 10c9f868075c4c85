"""Prometheus metrics in node_exporter's textfile collector format.

After every ``sync``, ``verify`` and ``stats`` run the CLI calls :func:`write_textfile`, which
rewrites ``<metrics.textfile_directory>/mirror_sync.prom``. One file holds every command's metrics:
the file is read back and merged, so a ``stats`` run keeps the last ``sync`` and ``verify`` values
(samples labelled ``command="..."`` belong to that command; the mirror's state — serials, lag,
projects, files, bytes — is replaced whenever a run knows it). A failed run updates everything but
``mirror_sync_last_success_timestamp_seconds``, which keeps the time of the last good run (the value
to alert on). A ``--dry-run`` changes nothing and is not recorded; ``status`` only refreshes the
mirror-state gauges.

The file is written to a temporary name in the same directory (which the collector ignores: it does
not end in ``.prom``), fsynced and renamed over the old one (``fsutil.write_atomic``), under an flock
of the directory (``fsutil.file_lock``) so two commands finishing at once do not lose each other's
update.
"""
from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from ..clock import parse_utc_iso
from ..errors import FilesystemError
from ..fsutil import file_lock, write_atomic

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)

FILENAME = "mirror_sync.prom"
STATE = "state"  # owner of the mirror-state families

Number = Union[int, float]
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Family:
    name: str
    type: str  # gauge | counter
    help: str
    owner: str  # "command": the sample's command label; else a fixed owner (STATE, "stats")


FAMILIES: tuple[Family, ...] = (
    # the mirror's state: from `status` (or a sync summary when no status is given)
    Family("mirror_sync_upstream_serial", "gauge", "Last serial of the upstream index.", STATE),
    Family("mirror_sync_mirror_serial", "gauge", "Serial the mirror is synced to.", STATE),
    Family("mirror_sync_lag_serials", "gauge", "Upstream serial minus mirror serial.", STATE),
    Family("mirror_sync_lag_seconds", "gauge", "Age of the mirror's state behind upstream in seconds.", STATE),
    Family("mirror_sync_projects", "gauge", "Projects in the mirror.", STATE),
    Family("mirror_sync_files", "gauge", "Distribution files in the mirror.", STATE),
    Family("mirror_sync_bytes", "gauge", "Bytes of distribution files in the mirror.", STATE),
    Family("mirror_sync_policy_held_files", "gauge", "Files the policy holds back (cooldown, uploaded_before, no upload-time).", STATE),
    Family("mirror_sync_policy_blocked_files", "gauge", "Files the policy blocks (malicious or vulnerable releases).", STATE),
    Family("mirror_sync_policy_reserved_projects", "gauge", "Project names reserved for the local packages.", STATE),
    Family("mirror_sync_policy_next_maturity_timestamp_seconds", "gauge", "Unix time the first held-back file matures.", STATE),
    # per command (label command="sync|verify|stats")
    Family("mirror_sync_last_run_timestamp_seconds", "gauge", "Unix time the last run of the command finished.", "command"),
    Family("mirror_sync_last_success_timestamp_seconds", "gauge", "Unix time the last successful run of the command finished.", "command"),
    Family("mirror_sync_last_run_success", "gauge", "1 if the last run of the command succeeded, else 0.", "command"),
    Family("mirror_sync_last_run_duration_seconds", "gauge", "Duration of the last run of the command in seconds.", "command"),
    Family("mirror_sync_last_run_failures", "gauge", "Failures (projects or files) reported by the last run of the command.", "command"),
    Family("mirror_sync_last_run_projects_synced", "gauge", "Projects whose pages the last run rewrote.", "command"),
    Family("mirror_sync_last_run_projects_deleted", "gauge", "Projects the last run removed.", "command"),
    Family("mirror_sync_last_run_files_downloaded", "gauge", "Files the last run downloaded (verify: repaired).", "command"),
    Family("mirror_sync_last_run_files_deleted", "gauge", "Files the last run deleted (verify: removed).", "command"),
    Family("mirror_sync_last_run_bytes_downloaded", "gauge", "Bytes the last run downloaded.", "command"),
    Family("mirror_sync_last_run_files_checked", "gauge", "Files the last verify checked.", "command"),
    Family("mirror_sync_last_run_files_missing", "gauge", "Files the last verify found missing.", "command"),
    Family("mirror_sync_last_run_files_corrupt", "gauge", "Files the last verify found corrupt.", "command"),
    Family("mirror_sync_last_run_files_orphaned", "gauge", "Unreferenced files the last verify found.", "command"),
    Family("mirror_sync_last_run_log_lines", "gauge", "Access log lines the last stats run read.", "command"),
    Family("mirror_sync_last_run_log_lines_malformed", "gauge", "Malformed access log lines the last stats run skipped.", "command"),
    Family("mirror_sync_last_run_downloads_counted", "gauge", "File downloads the last stats run counted.", "command"),
    # download statistics, all time (from the stats state)
    Family("mirror_sync_stats_downloads_total", "counter", "File downloads counted from the access logs.", "stats"),
    Family("mirror_sync_stats_metadata_downloads_total", "counter", ".metadata downloads counted from the access logs.", "stats"),
    Family("mirror_sync_stats_page_hits_total", "counter", "Index page hits counted from the access logs.", "stats"),
    Family("mirror_sync_stats_log_lines_total", "counter", "Access log lines read.", "stats"),
    Family("mirror_sync_stats_log_lines_malformed_total", "counter", "Malformed access log lines skipped.", "stats"),
)
_BY_NAME = {f.name: f for f in FAMILIES}

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def textfile_directory(config: "Config") -> Optional[Path]:
    """``metrics.textfile_directory`` (relative to the configuration file's directory), or None."""
    raw = config.metrics.textfile_directory
    if not raw:
        return None
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else config.path.parent / path


def record_run(
    config: "Config", command: str, summary: dict[str, Any], status: Optional[dict[str, Any]] = None
) -> Optional[Path]:
    """What the CLI calls after sync/verify/stats: write the textfile if one is configured.

    Failing to write metrics never fails the run; it is logged (stale metrics are what the
    ``mirror_sync_last_success_timestamp_seconds`` alert catches).
    """
    directory = textfile_directory(config)
    if directory is None:
        return None
    try:
        return write_textfile(directory, command, summary, status)
    except OSError as exc:
        log.warning("event=metrics_failed directory=%s error=%r", directory, exc.strerror or str(exc))
    except FilesystemError as exc:  # a full disk
        log.warning("event=metrics_failed directory=%s error=%r", directory, str(exc))
    return None


def write_textfile(
    directory: Path,
    command: str,
    summary: dict[str, Any],
    status: Optional[dict[str, Any]],
    *,
    now: Optional[float] = None,
) -> Path:
    """Merge this run's metrics into ``directory/mirror_sync.prom``; return the file's path.

    ``summary`` is the command's JSON summary (README, "JSON summaries"; ``stats``: see
    ``mirror_sync.observe.stats.run_stats``); ``status`` the ``status --json`` object after the run, or None.
    """
    directory = Path(directory)
    path = directory / FILENAME
    if summary.get("dry_run"):
        return path
    directory.mkdir(parents=True, exist_ok=True)
    when = _finished(summary, time.time() if now is None else now)
    if command == "status":  # not a run: `status` only refreshes the mirror's state
        new: dict[tuple[str, Labels], Number] = {}
        state = _state_samples(command, summary, status if status is not None else summary)
    else:
        new = _run_samples(command, summary, when)
        state = _state_samples(command, summary, status)
    replaced = {command} | ({STATE} if state else set())
    new.update(state)
    with file_lock(directory, wait=True):  # held for milliseconds by another mirror-sync command
        old = read_textfile(path)
        keep = {k: v for k, v in old.items() if _owner(k) not in replaced}
        success_key = ("mirror_sync_last_success_timestamp_seconds", (("command", command),))
        if success_key not in new and success_key in old:
            keep[success_key] = old[success_key]  # a failed run: the last success stays what it was
        keep.update(new)
        write_atomic(path, render(keep).encode("utf-8"), fsync=True, mode=0o644)  # node_exporter runs as its own user
    return path


def _owner(key: tuple[str, Labels]) -> str:
    name, labels = key
    family = _BY_NAME[name]
    if family.owner == "command":
        return dict(labels).get("command", "")
    return family.owner


def _finished(summary: dict[str, Any], default: float) -> float:
    raw = summary.get("finished")
    when = parse_utc_iso(raw) if isinstance(raw, str) else None
    return default if when is None else when


def _num(value: Any) -> Optional[Number]:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    return None


def _get(d: Any, *keys: str) -> Optional[Number]:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return _num(d)


def _count(value: Any) -> Optional[Number]:
    """A number, or the length of a list."""
    return len(value) if isinstance(value, list) else _num(value)


def _run_samples(command: str, summary: dict[str, Any], when: float) -> dict[tuple[str, Labels], Number]:
    lab: Labels = (("command", command),)
    ok = bool(summary.get("ok"))
    values: dict[str, Optional[Number]] = {
        "mirror_sync_last_run_timestamp_seconds": when,
        "mirror_sync_last_success_timestamp_seconds": when if ok else None,
        "mirror_sync_last_run_success": 1 if ok else 0,
        "mirror_sync_last_run_duration_seconds": _num(summary.get("duration_s")),
        "mirror_sync_last_run_failures": _count(summary.get("failures")) or 0,
    }
    if command == "sync":
        failed = (_get(summary, "projects", "failed") or 0) + (_get(summary, "files", "failed") or 0)
        values["mirror_sync_last_run_failures"] = max(failed, values["mirror_sync_last_run_failures"] or 0)
        values.update(
            {
                "mirror_sync_last_run_projects_synced": _get(summary, "projects", "synced"),
                "mirror_sync_last_run_projects_deleted": _get(summary, "projects", "deleted"),
                "mirror_sync_last_run_files_downloaded": _get(summary, "files", "downloaded"),
                "mirror_sync_last_run_files_deleted": _get(summary, "files", "deleted"),
                "mirror_sync_last_run_bytes_downloaded": _get(summary, "files", "bytes_downloaded"),
            }
        )
    elif command == "verify":
        values.update(
            {
                "mirror_sync_last_run_files_checked": _num(summary.get("checked_files")),
                "mirror_sync_last_run_files_missing": _count(summary.get("missing")),
                "mirror_sync_last_run_files_corrupt": _count(summary.get("corrupt")),
                "mirror_sync_last_run_files_orphaned": _count(summary.get("orphans")),
                "mirror_sync_last_run_files_downloaded": _num(summary.get("repaired")),
                "mirror_sync_last_run_files_deleted": _num(summary.get("removed")),
            }
        )
    elif command == "stats":
        values.update(
            {
                "mirror_sync_last_run_log_lines": _num(summary.get("lines_read")),
                "mirror_sync_last_run_log_lines_malformed": _num(summary.get("malformed")),
                "mirror_sync_last_run_downloads_counted": _num(summary.get("downloads")),
            }
        )
    samples = {(name, lab): v for name, v in values.items() if v is not None}
    if command == "stats":
        totals = {
            "mirror_sync_stats_downloads_total": _get(summary, "totals", "downloads"),
            "mirror_sync_stats_metadata_downloads_total": _get(summary, "totals", "metadata"),
            "mirror_sync_stats_page_hits_total": _get(summary, "totals", "pages"),
            "mirror_sync_stats_log_lines_total": _get(summary, "totals", "lines"),
            "mirror_sync_stats_log_lines_malformed_total": _get(summary, "totals", "malformed"),
        }
        samples.update({(name, ()): v for name, v in totals.items() if v is not None})
    return samples


def _state_samples(
    command: str, summary: dict[str, Any], status: Optional[dict[str, Any]]
) -> dict[tuple[str, Labels], Number]:
    values: dict[str, Optional[Number]]
    if status is not None:
        values = {
            "mirror_sync_upstream_serial": _num(status.get("upstream_serial")),
            "mirror_sync_mirror_serial": _num(status.get("mirror_serial")),
            "mirror_sync_lag_serials": _num(status.get("lag_serials")),
            "mirror_sync_lag_seconds": _num(status.get("lag_seconds")),
            "mirror_sync_projects": _count(status.get("projects")),
            "mirror_sync_files": _count(status.get("files")),
            "mirror_sync_bytes": _num(status.get("bytes")),
        }
    elif command == "sync":
        upstream, mirror = _num(summary.get("upstream_serial")), _num(summary.get("mirror_serial"))
        values = {
            "mirror_sync_upstream_serial": upstream,
            "mirror_sync_mirror_serial": mirror,
            "mirror_sync_lag_serials": upstream - mirror if upstream is not None and mirror is not None else None,
            "mirror_sync_projects": _get(summary, "projects", "total"),
            "mirror_sync_files": _get(summary, "files", "total"),
            "mirror_sync_bytes": _get(summary, "files", "bytes_total"),
        }
    else:
        return {}
    values.update(_policy_values((status or summary).get("policy")))
    return {(name, ()): v for name, v in values.items() if v is not None}


def _policy_values(policy: Optional[dict[str, Any]]) -> dict[str, Optional[Number]]:
    """What the policy keeps out (no samples when no policy and no local packages are configured)."""
    if not isinstance(policy, dict):
        return {}
    matures = parse_utc_iso(policy.get("next_maturity")) if policy.get("next_maturity") else None
    return {
        "mirror_sync_policy_held_files": len(policy.get("held") or []),
        "mirror_sync_policy_blocked_files": len(policy.get("blocked") or []),
        "mirror_sync_policy_reserved_projects": len(policy.get("reserved") or []),
        "mirror_sync_policy_next_maturity_timestamp_seconds": matures,
    }


# ----------------------------------------------------------------------------- format


def format_value(value: Number) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    return str(int(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape_label(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def render(samples: dict[tuple[str, Labels], Number]) -> str:
    """The exposition text: families in a fixed order, each with HELP and TYPE, then its samples."""
    lines: list[str] = []
    for family in FAMILIES:
        mine = sorted((labels, v) for (name, labels), v in samples.items() if name == family.name)
        if not mine:
            continue
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in mine:
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            lines.append(f"{family.name}{{{label_text}}} {format_value(value)}" if labels else f"{family.name} {format_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def read_textfile(path: Path) -> dict[tuple[str, Labels], Number]:
    """The samples of our families in an existing file; anything else in it is dropped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    samples: dict[tuple[str, Labels], Number] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line.strip())
        if m is None or m.group(1) not in _BY_NAME:
            continue
        labels = _parse_labels(m.group(2) or "")
        if labels is None:
            continue
        try:
            value: Number = float(m.group(3))
        except ValueError:
            continue
        samples[(m.group(1), labels)] = value
    return samples


def _parse_labels(text: str) -> Optional[Labels]:
    pos = 0
    out: list[tuple[str, str]] = []
    for _ in range(len(text) + 1):  # bounded: every match consumes at least one character
        if pos >= len(text.rstrip()):
            return tuple(sorted(out))
        m = _LABEL_RE.match(text, pos)
        if m is None:
            return None
        out.append((m.group(1), _unescape_label(m.group(2))))
        pos = m.end()
    return None


