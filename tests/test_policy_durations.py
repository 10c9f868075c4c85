"""Durations and instants of the policy keys (mirror_sync/policy/durations.py): unit tests and
hypothesis properties."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror_sync.errors import ConfigError
from mirror_sync.policy.durations import (
    MAX_DURATION,
    format_duration,
    parse_duration,
    parse_instant,
    parse_timestamp,
)

H, D = timedelta(hours=1), timedelta(days=1)


@pytest.mark.parametrize(("value", "expected"), [
    ("7d", 7 * D), ("12h", 12 * H), ("30m", timedelta(minutes=30)), ("90s", timedelta(seconds=90)),
    ("2w", 14 * D), ("1d12h", D + 12 * H), ("1w2d3h4m5s", timedelta(days=9, hours=3, minutes=4, seconds=5)),
    ("7D", 7 * D), (" 7d ", 7 * D), ("0s", timedelta(0)),
    (3600, H), ("3600", H), (0, timedelta(0)),
    ("P7D", 7 * D), ("PT12H", 12 * H), ("P1W", 7 * D), ("P1DT2H", D + 2 * H), ("PT30M", timedelta(minutes=30)),
    ("PT90S", timedelta(seconds=90)), ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ("p7d", 7 * D), ("PT1.5H", timedelta(minutes=90)), ("PT0,5S", timedelta(milliseconds=500)),
    (timedelta(hours=2), 2 * H),
])
def test_durations(value: object, expected: timedelta) -> None:
    assert parse_duration(value, "cooldown") == expected


@pytest.mark.parametrize("value", [
    "7 days", "d", "", "  ", "1h1d", "1d1d", "7days", "-7d", "1.5d", "P", "PT", "P1DT", "PT1H30",
    "P1.5DT2H", "7d!", "\u0667d", True, False, 1.5, None, [7], {"d": 7},
])
def test_not_durations(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "cooldown")
    message = str(info.value)
    assert message.startswith("cooldown: "), message


def test_the_documented_sentence() -> None:
    with pytest.raises(ConfigError, match=r"^cooldown: '7 days' is not a duration \(use 7d, 12h or P7D\)$"):
        parse_duration("7 days", "cooldown")


@pytest.mark.parametrize("value", ["P1M", "P1Y", "P1Y2M", "P2MT1H", "P0Y"])
def test_months_and_years_are_refused_with_the_reason(value: str) -> None:
    with pytest.raises(ConfigError, match="months or years, which have no fixed length"):
        parse_duration(value, "cooldown")


def test_minutes_in_iso_are_not_months() -> None:
    assert parse_duration("PT1M", "cooldown") == timedelta(minutes=1)


@pytest.mark.parametrize("value", [-1, "99999999999999", "P999999999999D", "999999999w", 10**20])
def test_negative_and_huge_durations(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^cooldown: .*(negative|longer than a century)"):
        parse_duration(value, "cooldown")


def test_a_century_is_the_limit() -> None:
    assert parse_duration(f"{MAX_DURATION.days}d", "k") == MAX_DURATION
    with pytest.raises(ConfigError):
        parse_duration(f"{MAX_DURATION.days + 1}d", "k")


@given(st.integers(0, 10_000), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_iso_and_short_forms_agree(d: int, h: int, m: int, s: int) -> None:
    short = "".join(f"{n}{u}" for n, u in zip((d, h, m, s), "dhms") if n) or "0s"
    iso = f"P{d}DT{h}H{m}M{s}S"
    assert parse_duration(short, "k") == parse_duration(iso, "k") == timedelta(days=d, hours=h, minutes=m, seconds=s)


@given(st.integers(0, int(MAX_DURATION.total_seconds())))
def test_format_duration_reads_back(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta), "k") == delta


# -- instants -------------------------------------------------------------------------------------

UTC = timezone.utc


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-05-01T00:00:00Z", datetime(2024, 5, 1, tzinfo=UTC)),
    ("2024-05-01t00:00:00z", datetime(2024, 5, 1, tzinfo=UTC)),
    ("2024-05-01T02:00:00+02:00", datetime(2024, 5, 1, tzinfo=UTC)),
    ("2024-04-30T19:30:00-04:30", datetime(2024, 5, 1, tzinfo=UTC)),
    ("2024-05-01 00:00:00.5Z", datetime(2024, 5, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ("2024-05-01T00:00:00.123456789Z", datetime(2024, 5, 1, 0, 0, 0, 123456, tzinfo=UTC)),
    (datetime(2024, 5, 1, 2, tzinfo=timezone(timedelta(hours=2))), datetime(2024, 5, 1, tzinfo=UTC)),
    (date(2024, 5, 1), datetime(2024, 5, 1, tzinfo=UTC)),
])
def test_instants(value: object, expected: datetime) -> None:
    got = parse_instant(value, "uploaded_before")
    assert got == expected and got.tzinfo is UTC


@pytest.mark.parametrize(("value", "why"), [
    ("2024-05-01T00:00:00", "has no timezone"),
    (datetime(2024, 5, 1), "has no timezone"),
    ("2024-05-01", "is not an RFC 3339 instant"),
    ("yesterday", "is not an RFC 3339 instant"),
    ("2024-02-30T00:00:00Z", "is not a valid date and time"),
    ("2024-05-01T24:00:00Z", "is not a valid date and time"),
    ("2024-05-01T00:00:00+25:00", "is not a valid date and time"),
    (1714521600, "is not an RFC 3339 instant"),
    (True, "is not an RFC 3339 instant"),
])
def test_not_instants(value: object, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^uploaded_before: .*{why}"):
        parse_instant(value, "uploaded_before")


def test_upload_times_are_lenient_and_never_raise() -> None:
    assert parse_timestamp("2024-05-01T00:00:00") == datetime(2024, 5, 1, tzinfo=UTC)  # PEP 700 writes UTC
    assert parse_timestamp("2016-12-31T23:59:60Z") == datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)
    for bad in (None, "", "2024-13-01T00:00:00Z", "soon", "2024-05-01", 12):
        assert parse_timestamp(bad) is None  # type: ignore[arg-type]


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
       st.integers(-23 * 60, 23 * 60))
def test_instants_read_back_in_any_offset(stamp: datetime, offset_minutes: int) -> None:
    shown = stamp.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert parse_instant(shown.isoformat(), "k") == stamp
    assert parse_timestamp(shown.isoformat()) == stamp


@given(st.text(max_size=40))
def test_timestamps_never_raise(text: str) -> None:
    got = parse_timestamp(text)
    assert got is None or got.tzinfo is UTC
