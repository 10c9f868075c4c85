"""The policy's configuration keys, validated into one frozen PolicySettings (a pure function of
the YAML mapping; keys that are not the policy's are left to the rest of the configuration).

    cooldown: 7d                  # a file is mirrored once its upload-time is at least this old
    cooldown_unknown: hold        # files without upload-time: hold (default) or allow
    uploaded_before: 2024-05-01T00:00:00Z   # only files uploaded before this instant
    cooldown_exempt: ["urllib3>=2.2.3"]     # releases that skip cooldown and uploaded_before
    advisories: /var/lib/osv/PyPI.zip       # an OSV export: the zip OSV publishes, or a directory
    block: {malicious: true, vulnerable: high}   # default malicious: true, vulnerable: off
    allow: {GHSA-xxxx-xxxx-xxxx: ["jinja2<3"]}   # advisories ignored for these releases
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .cvss import SEVERITIES
from .durations import parse_duration, parse_instant

if TYPE_CHECKING:  # the requirement parser loads only for a configuration that names releases
    from packaging.specifiers import SpecifierSet

POLICY_KEYS = ("cooldown", "cooldown_unknown", "uploaded_before", "cooldown_exempt", "advisories", "block", "allow")
VULNERABLE_LEVELS = ("off",) + SEVERITIES
_BLOCK_KEYS = ("malicious", "vulnerable")


@dataclass(frozen=True)
class ReleaseMatch:
    """A PEP 508 requirement without extras, markers or URL: a project and the versions it
    admits (pre-releases included, so "foo==2.0rc1" and "foo>=2" both name 2.1rc1's release when
    they admit it). A bare name admits every release, even one whose version is unknown."""

    project: str  # canonical
    specifier: SpecifierSet
    text: str  # as configured

    def matches(self, canonical: str, version: str | None) -> bool:
        if canonical != self.project:
            return False
        if not str(self.specifier):
            return True
        if version is None:
            return False
        from packaging.version import InvalidVersion, Version

        try:
            return self.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            return False


@dataclass(frozen=True)
class Block:
    malicious: bool = False
    vulnerable: str = "off"  # off | low | moderate | high | critical: block at or above

    @property
    def any(self) -> bool:
        return self.malicious or self.vulnerable != "off"


@dataclass(frozen=True)
class PolicySettings:
    """The policy as configured; the default is no policy at all (`active` False)."""

    cooldown: timedelta | None = None
    cooldown_unknown: str = "hold"  # hold | allow
    uploaded_before: datetime | None = None  # aware, UTC
    cooldown_exempt: tuple[ReleaseMatch, ...] = ()
    advisories: Path | None = None
    block: Block = field(default_factory=Block)
    allow: tuple[tuple[str, tuple[ReleaseMatch, ...]], ...] = ()  # (advisory id, releases), sorted by id

    @property
    def time_rules(self) -> bool:
        """A cooldown or a cut-off is in force."""
        return self.cooldown is not None or self.uploaded_before is not None

    @property
    def active(self) -> bool:
        """Some rule is in force: a time rule or advisories. False for a configuration without
        policy keys (and for one with only inert ones, such as cooldown_exempt alone)."""
        return self.time_rules or (self.advisories is not None and self.block.any)

    def exempt(self, canonical: str, version: str | None) -> str | None:
        """The cooldown_exempt requirement that names this release, if any."""
        for match in self.cooldown_exempt:
            if match.matches(canonical, version):
                return match.text
        return None

    def allowed(self, names: frozenset[str], canonical: str, version: str | None) -> str | None:
        """The `allow` id that lifts an advisory known by `names` (its id and the aliases it
        lists) for this release, if any. Ids compare without regard to case."""
        folded = {n.upper() for n in names}
        for ident, matches in self.allow:
            if ident.upper() in folded and any(m.matches(canonical, version) for m in matches):
                return ident
        return None

    def key_for(self, canonical: str) -> dict[str, Any]:
        """The settings that decide this project's files, as plain JSON values (for keys)."""
        return {
            "cooldown": None if self.cooldown is None else self.cooldown.total_seconds(),
            "cooldown_unknown": self.cooldown_unknown if self.time_rules else None,
            "uploaded_before": None if self.uploaded_before is None else self.uploaded_before.isoformat(),
            "exempt": sorted(m.text for m in self.cooldown_exempt if m.project == canonical),
            "block": [self.block.malicious, self.block.vulnerable] if self.advisories is not None else None,
            "allow": sorted(
                [ident.upper(), sorted(m.text for m in matches if m.project == canonical)]
                for ident, matches in self.allow
                if any(m.project == canonical for m in matches)
            ),
        }


def parse_policy(raw: Mapping[str, Any], base: Path | None = None) -> PolicySettings:
    """The policy keys of a configuration mapping, or ConfigError naming the key path.

    `base` is the directory a relative `advisories` path is taken from (the configuration
    file's); without it the path is kept as written.

    >>> parse_policy({"cooldown": "7d", "workers": 8}).cooldown
    datetime.timedelta(days=7)
    >>> parse_policy({"block": {"malicious": True}})
    Traceback (most recent call last):
    ...
    mirror_sync.errors.ConfigError: block: needs 'advisories', the OSV export to judge releases by
    """
    cooldown = None if raw.get("cooldown") is None else parse_duration(raw["cooldown"], "cooldown")
    unknown = raw.get("cooldown_unknown", "hold")
    if unknown is None:
        unknown = "hold"
    if unknown not in ("hold", "allow"):
        raise ConfigError(f"cooldown_unknown: must be hold or allow, not {unknown!r}")
    before = None if raw.get("uploaded_before") is None else parse_instant(raw["uploaded_before"], "uploaded_before")
    exempt = _matches(raw.get("cooldown_exempt"), "cooldown_exempt")
    advisories = _advisories_path(raw.get("advisories"), base)
    block = _block(raw.get("block"), advisories is not None)
    allow = _allow(raw.get("allow"), advisories is not None)
    return PolicySettings(
        cooldown=cooldown,
        cooldown_unknown=unknown,
        uploaded_before=before,
        cooldown_exempt=exempt,
        advisories=advisories,
        block=block,
        allow=allow,
    )


def _requirement(item: Any, key: str) -> ReleaseMatch:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    if not isinstance(item, str):
        raise ConfigError(f"{key}: must be a PEP 508 requirement such as 'urllib3>=2.2.3', not {item!r}")
    try:
        req = Requirement(item)
    except InvalidRequirement as exc:
        reason = (str(exc).splitlines() or ["invalid"])[0]  # packaging adds lines that point at the column
        raise ConfigError(f"{key}: {item!r} is not a valid PEP 508 requirement ({reason})") from None
    if req.url or req.marker is not None or req.extras:
        raise ConfigError(f"{key}: {item!r} must be a project name with an optional version specifier (no URL, extras or markers)")
    return ReleaseMatch(project=canonicalize_name(req.name), specifier=req.specifier, text=item.strip())


def _matches(value: Any, key: str) -> tuple[ReleaseMatch, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be a list of PEP 508 requirements such as 'urllib3>=2.2.3', not {value!r}")
    return tuple(_requirement(item, f"{key}[{i}]") for i, item in enumerate(value))


def _advisories_path(value: Any, base: Path | None) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"advisories: must be the path of an OSV export (a .zip or a directory of .json files), not {value!r}")
    path = Path(os.path.expanduser(value))
    if base is not None and not path.is_absolute():
        path = base / path
    return path


def _block(value: Any, has_advisories: bool) -> Block:
    if value is None:
        return Block(malicious=has_advisories)
    if not has_advisories:
        raise ConfigError("block: needs 'advisories', the OSV export to judge releases by")
    if not isinstance(value, Mapping):
        raise ConfigError(f"block: must be a mapping with 'malicious' and 'vulnerable', not {value!r}")
    for k in value:
        if k not in _BLOCK_KEYS:
            raise ConfigError(f"block.{k}: is not a known key (malicious, vulnerable)")
    malicious = value.get("malicious", True)
    if malicious is None:
        malicious = True
    if not isinstance(malicious, bool):
        raise ConfigError(f"block.malicious: must be true or false, not {malicious!r}")
    vulnerable = value.get("vulnerable", "off")
    if vulnerable is False or vulnerable is None:  # YAML 1.1 reads a bare `off` as false
        vulnerable = "off"
    if not isinstance(vulnerable, str) or vulnerable.lower() not in VULNERABLE_LEVELS:
        raise ConfigError(f"block.vulnerable: must be one of {', '.join(VULNERABLE_LEVELS)}, not {vulnerable!r}")
    return Block(malicious=malicious, vulnerable=vulnerable.lower())


def _allow(value: Any, has_advisories: bool) -> tuple[tuple[str, tuple[ReleaseMatch, ...]], ...]:
    if value is None:
        return ()
    if not has_advisories:
        raise ConfigError("allow: needs 'advisories': it lifts advisories, and none are configured")
    if not isinstance(value, Mapping):
        raise ConfigError(f"allow: must be a mapping of advisory ids to lists of requirements, not {value!r}")
    out = []
    for ident, items in value.items():
        if not isinstance(ident, str) or not ident.strip():
            raise ConfigError(f"allow: {ident!r} is not an advisory id such as GHSA-xxxx-xxxx-xxxx or PYSEC-2024-1")
        key = f"allow.{ident}"
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{key}: must list the requirements it applies to (a bare project name for all its releases), not {items!r}")
        out.append((ident.strip(), tuple(_requirement(item, f"{key}[{i}]") for i, item in enumerate(items))))
    return tuple(sorted(out, key=lambda pair: pair[0]))
