"""The policy's verdict on one file: mirrored, held back for now, or blocked (pure; the clock
and the advisories come from the caller).

Precedence, most binding first:

1. blocked: an advisory that is not withdrawn (withdrawn at or before `now`) names the release,
   when `block` asks for it: a MAL- advisory when `block.malicious` is on; any other advisory
   when `block.vulnerable` is not off and its severity is at or above that level. **An advisory
   whose severity is unknown counts as at or above every level** (fail closed): with
   `vulnerable: critical`, an advisory without CVSS v3 vector, database severity or scored alias
   blocks too. A malicious advisory is judged by `block.malicious` alone. `allow` lifts an
   advisory for the releases it names, by the advisory's id or one of the aliases the advisory
   itself lists (so a CVE id lifts every advisory that names that CVE); nothing else lifts a
   block, not cooldown_exempt. More advisories never lift a block, with one exception by design:
   an advisory without a severity of its own takes its aliases' (osv.py), which may be below
   the threshold where unknown was not.
2. held: `uploaded_before` (a file uploaded at or after it is held for good), then `cooldown`
   (held until upload-time + cooldown), and a file without a readable upload-time is held
   whenever a time rule is in force unless `cooldown_unknown: allow`. cooldown_exempt releases
   skip these rules, and only these.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from .cvss import SEVERITIES
from .durations import format_duration, parse_instant, parse_timestamp
from .osv import Advisory, AdvisoryDB
from .settings import PolicySettings

NOW_VARIABLE = "MIRROR_SYNC_NOW"
_RANK = {name: i for i, name in enumerate(SEVERITIES)}
_RANK["none"] = -1  # a CVSS score of 0.0: below every level


@dataclass(frozen=True)
class Refusal:
    """Why a file is not mirrored. `matures` is when the refusal lifts by itself, when it does:
    a held file's end of cooldown (None for uploaded_before and an unknown upload-time, which
    never lift); for a blocked file only when every advisory blocking it has a withdrawal dated
    after `now`."""

    kind: str  # held | blocked
    rule: str  # cooldown | uploaded_before | unknown_upload_time | malicious | vulnerable
    advisory: str | None = None  # the blocking advisory's id
    matures: datetime | None = None
    detail: str = ""  # one sentence for people


def clock_now() -> datetime:
    """The time policy decisions are made at: the real UTC time, or the RFC 3339 instant in the
    environment variable MIRROR_SYNC_NOW (for tests, and to replay a run as of a given time:
    MIRROR_SYNC_NOW=2024-05-01T00:00:00Z). A malformed value is a ConfigError naming it."""
    value = os.environ.get(NOW_VARIABLE)
    if value:
        return parse_instant(value, NOW_VARIABLE)
    return datetime.now(timezone.utc)


def _iso(stamp: datetime) -> str:
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Policy:
    """The configured policy at one instant, with the advisories it judges by."""

    def __init__(self, settings: PolicySettings, advisories: AdvisoryDB | None, now: datetime) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be an aware datetime")
        if settings.advisories is not None and settings.block.any and advisories is None:
            raise ValueError("the policy blocks by advisories: load them (load_advisories) and pass them")
        self.settings = settings
        self.advisories = advisories if settings.block.any else None
        self.now = now.astimezone(timezone.utc)

    @property
    def active(self) -> bool:
        """False when no rule is configured: every file passes, and callers may skip the policy."""
        return self.settings.active

    def judge(self, canonical: str, version: str | None, upload_time: str | None) -> Refusal | None:
        """None when the file may be mirrored, else why not. `upload_time` as PEP 691 gives it
        (ISO 8601, "Z" or an offset, fractional seconds allowed); `version` None when unknown."""
        if not self.settings.active:
            return None
        blocked = self._blocked(canonical, version)
        if blocked is not None:
            return blocked
        return self._held(canonical, version, upload_time)

    def project_key(self, canonical: str) -> str:
        """Changes when anything that decides this project's files changes: the settings that
        bear on it, the advisories naming it (and their aliases). Not `now`: time decides only
        through upload times, and a held file's `matures` says when to look again."""
        doc = {
            "v": 1,
            "settings": self.settings.key_for(canonical) if self.settings.active else None,
            "advisories": None if self.advisories is None else self.advisories.fingerprint(canonical),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]

    # -- the rules ---------------------------------------------------------------------------------

    def _blocked(self, canonical: str, version: str | None) -> Refusal | None:
        if self.advisories is None:
            return None
        block = self.settings.block
        hits: list[tuple[tuple[int, int, str], Advisory, str]] = []
        for adv in self.advisories.for_project(canonical):
            if adv.withdrawn_by(self.now):
                continue
            if adv.malicious:
                if not block.malicious:
                    continue
                rule = "malicious"
            else:
                if block.vulnerable == "off":
                    continue
                if adv.severity is not None and _RANK[adv.severity] < _RANK[block.vulnerable]:
                    continue
                rule = "vulnerable"
            if not adv.affects(version):
                continue
            if self.settings.allowed(frozenset((adv.id, *adv.aliases)), canonical, version) is not None:
                continue
            rank = len(SEVERITIES) if adv.severity is None else _RANK[adv.severity]
            hits.append(((0 if rule == "malicious" else 1, -rank, adv.id), adv, rule))
        if not hits:
            return None
        hits.sort(key=lambda hit: hit[0])
        _, adv, rule = hits[0]
        lifts = [a.withdrawn for _, a, _ in hits]
        matures = max(lifts) if all(w is not None for w in lifts) else None  # type: ignore[type-var]
        release = f"{canonical} {version}" if version is not None else f"{canonical} (version unknown)"
        if rule == "malicious":
            detail = f"{release} is reported malicious by {adv.id}"
        else:
            severity = adv.severity or "unknown, which blocks at every level"
            detail = f"{release} is affected by {adv.id} (severity {severity}; block.vulnerable is {block.vulnerable})"
        if adv.summary:
            detail += f": {adv.summary}"
        if len(hits) > 1:
            detail += f" (and {len(hits) - 1} more advisor{'y' if len(hits) == 2 else 'ies'})"
        return Refusal(kind="blocked", rule=rule, advisory=adv.id, matures=matures, detail=detail)

    def _held(self, canonical: str, version: str | None, upload_time: str | None) -> Refusal | None:
        settings = self.settings
        if not settings.time_rules or settings.exempt(canonical, version) is not None:
            return None
        release = f"{canonical} {version}" if version is not None else f"{canonical} (version unknown)"
        uploaded = parse_timestamp(upload_time)
        if uploaded is None:
            if settings.cooldown_unknown == "allow":
                return None
            what = "no upload-time" if not upload_time else f"an upload-time that is not an instant ({upload_time!r})"
            return Refusal(
                kind="held", rule="unknown_upload_time",
                detail=f"{release} has {what}, and cooldown_unknown is hold",
            )
        if settings.uploaded_before is not None and uploaded >= settings.uploaded_before:
            return Refusal(
                kind="held", rule="uploaded_before",
                detail=f"{release} was uploaded {_iso(uploaded)}, not before uploaded_before ({_iso(settings.uploaded_before)})",
            )
        if settings.cooldown is not None:
            try:
                matures: datetime | None = uploaded + settings.cooldown
            except OverflowError:  # an upload-time at the end of the calendar
                matures = None
            if matures is None or matures > self.now:
                when = f"it matures {_iso(matures)}" if matures is not None else "it never matures"
                return Refusal(
                    kind="held", rule="cooldown", matures=matures,
                    detail=f"{release} was uploaded {_iso(uploaded)}; with cooldown {format_duration(settings.cooldown)} {when}",
                )
        return None


__all__ = ["NOW_VARIABLE", "Policy", "Refusal", "clock_now"]
