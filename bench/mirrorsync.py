"""mirror-sync from this checkout (or from one of its commits): its configuration and commands."""
from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent


def env_extra(root: Path = REPO) -> dict[str, str]:
    return {"PYTHONPATH": str(root)}


def export(rev: str, dest: Path) -> str:
    """Write `mirror_sync/` as it is at commit `rev` into `dest` (git archive); returns the commit's
    short hash (and the last commit that changed mirror_sync/, when older). Other work in the
    checkout (uncommitted edits) then does not reach the benchmark."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, timeout=30)
    if commit.returncode != 0:
        raise RuntimeError(f"no commit {rev!r} in {REPO}: {commit.stderr.strip()}")
    data = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "mirror_sync"],
                          capture_output=True, timeout=60, check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    last = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h", rev, "--", "mirror_sync"],
                          capture_output=True, text=True, timeout=30).stdout.strip()
    return commit.stdout.strip() + (f", mirror_sync/ last changed in {last}" if last and last != commit.stdout.strip() else "")


def describe(root: Path = REPO) -> str:
    """Which engine a run measures: the commit, and whether mirror_sync/ has uncommitted changes."""
    if root != REPO:
        return f"mirror_sync/ exported from a commit into {root}"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "mirror_sync"], capture_output=True, text=True)
    changed = [line for line in dirty.stdout.splitlines() if line.strip()]
    return f"the working tree at {head.stdout.strip() or '?'}" + (f" with {len(changed)} uncommitted changes in mirror_sync/" if changed else "")


def precompile(root: Path = REPO) -> None:
    """Byte-compile the checkout's package, as `pip install` does for an installed tool (and did for
    bandersnatch in its virtualenv): with PYTHONDONTWRITEBYTECODE set, every run would otherwise
    recompile the sources, which is not what a deployed mirror-sync pays."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "mirror_sync")], check=True, capture_output=True, timeout=120)


def available(env: dict[str, str], root: Path = REPO) -> bool:
    """`python -m mirror_sync --help` works, run from `root` (`-m` puts the current directory first on sys.path)."""
    res = subprocess.run([sys.executable, "-m", "mirror_sync", "--help"], env=env, cwd=root, capture_output=True, timeout=60)
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
