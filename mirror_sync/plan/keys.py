"""Keys that tell whether the mirror was made with the same settings: a changed key makes the
run look at projects again (pure functions of the configuration)."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

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
        **_policy_doc(config),
    })


def _policy_doc(config: Config) -> dict[str, Any]:
    """The settings of the policy and of the pages that apply to every project (per-project
    parts, such as advisories and exemptions, are in the policy's project_key). Empty when
    unused, so that a configuration without them keeps its fingerprint."""
    doc: dict[str, Any] = {}
    p = config.policy
    if p.active:
        doc["policy"] = {
            "cooldown": None if p.cooldown is None else p.cooldown.total_seconds(),
            "cooldown_unknown": p.cooldown_unknown,
            "uploaded_before": None if p.uploaded_before is None else p.uploaded_before.isoformat(),
            "block": [p.block.malicious, p.block.vulnerable] if p.advisories is not None else None,
        }
    if config.public_url is not None:
        doc["public_url"] = config.public_url
    return doc


def run_key(config: Config, advisories: Optional[str] = None, local: Optional[str] = None) -> str:
    """Changes with anything that decides what the mirror holds besides upstream's content
    (`advisories`: the digest of the advisory export the policy judges by; `local`: of the
    local directory's files)."""
    projects = None if config.projects is None else sorted(str(r) for r in config.projects)
    doc: dict[str, Any] = {
        "filters": filter_fingerprint(config),
        "projects": projects,
        "dependencies": config.dependencies,
        "upstream": config.upstream,
        "delete": config.delete,
    }
    if advisories is not None:
        doc["advisories"] = advisories
    if config.local is not None:
        doc["local"] = [str(config.local), list(config.merge_upstream), local]
    return _digest(doc)
