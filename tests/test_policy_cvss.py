"""The CVSS v3.x base-score calculator (mirror_sync/policy/cvss.py), checked against the example
vulnerabilities FIRST scores in its CVSS v3.0/v3.1 examples documents."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror_sync.policy.cvss import base_score, rating, roundup

# (example, base vector, base score) from FIRST's "CVSS v3.1: Examples" (and v3.0's, same scores)
SPEC_EXAMPLES = [
    ("CVE-2013-1937 phpMyAdmin reflected XSS", "AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
    ("CVE-2013-0375 MySQL stored SQL injection", "AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
    ("CVE-2014-3566 SSLv3 POODLE", "AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1),
    ("CVE-2012-1516 VMware guest to host escape", "AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
    ("CVE-2012-0384 Cisco IOS command execution", "AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 8.8),
    ("CVE-2015-1098 Apple iWork denial of service", "AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.8),
    ("CVE-2014-0160 OpenSSL Heartbleed", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),
    ("CVE-2014-6271 GNU Bash Shellshock", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
    ("CVE-2008-1447 DNS Kaminsky bug", "AV:N/AC:H/PR:N/UI:N/S:C/C:N/I:H/A:N", 6.8),
    ("CVE-2014-2005 Sophos login screen bypass", "AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 6.8),
    ("CVE-2010-0467 Joomla directory traversal", "AV:N/AC:L/PR:N/UI:N/S:C/C:L/I:N/A:N", 5.8),
    ("CVE-2012-1342 Cisco ASA ACL bypass", "AV:N/AC:L/PR:N/UI:N/S:C/C:N/I:L/A:N", 5.8),
    ("CVE-2014-9253 DokuWiki reflected XSS", "AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N", 5.4),
    ("CVE-2009-0658 Adobe Acrobat buffer overflow", "AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.8),
    ("CVE-2011-1265 Microsoft Windows Bluetooth RCE", "AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.8),
    ("CVE-2014-2019 Apple iOS security control bypass", "AV:P/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:N", 4.6),
    ("CVE-2015-0970 SearchBlox CSRF", "AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8),
    ("CVE-2014-0224 OpenSSL CCS injection", "AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", 7.4),
    ("CVE-2012-5376 Google Chrome sandbox bypass", "AV:N/AC:L/PR:N/UI:R/S:C/C:H/I:H/A:H", 9.6),
    ("CVE-2015-8252", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),
    ("no impact at all", "AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0.0),
]


@pytest.mark.parametrize(("name", "vector", "score"), SPEC_EXAMPLES, ids=[e[0] for e in SPEC_EXAMPLES])
@pytest.mark.parametrize("version", ["3.0", "3.1"])
def test_the_specification_examples(name: str, vector: str, score: float, version: str) -> None:
    assert base_score(f"CVSS:{version}/{vector}") == score


def test_temporal_and_environmental_metrics_leave_the_base_score() -> None:
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N/E:P/RL:O/RC:C/CR:H/MAV:L/MS:U"
    assert base_score(vector) == 6.1


def test_metric_order_does_not_matter() -> None:
    assert base_score("CVSS:3.1/S:U/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H") == 9.8


@pytest.mark.parametrize("vector", [
    "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # no prefix
    "CVSS:3.2/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
    "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",  # A missing
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:L",  # repeated
    "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # X is not a base value
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:Y",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",
    "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A-H",
    "", "CVSS:3.1",
])
def test_malformed_vectors_have_no_score(vector: str) -> None:
    assert base_score(vector) is None


def test_roundup_is_exact_on_floating_point_artefacts() -> None:
    assert roundup(4.000000000000001) == 4.0
    assert roundup(4.02) == 4.1
    assert roundup(0.0) == 0.0
    assert roundup(9.91) == 10.0


def test_ratings() -> None:
    assert [rating(s) for s in (0.0, 0.1, 3.9, 4.0, 6.9, 7.0, 8.9, 9.0, 10.0)] == [
        "none", "low", "low", "moderate", "moderate", "high", "high", "critical", "critical"]


_ALL = list(itertools.product("NALP", "LH", "NLH", "NR", "UC", "HLN", "HLN", "HLN"))


@given(st.sampled_from(_ALL))
def test_every_base_vector_scores_within_bounds(values: tuple[str, ...]) -> None:
    av, ac, pr, ui, s, c, i, a = values
    score = base_score(f"CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:{s}/C:{c}/I:{i}/A:{a}")
    assert score is not None and 0.0 <= score <= 10.0
    assert round(score, 1) == score
    assert (score == 0.0) == (c == i == a == "N")


@given(st.sampled_from(_ALL), st.sampled_from(["C", "I", "A"]))
def test_more_impact_never_lowers_the_score(values: tuple[str, ...], which: str) -> None:
    av, ac, pr, ui, s, c, i, a = values
    impacts = {"C": c, "I": i, "A": a}
    order = "NLH"
    if impacts[which] == "H":
        return
    higher = dict(impacts, **{which: order[order.index(impacts[which]) + 1]})

    def score(imp: dict[str, str]) -> float:
        got = base_score(f"CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:{s}/C:{imp['C']}/I:{imp['I']}/A:{imp['A']}")
        assert got is not None
        return got

    assert score(higher) >= score(impacts)
