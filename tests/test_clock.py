"""The one time format of the mirror (mirror_sync/clock.py) and the one core count (cores.py)."""
from __future__ import annotations

import os
import re

from hypothesis import given
from hypothesis import strategies as st

from mirror_sync.clock import parse_utc_iso, utc_iso, utc_stamp
from mirror_sync.cores import usable_cores

INSTANTS = st.floats(min_value=0, max_value=253402300799, allow_nan=False)  # up to 9999-12-31T23:59:59Z


@given(INSTANTS)
def test_iso_round_trip_to_the_second(ts: float) -> None:
    text = utc_iso(ts)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    assert parse_utc_iso(text) == float(int(ts))


@given(INSTANTS)
def test_stamp_is_the_same_instant_without_separators(ts: float) -> None:
    assert utc_stamp(ts) == utc_iso(ts).replace("-", "").replace(":", "")


@given(st.text(max_size=30))
def test_parsing_never_raises(value: str) -> None:
    got = parse_utc_iso(value)
    assert got is None or isinstance(got, float)


def test_other_forms_are_no_time() -> None:
    for value in ("", "2026-01-01 00:00:00", "2026-01-01T00:00:00+00:00", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00.5Z"):
        assert parse_utc_iso(value) is None, value


def test_cores_follow_the_affinity_mask() -> None:
    if not hasattr(os, "sched_getaffinity"):
        assert usable_cores() == (os.cpu_count() or 1)
        return
    mask = os.sched_getaffinity(0)
    assert usable_cores() == len(mask)
    if len(mask) > 1:  # taskset to one core: one worker, whatever the host has
        one = {min(mask)}
        os.sched_setaffinity(0, one)
        try:
            assert usable_cores() == 1
        finally:
            os.sched_setaffinity(0, mask)
