"""What the state says about the mirror: last runs, serials, lag, size."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..clock import parse_utc_iso
from ..config import Config
from ..reports import LastRun, PolicyReport, StatusReport
from ..state import State, meta_int


def read_status(config: Config) -> StatusReport:
    """The mirror's status from its state (read-only; a mirror without a state is not initialized)."""
    if not config.state_path.exists():
        return StatusReport(str(config.directory), config.upstream, initialized=False)
    state = State(config.state_path, readonly=True)
    try:
        meta = state.meta()
        totals = state.totals()
        refused = state.refused_files()
    finally:
        state.close()
    status = status_of(str(config.directory), config.upstream, meta, totals, now=time.time())
    reserved = json.loads(meta.get("reserved") or "[]")
    if refused or reserved or config.policy.active or config.local is not None:
        status = replace(status, policy=PolicyReport.from_entries(refused, reserved))
    return status


def status_of(directory: str, upstream: str, meta: Mapping[str, str], totals: tuple[int, int, int], *, now: float) -> StatusReport:
    """What the state's meta keys and totals (projects, files, bytes) say, at Unix time `now`.

    >>> meta = {"last_success": "1970-01-01T00:01:40Z", "upstream_serial": "12", "mirror_serial": "10", "last_duration_s": "1.5"}
    >>> s = status_of("/srv/mirror", "http://u.invalid/simple/", meta, (2, 3, 400), now=160.0)
    >>> s.lag_serials, s.lag_seconds, s.last_duration_s, s.files, s.last_run
    (2, 60.0, 1.5, 3, LastRun(failures=None, downloaded=None, downloaded_bytes=None, deleted_files=None))
    """
    duration = meta.get("last_duration_s")
    success = parse_utc_iso(meta.get("last_success"))
    projects, files, size = totals
    return StatusReport(
        directory,
        upstream,
        initialized=True,
        last_sync_started=meta.get("last_sync_started"),
        last_sync_finished=meta.get("last_sync_finished"),
        last_success=meta.get("last_success"),
        last_result=meta.get("last_result"),
        last_duration_s=float(duration) if duration else None,
        last_verify=meta.get("last_verify"),
        last_verify_result=meta.get("last_verify_result"),
        upstream_serial=meta_int(meta.get("upstream_serial")),
        mirror_serial=meta_int(meta.get("mirror_serial")),
        lag_seconds=round(now - success, 1) if success is not None else None,
        projects=projects,
        files=files,
        bytes=size,
        last_run=LastRun(
            failures=meta_int(meta.get("last_failures")),
            downloaded=meta_int(meta.get("last_downloaded")),
            downloaded_bytes=meta_int(meta.get("last_downloaded_bytes")),
            deleted_files=meta_int(meta.get("last_deleted_files")),
        ),
    )


def format_status(status: dict[str, Any]) -> str:
    if not status["initialized"]:
        return f"{status['directory']}: no mirror yet (run 'mirror-sync sync')"
    lines = [
        f"directory        {status['directory']}",
        f"upstream         {status['upstream']}",
        f"last sync        {status['last_sync_finished']} ({status['last_result']}, {status['last_duration_s']} s)",
        f"last success     {status['last_success']} ({status['lag_seconds']} s ago)",
        f"serials          upstream {status['upstream_serial']}, mirror {status['mirror_serial']}, lag {status['lag_serials']}",
        f"content          {status['projects']} projects, {status['files']} files, {status['bytes']} bytes",
    ]
    policy = status.get("policy")
    if policy:
        lines.append(f"policy           held back {len(policy['held'])} files (first matures {policy['next_maturity'] or '-'}), "
                     f"blocked {len(policy['blocked'])}, reserved {', '.join(policy['reserved']) or '-'}")
    return "\n".join(lines)
