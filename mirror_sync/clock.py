"""Time as the mirror writes it: ISO-8601 UTC instants (to the second) in the state, the reports
and the pages for people, and compact stamps in file names. One format, one place."""
from __future__ import annotations

import time
from datetime import datetime, timezone

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def utc_iso(ts: float) -> str:
    """A Unix time as the mirror records it.

    >>> utc_iso(0)
    '1970-01-01T00:00:00Z'
    >>> utc_iso(1767225599.9)
    '2025-12-31T23:59:59Z'
    """
    return datetime.fromtimestamp(ts, timezone.utc).strftime(ISO_FORMAT)


def parse_utc_iso(value: str | None) -> float | None:
    """The Unix time of a timestamp written by :func:`utc_iso`; None when unset or not one.

    >>> parse_utc_iso("1970-01-02T00:00:00Z")
    86400.0
    >>> parse_utc_iso("yesterday") is None and parse_utc_iso(None) is None
    True
    """
    if not value:
        return None
    try:
        return datetime.strptime(value, ISO_FORMAT).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def utc_stamp(ts: float | None = None) -> str:
    """A UTC time (now by default) for a file name: no separators a shell or glob would mind.

    >>> utc_stamp(0)
    '19700101T000000Z'
    """
    return datetime.fromtimestamp(time.time() if ts is None else ts, timezone.utc).strftime(STAMP_FORMAT)
