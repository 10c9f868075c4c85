"""The policy's verdict on a file (mirror_sync/policy/rules.py): the rules one by one, their
precedence, the project key, the clock, and hypothesis properties (a later `now` never holds a
file an earlier one passed; another advisory never unblocks; the verdict is deterministic)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror_sync.errors import ConfigError
from mirror_sync.policy.osv import AdvisoryDB
from mirror_sync.policy.rules import Policy, Refusal, clock_now
from mirror_sync.policy.settings import PolicySettings, parse_policy
from tests.support.osv_export import advisory, dumps

UTC = timezone.utc
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
CRITICAL_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
LOW_VECTOR = "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N"


def iso(stamp: datetime) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ago(**kwargs: float) -> str:
    return iso(NOW - timedelta(**kwargs))


def policy(raw: dict[str, Any], docs: list[dict[str, Any]] | None = None, now: datetime = NOW) -> Policy:
    raw = dict(raw)
    if docs is not None:
        raw.setdefault("advisories", "/unused/PyPI.zip")
    db = None if docs is None else AdvisoryDB.from_entries({f"{d['id']}.json": dumps(d) for d in docs})
    return Policy(parse_policy(raw), db, now)


def advisories() -> list[dict[str, Any]]:
    return [
        advisory("MAL-2024-1", "evil", events=[{"introduced": "0"}], summary="Malicious code in evil"),
        advisory("GHSA-crit-crit-crit", "web", events=[{"introduced": "0"}, {"fixed": "2.0"}], cvss=CRITICAL_VECTOR,
                 aliases=["CVE-2024-1"]),
        advisory("PYSEC-2024-1", "web", events=[{"introduced": "0"}, {"fixed": "2.0"}], aliases=["GHSA-crit-crit-crit"]),
        advisory("GHSA-low0-low0-low0", "web", events=[{"introduced": "2.0"}, {"fixed": "2.1"}], cvss=LOW_VECTOR),
        advisory("PYSEC-2024-2", "mystery", events=[{"introduced": "0"}]),  # no severity anywhere
        advisory("MAL-2024-2", "was-evil", events=[{"introduced": "0"}], withdrawn="2024-05-01T00:00:00Z"),
        advisory("MAL-2024-3", "soon-cleared", events=[{"introduced": "0"}], withdrawn="2024-07-01T00:00:00Z"),
    ]


# -- no policy ----------------------------------------------------------------------------------------


def test_without_policy_keys_everything_passes() -> None:
    p = Policy(PolicySettings(), None, NOW)
    assert not p.active
    assert p.judge("anything", None, None) is None and p.judge("x", "1.0", ago(seconds=1)) is None
    assert p.project_key("a") == p.project_key("b") == Policy(PolicySettings(), None, NOW + timedelta(days=9)).project_key("a")


# -- time rules -----------------------------------------------------------------------------------------


def test_cooldown_holds_a_young_file_until_it_matures() -> None:
    p = policy({"cooldown": "1d"})
    uploaded = NOW - timedelta(hours=1)
    got = p.judge("foo", "1.0", iso(uploaded))
    assert got == Refusal(kind="held", rule="cooldown", matures=uploaded + timedelta(days=1), detail=got.detail if got else "")
    assert got is not None and got.advisory is None
    assert got.detail == "foo 1.0 was uploaded 2024-06-01T11:00:00Z; with cooldown 1d it matures 2024-06-02T11:00:00Z"
    assert p.judge("foo", "1.0", ago(days=1)) is None  # exactly a day old: at least that old
    assert p.judge("foo", "1.0", ago(days=1, seconds=-1)) is not None
    assert policy({"cooldown": "1d"}, now=uploaded + timedelta(days=1)).judge("foo", "1.0", iso(uploaded)) is None


@pytest.mark.parametrize("upload_time", [
    "2024-06-01T11:00:00Z", "2024-06-01T11:00:00.123Z", "2024-06-01T13:00:00+02:00", "2024-06-01T11:00:00",
])
def test_upload_times_as_pep_691_gives_them(upload_time: str) -> None:
    got = policy({"cooldown": "2h"}).judge("foo", "1.0", upload_time)
    assert got is not None and got.matures is not None and got.matures.replace(microsecond=0) == datetime(2024, 6, 1, 13, tzinfo=UTC)


@pytest.mark.parametrize("upload_time", [None, "", "yesterday", "2024-13-01T00:00:00Z"])
def test_an_unknown_upload_time_is_held_unless_allowed(upload_time: str | None) -> None:
    got = policy({"cooldown": "1d"}).judge("foo", "1.0", upload_time)
    assert got is not None and (got.kind, got.rule, got.matures) == ("held", "unknown_upload_time", None)
    assert got.detail.startswith("foo 1.0 has ") and got.detail.endswith(", and cooldown_unknown is hold")
    assert policy({"cooldown": "1d", "cooldown_unknown": "allow"}).judge("foo", "1.0", upload_time) is None
    assert policy({"uploaded_before": "2024-01-01T00:00:00Z"}).judge("foo", "1.0", upload_time) is not None


def test_uploaded_before_freezes_the_mirror() -> None:
    p = policy({"uploaded_before": "2024-05-01T00:00:00Z", "cooldown": "1d"})
    assert p.judge("foo", "1.0", "2024-04-30T23:59:59Z") is None
    got = p.judge("foo", "1.1", "2024-05-01T00:00:00Z")
    assert got is not None and (got.kind, got.rule, got.matures) == ("held", "uploaded_before", None)
    assert got.detail == "foo 1.1 was uploaded 2024-05-01T00:00:00Z, not before uploaded_before (2024-05-01T00:00:00Z)"
    young = p.judge("foo", "1.2", ago(hours=1))
    assert young is not None and young.rule == "uploaded_before"  # never matures: the cut-off comes first


def test_exemptions_lift_the_time_rules_only() -> None:
    raw = {"cooldown": "7d", "uploaded_before": "2024-01-01T00:00:00Z", "cooldown_exempt": ["urllib3>=2.2.3", "evil"]}
    p = policy(raw, advisories())
    assert p.judge("urllib3", "2.2.3", ago(minutes=5)) is None
    assert p.judge("urllib3", "2.2.3", None) is None
    held = p.judge("urllib3", "2.2.2", ago(minutes=5))
    assert held is not None and held.kind == "held"
    blocked = p.judge("evil", "1.0", ago(days=30))
    assert blocked is not None and (blocked.kind, blocked.rule, blocked.advisory) == ("blocked", "malicious", "MAL-2024-1")


def test_an_upload_time_at_the_end_of_the_calendar_never_matures() -> None:
    got = policy({"cooldown": "30d"}).judge("foo", "1.0", "9999-12-31T00:00:00Z")
    assert got is not None and got.rule == "cooldown" and got.matures is None


# -- advisories ---------------------------------------------------------------------------------------------


def test_a_malicious_release_is_blocked() -> None:
    got = policy({}, advisories()).judge("evil", "0.1", ago(days=400))
    assert got == Refusal(kind="blocked", rule="malicious", advisory="MAL-2024-1", matures=None,
                          detail="evil 0.1 is reported malicious by MAL-2024-1: Malicious code in evil")
    assert policy({"block": {"malicious": False, "vulnerable": "low"}}, advisories()).judge("evil", "0.1", None) is None


def test_vulnerabilities_block_at_or_above_the_level() -> None:
    docs = advisories()
    assert policy({}, docs).judge("web", "1.0", None) is None  # vulnerable: off by default
    for level in ("low", "moderate", "high", "critical"):
        got = policy({"block": {"vulnerable": level}}, docs).judge("web", "1.5", None)
        assert got is not None and (got.kind, got.rule, got.advisory) == ("blocked", "vulnerable", "GHSA-crit-crit-crit")
        assert "(severity critical; block.vulnerable is" in got.detail and got.detail.endswith("(and 1 more advisory)")
    assert policy({"block": {"vulnerable": "low"}}, docs).judge("web", "2.0.5", None) is not None
    assert policy({"block": {"vulnerable": "moderate"}}, docs).judge("web", "2.0.5", None) is None  # low is below
    assert policy({"block": {"vulnerable": "low"}}, docs).judge("web", "2.1", None) is None  # fixed


def test_an_unknown_severity_blocks_at_every_level() -> None:
    got = policy({"block": {"vulnerable": "critical"}}, advisories()).judge("mystery", "1.0", None)
    assert got is not None and got.advisory == "PYSEC-2024-2"
    assert "severity unknown, which blocks at every level" in got.detail


def test_an_unscored_advisory_takes_its_alias_severity() -> None:
    docs = [advisory("GHSA-twin-twin-twin", "lib", events=[{"introduced": "0"}], cvss=LOW_VECTOR, aliases=["CVE-9"]),
            advisory("PYSEC-2024-9", "lib", events=[{"introduced": "0"}], aliases=["CVE-9"])]
    assert policy({"block": {"vulnerable": "high"}}, docs[1:]).judge("lib", "1.0", None) is not None  # alone: unknown
    assert policy({"block": {"vulnerable": "high"}}, docs).judge("lib", "1.0", None) is None  # its twin says low


def test_a_withdrawn_advisory_does_not_block() -> None:
    p = policy({}, advisories())
    assert p.judge("was-evil", "1.0", None) is None
    got = p.judge("soon-cleared", "1.0", None)
    assert got is not None and got.matures == datetime(2024, 7, 1, tzinfo=UTC)  # the withdrawal lifts it then
    assert policy({}, advisories(), now=datetime(2024, 7, 1, tzinfo=UTC)).judge("soon-cleared", "1.0", None) is None


def test_allow_lifts_an_advisory_for_the_releases_it_names() -> None:
    docs = advisories()
    block = {"vulnerable": "low"}
    assert policy({"block": block, "allow": {"GHSA-low0-low0-low0": ["web==2.0.5"]}}, docs).judge("web", "2.0.5", None) is None
    assert policy({"block": block, "allow": {"GHSA-low0-low0-low0": ["web==2.0.5"]}}, docs).judge("web", "2.0.6", None) is not None
    # the GHSA by its id, its PYSEC twin by the alias it lists: both lifted
    both = policy({"block": block, "allow": {"GHSA-crit-crit-crit": ["web"]}}, docs)
    assert both.judge("web", "1.0", None) is None
    # one of two advisories lifted: the other still blocks
    one = policy({"block": block, "allow": {"PYSEC-2024-1": ["web"]}}, docs).judge("web", "1.0", None)
    assert one is not None and one.advisory == "GHSA-crit-crit-crit"
    # a CVE id lifts every advisory that lists it
    assert policy({"block": block, "allow": {"CVE-2024-1": ["web<2"]}}, docs).judge("web", "1.0", None) is not None
    assert policy({"block": block, "allow": {"CVE-2024-1": ["web<2"], "PYSEC-2024-1": ["web"]}}, docs).judge("web", "1.0", None) is None


def test_blocked_comes_before_held() -> None:
    got = policy({"cooldown": "1d"}, advisories()).judge("evil", "1.0", ago(minutes=1))
    assert got is not None and got.kind == "blocked"


def test_unknown_versions_fail_closed() -> None:
    got = policy({"block": {"vulnerable": "low"}}, advisories()).judge("web", None, None)
    assert got is not None and got.detail.startswith("web (version unknown) is affected by")


def test_the_policy_needs_the_advisories_it_blocks_by() -> None:
    with pytest.raises(ValueError):
        Policy(parse_policy({"advisories": "/x.zip"}), None, NOW)
    with pytest.raises(ValueError):
        Policy(PolicySettings(), None, datetime(2024, 6, 1))  # naive
    Policy(parse_policy({"advisories": "/x.zip", "block": {"malicious": False}}), None, NOW)  # nothing to block by


# -- the project key ------------------------------------------------------------------------------------------


def test_the_project_key() -> None:
    docs = advisories()
    base = policy({"cooldown": "1d"}, docs)
    assert base.project_key("web") == policy({"cooldown": "1d"}, docs, now=NOW + timedelta(days=30)).project_key("web")
    assert base.project_key("web") != policy({"cooldown": "2d"}, docs).project_key("web")
    assert base.project_key("web") != policy({"cooldown": "1d", "block": {"vulnerable": "high"}}, docs).project_key("web")
    more = docs + [advisory("PYSEC-2024-77", "web", events=[{"introduced": "0"}])]
    assert base.project_key("web") != policy({"cooldown": "1d"}, more).project_key("web")
    assert base.project_key("evil") == policy({"cooldown": "1d"}, more).project_key("evil")  # not its advisory
    exempt = policy({"cooldown": "1d", "cooldown_exempt": ["other"]}, docs)
    assert base.project_key("web") == exempt.project_key("web") and base.project_key("other") != exempt.project_key("other")
    assert base.project_key("web") != base.project_key("evil")


# -- the clock ---------------------------------------------------------------------------------------------------


def test_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRROR_SYNC_NOW", "2024-06-01T14:00:00+02:00")
    assert clock_now() == NOW
    monkeypatch.setenv("MIRROR_SYNC_NOW", "tomorrow")
    with pytest.raises(ConfigError, match=r"^MIRROR_SYNC_NOW: 'tomorrow' is not an RFC 3339 instant"):
        clock_now()
    monkeypatch.delenv("MIRROR_SYNC_NOW")
    before = datetime.now(UTC)
    got = clock_now()
    assert got.tzinfo is not None and before <= got <= datetime.now(UTC)


# -- properties -------------------------------------------------------------------------------------------------

VERSIONS = ["0.9", "1.0", "1.1", "2.0rc1", "2.0", "2.1", "3.0"]
PROJECTS = ["a", "b"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
offsets = st.integers(0, 400 * 24)  # hours after T0


@st.composite
def advisory_docs(draw: Any, prefix: str = "X", count: tuple[int, int] = (0, 5)) -> list[dict[str, Any]]:
    docs = []
    for i in range(draw(st.integers(*count))):
        start = draw(st.sampled_from(["0"] + VERSIONS))
        events = [{"introduced": start}]
        if draw(st.booleans()):
            events.append({draw(st.sampled_from(["fixed", "last_affected"])): draw(st.sampled_from(VERSIONS))})
        withdrawn = draw(st.none() | offsets.map(lambda h: iso(T0 + timedelta(hours=h))))
        docs.append(advisory(
            f"{draw(st.sampled_from(['MAL', 'PYSEC', 'GHSA']))}-{prefix}{i}", draw(st.sampled_from(PROJECTS)),
            events=events, versions=draw(st.lists(st.sampled_from(VERSIONS), max_size=2)),
            cvss=draw(st.sampled_from([None, LOW_VECTOR, CRITICAL_VECTOR])), withdrawn=withdrawn,
        ))
    return docs


@st.composite
def configurations(draw: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    if draw(st.booleans()):
        raw["cooldown"] = f"{draw(st.integers(0, 60))}d{draw(st.integers(0, 23))}h"
    if draw(st.booleans()):
        raw["uploaded_before"] = iso(T0 + timedelta(hours=draw(offsets)))
    raw["cooldown_unknown"] = draw(st.sampled_from(["hold", "allow"]))
    raw["cooldown_exempt"] = draw(st.lists(st.sampled_from(["a", "b>=2.0", "a==1.0"]), max_size=2))
    raw["advisories"] = "/unused/PyPI.zip"
    raw["block"] = {"malicious": draw(st.booleans()), "vulnerable": draw(st.sampled_from(["off", "low", "moderate", "high", "critical"]))}
    allow = draw(st.dictionaries(st.sampled_from(["PYSEC-X0", "GHSA-X1", "MAL-X2"]), st.lists(st.sampled_from(["a", "b<2"]), min_size=1, max_size=2), max_size=2))
    if allow:
        raw["allow"] = allow
    return raw


files = st.tuples(
    st.sampled_from(PROJECTS),
    st.none() | st.sampled_from(VERSIONS + ["not-a-version"]),
    st.none() | offsets.map(lambda h: iso(T0 + timedelta(hours=h))) | st.just("garbage"),
)


def build(raw: dict[str, Any], docs: list[dict[str, Any]], now: datetime) -> Policy:
    return Policy(parse_policy(raw), AdvisoryDB.from_entries({f"{i:03}-{d['id']}.json": dumps(d) for i, d in enumerate(docs)}), now)


@settings(max_examples=300, deadline=None)
@given(configurations(), advisory_docs(), files, offsets, offsets)
def test_a_later_now_never_holds_what_an_earlier_now_passed(raw: dict[str, Any], docs: list[dict[str, Any]],
                                                             file: tuple[Any, Any, Any], h1: int, h2: int) -> None:
    early, late = sorted((T0 + timedelta(hours=h1), T0 + timedelta(hours=h2)))
    if build(raw, docs, early).judge(*file) is None:
        assert build(raw, docs, late).judge(*file) is None


@settings(max_examples=300, deadline=None)
@given(configurations(), advisory_docs(), advisory_docs(prefix="Y", count=(1, 3)), files, offsets)
def test_another_advisory_never_unblocks(raw: dict[str, Any], docs: list[dict[str, Any]], extra: list[dict[str, Any]],
                                         file: tuple[Any, Any, Any], h: int) -> None:
    now = T0 + timedelta(hours=h)
    before = build(raw, docs, now).judge(*file)
    after = build(raw, docs + extra, now).judge(*file)
    if before is not None and before.kind == "blocked":
        assert after is not None and after.kind == "blocked"
    if before is not None:
        assert after is not None  # and a refusal stays a refusal


@settings(max_examples=200, deadline=None)
@given(configurations(), advisory_docs(), files, offsets, st.randoms(use_true_random=False))
def test_the_verdict_is_deterministic(raw: dict[str, Any], docs: list[dict[str, Any]], file: tuple[Any, Any, Any],
                                      h: int, rnd: random.Random) -> None:
    now = T0 + timedelta(hours=h)
    shuffled = list(docs)
    rnd.shuffle(shuffled)
    first, second = build(raw, docs, now), build(raw, shuffled, now)
    assert first.judge(*file) == first.judge(*file) == second.judge(*file)
    assert first.project_key(file[0]) == second.project_key(file[0])


@settings(max_examples=200, deadline=None)
@given(configurations(), advisory_docs(), files, offsets)
def test_exemptions_never_lift_a_block(raw: dict[str, Any], docs: list[dict[str, Any]], file: tuple[Any, Any, Any], h: int) -> None:
    now = T0 + timedelta(hours=h)
    plain = build(dict(raw, cooldown_exempt=[]), docs, now).judge(*file)
    exempt = build(dict(raw, cooldown_exempt=PROJECTS), docs, now).judge(*file)
    if plain is not None and plain.kind == "blocked":
        assert exempt == plain
    else:
        assert exempt is None


def test_a_cvss_score_of_zero_is_a_known_severity_that_never_blocks() -> None:
    """CVSS 0.0 rates "none": unlike an unknown severity (which fails closed), it is below every level."""
    docs = [advisory("GHSA-zero-zero-zero", "quiet", events=[{"introduced": "0"}],
                     cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N")]
    p = policy({"advisories": "/osv", "block": {"vulnerable": "low"}}, docs)
    assert p.judge("quiet", "1.0", ago(days=30)) is None
    unknown = [advisory("GHSA-unkn-own0-0000", "quiet", events=[{"introduced": "0"}])]
    refusal = policy({"advisories": "/osv", "block": {"vulnerable": "critical"}}, unknown).judge("quiet", "1.0", ago(days=30))
    assert refusal is not None and refusal.kind == "blocked" and refusal.advisory == "GHSA-unkn-own0-0000"
