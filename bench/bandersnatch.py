"""bandersnatch 8.2, pinned, in its own virtualenv on a Python >= 3.12 found under pyenv's versions."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

VERSION = "8.2.0"
MIN_PYTHON = (3, 12)


def _version_of(python: str) -> Optional[tuple[int, int]]:
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python() -> str:
    """The newest Python >= 3.12: pyenv's versions directory first, then python3.1x on PATH."""
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv"), "/root/.pyenv", "/opt/pyenv"]
    candidates: list[str] = []
    for root in dict.fromkeys(r for r in roots if r):
        candidates.extend(sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3"))))
    for minor in range(20, MIN_PYTHON[1] - 1, -1):
        found = shutil.which(f"python3.{minor}")
        if found:
            candidates.append(found)
    best: Optional[tuple[tuple[int, int], str]] = None
    for cand in candidates:
        if not re.search(r"versions/3\.\d+\.\d+/bin/python3$", cand) and "versions" in cand:
            continue  # skip pyenv virtualenvs and pre-release builds
        ver = _version_of(cand)
        if ver and ver >= MIN_PYTHON and (best is None or ver > best[0]):
            best = (ver, cand)
    if best is None:
        raise RuntimeError("bandersnatch 8.2 needs Python >= 3.12 and none was found under pyenv's versions or on PATH")
    return best[1]


def ensure_venv(venv: Path, extra: tuple[str, ...] = ()) -> Path:
    """The bandersnatch executable in `venv`, installing bandersnatch==VERSION (and `extra`) if needed."""
    exe = venv / "bin" / "bandersnatch"
    ok = False
    if exe.exists():
        res = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
        ok = res.returncode == 0 and res.stdout.strip().endswith(VERSION)
    if not ok:
        if venv.exists():
            shutil.rmtree(venv)
        python = find_python()
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    missing = [p for p in ((f"bandersnatch=={VERSION}",) if not ok else ()) + extra if not _installed(venv, p)]
    if missing:
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *missing], check=True)
    return exe


def _installed(venv: Path, requirement: str) -> bool:
    name = re.split(r"[=<>!~ ]", requirement, maxsplit=1)[0]
    res = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "show", "--quiet", name], capture_output=True)
    return res.returncode == 0


def write_config(path: Path, *, directory: Path, master: str, workers: int) -> None:
    """bandersnatch.conf. `json = true`: `bandersnatch verify` reads the saved JSON and cannot run without it."""
    path.write_text(
        "[mirror]\n"
        f"directory = {directory}\n"
        f"master = {master}\n"
        "allow-non-https = true\n"
        "json = true\n"
        "release-files = true\n"
        "core-metadata = true\n"
        "hash-index = false\n"
        "simple-format = ALL\n"
        "stop-on-error = false\n"
        "storage-backend = filesystem\n"
        "compare-method = hash\n"
        "cleanup = false\n"
        "timeout = 30\n"
        "global-timeout = 18000\n"
        f"workers = {workers}\n"
        f"verifiers = {workers}\n"
    )


def write_verify_config(path: Path, sync_config: Path) -> None:
    """The same configuration with an https master URL.

    `bandersnatch verify` (8.2) builds its Master without passing allow-non-https, so an http master
    makes it fail before it looks at a single file. It only contacts the master to re-fetch a missing or
    corrupt file, which a complete mirror has none of; the URL still points at the loopback nginx.
    """
    text = sync_config.read_text().replace("master = http://", "master = https://")
    path.write_text(text)


def sync_cmd(exe: Path, config: Path) -> list[str]:
    return [str(exe), "-c", str(config), "mirror"]


def verify_cmd(exe: Path, config: Path) -> list[str]:
    return [str(exe), "-c", str(config), "verify"]
