"""mirror-sync from this checkout: its configuration and commands."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent


def env_extra() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO)}


def precompile() -> None:
    """Byte-compile the checkout's package, as `pip install` does for an installed tool (and did for
    bandersnatch in its virtualenv): with PYTHONDONTWRITEBYTECODE set, every run would otherwise
    recompile the sources, which is not what a deployed mirror-sync pays."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "mirror_sync")], check=True, capture_output=True, timeout=120)


def available(env: dict[str, str]) -> bool:
    res = subprocess.run([sys.executable, "-m", "mirror_sync", "--help"], env=env, capture_output=True, timeout=60)
    return res.returncode == 0


def write_config(path: Path, *, directory: Path, upstream: str, workers: int, fsync: Optional[bool]) -> None:
    lines = [f"directory: {directory}", f"upstream: {upstream}", f"workers: {workers}"]
    if fsync is not None:
        lines.append(f"fsync: {'true' if fsync else 'false'}")
    path.write_text("\n".join(lines) + "\n")


def sync_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "mirror_sync", "-c", str(config), "sync", "--json"]


def verify_cmd(config: Path, full: bool) -> list[str]:
    return [sys.executable, "-m", "mirror_sync", "-c", str(config), "verify", *(["--full"] if full else []), "--json"]
