"""What the state says about the mirror: last runs, serials, lag, size."""
from __future__ import annotations

import time
from typing import Any

from ..clock import parse_utc_iso
from ..config import Config
from ..state import State, meta_int


def read_status(config: Config) -> dict[str, Any]:
    out: dict[str, Any] = {
        "command": "status",
        "directory": str(config.directory),
        "upstream": config.upstream,
        "initialized": config.state_path.exists(),
        "last_sync_started": None,
        "last_sync_finished": None,
        "last_success": None,
        "last_result": None,
        "last_duration_s": None,
        "last_verify": None,
        "last_verify_result": None,
        "upstream_serial": None,
        "mirror_serial": None,
        "lag_serials": None,
        "lag_seconds": None,
        "projects": 0,
        "files": 0,
        "bytes": 0,
    }
    if not out["initialized"]:
        return out
    state = State(config.state_path, readonly=True)
    try:
        meta = state.meta()
        projects, files, size = state.totals()
    finally:
        state.close()
    for key in ("last_sync_started", "last_sync_finished", "last_success", "last_result", "last_verify", "last_verify_result"):
        out[key] = meta.get(key)
    duration = meta.get("last_duration_s")
    out["last_duration_s"] = float(duration) if duration else None
    upstream_serial = meta_int(meta.get("upstream_serial"))
    mirror_serial = meta_int(meta.get("mirror_serial"))
    out["upstream_serial"] = upstream_serial
    out["mirror_serial"] = mirror_serial
    if upstream_serial is not None and mirror_serial is not None:
        out["lag_serials"] = max(0, upstream_serial - mirror_serial)
    success = parse_utc_iso(meta.get("last_success"))
    out["lag_seconds"] = round(time.time() - success, 1) if success is not None else None
    out["projects"], out["files"], out["bytes"] = projects, files, size
    for key in ("last_failures", "last_downloaded", "last_downloaded_bytes", "last_deleted_files"):
        out[key] = meta_int(meta.get(key))
    return out


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
    return "\n".join(lines)
