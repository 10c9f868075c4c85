"""Dependency closure: which projects the selected files' Requires-Dist pull in."""
from __future__ import annotations

import logging
from typing import Iterable, Optional

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement

log = logging.getLogger(__name__)


class DependencyEvaluator:
    """Evaluates Requires-Dist lines for every target marker environment and requested extra."""

    def __init__(self, marker_envs: list[dict[str, str]]) -> None:
        self.marker_envs = marker_envs
        self._cache: dict[tuple[str, frozenset[str]], Optional[Requirement]] = {}

    def needed(self, requires_dist: Iterable[str], extras: frozenset[str]) -> list[Requirement]:
        out: list[Requirement] = []
        for line in requires_dist:
            key = (line, extras)
            if key not in self._cache:
                self._cache[key] = self._evaluate(line, extras)
            req = self._cache[key]
            if req is not None:
                out.append(req)
        return out

    def _evaluate(self, line: str, extras: frozenset[str]) -> Optional[Requirement]:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            log.warning("event=bad-requirement requirement=%r", line)
            return None
        if req.url:
            return None  # direct references cannot be mirrored from an index
        if req.marker is None:
            return req
        for env in self.marker_envs:
            for extra in ("", *sorted(extras)):
                try:
                    if req.marker.evaluate({**env, "extra": extra}):
                        return req
                except UndefinedEnvironmentName:
                    continue
        return None
