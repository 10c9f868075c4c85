"""Dependency closure: which projects the selected files' Requires-Dist pull in."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .selection import Want

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


@dataclass(frozen=True)
class Visit:
    """What visiting one project under its current want found: the Requires-Dist lines of the
    files selected for that want, or that upstream has no such project, or another error."""

    requires: tuple[str, ...] = ()
    missing: bool = False
    error: Optional[str] = None


@dataclass
class Closure:
    """The dependency closure of an allowlist: what is wanted of each project, and why."""

    wants: dict[str, Want]
    required_by: dict[str, str] = field(default_factory=dict)  # dependency -> the project that first pulled it in
    failures: dict[str, str] = field(default_factory=dict)  # project -> one sentence
    rounds: int = 0


VisitWave = Callable[[dict[str, Want]], Mapping[str, Visit]]


def walk(
    requirements: Iterable[Requirement],
    visit_wave: VisitWave,
    needed: Callable[[Iterable[str], frozenset[str]], list[Requirement]],
    *,
    excluded: Callable[[str], bool] = lambda name: False,
    follow: bool = True,
    max_rounds: int = 10_000,
) -> Closure:
    """The least fixpoint of "a project's want includes every requirement on it of the files
    selected for its dependents' wants", starting from the allowlist.

    `visit_wave` is the only I/O: given projects and their current wants, it returns a Visit
    for each (reading pages, metadata or files as it must). Wants only ever widen and
    selection is monotone in the want, so the result depends on upstream's content and the
    configuration only, not on the order in which requirements are met: two runs over the same
    upstream reach the same wants.
    """
    wants: dict[str, Want] = {}
    allowlisted: set[str] = set()
    for req in requirements:
        name: str = canonicalize_name(req.name)
        if excluded(name):
            continue
        wants.setdefault(name, Want()).add(req)
        allowlisted.add(name)
    closure = Closure(wants)
    frontier = set(wants)
    while frontier and closure.rounds < max_rounds:
        closure.rounds += 1
        visits = visit_wave({name: wants[name] for name in sorted(frontier)})
        widened: set[str] = set()
        for name in sorted(frontier):
            visit = visits.get(name, Visit(error=f"project {name}: not visited"))
            if visit.missing:
                closure.failures[name] = (
                    f"project {name!r} from 'projects' is not on upstream"
                    if name in allowlisted
                    else f"dependency {name!r} of {closure.required_by.get(name, '?')} is not on upstream"
                )
                continue
            if visit.error is not None:
                closure.failures[name] = visit.error
                continue
            closure.failures.pop(name, None)
            if not follow:
                continue
            for dep in needed(visit.requires, frozenset(wants[name].extras)):
                dep_name: str = canonicalize_name(dep.name)
                if excluded(dep_name):
                    continue
                closure.required_by.setdefault(dep_name, name)
                if wants.setdefault(dep_name, Want()).add(dep):
                    widened.add(dep_name)
        frontier = widened
    if frontier:
        for name in sorted(frontier):
            closure.failures[name] = f"project {name}: the dependency closure did not settle within {max_rounds} rounds"
    return closure
