"""Durations and instants in the configuration and in upstream data, parsed into timedelta and
aware UTC datetime (pure functions).

A duration is "7d", "12h", "30m", "90s", "2w", or a combination written largest unit first
("1d12h", "1w2d"); a whole number of seconds (3600 or "3600"); or ISO 8601 ("P7D", "PT12H",
"P1W", "P1DT2H30M", a fraction on the last component: "PT1.5H"). Months and years are refused:
they have no fixed length. An instant is RFC 3339 with a timezone ("2024-05-01T00:00:00Z",
"...+02:00"); YAML may already have made it a datetime (aware) or a date (midnight UTC).
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..errors import ConfigError

MAX_DURATION = timedelta(days=36525)  # a century: far beyond any cooldown, and safe to add to any upload time

_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SHORT_RE = re.compile(r"(?:(\d{1,9})w)?(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,12})s)?\Z", re.ASCII)
_NUM = r"(\d{1,12}(?:[.,]\d{1,9})?)"
_ISO_RE = re.compile(
    rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?\Z", re.ASCII
)
_ISO_SECONDS = (None, None, 7 * 86400, 86400, 3600, 60, 1)  # Y, M, W, D, H, M, S
_INSTANT_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?\Z",
    re.ASCII,
)


def _not_a_duration(key: str, value: Any) -> ConfigError:
    return ConfigError(f"{key}: {value!r} is not a duration (use 7d, 12h or P7D)")


def parse_duration(value: Any, key: str) -> timedelta:
    """A configured duration, or ConfigError naming `key`.

    >>> parse_duration("1d12h", "cooldown")
    datetime.timedelta(days=1, seconds=43200)
    >>> parse_duration("P1DT2H", "cooldown") == parse_duration("1d2h", "cooldown")
    True
    >>> parse_duration(90, "cooldown")
    datetime.timedelta(seconds=90)
    >>> parse_duration("7 days", "cooldown")
    Traceback (most recent call last):
    ...
    mirror_sync.errors.ConfigError: cooldown: '7 days' is not a duration (use 7d, 12h or P7D)
    """
    if isinstance(value, bool):
        raise _not_a_duration(key, value)
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _duration_seconds(value.strip(), key, value)
    else:
        raise _not_a_duration(key, value)
    if seconds < 0:
        raise ConfigError(f"{key}: {value!r} is negative; a duration is 0 or more")
    if seconds > MAX_DURATION.total_seconds():
        raise ConfigError(f"{key}: {value!r} is longer than a century; write a shorter duration")
    return timedelta(seconds=seconds)


def _duration_seconds(text: str, key: str, original: str) -> float:
    if not text:
        raise _not_a_duration(key, original)
    if text.isascii() and text.isdigit():
        if len(text) > 12:
            raise ConfigError(f"{key}: {original!r} is longer than a century; write a shorter duration")
        return float(int(text))
    if text[0] in "Pp":
        return _iso_seconds(text.upper(), key, original)
    m = _SHORT_RE.match(text.lower())
    if not m or not any(m.groups()):
        raise _not_a_duration(key, original)
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in zip(m.groups(), "wdhms") if n))


def _iso_seconds(text: str, key: str, original: str) -> float:
    m = _ISO_RE.match(text)
    if not m or not any(m.groups()) or text.endswith("T"):
        raise _not_a_duration(key, original)
    parts = m.groups()
    if parts[0] is not None or parts[1] is not None:
        raise ConfigError(
            f"{key}: {original!r} counts months or years, which have no fixed length; "
            "use days or weeks instead (P30D, P52W)"
        )
    present = [i for i, p in enumerate(parts) if p is not None]
    total = 0.0
    for i in present:
        number = parts[i].replace(",", ".")  # type: ignore[union-attr]
        if "." in number and i != present[-1]:
            raise ConfigError(f"{key}: {original!r} has a fraction before its last component, which ISO 8601 does not allow")
        total += float(number) * _ISO_SECONDS[i]  # type: ignore[operator]
    return total


def format_duration(delta: timedelta) -> str:
    """The short form of a duration, for messages.

    >>> format_duration(timedelta(days=1, hours=12))
    '1d12h'
    >>> format_duration(timedelta(0))
    '0s'
    """
    seconds = int(delta.total_seconds())
    out = []
    for unit in "dhms":
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def parse_instant(value: Any, key: str) -> datetime:
    """A configured RFC 3339 instant as an aware UTC datetime, or ConfigError naming `key`.

    The timezone is required ("Z" or an offset): a bare local time means something different on
    every host. A YAML date (2024-05-01, no time) is midnight UTC of that day.

    >>> parse_instant("2024-05-01T02:00:00+02:00", "uploaded_before")
    datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parse_instant("2024-05-01T00:00:00", "uploaded_before")
    Traceback (most recent call last):
    ...
    mirror_sync.errors.ConfigError: uploaded_before: '2024-05-01T00:00:00' has no timezone (add Z for UTC, or an offset such as +02:00)
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigError(f"{key}: {value.isoformat()!r} has no timezone (add Z for UTC, or an offset such as +02:00)")
        return value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: {value!r} is not an RFC 3339 instant such as 2024-05-01T00:00:00Z")
    m = _INSTANT_RE.match(value.strip())
    if not m:
        raise ConfigError(f"{key}: {value!r} is not an RFC 3339 instant such as 2024-05-01T00:00:00Z")
    if not m.group(8) and not m.group(9):
        raise ConfigError(f"{key}: {value!r} has no timezone (add Z for UTC, or an offset such as +02:00)")
    stamp = _from_match(m)
    if stamp is None:
        raise ConfigError(f"{key}: {value!r} is not a valid date and time")
    return stamp


def parse_timestamp(value: str | None) -> datetime | None:
    """An upload-time or an advisory's date (ISO 8601, "Z" or an offset, fractional seconds
    allowed) as an aware UTC datetime; None when absent or not an instant. A time without a zone
    is UTC, as PEP 700 writes every upload-time (and as the page reader normalises them).

    >>> parse_timestamp("2024-05-01T12:00:00.123456789Z")
    datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    >>> parse_timestamp("last Tuesday") is None
    True
    """
    if not isinstance(value, str):
        return None
    m = _INSTANT_RE.match(value.strip())
    return _from_match(m) if m else None


def _from_match(m: re.Match[str]) -> datetime | None:
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = m.groups()
    try:
        stamp = datetime(
            int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59),  # :60, a leap second
            int((fraction or "0")[:6].ljust(6, "0")), tzinfo=timezone.utc,
        )
        if sign:
            if int(off_h) > 23 or int(off_m) > 59:
                return None
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            stamp = stamp - offset if sign == "+" else stamp + offset
    except (ValueError, OverflowError):
        return None
    return stamp
