"""Things built on the controller and carried to the offline hosts: the wheelhouse and the uv binary.

The hosts have no route out, as in an air-gapped deployment: Python wheels reach them from a
wheelhouse built here, and uv (for the client test) as the binary taken from its wheel.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

from .commands import FleetError, run
from .rootfs import CACHE_ROOT

# The hosts' Python (Debian bookworm): compiled dependency wheels must be built for this version.
HOST_PYTHON = (3, 11)


def python_for_hosts() -> str:
    """An interpreter on this machine with the hosts' Python version (this one if it matches)."""
    if sys.version_info[:2] == HOST_PYTHON:
        return sys.executable
    name = f"python{HOST_PYTHON[0]}.{HOST_PYTHON[1]}"
    found = shutil.which(name)
    if found is None:
        raise FleetError(f"no {name} here: the wheelhouse for the hosts must be built with their Python")
    return found


def build_wheelhouse(project: Path, dest: Path, *, python: str | None = None) -> list[Path]:
    """`pip wheel PROJECT -w DEST`: the project's wheel and every dependency's, for the host's Python.

    Uses this machine's pip configuration on purpose: it is how the controller reaches the registry.
    The hosts run Debian bookworm's Python 3.11; the controller must build for the same ABI.
    """
    python = python or python_for_hosts()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mirror-sync-src-") as tmp:
        # Build from a copy: setuptools writes build/ and *.egg-info into the source tree.
        source = Path(tmp) / "src"
        shutil.copytree(
            project, source,
            ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".venv"),
        )
        # Reproducible, as setup-mirror builds it: the same source gives the same bytes (no reinstall).
        run([python, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), str(source)], timeout=600,
            env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"})
    wheels = sorted(dest.glob("*.whl"))
    if not any(w.name.startswith("mirror_sync-") for w in wheels):
        raise FleetError(f"pip wheel {project} left no mirror_sync wheel in {dest}")
    return wheels


def uv_binary(cache_root: Path = CACHE_ROOT, *, python: str = sys.executable) -> tuple[Path | None, str]:
    """The uv binary from the newest uv wheel pip can fetch here (cached), or (None, why not)."""
    target_dir = cache_root / "uv"
    target_dir.mkdir(parents=True, exist_ok=True)
    binary = target_dir / "uv"
    with (cache_root / "uv.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary, "cached"
        with tempfile.TemporaryDirectory(prefix="uv-wheel-") as tmp:
            proc = run(
                [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 "--dest", tmp, "uv"],
                timeout=600, check=False,
            )
            wheels = sorted(Path(tmp).glob("uv-*.whl"))
            if proc.returncode != 0 or not wheels:
                return None, f"pip download uv failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
            with zipfile.ZipFile(wheels[0]) as zf:
                members = [n for n in zf.namelist() if n.endswith(".data/scripts/uv")]
                if not members:
                    return None, f"{wheels[0].name} holds no uv binary"
                staging = target_dir / "uv.partial"
                with zf.open(members[0]) as src, staging.open("wb") as out:
                    shutil.copyfileobj(src, out)
                staging.chmod(staging.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                staging.rename(binary)
        return binary, "downloaded"
