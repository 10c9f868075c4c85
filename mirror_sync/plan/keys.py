"""Keys that tell whether the mirror was made with the same settings: a changed key makes the
run look at projects again (pure functions of the configuration)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ..config import Config


def _digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def filter_fingerprint(config: Config) -> str:
    """Changes whenever a setting that decides which files are mirrored changes."""
    envs = None if config.environments is None else [repr(e) for e in config.environments]
    return _digest({
        "exclude": sorted(str(r) for r in config.exclude),
        "environments": envs,
        "prereleases": config.prereleases,
        "latest": config.latest,
        "max_file_size": config.max_file_size,
        "dependencies": config.dependencies and config.projects is not None,
        "v": 1,
    })


def run_key(config: Config) -> str:
    """Changes with anything that decides what the mirror holds besides upstream's content."""
    projects = None if config.projects is None else sorted(str(r) for r in config.projects)
    return _digest({
        "filters": filter_fingerprint(config),
        "projects": projects,
        "dependencies": config.dependencies,
        "upstream": config.upstream,
        "delete": config.delete,
    })
