"""Helpers for the sync tests: write a config, run the real CLI, read its JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent


def write_config(path: Path, upstream: str, directory: Path, **keys: Any) -> Path:
    doc = {"upstream": upstream, "directory": str(directory), "workers": 4, "timeout": 5, "retries": 2, **keys}
    path.write_text(yaml.safe_dump(doc))
    return path


def cli_env() -> dict[str, str]:
    """The environment `python -m mirror_sync` runs in under the tests: this checkout's engine,
    none of this machine's PIP_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_cli(config: Path, *args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    """Run `python -m mirror_sync -c CONFIG ARGS --json` in a subprocess; (exit code, JSON, stderr)."""
    env = cli_env()
    proc = subprocess.run(
        [sys.executable, "-m", "mirror_sync", "-c", str(config), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got {proc.stdout!r}; stderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(lines[0]), proc.stderr


def mirrored_files(directory: Path) -> set[str]:
    return {p.name for p in (directory / "web" / "packages").rglob("*") if p.is_file() and not p.name.endswith(".metadata")}


def outside_files(root: Path, directory: Path) -> list[Path]:
    """Files under `root` that are not inside the mirror directory (a traversal would land there)."""
    return [p for p in root.rglob("*") if p.is_file() and directory not in p.parents]
